/**
 * Name resolution, once for every command: a host becomes the list of IP
 * addresses to try, in order, honouring `-4`/`-6`. IP literals are checked
 * against the family asked for; names go through the system resolver
 * (`getaddrinfo`, so `/etc/hosts` counts) unless a test injects its own.
 *
 * @module
 */

import { formatAuthority, hostOf } from "./address.ts";
import type { NetEndpoint } from "./address.ts";
import { SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, ipFamily } from "./ip.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

/** Resolves a host name to addresses (IP literals), in the order to try them. */
export type Lookup = (hostname: string, family?: 4 | 6) => Promise<string[]>;

/**
 * The system resolver (getaddrinfo, so `/etc/hosts` counts), through
 * `node:dns`.
 *
 * @example Usage
 * ```ts
 * import { systemLookup } from "./resolve.ts";
 * import assert from "node:assert/strict";
 *
 * const addresses = await systemLookup("localhost");
 * assert(addresses.length > 0);
 * ```
 */
export async function systemLookup(hostname: string, family?: 4 | 6): Promise<string[]> {
  const { lookup } = await import("node:dns/promises");
  const results = await lookup(hostname, { all: true, family: family ?? 0, verbatim: true });
  const seen = new Set<string>();
  return results.map((r) => r.address).filter((a) => !seen.has(a) && seen.add(a));
}

/** Options of {@linkcode resolve}. */
export interface ResolveOptions {
  /** Only IPv4 (`4`) or IPv6 (`6`) addresses, as `-4`/`-6`. */
  family?: 4 | 6;
  /** The resolver; {@linkcode systemLookup} by default. */
  lookup?: Lookup;
  /** The operation, for error messages (`connect`, `listen`, `scan`). */
  op: string;
  /** The address as the user named it, for error messages. */
  address?: string;
  /** Prints the `getaddrinfo(…)` call (`--trace`) under `tag`. */
  trace?: TraceFn;
  /** The trace tag (`#1`, `L1`, `U1`). */
  tag?: string;
  /**
   * When sockit may not resolve the name itself (permission for `host:port`
   * only, e.g. `--allow-net=example.com:80`), give the name back unresolved
   * so that Deno's connect resolves it, instead of failing.
   */
  deferWithoutPermission?: boolean;
}

/** Whether sockit may resolve `host` itself (net permission for the bare host). */
function mayLookUp(host: string): boolean {
  return Deno.permissions.querySync({ name: "net", host }).state === "granted";
}

/**
 * The addresses to try for `host`, in order: an IP literal as it is (when
 * its family agrees with `-4`/`-6`), a name through the resolver. Rejects
 * with a {@linkcode UsageError} for a literal of the wrong family, and with
 * a {@linkcode SockitError} (`name not found`) when nothing comes back.
 *
 * @example Usage
 * ```ts
 * import { resolve } from "./resolve.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(await resolve("127.0.0.1", { op: "connect" }), ["127.0.0.1"]);
 * const lookup = () => Promise.resolve(["::1", "127.0.0.1"]);
 * assert.deepEqual(await resolve("db", { op: "connect", lookup }), ["::1", "127.0.0.1"]);
 * await assert.rejects(resolve("::1", { op: "connect", family: 4 }), /an IPv6 address, but -4/);
 * ```
 */
export async function resolve(host: string, options: ResolveOptions): Promise<string[]> {
  const address = options.address ?? formatHost(host);
  const literal = ipFamily(host);
  if (literal) {
    if (options.family && options.family !== literal) {
      throw new UsageError(
        `${address}: an IPv${literal} address, but -${options.family} was given`,
      );
    }
    return [host];
  }
  if (options.deferWithoutPermission && !options.lookup && !mayLookUp(host)) {
    if (options.family) {
      throw new UsageError(
        `-${options.family} with a host name needs --allow-net for "${host}" itself (sockit resolves it)`,
      );
    }
    return [host];
  }
  const tag = options.tag ?? "";
  let found: string[];
  try {
    found = await (options.lookup ?? systemLookup)(host, options.family);
    options.trace?.(tag, `getaddrinfo("${host}") = ${found.join(", ")}`);
  } catch (err) {
    options.trace?.(tag, `getaddrinfo("${host}") = ${failedCall(err)}`);
    throw toSockitError(err, options.op, address);
  }
  if (found.length === 0) {
    throw new SockitError("name not found", { op: options.op, address, code: "ENOTFOUND" });
  }
  return found;
}

/**
 * The address to bind for an IP endpoint: as given, the role's default for
 * the port-only form; a name is resolved here only with `-4`/`-6` (else
 * Deno resolves it as it binds).
 *
 * @example Usage
 * ```ts
 * import { bindHost } from "./resolve.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await bindHost({ form: "host-port", scheme: "tcp", port: 0 }, {}), "127.0.0.1");
 * assert.equal(await bindHost({ form: "host-port", scheme: "tcp", port: 0 }, { family: 6 }), "::1");
 * ```
 */
export async function bindHost(
  endpoint: NetEndpoint,
  options: { family?: 4 | 6; lookup?: Lookup },
): Promise<string> {
  const host = hostOf(endpoint, "listen", options.family);
  if (options.family === undefined && ipFamily(host) === undefined) return host;
  const [address] = await resolve(host, {
    op: "listen",
    address: formatAuthority(endpoint, host),
    family: options.family,
    lookup: options.lookup,
  });
  return address;
}
