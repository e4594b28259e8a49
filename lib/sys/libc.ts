/**
 * The C library through FFI, for the socket calls Deno has no API for
 * (a connected UDP socket today). One `dlopen`, shared by the sockets that
 * use it and closed by the last of them; the `sockaddr_in`/`sockaddr_in6`
 * encoding written once; `errno` read right after the call that set it. Linux only, and only with `--allow-ffi`:
 * {@linkcode ffiAvailable} says whether it can be used.
 *
 * @module
 */

import { errnoError } from "../base/errors.ts";
import { formatIPv6, ipv6Groups, isIPv4 } from "../net/ip.ts";

/** Address families, socket types and flags used with these calls (Linux values). */
export const C = {
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_DGRAM: 2,
  SOCK_RAW: 3,
  IPPROTO_IP: 0,
  IPPROTO_ICMP: 1,
  IPPROTO_UDP: 17,
  IPPROTO_IPV6: 41,
  IPPROTO_ICMPV6: 58,
  IP_TTL: 2,
  IP_RECVTTL: 12,
  IPV6_UNICAST_HOPS: 16,
  IPV6_RECVHOPLIMIT: 51,
  IPV6_HOPLIMIT: 52,
  SO_TIMESTAMPNS: 35,
  SOL_RAW: 255,
  ICMP_FILTER: 1,
  ICMP6_FILTER: 1,
  EPERM: 1,
  EACCES: 13,
  EINTR: 4,
  O_RDONLY: 0,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SO_ERROR: 4,
  SO_BROADCAST: 6,
  SO_KEEPALIVE: 9,
  SOCK_STREAM: 1,
  SOCK_NONBLOCK: 0o4000,
  IPPROTO_TCP: 6,
  TCP_NODELAY: 1,
  EINPROGRESS: 115,
  MSG_NOSIGNAL: 0x4000,
  SHUT_WR: 1,
  POLLIN: 1,
  MSG_DONTWAIT: 0x40,
  EAGAIN: 11,
  SHUT_RDWR: 2,
  ECONNREFUSED: 111,
  F_GETFL: 3,
  F_SETPIPE_SZ: 1031,
  F_GETPIPE_SZ: 1032,
  O_ACCMODE: 3,
  O_RDWR: 2,
} as const;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "isize",
  },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  // On a helper thread: waiting must not block the event loop.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  // fcntl(fd, F_GETFL, 0): the third argument is ignored.
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // On a helper thread, one for every socket that epoll.ts waits on.
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The libc functions sockit calls. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let users = 0;

/**
 * Whether libc can be used here: Linux, with `--allow-ffi` granted.
 *
 * @example Usage
 * ```ts
 * import { ffiAvailable } from "./libc.ts";
 *
 * console.assert(typeof ffiAvailable() === "boolean");
 * ```
 */
export function ffiAvailable(): boolean {
  return Deno.build.os === "linux" &&
    Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

/**
 * The C library, opened by its first user and closed when the last one
 * calls {@linkcode releaseLibc}, so that nothing stays loaded after the
 * sockets that needed it are gone.
 *
 * @example Usage
 * ```ts ignore
 * const c = acquireLibc();
 * const fd = c.socket(C.AF_INET, C.SOCK_DGRAM, 0);
 * c.close(fd);
 * releaseLibc();
 * ```
 */
export function acquireLibc(): Libc {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  users++;
  return library.symbols;
}

/** One user of {@linkcode acquireLibc} is done with it. */
export function releaseLibc(): void {
  if (--users > 0 || !library) return;
  library.close();
  library = undefined;
}

/**
 * The error of the call that just failed (`errno`), as the Deno error it
 * corresponds to. Read it at once: the next call may change it.
 *
 * @example Usage
 * ```ts ignore
 * if (c.connect(fd, sa, sa.length) < 0) throw lastError(c);
 * ```
 */
export function lastError(c: Libc): Error {
  return errnoError(lastErrno(c));
}

/** The error number of the call that just failed. */
export function lastErrno(c: Libc): number {
  const ptr = c.__errno_location();
  return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
}

/**
 * Encodes an IP address and port as `struct sockaddr_in` (16 bytes) or
 * `sockaddr_in6` (28 bytes): family in host byte order, port and address
 * in network byte order.
 *
 * @example Usage
 * ```ts
 * import { decodeSockaddr, encodeSockaddr } from "./libc.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeSockaddr(encodeSockaddr("127.0.0.1", 53)), { hostname: "127.0.0.1", port: 53 });
 * assert.deepEqual(decodeSockaddr(encodeSockaddr("fe80::1", 8)), { hostname: "fe80::1", port: 8 });
 * ```
 */
export function encodeSockaddr(hostname: string, port: number): Uint8Array {
  if (isIPv4(hostname)) {
    const buf = new Uint8Array(16);
    const view = new DataView(buf.buffer);
    view.setUint16(0, C.AF_INET, true);
    view.setUint16(2, port, false);
    hostname.split(".").forEach((part, i) => (buf[4 + i] = Number(part)));
    return buf;
  }
  const buf = new Uint8Array(28);
  const view = new DataView(buf.buffer);
  view.setUint16(0, C.AF_INET6, true);
  view.setUint16(2, port, false);
  ipv6Groups(hostname).forEach((g, i) => view.setUint16(8 + 2 * i, g, false));
  return buf;
}

/** Decodes a `sockaddr_in`/`sockaddr_in6` (see {@linkcode encodeSockaddr}). */
export function decodeSockaddr(buf: Uint8Array): { hostname: string; port: number } {
  const view = new DataView(buf.buffer, buf.byteOffset);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === C.AF_INET) return { hostname: [...buf.subarray(4, 8)].join("."), port };
  const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false));
  return { hostname: formatIPv6(groups), port };
}

