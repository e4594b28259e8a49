/**
 * Socket addresses as data, and their C encoding: `sockaddr_in`,
 * `sockaddr_in6` (with its scope id: `fe80::1%eth0`), `sockaddr_un` (a path,
 * an abstract name, or unnamed). Every libc caller encodes and decodes
 * through here.
 *
 * @module
 */

import { SockitError } from "../base/errors.ts";
import { formatIPv6, formatUnixName, ipv6Groups, isIPv4 } from "../net/ip.ts";
import { C } from "./constants.ts";
import { withLibc } from "./libc.ts";

/** An IPv4 or IPv6 address and port (`port` is the protocol for a raw socket's peer: 0). */
export interface InetAddress {
  /** IPv4 or IPv6. */
  family: 4 | 6;
  /** The address as text, without a zone (`127.0.0.1`, `fe80::1`). */
  address: string;
  /** The port. */
  port: number;
  /** IPv6: the interface a link-local address is on (`sin6_scope_id`; 0 or absent: none). */
  scopeId?: number;
}

/** A Unix-domain socket address. */
export interface UnixAddress {
  /** The Unix domain (AF_LOCAL, as POSIX also names AF_UNIX: not the `unix:` scheme). */
  family: "local";
  /** The path, or the abstract name (without its NUL); `""` for an unnamed socket. */
  path: string;
  /** A Linux abstract name (no file). */
  abstract: boolean;
}

/** What a socket address can be. */
export type SocketAddress = InetAddress | UnixAddress;

/** Room for any socket address (`struct sockaddr_storage`). */
export const SOCKADDR_SIZE = 128;

/** The longest `sun_path` (bytes, with the NUL of a pathname). */
const SUN_PATH = 108;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * An IP address (`127.0.0.1`, `::1`, `fe80::1%eth0`) and port as an
 * {@linkcode InetAddress}: a zone becomes the scope id — a number as it is,
 * an interface name through `if_nametoindex` (libc). Throws when the
 * interface is unknown (or libc may not be used to look it up).
 *
 * @example Usage
 * ```ts
 * import { inetAddress } from "./sockaddr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(inetAddress("127.0.0.1", 80), { family: 4, address: "127.0.0.1", port: 80 });
 * assert.deepEqual(inetAddress("fe80::1%3", 22), { family: 6, address: "fe80::1", port: 22, scopeId: 3 });
 * ```
 */
export function inetAddress(host: string, port: number): InetAddress {
  if (isIPv4(host)) return { family: 4, address: host, port };
  const at = host.indexOf("%");
  if (at === -1) return { family: 6, address: host, port };
  const zone = host.slice(at + 1);
  const address = host.slice(0, at);
  return { family: 6, address, port, scopeId: interfaceIndex(zone) };
}

/** The index of the interface `zone` names (a number as it is). */
function interfaceIndex(zone: string): number {
  if (/^\d+$/.test(zone)) return Number(zone);
  const index = withLibc((c) => c.if_nametoindex(encoder.encode(`${zone}\0`)), -1);
  if (index > 0) return index;
  throw new SockitError(
    index === 0
      ? `no such interface: ${JSON.stringify(zone)}`
      : `the interface ${JSON.stringify(zone)} is looked up through libc, which needs --allow-ffi`,
    { op: "if_nametoindex", code: index === 0 ? "ENODEV" : "ENOTCAPABLE" },
  );
}

/**
 * Encodes a socket address as its C struct: `sockaddr_in` (16 bytes),
 * `sockaddr_in6` (28 bytes, scope id included) — family in host byte order,
 * port and address in network byte order — or `sockaddr_un` (a pathname
 * with its NUL; an abstract name as NUL and the name, no terminator).
 *
 * @example Usage
 * ```ts
 * import { decodeSockaddr, encodeSockaddr } from "./sockaddr.ts";
 * import assert from "node:assert/strict";
 *
 * const v6 = { family: 6, address: "fe80::1", port: 8, scopeId: 2 } as const;
 * assert.deepEqual(decodeSockaddr(encodeSockaddr(v6)), v6);
 * const abstract = { family: "local", path: "app", abstract: true } as const;
 * assert.deepEqual(decodeSockaddr(encodeSockaddr(abstract)), abstract);
 * ```
 */
