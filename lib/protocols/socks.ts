/**
 * The SOCKS protocols' numbers and words, shared by the client dialer
 * (`proxy.ts`) and the server (`proxy_server.ts`): SOCKS5 (RFC 1928) with
 * username/password authentication (RFC 1929), SOCKS4 and its 4a
 * extension (names resolved by the proxy). Also the handshake I/O both
 * sides use: exact reads from a socket, with the socket closed when a
 * deadline aborts.
 *
 * @module
 */

import { concat } from "../base/bytes.ts";
import { formatIPv6, ipv6Groups, isIPv4, isIPv6 } from "../net/ip.ts";

/** SOCKS5 numbers. */
export const SOCKS5 = {
  VERSION: 5,
  NO_AUTH: 0x00,
  USER_PASS: 0x02,
  NO_METHOD: 0xff,
  CONNECT: 1,
  ATYP_IPV4: 1,
  ATYP_NAME: 3,
  ATYP_IPV6: 4,
} as const;

/** SOCKS4 numbers. */
export const SOCKS4 = { VERSION: 4, CONNECT: 1, GRANTED: 0x5a, REJECTED: 0x5b } as const;

/** SOCKS5 reply codes in words (RFC 1928 §6). */
export const SOCKS5_REPLIES: Record<number, string> = {
  0: "succeeded",
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

/** SOCKS4 reply codes in words. */
export const SOCKS4_REPLIES: Record<number, string> = {
  0x5a: "request granted",
  0x5b: "request rejected or failed",
  0x5c: "request failed: the proxy could not reach identd on the client",
  0x5d: "request failed: identd did not confirm the user",
};

/** SOCKS5 authentication methods in words. */
export const SOCKS5_METHODS: Record<number, string> = {
  0x00: "no authentication",
  0x01: "GSSAPI",
  0x02: "username/password",
  0xff: "no acceptable method",
};

/**
 * A SOCKS5 address: type, then the IPv4 address, the IPv6 address or the
 * name with its length, then the port.
 *
 * @example Usage
 * ```ts
 * import { decodeSocks5Address, encodeSocks5Address } from "./socks.ts";
 * import assert from "node:assert/strict";
 *
 * for (const host of ["127.0.0.1", "::1", "example.com"]) {
 *   const bytes = encodeSocks5Address(host, 443);
 *   assert.deepEqual(decodeSocks5Address(bytes, 0), { host, port: 443, length: bytes.length });
 * }
 * ```
 */
export function encodeSocks5Address(host: string, port: number): Uint8Array {
  let head: number[];
  if (isIPv4(host)) head = [SOCKS5.ATYP_IPV4, ...host.split(".").map(Number)];
  else if (isIPv6(host)) {
    head = [SOCKS5.ATYP_IPV6, ...ipv6Groups(host).flatMap((g) => [g >> 8, g & 0xff])];
  } else {
    const name = new TextEncoder().encode(host);
    if (name.length > 255) throw new RangeError("a SOCKS5 host name is at most 255 bytes");
    head = [SOCKS5.ATYP_NAME, name.length, ...name];
  }
  return new Uint8Array([...head, port >> 8, port & 0xff]);
}

/**
 * Decodes a SOCKS5 address at `at`: the host, the port and how many bytes
 * it took; `undefined` while `bytes` holds less than a whole address (or an
 * unknown type: `length` -1).
 */
export function decodeSocks5Address(
  bytes: Uint8Array,
  at: number,
): { host: string; port: number; length: number } | undefined {
  const type = bytes[at];
  let hostLength: number;
  let start = at + 1;
  if (type === SOCKS5.ATYP_IPV4) hostLength = 4;
  else if (type === SOCKS5.ATYP_IPV6) hostLength = 16;
  else if (type === SOCKS5.ATYP_NAME) {
    if (bytes.length <= start) return undefined;
    hostLength = bytes[start];
    start++;
  } else if (type === undefined) return undefined;
  else return { host: "", port: 0, length: -1 };
  const end = start + hostLength;
  if (bytes.length < end + 2) return undefined;
  const raw = bytes.subarray(start, end);
  const host = type === SOCKS5.ATYP_IPV4
    ? [...raw].join(".")
    : type === SOCKS5.ATYP_IPV6
    ? formatIPv6(Array.from({ length: 8 }, (_, i) => (raw[2 * i] << 8) | raw[2 * i + 1]))
    : new TextDecoder().decode(raw);
  return { host, port: (bytes[end] << 8) | bytes[end + 1], length: end + 2 - at };
}

/** Raised when the peer closes in the middle of a handshake. */
export class HandshakeEof extends Error {}

/**
 * Reads from `conn` until `buffer` holds at least `n` bytes (reading more
 * if it comes); throws {@linkcode HandshakeEof} at end of input.
 *
 * @example Usage
 * ```ts ignore
 * const got = await readAtLeast(conn, 2, new Uint8Array(0));
 * ```
 */
export async function readAtLeast(
  conn: { read(p: Uint8Array): Promise<number | null> },
  n: number,
  buffer: Uint8Array,
  limit = 65536,
): Promise<Uint8Array> {
  while (buffer.length < n) {
    const chunk = new Uint8Array(Math.min(limit, Math.max(512, n - buffer.length)));
    const got = await conn.read(chunk);
    if (got === null) throw new HandshakeEof("closed");
    buffer = concat(buffer, chunk.subarray(0, got));
  }
  return buffer;
}

/**
 * Runs `work` (a handshake on `conn`) until it settles or `signal` aborts;
 * on abort the socket is closed, so the reads in flight end, and the
 * promise rejects with the signal's reason.
 */
export async function untilAborted<T>(
  signal: AbortSignal,
  conn: { close(): void },
  work: Promise<T>,
): Promise<T> {
  if (signal.aborted) {
    // The work is running already: it fails once the socket is closed, and nobody waits for it.
    work.catch(() => {});
    conn.close();
    throw signal.reason;
  }
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await work;
  } catch (err) {
    throw signal.aborted ? signal.reason : err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