/** What `getsockname`/`getpeername` wrote: the address bytes and their length. */
type Sockaddr = { bytes: Uint8Array; length: number };

/**
 * The open fds of this process, lowest first, whose two socket addresses
 * satisfy `local` and `remote` (`undefined` from a call means it failed).
 * Past the highest fd in use every call fails with EBADF: the scan stops
 * after a run of 256 of them.
 */
function* socketsMatching(
  c: Libc,
  local: (address: Sockaddr) => boolean,
  remote: (address: Sockaddr) => boolean,
  limit: number,
): Generator<number> {
  const buf = new Uint8Array(110); // room for sockaddr_un
  const len = new Uint8Array(4);
  const view = new DataView(len.buffer);
  const ask = (fd: number, call: "getsockname" | "getpeername") => {
    view.setUint32(0, buf.length, true);
    return c[call](fd, buf, len) === 0
      ? { bytes: buf, length: view.getUint32(0, true) }
      : undefined;
  };
  for (let fd = 3, misses = 0; fd < limit && misses < 256; fd++) {
    const mine = ask(fd, "getsockname");
    if (!mine) {
      misses = lastErrno(c) === 9 ? misses + 1 : 0;
      continue;
    }
    misses = 0;
    if (!local(mine)) continue;
    const theirs = ask(fd, "getpeername");
    if (theirs && remote(theirs)) yield fd;
  }
}

/**
 * The fd of the TCP socket with these two addresses in this process, found
 * by asking the open fds, lowest first, for their addresses (Deno 2.9 does
 * not say which fd a connection is; it may hold a duplicate, which is the
 * same socket); `undefined` when none matches below `limit` or libc may not
 * be used.
 *
 * @example Usage
 * ```ts ignore
 * const fd = findTcpSocketFd(conn.localAddr as Deno.NetAddr, conn.remoteAddr as Deno.NetAddr);
 * ```
 */
export function findTcpSocketFd(
  local: Deno.NetAddr,
  remote: Deno.NetAddr,
  limit = 65536,
): number | undefined {
  if (!ffiAvailable()) return undefined;
  const c = acquireLibc();
  try {
    const is = (want: Deno.NetAddr) => ({ bytes }: Sockaddr) => {
      const family = new DataView(bytes.buffer).getUint16(0, true);
      if (family !== C.AF_INET && family !== C.AF_INET6) return false;
      const got = decodeSockaddr(bytes);
      return got.port === want.port && got.hostname === want.hostname;
    };
    for (const fd of socketsMatching(c, is(local), is(remote), limit)) return fd;
    return undefined;
  } finally {
    releaseLibc();
  }
}

/**
 * The fd of a connected Unix socket with these two paths in this process
 * (`null` or `""` for an unnamed end), found as {@linkcode findTcpSocketFd}
 * finds a TCP one. Two connections between the same paths cannot be told
 * apart: then `undefined`, as when none matches.
 *
 * @example Usage
 * ```ts ignore
 * const fd = findUnixSocketFd("/tmp/app.sock", null);
 * ```
 */