export function encodeSockaddr(addr: SocketAddress): Uint8Array {
  if (addr.family === "local") {
    const name = encoder.encode(addr.path);
    const size = 2 + (addr.abstract ? 1 + name.length : name.length ? name.length + 1 : 0);
    if (size - 2 > SUN_PATH) {
      throw new SockitError(`the socket path is longer than ${SUN_PATH - 1} bytes`, {
        op: "bind",
        address: addr.path,
        code: "ENAMETOOLONG",
      });
    }
    const buf = new Uint8Array(size);
    new DataView(buf.buffer).setUint16(0, C.AF_UNIX, true);
    buf.set(name, addr.abstract ? 3 : 2);
    return buf;
  }
  if (addr.family === 4) {
    const buf = new Uint8Array(16);
    const view = new DataView(buf.buffer);
    view.setUint16(0, C.AF_INET, true);
    view.setUint16(2, addr.port, false);
    addr.address.split(".").forEach((part, i) => (buf[4 + i] = Number(part)));
    return buf;
  }
  const buf = new Uint8Array(28);
  const view = new DataView(buf.buffer);
  view.setUint16(0, C.AF_INET6, true);
  view.setUint16(2, addr.port, false);
  ipv6Groups(addr.address).forEach((g, i) => view.setUint16(8 + 2 * i, g, false));
  view.setUint32(24, addr.scopeId ?? 0, true);
  return buf;
}

/**
 * An IP address and port (`fe80::1%eth0` with its scope id) as a
 * `sockaddr_in`/`sockaddr_in6`: {@linkcode inetAddress}, encoded.
 *
 * @example Usage
 * ```ts
 * import { encodeInet } from "./sockaddr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodeInet("127.0.0.1", 53).length, 16);
 * assert.equal(encodeInet("::1", 53).length, 28);
 * ```
 */
export function encodeInet(host: string, port: number): Uint8Array {
  return encodeSockaddr(inetAddress(host, port));
}

/**
 * Decodes what `getsockname`, `getpeername`, `recvfrom` or `recvmsg` wrote
 * (`length`: the size they reported; a Unix address needs it). `undefined`
 * for another family.
 */
export function decodeSockaddr(buf: Uint8Array, length = buf.length): SocketAddress | undefined {
  const view = new DataView(buf.buffer, buf.byteOffset);
  const family = view.getUint16(0, true);
  if (family === C.AF_UNIX) {
    if (length <= 2) return { family: "local", path: "", abstract: false };
    const raw = buf.subarray(2, Math.min(length, 2 + SUN_PATH));
    if (raw[0] === 0) {
      return { family: "local", path: decoder.decode(raw.subarray(1)), abstract: true };
    }
    const end = raw.indexOf(0);
    return {
      family: "local",
      path: decoder.decode(end === -1 ? raw : raw.subarray(0, end)),
      abstract: false,
    };
  }
  const port = view.getUint16(2, false);
  if (family === C.AF_INET) {
    return { family: 4, address: [...buf.subarray(4, 8)].join("."), port };
  }
  if (family !== C.AF_INET6) return undefined;
  const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false));
  const scopeId = view.getUint32(24, true);
  return { family: 6, address: formatIPv6(groups), port, ...(scopeId ? { scopeId } : {}) };
}

/**
 * A socket address as sockit writes it: `127.0.0.1:53`, `[::1]:53`,
 * `[fe80::1%2]:22`, a path, `@name` for an abstract name, `(unnamed)`.
 *
 * @example Usage
 * ```ts
 * import { formatSocketAddress } from "./sockaddr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSocketAddress({ family: 6, address: "::1", port: 53 }), "[::1]:53");
 * assert.equal(formatSocketAddress({ family: "local", path: "app", abstract: true }), "@app");
 * ```
 */
export function formatSocketAddress(addr: SocketAddress): string {
  if (addr.family === "local") {
    return formatUnixName(addr) || "(unnamed)";
  }
  if (addr.family === 4) return `${addr.address}:${addr.port}`;
  return `[${addr.address}${addr.scopeId ? `%${addr.scopeId}` : ""}]:${addr.port}`;
}
