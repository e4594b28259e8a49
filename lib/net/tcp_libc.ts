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
import type { StreamSocket } from "./stream_socket.ts";
import { C } from "../sys/constants.ts";
import { READABLE, WRITABLE } from "../sys/epoll.ts";
import { ffiAvailable, lastErrno } from "../sys/libc.ts";
import { inetAddress, type SocketAddress } from "../sys/sockaddr.ts";
import { domainOf, LibcSocket } from "../sys/socket.ts";

/** A local address to connect from: either part may be left to the system. */
export interface SourceAddress {
  /** The local IP address (default: the one the route gives). */
  host?: string;
  /** The local port (default: an ephemeral one). */
  port?: number;
  /** A Unix datagram client's own path (default: a temporary one). */
  path?: string;
}

/** An IP socket address as Deno writes one. */
function netAddr(address: SocketAddress | undefined): Deno.NetAddr {
  return address && address.family !== "local"
    ? { transport: "tcp", hostname: address.address, port: address.port }
    : { transport: "tcp", hostname: "", port: 0 };
}

/** A connected TCP socket of libc's: a {@linkcode StreamSocket} like any `Deno.Conn`. */
export class LibcTcpConn implements StreamSocket {
  /** The local address. */
  readonly localAddr: Deno.NetAddr;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  #socket: LibcSocket;

  /** Wraps a connected socket; it owns it from now on. */
  constructor(socket: LibcSocket) {
    this.#socket = socket;
    this.localAddr = netAddr(socket.address());
    this.remoteAddr = netAddr(socket.address(true));
  }

  /** The descriptor: splice(2) and socket options use it (no lookup). */
  get fd(): number {
    return this.#socket.fd;
  }

  /** Resolves once the socket is closed and out of the epoll set. */
  get released(): Promise<void> {
    return this.#socket.closed;
  }

  /** Reads into `p`: `recv(MSG_DONTWAIT)`, waiting in the epoll set when nothing is there. */
  async read(p: Uint8Array): Promise<number | null> {
    const c = this.#socket.c;
    for (;;) {
      if (this.#socket.done) return null;
      const n = Number(c.recv(this.#socket.fd, p, BigInt(p.length), C.MSG_DONTWAIT));
      if (n > 0) return n;
      if (n === 0) return p.length === 0 ? 0 : null;
      const errno = lastErrno(c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) throw errnoError(errno);
      try {
        await this.#socket.wait(READABLE);
      } catch {
        return null; // Closed here.
      }
    }
  }

  /** Writes from `p`: `send(MSG_DONTWAIT | MSG_NOSIGNAL)`, waiting for room when it is full. */
  async write(p: Uint8Array): Promise<number> {
    const c = this.#socket.c;
    for (;;) {
      if (this.#socket.done) throw new Deno.errors.BadResource("the connection is closed");
      const n = Number(
        c.send(this.#socket.fd, p, BigInt(p.length), C.MSG_DONTWAIT | C.MSG_NOSIGNAL),
      );
      if (n >= 0) return n;
      const errno = lastErrno(c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) throw errnoError(errno);
      await this.#socket.wait(WRITABLE);
    }
  }

  /** `shutdown(SHUT_WR)`. */
  closeWrite(): Promise<void> {
    if (!this.#socket.done && this.#socket.c.shutdown(this.#socket.fd, C.SHUT_WR) < 0) {
      return Promise.reject(errnoError(lastErrno(this.#socket.c)));
    }
    return Promise.resolve();
  }

  /** Closes it (out of the epoll set first); see {@linkcode LibcTcpConn.released}. */
  close(): void {
    this.#socket.close();
  }
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
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await connectFrom("127.0.0.1", listener.addr.port, { host: "127.0.0.2" });
 * const server = await listener.accept();
 * assert.equal((server.remoteAddr as Deno.NetAddr).hostname, "127.0.0.2");
 * conn.close();
 * server.close();
 * listener.close();
 * await conn.released; // out of the epoll set, its helper thread gone
 * ```
 */
export async function connectFrom(
  hostname: string,
  port: number,
  source: SourceAddress,
  signal?: AbortSignal,
): Promise<LibcTcpConn> {
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
  const v6 = isIPv6(hostname);
  const peer = inetAddress(hostname, port);
  const socket = LibcSocket.open(domainOf(peer.family), C.SOCK_STREAM | C.SOCK_NONBLOCK, 0);
  try {
    const local = inetAddress(source.host ?? (v6 ? "::" : "0.0.0.0"), source.port ?? 0);
    try {
      socket.bind(local);
    } catch (err) {
      throw bindFailure((err as { errno: number }).errno, from);
    }
    const errno = socket.connect(peer);
    if (errno !== 0) {
      if (errno !== C.EINPROGRESS) throw errnoError(errno);
      // Connected (or refused) when it can be written to.
      await socket.wait(WRITABLE, { signal });
      const pending = socket.pendingError();
      if (pending !== 0) throw errnoError(pending);
    }
    // Connected just as the caller gave up: it is not wanted any more.
    if (signal?.aborted) throw signal.reason;
    return new LibcTcpConn(socket);
  } catch (err) {
    await socket[Symbol.asyncDispose]();
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