export function findUnixSocketFd(
  local: string | null,
  remote: string | null,
  limit = 65536,
): number | undefined {
  if (!ffiAvailable()) return undefined;
  const c = acquireLibc();
  try {
    const encoder = new TextEncoder();
    const is = (want: string | null) => ({ bytes, length }: Sockaddr) => {
      if (new DataView(bytes.buffer).getUint16(0, true) !== 1) return false; // AF_UNIX
      const size = length - 2;
      const path = bytes.subarray(2, 2 + Math.max(0, size));
      const text = want ?? "";
      if (text === "") return size <= 0 || path[0] === 0 && size === 1;
      const expected = encoder.encode(text.startsWith("@") ? `\0${text.slice(1)}` : text);
      // A pathname address may end with its NUL.
      const used = path[path.length - 1] === 0 && expected[expected.length - 1] !== 0
        ? path.subarray(0, path.length - 1)
        : path;
      return used.length === expected.length && used.every((b, i) => b === expected[i]);
    };
    let found: number | undefined;
    let foundIno = -1;
    for (const fd of socketsMatching(c, is(local), is(remote), limit)) {
      // Deno may hold a duplicate of the socket: the same one, not another connection.
      const ino = socketInode(fd);
      if (found !== undefined && ino !== foundIno) return undefined;
      found ??= fd;
      foundIno = ino;
    }
    return found;
  } finally {
    releaseLibc();
  }
}

/** The inode of the socket on `fd` (from `/proc/self/fd`), or -1 when it cannot be read. */
function socketInode(fd: number): number {
  try {
    const c = acquireLibc();
    try {
      const buf = new Uint8Array(64);
      const n = Number(c.readlink(new TextEncoder().encode(`/proc/self/fd/${fd}\0`), buf, 63n));
      const m = /socket:\[(\d+)\]/.exec(new TextDecoder().decode(buf.subarray(0, Math.max(0, n))));
      return m ? Number(m[1]) : -1;
    } finally {
      releaseLibc();
    }
  } catch {
    return -1;
  }
}

/**
 * `setsockopt(fd, level, name, int)` through libc; false when it failed or
 * libc may not be used.
 *
 * @example Usage
 * ```ts ignore
 * setIntOption(fd, 0, 2, 7); // IP_TTL = 7
 * ```
 */
export function setIntOption(fd: number, level: number, name: number, value: number): boolean {
  if (!ffiAvailable()) return false;
  const c = acquireLibc();
  try {
    return setsockoptInt(c, fd, level, name, value) === 0;
  } finally {
    releaseLibc();
  }
}

/**
 * `setsockopt(fd, level, name, int)` with libc already at hand: 0, or the
 * errno of the failure.
 *
 * @example Usage
 * ```ts ignore
 * const errno = setsockoptInt(c, fd, C.SOL_SOCKET, C.SO_BROADCAST, 1);
 * ```
 */
export function setsockoptInt(
  c: Libc,
  fd: number,
  level: number,
  name: number,
  value: number,
): number {
  const v = new Int32Array([value]);
  return c.setsockopt(fd, level, name, new Uint8Array(v.buffer), 4) === 0 ? 0 : lastErrno(c);
}

/**
 * A libc socket descriptor that is waited on with `poll()` on a helper
 * thread (so the event loop never blocks) and closed safely while a wait is
 * in flight: `close()` marks it; the descriptor is closed (and libc
 * released) at once, or when the poll in flight returns — then `wait()`
 * throws `Interrupted`. `closed` resolves once the descriptor is gone.
 *
 * @example Usage
 * ```ts ignore
 * const sock = new PolledFd(acquireLibc(), fd);
 * await sock.wait(100);
 * sock.close();
 * await sock.closed;
 * ```
 */
export class PolledFd {
  #released = Promise.withResolvers<void>();
  /** Resolves once the descriptor is closed. */
  readonly closed: Promise<void> = this.#released.promise;
  #c: Libc;
  #fd: number;
  #done = false;
  #polling = false;
  #pollfd = new Uint8Array(8);
  #onRelease?: () => void;

  /** Owns `fd` (opened with `c`, which it releases); `onRelease` runs after the descriptor is closed. */
  constructor(c: Libc, fd: number, onRelease?: () => void) {
    this.#c = c;
    this.#fd = fd;
    this.#onRelease = onRelease;
    const view = new DataView(this.#pollfd.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, C.POLLIN, true);
  }

  /** The descriptor (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /** Whether {@linkcode PolledFd.close} was called. */
  get done(): boolean {
    return this.#done;
  }

  /** Waits up to `ms` for input; throws `Interrupted` once closed. */
  async wait(ms: number): Promise<void> {
    if (this.#done) throw new Deno.errors.Interrupted("operation canceled");
    this.#polling = true;
    await this.#c.poll(this.#pollfd, 1n, ms);
    this.#polling = false;
    if (this.#done) {
      this.#release();
      throw new Deno.errors.Interrupted("operation canceled");
    }
  }

  /** Closes it (now, or when the wait in flight returns); false when it was closed already. */
  close(): boolean {
    if (this.#done) return false;
    this.#done = true;
    if (!this.#polling) this.#release();
    return true;
  }

  #release(): void {
    if (this.#fd < 0) return;
    this.#c.close(this.#fd);
    this.#fd = -1;
    releaseLibc();
    this.#onRelease?.();
    this.#released.resolve();
  }
}
