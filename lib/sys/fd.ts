/**
 * The descriptor of a socket Deno opened: Deno 2.9 does not say which fd a
 * connection is, so the open fds of the process are asked for their
 * addresses (`getsockname`, `getpeername`), lowest first. What sockit needs
 * an fd for: `splice(2)`, and the socket options Deno has no call for.
 *
 * @module
 */

import { C } from "./constants.ts";
import { acquireLibc, ffiAvailable, lastErrno, type Libc, releaseLibc } from "./libc.ts";
import { decodeSockaddr, SOCKADDR_SIZE, type SocketAddress } from "./sockaddr.ts";
import { kernelName } from "../net/ip.ts";

/**
 * The open fds of this process, lowest first, whose two socket addresses
 * satisfy `local` and `remote` (`undefined` from a call means it failed).
 * Past the highest fd in use every call fails with EBADF: the scan stops
 * after a run of 256 of them.
 */
function* socketsMatching(
  c: Libc,
  local: (address: SocketAddress) => boolean,
  remote: (address: SocketAddress) => boolean,
  limit: number,
): Generator<number> {
  const buf = new Uint8Array(SOCKADDR_SIZE);
  const len = new Uint8Array(4);
  const view = new DataView(len.buffer);
  const ask = (fd: number, call: "getsockname" | "getpeername") => {
    view.setUint32(0, buf.length, true);
    return c[call](fd, buf, len) === 0 ? decodeSockaddr(buf, view.getUint32(0, true)) : undefined;
  };
  for (let fd = 3, misses = 0; fd < limit && misses < 256; fd++) {
    const mine = ask(fd, "getsockname");
    if (!mine) {
      misses = lastErrno(c) === C.EBADF ? misses + 1 : 0;
      continue;
    }
    misses = 0;
    if (!local(mine)) continue;
    const theirs = ask(fd, "getpeername");
    if (theirs && remote(theirs)) yield fd;
  }
}

/**
 * The fd of the TCP socket with these two addresses in this process (it may
 * be a duplicate that Deno holds, which is the same socket); `undefined`
 * when none matches below `limit` or libc may not be used.
 *
 * @example Usage
 * ```ts
 * import { findTcpSocketFd } from "./fd.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const fd = findTcpSocketFd(conn.localAddr, conn.remoteAddr);
 * assert.ok(fd === undefined || fd > 2);
 * conn.close();
 * listener.close();
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
    const is = (want: Deno.NetAddr) => (got: SocketAddress) =>
      got.family !== "local" && got.port === want.port && got.address === want.hostname;
    for (const fd of socketsMatching(c, is(local), is(remote), limit)) return fd;
    return undefined;
  } finally {
    releaseLibc();
  }
}

/**
 * The fd of a connected Unix socket with these two paths in this process
 * (`null` or `""` for an unnamed end, `\0name` for an abstract one, as Deno
 * reports them), found as {@linkcode findTcpSocketFd} finds a TCP one. Two
 * connections between the same paths cannot be told apart: then
 * `undefined`, as when none matches.
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
    const is = (want: string | null) => (got: SocketAddress) => {
      if (got.family !== "local") return false;
      // Deno writes an abstract name with its NUL.
      const name = kernelName(want);
      return name.path === "" ? got.path === "" : got.abstract === name.abstract &&
        got.path === name.path;
    };
    let found: number | undefined;
    let foundIno = -1;
    for (const fd of socketsMatching(c, is(local), is(remote), limit)) {
      // Deno may hold a duplicate of the socket: the same one, not another connection.
      const ino = socketInode(c, fd);
      if (found !== undefined && ino !== foundIno) return undefined;
      found ??= fd;
      foundIno = ino;
    }
    return found;
  } finally {
    releaseLibc();
  }
}

/**
 * The fd of the connected socket with these two addresses (TCP or Unix, as
 * Deno reports them): {@linkcode findTcpSocketFd} or
 * {@linkcode findUnixSocketFd}; `undefined` for anything else.
 *
 * @example Usage
 * ```ts ignore
 * const fd = findSocketFd(conn.localAddr, conn.remoteAddr);
 * ```
 */
export function findSocketFd(local: Deno.Addr, remote: Deno.Addr): number | undefined {
  if ("hostname" in local && "hostname" in remote) return findTcpSocketFd(local, remote);
  if ("path" in local && "path" in remote) {
    return findUnixSocketFd(local.path ?? null, remote.path ?? null);
  }
  return undefined;
}

/** The inode of the socket on `fd` (from `/proc/self/fd`), or -1 when it cannot be read. */
function socketInode(c: Libc, fd: number): number {
  const buf = new Uint8Array(64);
  const n = Number(c.readlink(new TextEncoder().encode(`/proc/self/fd/${fd}\0`), buf, 63n));
  const m = /socket:\[(\d+)\]/.exec(new TextDecoder().decode(buf.subarray(0, Math.max(0, n))));
  return m ? Number(m[1]) : -1;
}
