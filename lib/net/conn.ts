/**
 * The connection type every stream transport produces: a connected socket
 * (TCP or Unix, accepted or dialled) as a {@linkcode Stream} for the
 * relay, with its number, its addresses as text, and `--trace` of every
 * read, write and shutdown. Dialers (`dial.ts`) and listeners
 * (`listener.ts`) hand these out, and the layers over a socket (TLS,
 * WebSocket) hold one; nothing else wraps a `Deno.Conn`.
 *
 * @module
 */

import { concat } from "../base/bytes.ts";
import { formatAddr } from "./ip.ts";
import { SockitError, toSockitError } from "../base/errors.ts";
import { ffiAvailable } from "../sys/libc.ts";
import { findSocketFd, findTcpSocketFd } from "../sys/fd.ts";
import { applySocketOptions, type Setting, SocketOptionError } from "../sys/sockopt.ts";
import type { SourceAddress } from "./tcp_libc.ts";
import type { Stream } from "./stream.ts";
import type { StreamSocket } from "./stream_socket.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

export type { StreamSocket } from "./stream_socket.ts";

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
export class Connection implements Stream {
  /** The socket it wraps. */
  readonly conn: StreamSocket;
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
  /** Prints each socket operation (`--trace`), when set. */
  readonly trace?: TraceFn;
  #closed = false;
  #writeClosed = false;
  /** The socket's fd for splice(2): `null` until looked for. */
  #fd: number | undefined | null = null;
  /** Bytes given back by {@linkcode Connection.unread}. */
  #pending?: Uint8Array;

  /** Wraps a connection; see {@linkcode Connection.from} for tracing. */
  constructor(conn: StreamSocket, options: ConnectionOptions = {}) {
    this.conn = conn;
    this.id = options.id ?? nextConnectionId();
    this.tag = `#${this.id}`;
    this.localAddress = formatAddr(conn.localAddr);
    this.remoteAddress = options.remoteAddress ?? formatAddr(conn.remoteAddr);
    this.trace = options.trace;
  }

  /** Wraps a connection, tracing every operation when `options.trace` is set. */
  static from(conn: StreamSocket, options: ConnectionOptions = {}): Connection {
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

  /** The socket's local address, as Deno gives it. */
  get localAddr(): Deno.Addr {
    return this.conn.localAddr;
  }

  /** The socket's peer address, as Deno gives it. */
  get remoteAddr(): Deno.Addr {
    return this.conn.remoteAddr;
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

  /** The socket's fd, for `splice(2)`: plain TCP, with `--allow-ffi`. */
  #spliceFd(): number | undefined {
    // Bytes given back must be read first: no splice while there are any.
    if (this.#closed || this.#pending) return undefined;
    if (this.#fd === null) {
      this.#fd = this.conn.fd ?? findSocketFd(this.conn.localAddr, this.conn.remoteAddr);
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

  /** Resolves once the socket is released after {@linkcode Connection.close}, when it says. */
  get released(): Promise<void> | undefined {
    return this.conn.released;
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

  constructor(conn: StreamSocket, options: ConnectionOptions & { trace: TraceFn }) {
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
 * The settings `options` ask for, in the order they are set; `family` says
 * which TTL option applies.
 *
 * @example Usage
 * ```ts
 * import { socketSettings } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(socketSettings({ nodelay: true, ttl: 7 }, 6), [
 *   ["TCP_NODELAY", true],
 *   ["IPV6_UNICAST_HOPS", 7],
 * ]);
 * ```
 */
export function socketSettings(options: SocketOptions, family: 4 | 6): Setting[] {
  const settings: Setting[] = [];
  if (options.nodelay) settings.push(["TCP_NODELAY", true]);
  if (options.keepalive) {
    settings.push(["SO_KEEPALIVE", true]);
    const timings: Partial<KeepaliveTimings> = options.keepalive === true ? {} : options.keepalive;
    if (timings.idle !== undefined) settings.push(["TCP_KEEPIDLE", timings.idle]);
    if (timings.interval !== undefined) settings.push(["TCP_KEEPINTVL", timings.interval]);
    if (timings.count !== undefined) settings.push(["TCP_KEEPCNT", timings.count]);
  }
  if (options.ttl !== undefined) {
    settings.push(family === 6 ? ["IPV6_UNICAST_HOPS", options.ttl] : ["IP_TTL", options.ttl]);
  }
  return settings;
}

/**
 * Sets `options` on a TCP connection (others have none of these), tracing
 * each as the `setsockopt` it is: through the socket's own calls where it
 * has them (`TCP_NODELAY`, `SO_KEEPALIVE`), else through libc
 * (`--allow-ffi`) on its descriptor — the libc socket's own, or the one with
 * the connection's two addresses. An option that cannot be set throws
 * (see {@linkcode socketOptionFailure}).
 *
 * @example Usage
 * ```ts
 * import { setConnectionOptions } from "./conn.ts";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * setConnectionOptions(conn, { nodelay: true, keepalive: true });
 * conn.close();
 * listener.close();
 * ```
 */
export function setConnectionOptions(
  conn: StreamSocket,
  options: SocketOptions | undefined,
  trace?: TraceFn,
  tag = "",
): void {
  const local = conn.localAddr;
  const remote = conn.remoteAddr;
  if (!options || !("hostname" in local) || !("hostname" in remote)) return;
  const settings = socketSettings(options, local.hostname.includes(":") ? 6 : 4);
  try {
    applySocketOptions(
      {
        fd: conn.fd,
        findFd: () => findTcpSocketFd(local, remote),
        setNoDelay: conn.setNoDelay?.bind(conn),
        setKeepAlive: conn.setKeepAlive?.bind(conn),
      },
      settings,
      (call, error) => trace?.(tag, `${call} = ${error ? failedCall(error) : 0}`),
    );
  } catch (err) {
    throw socketOptionFailure(err, formatAddr(remote));
  }
}

/**
 * A socket option that could not be set, as the error to report: the
 * system's refusal as the failure it is (exit 1), a missing libc or
 * descriptor as exit 126 naming what is missing. Anything else as it is.
 *
 * @example Usage
 * ```ts
 * import { socketOptionFailure } from "./conn.ts";
 * import { SocketOptionError } from "../sys/sockopt.ts";
 * import assert from "node:assert/strict";
 *
 * const err = socketOptionFailure(new SocketOptionError("no-ffi", "IP_TTL"), "127.0.0.1:80");
 * assert.match((err as Error).message, /cannot set IP_TTL \(--ttl\): it goes through libc/);
 * ```
 */
export function socketOptionFailure(err: unknown, address?: string): unknown {
  if (!(err instanceof SocketOptionError)) return err;
  if (err.kind === "failed") return toSockitError(err.cause, "setsockopt", address);
  return new SockitError(err.message, {
    op: "setsockopt",
    address,
    code: err.code,
    exitCode: 126,
    cause: err,
  });
}
