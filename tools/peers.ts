/**
 * The real peers the tests run against, declared as data — the command (or
 * module) a test needs → the package that brings it — and the step that
 * `deno task test` runs before any test: check every peer, install what is
 * missing (Debian packages with apt-get as root or through `sudo -n`; the
 * Node-side peers from npm into `.cache/peers/`, so they work with any
 * Node), or stop at once naming what is missing and the command that
 * installs it.
 *
 * ```sh
 * deno task peers          # check and install (what `deno task test` runs first)
 * deno task peers --list   # the table: peer, package, installed or not
 * ```
 *
 * @module
 */

/** How a peer is found. */
export type PeerKind =
  /** A program on PATH. */
  | "command"
  /** A module the system Python (`/usr/bin/python3`) imports. */
  | "python-module"
  /** A package under `.cache/peers/node_modules` for Node's `require`. */
  | "npm"
  /** A Debian package whose programs are off PATH (a server's helpers, a versioned directory). */
  | "debian";

/** One real peer of the tests. */
export interface Peer {
  /** The command, the Python module, the npm package name or the Debian package name. */
  readonly name: string;
  /** How it is found. */
  readonly kind: PeerKind;
  /** The Debian package (command, python-module) or the npm spec (npm) that brings it. */
  readonly package: string;
  /** What the tests use it for. */
  readonly why: string;
}

/** Every peer, in the order the tests' needs were added. */
export const PEERS: readonly Peer[] = [
  { name: "python3", kind: "command", package: "python3", why: "scripted servers and clients" },
  {
    name: "websockets",
    kind: "python-module",
    package: "python3-websockets",
    why: "a WebSocket server and client (RFC 6455 interop)",
  },
  { name: "socat", kind: "command", package: "socat", why: "side-by-side peer and anchor" },
  { name: "openssl", kind: "command", package: "openssl", why: "certificates, TLS peers" },
  { name: "nc", kind: "command", package: "netcat-openbsd", why: "OpenBSD netcat, the anchor" },
  {
    name: "nc.openbsd",
    kind: "command",
    package: "netcat-openbsd",
    why: "OpenBSD netcat by its own name",
  },
  { name: "strace", kind: "command", package: "strace", why: "the system calls --trace names" },
  { name: "curl", kind: "command", package: "curl", why: "HTTP and proxy client" },
  { name: "setpriv", kind: "command", package: "util-linux", why: "run as another user" },
  { name: "unshare", kind: "command", package: "util-linux", why: "private network namespaces" },
  { name: "sha256sum", kind: "command", package: "coreutils", why: "bulk transfers checked" },
  { name: "ping", kind: "command", package: "iputils-ping", why: "the anchor for sockit ping" },
  { name: "traceroute", kind: "command", package: "traceroute", why: "the anchor for traceroute" },
  { name: "ip", kind: "command", package: "iproute2", why: "network namespaces and veth labs" },
  { name: "script", kind: "command", package: "bsdutils", why: "a real terminal (pty)" },
  { name: "redis-server", kind: "command", package: "redis-server", why: "a real TCP service" },
  { name: "ps", kind: "command", package: "procps", why: "process trees of the npm launcher" },
  { name: "sysctl", kind: "command", package: "procps", why: "namespace settings (ICMP, routes)" },
  { name: "microsocks", kind: "command", package: "microsocks", why: "a SOCKS5 server" },
  { name: "danted", kind: "command", package: "dante-server", why: "a SOCKS4/5 server" },
  { name: "tinyproxy", kind: "command", package: "tinyproxy", why: "an HTTP proxy" },
  { name: "node", kind: "command", package: "nodejs", why: "Node peers and the npm package" },
  { name: "npm", kind: "command", package: "npm", why: "packs and installs the npm package" },
  { name: "ws", kind: "npm", package: "ws@8.18.3", why: "node's WebSocket client and server" },
  { name: "setsid", kind: "command", package: "util-linux", why: "a server in its own session" },
  { name: "postfix", kind: "command", package: "postfix", why: "an SMTP server (STARTTLS)" },
  { name: "dovecot", kind: "command", package: "dovecot-core", why: "an IMAP/POP3/LMTP server" },
  { name: "dovecot-imapd", kind: "debian", package: "dovecot-imapd", why: "dovecot's IMAP" },
  { name: "dovecot-pop3d", kind: "debian", package: "dovecot-pop3d", why: "dovecot's POP3" },
  { name: "dovecot-lmtpd", kind: "debian", package: "dovecot-lmtpd", why: "dovecot's LMTP" },
  { name: "vsftpd", kind: "command", package: "vsftpd", why: "an FTP server (AUTH TLS)" },
  { name: "prosody", kind: "command", package: "prosody", why: "an XMPP server (STARTTLS)" },
  { name: "postgresql", kind: "debian", package: "postgresql", why: "PostgreSQL server, psql" },
  { name: "slapd", kind: "command", package: "slapd", why: "an LDAP server (StartTLS)" },
  { name: "ldapsearch", kind: "command", package: "ldap-utils", why: "an LDAP client (-ZZ)" },
  { name: "inspircd", kind: "command", package: "inspircd", why: "an IRC server (STARTTLS)" },
];

const ROOT = new URL("../", import.meta.url).pathname;

/** Where the npm peers are installed (`require` finds them with `NODE_PATH`). */
export const NODE_PEERS = `${ROOT}.cache/peers/node_modules`;

