/**
 * The connection type every stream transport produces: a connected socket
 * (TCP, Unix or TLS, accepted or dialled) as a {@linkcode Duplex} for the
 * relay, with its number, its addresses as text, and `--trace` of every
 * read, write and shutdown. Dialers (`dial.ts`) and listeners
 * (`listener.ts`) hand these out; nothing else wraps a `Deno.Conn`.
 *
 * @module
 */

import { concat } from "../base/bytes.ts";
import { formatAddr } from "./ip.ts";
import { SockitError } from "../base/errors.ts";
import { ffiAvailable, findTcpSocketFd, findUnixSocketFd, setIntOption } from "../sys/libc.ts";
import type { SourceAddress } from "./tcp_libc.ts";
import type { Duplex } from "../engine/relay.ts";
import { tlsFailure } from "../protocols/tls.ts";
import type { HandshakeInfo } from "../protocols/tls.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

let lastConnectionId = 0;

/**
 * A new connection number, unique in this process (`#1`, `#2`, …).
 *
 * @example Usage
 * ```ts
 * import { nextConnectionId } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(nextConnectionId() < nextConnectionId());
 * ```
 */
export function nextConnectionId(): number {
  return ++lastConnectionId;
}

/** Options of {@linkcode Connection}. */
export interface ConnectionOptions {
  /** Connection number; a new one is taken when absent. */
  id?: number;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /**
   * A TLS connection: a peer that closes without close_notify ends the
   * stream like EOF (see {@linkcode Connection.uncleanClose}).
   */
  tls?: boolean;
  /** What the TLS handshake negotiated, when it is done already. */
  handshake?: HandshakeInfo;
  /** The peer as it is named in messages, when not the socket's peer (a tunnel's target). */
  remoteAddress?: string;
}

/**
 * A connected socket as a {@linkcode Duplex}. `close()` may be called more
 * than once; `closeWrite()` after the peer has gone is not an error.
 *
 * @example Usage
 * ```ts
 * import { Connection } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = Connection.from(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
 * using server = Connection.from(await listener.accept());
 * listener.close();
 * await client.write(new TextEncoder().encode("hi"));
 * await client.closeWrite();
 * const buf = new Uint8Array(8);
 * assert.equal(await server.read(buf), 2);
 * assert.equal(await server.read(buf), null);
 * ```
 */
export class Connection implements Duplex, Disposable {
  /** The underlying Deno connection. */
  readonly conn: Deno.Conn;
  /** Connection number, for events and traces. */
  readonly id: number;
  /** `#1`, `#2`, …: the tag of trace lines. */
  readonly tag: string;
  /** Local address, formatted. */
  readonly localAddress: string;
  /** Peer address, formatted. */
  readonly remoteAddress: string;
  /** When the connection was opened (`performance.now()`). */
  readonly openedAt: number = performance.now();
  /** Whether this is a TLS connection. */
  readonly isTls: boolean;
  /** What the TLS handshake negotiated, once known. */
  handshake?: HandshakeInfo;
  /** Set when a TLS peer closed without close_notify (read as EOF). */
  uncleanClose = false;
  /** Prints each socket operation (`--trace`), when set. */
  readonly trace?: TraceFn;
  #closed = false;
  #writeClosed = false;
  /** The socket's fd for splice(2): `null` until looked for. */
  #fd: number | undefined | null = null;
  /** Bytes given back by {@linkcode Connection.unread}. */
  #pending?: Uint8Array;

  /** Wraps a connection; see {@linkcode Connection.from} for tracing. */
  constructor(conn: Deno.Conn, options: ConnectionOptions = {}) {
    this.conn = conn;
    this.id = options.id ?? nextConnectionId();
    this.tag = `#${this.id}`;
    this.localAddress = formatAddr(conn.localAddr);
    this.remoteAddress = options.remoteAddress ?? formatAddr(conn.remoteAddr);
    this.isTls = options.tls === true;
    this.handshake = options.handshake;
    this.trace = options.trace;
    if (this.isTls) {
      // Only TLS pays for the extra promise per read.
      const read = this.read.bind(this);
      this.read = async (p: Uint8Array) => {
        try {
          return await read(p);
        } catch (err) {
          // A TLS alert (the server wanted a client certificate, …) in words.
          if (/fatal alert/.test((err as Error)?.message)) {
            throw tlsFailure(err, this.remoteAddress);
          }
          if (!(err instanceof Deno.errors.UnexpectedEof)) throw err;
          this.uncleanClose = true;
          return null;
        }
      };
    }
  }

  /** Wraps a connection, tracing every operation when `options.trace` is set. */
  static from(conn: Deno.Conn, options: ConnectionOptions = {}): Connection {
    const trace = options.trace;
    return trace
      ? new TracedConnection(conn, { ...options, trace })
      : new Connection(conn, options);
  }

