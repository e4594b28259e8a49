/**
 * `--trace`: socket operations written in the form of the system calls they
 * make, as in the strace view of the socket call sequence:
 * `socket(AF_INET, SOCK_STREAM)`, `bind(127.0.0.1:8888)`,
 * `listen(backlog=511)`, `accept() = 127.0.0.1:42694`, `write(6) = 6`,
 * `read(4096) = 6`, `shutdown(SHUT_WR)`, `close()`.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "../net/ip.ts";
import { toSockitError } from "../base/errors.ts";

/** Prints one traced call for a tag (`L1` for a listener, `#1` for a connection). */
export type TraceFn = (tag: string, call: string) => void;

/**
 * The address family a host or endpoint uses, as `socket()` names it.
 *
 * @example Usage
 * ```ts
 * import { addressFamily } from "./trace.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(addressFamily("127.0.0.1"), "AF_INET");
 * assert.deepEqual(addressFamily("::1"), "AF_INET6");
 * assert.deepEqual(addressFamily(undefined), "AF_UNIX");
 * ```
 */
export function addressFamily(hostname: string | undefined): string {
  if (hostname === undefined) return "AF_UNIX";
  if (isIPv6(hostname)) return "AF_INET6";
  if (isIPv4(hostname)) return "AF_INET";
  return "AF_INET";
}

/**
 * The result part of a failed call: `-1 ECONNREFUSED`.
 *
 * @example Usage
 * ```ts
 * import { failedCall } from "./trace.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(failedCall(new Deno.errors.AddrInUse("x")), "-1 EADDRINUSE");
 * ```
 */
export function failedCall(error: unknown): string {
  return `-1 ${toSockitError(error, "").code}`;
}
