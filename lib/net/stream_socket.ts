/**
 * The small socket interface a `Connection` (`conn.ts`) wraps: what a
 * connected stream socket offers. A `Deno.Conn` is one as it is; so are
 * the libc TCP socket of `--source` (`tcp_libc.ts`) and the plaintext side
 * of a `node:tls` socket (`protocols/node_tls.ts`).
 *
 * @module
 */

/** A connected stream socket. */
export interface StreamSocket {
  /** The local address. */
  readonly localAddr: Deno.Addr;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Reads into `p`; `null` at end of input. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; resolves to the count written. */
  write(p: Uint8Array): Promise<number>;
  /** Shuts down the write side. */
  closeWrite(): Promise<void>;
  /** Closes the socket. */
  close(): void;
  /** The descriptor, when the socket knows it (a libc socket): for splice(2) and options. */
  readonly fd?: number;
  /** Resolves once the socket is released after `close()` (a libc socket: out of epoll). */
  readonly released?: Promise<void>;
  /** TCP_NODELAY, where the socket has a call for it. */
  setNoDelay?(on?: boolean): void;
  /** SO_KEEPALIVE, where the socket has a call for it. */
  setKeepAlive?(on?: boolean): void;
}
