/**
 * Service names in place of port numbers (`host:http`, `scan host ssh,https`),
 * as `getservbyname(3)` finds them in `/etc/services`. When sockit may not read
 * that file (`deno run` without `--allow-read=/etc/services`), a built-in list
 * of the common names answers instead, so the same command line works with
 * narrow permissions.
 *
 * @module
 */

/** The common entries of `/etc/services` (netbase), for when the file cannot be read. */
const BUILT_IN: Record<string, number> = {
  echo: 7,
  discard: 9,
  daytime: 13,
  "ftp-data": 20,
  ftp: 21,
  ssh: 22,
  telnet: 23,
  smtp: 25,
  time: 37,
  domain: 53,
  gopher: 70,
  finger: 79,
  http: 80,
  www: 80,
  kerberos: 88,
  pop3: 110,
  sunrpc: 111,
  auth: 113,
  nntp: 119,
  ntp: 123,
  imap2: 143,
  imap: 143,
  snmp: 161,
  ldap: 389,
  https: 443,
  "microsoft-ds": 445,
  syslog: 514,
  submission: 587,
  ldaps: 636,
  rsync: 873,
  imaps: 993,
  pop3s: 995,
  socks: 1080,
  openvpn: 1194,
  "ms-sql-s": 1433,
  mqtt: 1883,
  nfs: 2049,
  mysql: 3306,
  "ms-wbt-server": 3389,
  svn: 3690,
  postgresql: 5432,
  postgres: 5432,
  amqp: 5672,
  x11: 6000,
  redis: 6379,
  "http-alt": 8080,
  webcache: 8080,
};

const SERVICES_FILE = "/etc/services";
let table: Map<string, number> | undefined;

/** Reads `/etc/services` when sockit may, else the built-in list. */
function load(): Map<string, number> {
  const names = new Map(Object.entries(BUILT_IN));
  let text: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "read", path: SERVICES_FILE }).state === "granted") {
      text = Deno.readTextFileSync(SERVICES_FILE);
    }
  } catch {
    // No such file on this system: the built-in list stands.
  }
  // The file wins over the built-in list; within it, the first entry of a name.
  const fromFile = new Set<string>();
  for (const line of text?.split("\n") ?? []) {
    const fields = line.replace(/#.*/, "").trim().split(/\s+/);
    const m = /^(\d+)\/(tcp|udp)$/.exec(fields[1] ?? "");
    if (!m) continue;
    for (const name of [fields[0], ...fields.slice(2)]) {
      if (fromFile.has(name)) continue;
      fromFile.add(name);
      names.set(name, Number(m[1]));
    }
  }
  return names;
}

/**
 * The port of a service name (`http` → 80), or `undefined` when the name is
 * not known. Names are case-sensitive, as in `/etc/services`.
 *
 * @example Usage
 * ```ts
 * import { servicePort } from "./services.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(servicePort("https"), 443);
 * assert.equal(servicePort("no-such-service"), undefined);
 * ```
 */
export function servicePort(name: string): number | undefined {
  if (!/^[a-z][a-z0-9+._-]*$/i.test(name)) return undefined;
  table ??= load();
  return table.get(name);
}
