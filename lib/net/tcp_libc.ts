/**
 * A TCP connection made through libc, for what `Deno.connect` cannot do:
 * bind a source address or port before connecting (`--source`, nc's
 * `-s`/`-p`). socket(), bind(), a non-blocking connect() waited on with
 * epoll, then recv()/send() with `MSG_DONTWAIT`, waiting (in the one epoll
 * set of `epoll.ts`) only when the socket is not ready — the event loop
 * never blocks, and idle connections hold no thread. Half-close is the kernel's (`shutdown(SHUT_WR)`), and the
 * descriptor is an ordinary TCP socket, so `splice(2)` moves its bytes as it
 * does a Deno one's. Linux only, and only with `--allow-ffi`.
 *
 * @module
 */

import { errnoError, SockitError, toSockitError } from "../base/errors.ts";
import { formatHost, isIPv6 } from "./ip.ts";
import { forget, READABLE, waitFor, WRITABLE } from "../sys/epoll.ts";
import {
  acquireLibc,
  C,
  decodeSockaddr,
  encodeSockaddr,
  ffiAvailable,
  lastErrno,
  releaseLibc,
  setsockoptInt,
} from "../sys/libc.ts";
import type { Libc } from "../sys/libc.ts";

/** A local address to connect from: either part may be left to the system. */
export interface SourceAddress {
  /** The local IP address (default: the one the route gives). */
  host?: string;
  /** The local port (default: an ephemeral one). */
  port?: number;
  /** A Unix datagram client's own path (default: a temporary one). */
  path?: string;
}

/** The local or peer address of `fd` as a Deno address. */
function addressOf(c: Libc, fd: number, peer: boolean): Deno.NetAddr {
  const buf = new Uint8Array(28);
  const len = new Uint32Array([28]);
  (peer ? c.getpeername : c.getsockname)(fd, buf, new Uint8Array(len.buffer));
  return { transport: "tcp", ...decodeSockaddr(buf) };
}

/** A connected TCP socket of libc's, shaped as the `Deno.Conn` the relay uses. */
class LibcTcpConn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #c: Libc;
  #fd: number;
  #closed = false;

  constructor(c: Libc, fd: number) {
    this.#c = c;
    this.#fd = fd;
    this.localAddr = addressOf(c, fd, false);
    this.remoteAddr = addressOf(c, fd, true);
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) return null;
      const n = Number(this.#c.recv(this.#fd, p, BigInt(p.length), C.MSG_DONTWAIT));
      if (n > 0) return n;
      if (n === 0) return p.length === 0 ? 0 : null;
      const errno = lastErrno(this.#c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) throw errnoError(errno);
      try {
        await waitFor(this.#fd, READABLE);
      } catch {
        return null; // Closed here.
      }
    }
  }

  async write(p: Uint8Array): Promise<number> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BadResource("the connection is closed");
      const n = Number(
        this.#c.send(this.#fd, p, BigInt(p.length), C.MSG_DONTWAIT | C.MSG_NOSIGNAL),
      );
      if (n >= 0) return n;
      const errno = lastErrno(this.#c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) throw errnoError(errno);
      await waitFor(this.#fd, WRITABLE);
    }
  }

  closeWrite(): Promise<void> {
    if (!this.#closed && this.#c.shutdown(this.#fd, C.SHUT_WR) < 0) {
      return Promise.reject(errnoError(lastErrno(this.#c)));
    }
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.#c, this.#fd);
  }

  setNoDelay(on = true): void {
    this.#option(C.IPPROTO_TCP, C.TCP_NODELAY, on ? 1 : 0);
  }

  setKeepAlive(on = true): void {
    this.#option(C.SOL_SOCKET, C.SO_KEEPALIVE, on ? 1 : 0);
  }

  #option(level: number, name: number, value: number): void {
    const errno = setsockoptInt(this.#c, this.#fd, level, name, value);
    if (errno) throw errnoError(errno);
  }
}

/** Out of the epoll set (its waits end), closed, libc released. */
function closeFd(c: Libc, fd: number): void {
  forget(fd);
  c.close(fd);
  releaseLibc();
}

/**
 * Connects to `hostname:port` (an IP address) from `source` through libc:
 * bind, then connect. Rejects with a `bind` {@linkcode SockitError} when the
 * source cannot be bound (taken, or not an address of this host), with the
 * Deno error of a failed connect (`ConnectionRefused`, …), or with
 * `signal.reason` when it aborts.
 *
 * @example Usage
 * ```ts
 * import { connectFrom } from "./tcp_libc.ts";
 * import { idle } from "../sys/epoll.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await connectFrom("127.0.0.1", listener.addr.port, { host: "127.0.0.2" });
 * const server = await listener.accept();
 * assert.equal((server.remoteAddr as Deno.NetAddr).hostname, "127.0.0.2");
 * conn.close();
 * server.close();
 * listener.close();
 * await idle(); // the epoll set is closed once nothing waits
 * ```
 */
export async function connectFrom(
  hostname: string,
  port: number,
  source: SourceAddress,
  signal?: AbortSignal,
): Promise<Deno.Conn> {
  const from = `${formatHost(source.host ?? "*")}:${source.port ?? 0}`;
  if (!ffiAvailable()) {
    throw new SockitError("--source binds before it connects, through libc: grant --allow-ffi", {
      op: "bind",
      address: from,
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
  signal?.throwIfAborted();
  const c = acquireLibc();
  const v6 = isIPv6(hostname);
  const fd = c.socket(
    v6 ? C.AF_INET6 : C.AF_INET,
    C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) {
    const err = errnoError(lastErrno(c));
    releaseLibc();
    throw err;
  }
  try {
    const local = encodeSockaddr(source.host ?? (v6 ? "::" : "0.0.0.0"), source.port ?? 0);
    if (c.bind(fd, local, local.length) < 0) throw bindFailure(lastErrno(c), from);
    const sa = encodeSockaddr(hostname, port);
    if (c.connect(fd, sa, sa.length) < 0) {
      const errno = lastErrno(c);
      if (errno !== C.EINPROGRESS) throw errnoError(errno);
      // Connected (or refused) when it can be written to.
      await waitFor(fd, WRITABLE, signal);
      const pending = new Int32Array(1);
      const len = new Uint32Array([4]);
      c.getsockopt(
        fd,
        C.SOL_SOCKET,
        C.SO_ERROR,
        new Uint8Array(pending.buffer),
        new Uint8Array(len.buffer),
      );
      if (pending[0] !== 0) throw errnoError(pending[0]);
    }
    // Connected just as the caller gave up: it is not wanted any more.
    if (signal?.aborted) throw signal.reason;
    return new LibcTcpConn(c, fd) as unknown as Deno.Conn;
  } catch (err) {
    closeFd(c, fd);
    throw err;
  }
}

/** A failure to bind the source address, in words (`bind 192.0.2.1:0: …`, with a hint). */
function bindFailure(errno: number, from: string): SockitError {
  const cause = errnoError(errno);
  const error = toSockitError(cause, "bind", from);
  const hint = cause instanceof Deno.errors.AddrInUse
    ? "--source: that local port is taken (or still in TIME_WAIT); leave the port out"
    : cause instanceof Deno.errors.PermissionDenied
    ? "--source: ports below 1024 need root (or CAP_NET_BIND_SERVICE)"
    : "--source: give an address of this host, of the target's family";
  return new SockitError(error.reason, {
    op: "bind",
    address: from,
    code: error.code,
    hint,
    cause,
  });
}