/** The system Python, which Debian's python3-* modules are installed for. */
export const SYSTEM_PYTHON = "/usr/bin/python3";

/**
 * The path of a program on PATH, or undefined.
 *
 * @example Usage
 * ```ts
 * import { which } from "./peers.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(which("sh")?.endsWith("/sh"));
 * assert.equal(which("no-such-program-here"), undefined);
 * ```
 */
export function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const path = `${dir}/${name}`;
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether one peer is there. */
export function hasPeer(peer: Peer): boolean {
  switch (peer.kind) {
    case "command":
      return which(peer.name) !== undefined;
    case "npm":
      return exists(`${NODE_PEERS}/${peer.name}/package.json`);
    case "debian":
      return which("dpkg-query") !== undefined && installedDebian(peer.name);
    case "python-module": {
      if (!exists(SYSTEM_PYTHON)) return false;
      const out = new Deno.Command(SYSTEM_PYTHON, {
        args: ["-c", `import ${peer.name}`],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      return out.success;
    }
  }
}

/**
 * The peers that are missing, each once.
 *
 * @example Usage
 * ```ts
 * import { missingPeers } from "./peers.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(missingPeers([{ name: "sh", kind: "command", package: "dash", why: "" }]), []);
 * ```
 */
export function missingPeers(peers: readonly Peer[] = PEERS): Peer[] {
  return peers.filter((peer) => !hasPeer(peer));
}

function run(cmd: string[], env: Record<string, string> = {}): { ok: boolean; out: string } {
  const out = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, out: text };
}

/** How this process may run apt-get: directly (root), through `sudo -n`, or not at all. */
function aptPrefix(): string[] | undefined {
  if (!exists("/etc/debian_version") || !which("apt-get")) return undefined;
  if (Deno.uid() === 0) return [];
  if (which("sudo") && run(["sudo", "-n", "true"]).ok) return ["sudo", "-n"];
  return undefined;
}

function installedDebian(pkg: string): boolean {
  return run(["dpkg-query", "-W", "-f=${Status}", pkg]).out.includes("install ok installed");
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}

/** The exact commands that install `missing` by hand. */
export function installCommands(missing: readonly Peer[]): string[] {
  const debian = unique(missing.filter((p) => p.kind !== "npm").map((p) => p.package));
  const npm = unique(missing.filter((p) => p.kind === "npm").map((p) => p.package));
  const lines: string[] = [];
  if (debian.length > 0) {
    lines.push(
      `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${debian.join(" ")}`,
    );
  }
  if (npm.length > 0) lines.push(`npm install --prefix .cache/peers ${npm.join(" ")}`);
  return lines;
}

/**
 * Checks every peer and installs the missing ones. Returns the peers still
 * missing (empty when all are there); prints one line per package added.
 */
export function ensurePeers(
  peers: readonly Peer[] = PEERS,
  say: (line: string) => void = (line) => Deno.stderr.writeSync(new TextEncoder().encode(line)),
): Peer[] {
  let missing = missingPeers(peers);
  if (missing.length === 0) return [];

  const debian = unique(missing.filter((p) => p.kind !== "npm").map((p) => p.package));
  const sudo = aptPrefix();
  if (debian.length > 0 && sudo) {
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    say(`peers: apt-get update (to install ${debian.join(", ")})\n`);
    const update = run([...sudo, "apt-get", "update", "-qq"], env);
    if (!update.ok) say(`peers: apt-get update failed:\n${update.out}`);
    const before = new Set(debian.filter(installedDebian));
    const install = run(
      [...sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", ...debian],
      env,
    );
    if (!install.ok) say(`peers: apt-get install failed:\n${install.out.trim()}\n`);
    for (const pkg of debian) {
      if (!before.has(pkg) && installedDebian(pkg)) say(`peers: installed ${pkg} (Debian)\n`);
    }
  }

  const npm = unique(missing.filter((p) => p.kind === "npm").map((p) => p.package));
  if (npm.length > 0 && which("npm")) {
    Deno.mkdirSync(`${ROOT}.cache/peers`, { recursive: true });
    const install = run([
      "npm",
      "install",
      "--prefix",
      `${ROOT}.cache/peers`,
      "--no-save",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      ...npm,
    ]);
    if (!install.ok) say(`peers: npm install failed:\n${install.out.trim()}\n`);
    else for (const spec of npm) say(`peers: installed ${spec} (npm, .cache/peers)\n`);
  }

  missing = missingPeers(peers);
  return missing;
}

function list(): void {
  const rows = PEERS.map((p) =>
    `${hasPeer(p) ? "ok     " : "MISSING"}  ${p.name.padEnd(13)} ${p.package.padEnd(19)} ${p.why}`
  );
  Deno.stdout.writeSync(new TextEncoder().encode(rows.join("\n") + "\n"));
}

if (import.meta.main) {
  if (Deno.args.includes("--list")) {
    list();
  } else {
    const missing = ensurePeers();
    if (missing.length > 0) {
      const names = missing.map((p) => `${p.name} (${p.package})`).join(", ");
      const how = installCommands(missing).map((line) => `  ${line}`).join("\n");
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `peers: MISSING — the tests need ${names}, and this machine cannot install them here ` +
            `(needs root or passwordless sudo on Debian/Ubuntu). Install them, then run the tests again:\n${how}\n`,
        ),
      );
      Deno.exit(1);
    }
  }
}
