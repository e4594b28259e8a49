/**
 * A socket descriptor of libc's, owned: opened with `socket(2)`, waited on
 * in the one epoll set (`epoll.ts`), closed once. What every libc socket of
 * sockit is built on — connected UDP (`net/datagram.ts`), raw and ICMP
 * (`net/raw.ts`), `unixgram:` (`net/unixgram.ts`), `--source` TCP
 * (`net/tcp_libc.ts`) — so that there is one way to wait and one way to
 * close: out of the epoll set first, then `close(2)`; `closed` resolves once
 * the helper thread is past any wait that had the descriptor.
 *
 * @module
 */

import { C } from "./constants.ts";
import { forget, waitFor, type WaitOptions } from "./epoll.ts";
import { acquireLibc, lastErrno, lastError, type Libc, releaseLibc } from "./libc.ts";
import { decodeSockaddr, encodeSockaddr, SOCKADDR_SIZE, type SocketAddress } from "./sockaddr.ts";

/** The family argument of `socket(2)` for an address family. */
export function domainOf(family: SocketAddress["family"]): number {
  return family === "local" ? C.AF_UNIX : family === 6 ? C.AF_INET6 : C.AF_INET;
}

/**
 * An open libc socket. Calls on it after {@linkcode LibcSocket.close} fail
 * with `Interrupted` (`wait`) or do nothing (`close`).
 *
 * @example Usage
 * ```ts
 * import { LibcSocket } from "./socket.ts";
 * import { C } from "./constants.ts";
 * import { READABLE } from "./epoll.ts";
 * import assert from "node:assert/strict";
 *
 * await using socket = LibcSocket.open(C.AF_INET, C.SOCK_DGRAM, 0);
 * socket.bind({ family: 4, address: "127.0.0.1", port: 0 });
 * assert.equal(await socket.wait(READABLE, { timeout: 10 }), false);
 * ```
 */
export class LibcSocket implements AsyncDisposable {
  /** The C library, held while the socket is open. */
  readonly c: Libc;
  #fd: number;
  #done = false;
  #closed = Promise.withResolvers<void>();
  #onClose: Array<() => void> = [];

  private constructor(c: Libc, fd: number) {
    this.c = c;
    this.#fd = fd;
  }

  /**
   * `socket(domain, type | SOCK_CLOEXEC, protocol)`; throws the system's
   * error (with its `errno`) when it fails.
   */
  static open(domain: number, type: number, protocol: number): LibcSocket {
    const c = acquireLibc();
    const fd = c.socket(domain, type | C.SOCK_CLOEXEC, protocol);
    if (fd < 0) {
      const err = lastError(c);
      releaseLibc();
      throw err;
    }
    return new LibcSocket(c, fd);
  }

  /** The descriptor (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /** Whether {@linkcode LibcSocket.close} was called. */
  get done(): boolean {
    return this.#done;
  }

  /** Resolves once the descriptor is closed and the epoll thread is off it. */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /** Runs `fn` after the descriptor is closed (before `closed` resolves). */
  onClose(fn: () => void): void {
    this.#onClose.push(fn);
  }

  /**
   * Waits for the socket to be ready for `events` (`READABLE`, `WRITABLE`
   * of `epoll.ts`): `true` when it is (or failed: the next call says how),
   * `false` after `options.timeout`. Rejects with `Interrupted` once closed.
   */
  async wait(events: number, options?: WaitOptions): Promise<boolean> {
    if (this.#done) throw new Deno.errors.Interrupted("operation canceled");
    try {
      return await waitFor(this.#fd, events, options);
    } catch (err) {
      if (this.#done) throw new Deno.errors.Interrupted("operation canceled");
      throw err;
    }
  }

  /** `bind(2)`; throws the system's error. */
  bind(address: SocketAddress): void {
    const sa = encodeSockaddr(address);
    if (this.c.bind(this.#fd, sa, sa.length) < 0) throw lastError(this.c);
  }

  /**
   * `connect(2)`: 0, or the errno of the failure (`EINPROGRESS` for a
   * non-blocking socket still connecting).
   */
  connect(address: SocketAddress): number {
    const sa = encodeSockaddr(address);
    return this.c.connect(this.#fd, sa, sa.length) < 0 ? lastErrno(this.c) : 0;
  }

  /** The socket's own address (`getsockname`), or its peer's (`getpeername`). */
  address(peer = false): SocketAddress | undefined {
    const buf = new Uint8Array(SOCKADDR_SIZE);
    const len = new Uint32Array([buf.length]);
    const call = peer ? this.c.getpeername : this.c.getsockname;
    if (call(this.#fd, buf, new Uint8Array(len.buffer)) < 0) return undefined;
    return decodeSockaddr(buf, len[0]);
  }

  /** The pending error of the socket (`SO_ERROR`): 0 for none. */
  pendingError(): number {
    const value = new Int32Array(1);
    const len = new Uint32Array([4]);
    this.c.getsockopt(
      this.#fd,
      C.SOL_SOCKET,
      C.SO_ERROR,
      new Uint8Array(value.buffer),
      new Uint8Array(len.buffer),
    );
    return value[0];
  }

  /**
   * Closes it: out of the epoll set (its waits end with `Interrupted`), then
   * `close(2)`, libc released; false when it was closed already.
   */
  close(): boolean {
    if (this.#done) return false;
    this.#done = true;
    const fd = this.#fd;
    const out = forget(fd);
    this.c.close(fd);
    this.#fd = -1;
    releaseLibc();
    for (const fn of this.#onClose) {
      try {
        fn();
      } catch {
        // A clean-up that failed (a file gone already) changes nothing here.
      }
    }
    out.then(() => this.#closed.resolve());
    return true;
  }

  /** Closes it and waits until it is released (`await using socket = …`). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }
}