  /** The peer address: the name of this side in messages. */
  get label(): string {
    return this.remoteAddress;
  }

  /** Whether {@linkcode Connection.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Reads into `p`; `null` at end of input. Bytes given back with {@linkcode unread} come first. */
  read(p: Uint8Array): Promise<number | null> {
    const pending = this.#pending;
    if (pending) {
      const n = Math.min(p.length, pending.length);
      p.set(pending.subarray(0, n));
      this.#pending = n < pending.length ? pending.subarray(n) : undefined;
      return Promise.resolve(n);
    }
    return this.conn.read(p);
  }

  /**
   * Gives bytes back to be read again before anything from the socket: what
   * a handshake read past its own end (a request's first data after a proxy
   * request, a server's banner after a proxy's reply) belongs to the session.
   */
  unread(bytes: Uint8Array): void {
    if (!bytes.length) return;
    this.#pending = this.#pending ? concat(bytes, this.#pending) : bytes.slice();
  }

  /** Writes from `p`; resolves to the count written. */
  write(p: Uint8Array): Promise<number> {
    return this.conn.write(p);
  }

  /** Shuts down the write side once (`shutdown(SHUT_WR)`). */
  async closeWrite(): Promise<void> {
    if (this.#closed || this.#writeClosed) return;
    this.#writeClosed = true;
    try {
      await this.conn.closeWrite();
    } catch (err) {
      // The peer is gone already: the other direction reports it.
      if (!(err instanceof Deno.errors.NotConnected) && !(err instanceof Deno.errors.BrokenPipe)) {
        throw err;
      }
    }
  }

  /**
   * The same connection after a TLS handshake over it (`conn` is the
   * plaintext side): the same number and trace, marked as TLS.
   */
  secured(conn: Deno.Conn, handshake: HandshakeInfo): Connection {
    return Connection.from(conn, {
      id: this.id,
      trace: this.trace,
      tls: true,
      handshake,
      remoteAddress: this.remoteAddress,
    });
  }

  /** The socket's fd, for `splice(2)`: plain TCP, with `--allow-ffi`. */
  #spliceFd(): number | undefined {
    // Bytes given back must be read first: no splice while there are any.
    if (this.isTls || this.#closed || this.#pending) return undefined;
    if (this.#fd === null) {
      const local = this.conn.localAddr;
      const remote = this.conn.remoteAddr;
      this.#fd = "port" in local && "port" in remote
        ? findTcpSocketFd(local as Deno.NetAddr, remote as Deno.NetAddr)
        : "path" in local && "path" in remote
        ? findUnixSocketFd(local.path ?? null, remote.path ?? null)
        : undefined;
      if (this.#fd !== undefined) {
        this.trace?.(this.tag, `fd ${this.#fd}: moved by splice(2) from here on`);
      }
    }
    return this.#fd;
  }

  /** See {@linkcode Duplex.spliceFrom}. */
  spliceFrom(): number | undefined {
    return this.#spliceFd();
  }

  /** See {@linkcode Duplex.spliceTo}. */
  async spliceTo(): Promise<number | undefined> {
    // Not in the caller's turn: looking for the fd loads libc (a few ms).
    await null;
    return this.#spliceFd();
  }

  /** Closes the socket; later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed underneath us (e.g. by Deno at exit): nothing to release.
    }
  }

  /** Closes the socket (`using conn = …`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A {@linkcode Connection} that prints each operation as a system call. */
class TracedConnection extends Connection {
  #trace: TraceFn;

  constructor(conn: Deno.Conn, options: ConnectionOptions & { trace: TraceFn }) {
    super(conn, options);
    this.#trace = options.trace;
  }

  override async read(p: Uint8Array): Promise<number | null> {
    try {
      const n = await super.read(p);
      this.#trace(this.tag, `read(${p.length}) = ${n ?? 0}`);
      return n;
    } catch (err) {
      if (!this.closed) this.#trace(this.tag, `read(${p.length}) = ${failedCall(err)}`);
      throw err;
    }
  }

  override async write(p: Uint8Array): Promise<number> {
    try {
      const n = await super.write(p);
      this.#trace(this.tag, `write(${p.length}) = ${n}`);
      return n;
    } catch (err) {
      if (!this.closed) this.#trace(this.tag, `write(${p.length}) = ${failedCall(err)}`);
      throw err;
    }
  }

  override async closeWrite(): Promise<void> {
    if (this.closed) return;
    this.#trace(this.tag, "shutdown(SHUT_WR)");
    await super.closeWrite();
  }

  override close(): void {
    if (!this.closed) this.#trace(this.tag, "close()");
    super.close();
  }
}

/** The kernel's keepalive timings of one connection (`--keepalive=IDLE,INTERVAL,COUNT`). */
export interface KeepaliveTimings {
  /** TCP_KEEPIDLE: seconds of silence before the first probe. */
  idle: number;
  /** TCP_KEEPINTVL: seconds between probes (default: the system's). */
  interval?: number;
  /** TCP_KEEPCNT: unanswered probes before the connection is dropped (default: the system's). */
  count?: number;
}

/** Options of a TCP socket (`--nodelay`, `--keepalive`, `--ttl`, `--source`). */
export interface SocketOptions {
  /** TCP_NODELAY: send small writes at once (no Nagle). */
  nodelay?: boolean;
  /** SO_KEEPALIVE: the kernel probes an idle connection (with these timings: through libc). */
  keepalive?: boolean | KeepaliveTimings;
  /** IP_TTL / IPV6_UNICAST_HOPS of what the socket sends (through libc: `--allow-ffi`). */
  ttl?: number;
  /** Connect from this local address and/or port (`--source`; a client's only). */
  source?: SourceAddress;
}

/**
 * Fails with exit 126 when `options` need libc (keepalive timings, `--ttl`)
 * and `--allow-ffi` was not granted: a server says so when it starts, not
 * at its first client.
 *
 * @example Usage
 * ```ts
 * import { checkSocketOptions } from "./conn.ts";
 *
 * checkSocketOptions({ nodelay: true }); // nothing through libc: never throws
 * ```
 */
export function checkSocketOptions(options: SocketOptions | undefined): void {
  const needs = options?.ttl !== undefined
    ? "--ttl"
    : typeof options?.keepalive === "object"
    ? "--keepalive timings"
    : undefined;
  if (needs && !ffiAvailable()) {
    throw new SockitError(`${needs} go through libc, which needs --allow-ffi`, {
      op: "setsockopt",
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
}

/**
 * Sets `options` on a TCP connection (others have none of these), tracing
 * each as the `setsockopt` it is. Keepalive timings and the TTL go through
 * libc (`--allow-ffi`): the descriptor is the one with the connection's
 * two addresses.
 *
 * @example Usage
 * ```ts
 * import { applySocketOptions } from "./conn.ts";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * applySocketOptions(conn, { nodelay: true, keepalive: true });
 * conn.close();
 * listener.close();
 * ```
 */
export function applySocketOptions(
  conn: Deno.Conn,
  options: SocketOptions | undefined,
  trace?: TraceFn,
  tag = "",
): void {
  if (!options || !("setNoDelay" in conn)) return;
  const tcp = conn as Deno.TcpConn;
  if (options.nodelay) {
    tcp.setNoDelay(true);
    trace?.(tag, "setsockopt(TCP_NODELAY, 1) = 0");
  }
  let fd: number | undefined;
  const libcOption = (level: number, option: number, name: string, value: number, flag: string) => {
    fd ??= findTcpSocketFd(conn.localAddr as Deno.NetAddr, conn.remoteAddr as Deno.NetAddr);
    if (fd === undefined || !setIntOption(fd, level, option, value)) {
      trace?.(tag, `setsockopt(${name}, ${value}) = -1`);
      throw new SockitError(
        ffiAvailable()
          ? `cannot set ${name} (${flag}): the connection's descriptor was not found`
          : `cannot set ${name} (${flag}): it goes through libc, which needs --allow-ffi`,
        {
          op: "setsockopt",
          address: formatAddr(conn.remoteAddr),
          code: "ENOTCAPABLE",
          exitCode: 126,
        },
      );
    }
    trace?.(tag, `setsockopt(${name}, ${value}) = 0`);
  };
  if (options.keepalive) {
    tcp.setKeepAlive(true);
    trace?.(tag, "setsockopt(SO_KEEPALIVE, 1) = 0");
    const timings = options.keepalive === true ? {} : options.keepalive;
    // IPPROTO_TCP: TCP_KEEPIDLE 4, TCP_KEEPINTVL 5, TCP_KEEPCNT 6.
    const set: Array<[number, string, number | undefined]> = [
      [4, "TCP_KEEPIDLE", (timings as KeepaliveTimings).idle],
      [5, "TCP_KEEPINTVL", (timings as KeepaliveTimings).interval],
      [6, "TCP_KEEPCNT", (timings as KeepaliveTimings).count],
    ];
    for (const [option, name, value] of set) {
      if (value !== undefined) libcOption(6, option, name, value, "--keepalive");
    }
  }
  if (options.ttl !== undefined) {
    const v6 = (conn.localAddr as Deno.NetAddr).hostname.includes(":");
    libcOption(v6 ? 41 : 0, v6 ? 16 : 2, v6 ? "IPV6_UNICAST_HOPS" : "IP_TTL", options.ttl, "--ttl");
  }
}
