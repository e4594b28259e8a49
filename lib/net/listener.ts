/**
 * Listening stream sockets: `Deno.listen` (TCP, Unix) behind one listener
 * type that reports the real bound address, traces bind/listen/accept, hands
 * out {@linkcode Connection}s, completes TLS handshakes for a TLS server
 * (`node_tls.ts`, so that one that times out really closes its socket), and
 * takes care of Unix socket files (a stale one is replaced; the one it made
 * is removed).
 * Which of these an endpoint gets is its transport module's business
 * (`tcp_transport.ts`, `unix_transport.ts`).
 *
 * @module
 */

import { Connection, setConnectionOptions } from "./conn.ts";
import type { SocketOptions } from "./conn.ts";
import { acceptTls } from "../protocols/node_tls.ts";
import type { AcceptTlsOptions, ServerTls } from "../protocols/node_tls.ts";
import { securedStream } from "../protocols/tls_stream.ts";
import type { Stream } from "./stream.ts";
import { SockitError, toSockitError } from "../base/errors.ts";
import { formatAddr, formatHost, formatUnixName, kernelPath } from "./ip.ts";
import type { UnixName } from "./ip.ts";
import { addressFamily, failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

let lastListenerId = 0;

/** Deno's listen backlog for TCP (`listen(fd, 511)`, as strace shows). */
export const LISTEN_BACKLOG = 511;

/** Deno's listen backlog for Unix sockets (`listen(fd, 1024)`). */
export const UNIX_LISTEN_BACKLOG = 1024;

export type { ServerTls } from "../protocols/node_tls.ts";

/** Options of {@linkcode listenTcp} and {@linkcode listenUnix}. */
export interface ListenerOptions {
  /** The scheme it serves, as events name it (default `tcp`, or `tls` with `tls`, `unix`). */
  scheme?: string;
  /** SO_REUSEPORT: other listeners may bind the same port; the kernel shares the clients out. */
  reusePort?: boolean;
  /** TCP options for each accepted connection (`--nodelay`, `--keepalive`). */
  socket?: SocketOptions;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** Serve TLS with this certificate (TCP only). */
  tls?: ServerTls;
  /**
   * Called when a Unix socket file left by a process that is gone was
   * removed so that the path could be bound again.
   */
  onStaleSocket?: (path: string) => void;
}

/**
 * A protocol upgrade each accepted connection of a listener goes through
 * after TLS (a WebSocket handshake): the layer it sets up over the stream.
 */
export interface ListenerUpgrade {
  /** The layer, as failures name it (`… upgrade failed: why`). */
  readonly title: string;
  /** Sets the layer up over `conn`; rejects (and leaves `conn` to the caller) when it cannot. */
  open(conn: Stream, options: { signal?: AbortSignal }): Promise<Stream>;
}

/** What a {@linkcode Listener} accepts from: a Deno listener. */
export interface AcceptSource {
  /** The bound address. */
  readonly addr: Deno.Addr;
  /** The next connection. */
  accept(): Promise<Deno.Conn>;
  /** Stops listening. */
  close(): void;
}

/**
 * A listening socket. {@linkcode Listener.accept} returns each connection as
 * a {@linkcode Connection}; {@linkcode Listener.close} stops listening and
 * removes the Unix socket file the listener created.
 *
 * @example Usage
 * ```ts
 * import { listenTcp } from "./listener.ts";
 * import assert from "node:assert/strict";
 *
 * using listener = await listenTcp("127.0.0.1", 0);
 * assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
 * ```
 */
export class Listener implements Disposable {
  /** `L1`, `L2`, …: the tag of trace lines. */
  readonly tag: string;
  /** The bound address, formatted (`127.0.0.1:41663`, `unix:/tmp/s.sock`). */
  readonly address: string;
  /** The bound address as Deno reports it. */
  readonly addr: Deno.Addr;
  /** The scheme of the endpoint it listens on (`tcp`, `tls`, `unix`). */
  readonly scheme: string;
  /** The certificate it serves TLS with: accepted connections still need {@linkcode Listener.secure}. */
  readonly tls?: ServerTls;
  /**
   * A protocol upgrade each accepted connection goes through after TLS (a
   * WebSocket handshake), under the accept loop's handshake time limit.
   */
  upgrade?: ListenerUpgrade;
  #listener: AcceptSource;
  #unixPath?: string;
  #trace?: TraceFn;
  #socket?: SocketOptions;
  #closed = false;

  /** Wraps a Deno listener; {@linkcode listenTcp} and {@linkcode listenUnix} make them. */
  constructor(
    listener: AcceptSource,
    options: {
      tag: string;
      scheme: string;
      trace?: TraceFn;
      unixPath?: string;
      tls?: ServerTls;
      socket?: SocketOptions;
    },
  ) {
    this.tag = options.tag;
    this.#listener = listener;
    this.addr = listener.addr;
    this.address = formatAddr(listener.addr);
    this.scheme = options.scheme;
    this.tls = options.tls;
    this.#unixPath = options.unixPath;
    this.#trace = options.trace;
    this.#socket = options.socket;
  }

  /** Whether {@linkcode Listener.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Waits for the next connection. Rejects once the listener is closed. */
  async accept(): Promise<Connection> {
    let conn: Deno.Conn;
    try {
      conn = await this.#listener.accept();
    } catch (err) {
      if (!this.#closed) this.#trace?.(this.tag, `accept() = ${failedCall(err)}`);
      if (this.#closed) throw new SockitError("listener closed", { op: "accept" });
      throw PeerNameError.from(err, this.address) ?? toSockitError(err, "accept", this.address);
    }
    const stream = Connection.from(conn, { trace: this.#trace });
    this.#trace?.(this.tag, `accept() = ${stream.remoteAddress} [${stream.tag}]`);
    try {
      setConnectionOptions(conn, this.#socket, this.#trace, stream.tag);
    } catch (err) {
      stream.close();
      throw err;
    }
    return stream;
  }

  /**
   * Completes the TLS handshake of a connection this listener accepted (a
   * TLS listener's connections are plain TCP until then). A handshake that
   * fails or outlasts `options.timeout` closes the connection and rejects.
   */
  async secure(conn: Connection, options: AcceptTlsOptions = {}): Promise<Stream> {
    if (!this.tls) return conn;
    try {
      const { conn: plain, info } = await acceptTls(conn.conn, this.tls, options);
      const alpn = info.alpn ? `, alpn ${info.alpn}` : "";
      const peer = info.peer ? `, client ${info.peer.subject}` : "";
      this.#trace?.(conn.tag, `tls accept = ${info.version ?? "ok"}${alpn}${peer}`);
      return securedStream(conn, plain, info);
    } catch (err) {
      this.#trace?.(conn.tag, `tls accept = -1 ${(err as Error)?.message}`);
      conn.close();
      throw err;
    }
  }

  /** Stops listening (and removes the socket file it created); later calls do nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#trace?.(this.tag, "close()");
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    if (this.#unixPath !== undefined) removeSocketFile(this.#unixPath);
  }

  /** Closes the listener. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Deno's accept of a Unix client bound to a name that is not UTF-8
 * (`\0\xff…`, a path with `\xff`) fails with InvalidData after it has
 * taken the connection off the queue and closed it: a failure of that
 * client alone.
 */
export class PeerNameError extends SockitError {
  /** The client's name, escaped as Deno writes it (`\0\xFF…`). */
  readonly peer: string;

  /** The error for `err` when it is such a failure, else `undefined`. */
  static from(err: unknown, address: string): PeerNameError | undefined {
    if (!(err instanceof Deno.errors.InvalidData)) return undefined;
    const name = /"(.*)" is not valid UTF-8/s.exec(err.message)?.[1];
    return name === undefined ? undefined : new PeerNameError(name, address, err);
  }

  private constructor(peer: string, address: string, cause: unknown) {
    super("a client bound to a name that is not UTF-8 was closed (Deno cannot accept it)", {
      op: "accept",
      address,
      code: "EILSEQ",
      cause,
    });
    this.peer = peer;
  }
}

function removeSocketFile(path: string): void {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch {
    // Gone already, or not ours to remove.
  }
}

/**
 * Binds and listens on a TCP address (an IP literal, or a name Deno
 * resolves); port 0 asks the OS for a free port (see
 * {@linkcode Listener.address}). With `options.tls`, a TLS server.
 *
 * @example Usage
 * ```ts
 * import { listenTcp } from "./listener.ts";
 * import { Connection } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * using listener = await listenTcp("127.0.0.1", 0);
 * const port = (listener.addr as Deno.NetAddr).port;
 * using client = Connection.from(await Deno.connect({ hostname: "127.0.0.1", port }));
 * using server = await listener.accept();
 * assert.equal(server.remoteAddress, client.localAddress);
 * ```
 */
export function listenTcp(
  hostname: string,
  port: number,
  options: ListenerOptions = {},
): Listener {
  const trace = options.trace;
  const tag = `L${++lastListenerId}`;
  const requested = `${formatHost(hostname)}:${port}`;
  const tls = options.tls;
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_STREAM)`);
  trace?.(tag, "setsockopt(SO_REUSEADDR, 1)");
  if (options.reusePort) trace?.(tag, "setsockopt(SO_REUSEPORT, 1)");
  let listener: AcceptSource;
  try {
    // TLS is served over a plain listener (see `Listener.secure`).
    listener = Deno.listen({
      hostname,
      port,
      transport: "tcp",
      ...(options.reusePort ? { reusePort: true } : {}),
    });
  } catch (err) {
    trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
    throw toSockitError(err, "listen", requested);
  }
  trace?.(tag, `bind(${requested}) = 0`);
  trace?.(tag, `listen(backlog=${LISTEN_BACKLOG}) = 0`);
  const scheme = options.scheme ?? (tls ? "tls" : "tcp");
  const result = new Listener(listener, { tag, scheme, trace, tls, socket: options.socket });
  if (port === 0) trace?.(tag, `getsockname() = ${result.address}`);
  return result;
}

/**
 * Binds and listens on a Unix socket path (or an abstract name). A socket
 * file left behind by a process that no longer listens on it is removed and
 * bound again; a path in use by a live listener, or that is not a socket, is
 * an "address already in use" error.
 *
 * @example Usage
 * ```ts
 * import { listenUnix } from "./listener.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = Deno.makeTempDirSync();
 * using listener = await listenUnix({ path: `${dir}/s.sock`, abstract: false });
 * assert.equal(listener.address, `unix:${dir}/s.sock`);
 * listener.close();
 * Deno.removeSync(dir);
 * ```
 */
export async function listenUnix(
  name: UnixName,
  options: ListenerOptions = {},
): Promise<Listener> {
  const trace = options.trace;
  const tag = `L${++lastListenerId}`;
  const { path, abstract } = name;
  const address = `unix:${formatUnixName(name)}`;
  trace?.(tag, "socket(AF_UNIX, SOCK_STREAM)");
  const bind = (): Listener => {
    try {
      const listener = Deno.listen({ transport: "unix", path: kernelPath(name) });
      trace?.(tag, `bind(${address}) = 0`);
      trace?.(tag, `listen(backlog=${UNIX_LISTEN_BACKLOG}) = 0`);
      return new Listener(listener, {
        tag,
        scheme: options.scheme ?? "unix",
        trace,
        // An abstract socket has no file to remove.
        unixPath: abstract ? undefined : path,
      });
    } catch (err) {
      trace?.(tag, `bind(${address}) = ${failedCall(err)}`);
      throw err;
    }
  };
  try {
    return bind();
  } catch (err) {
    if (!(err instanceof Deno.errors.AddrInUse) || abstract) {
      throw toSockitError(err, "listen", address);
    }
  }
  // The path exists. Reclaim it only if it is a socket nobody listens on.
  let isSocket = false;
  try {
    isSocket = Deno.lstatSync(path).isSocket === true;
  } catch (err) {
    throw toSockitError(err, "listen", address);
  }
  if (!isSocket) {
    throw new SockitError("address already in use: the path exists and is not a socket", {
      op: "listen",
      address,
      code: "EADDRINUSE",
      hint: "remove the file or choose another path",
    });
  }
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
    throw new SockitError("address already in use: another process is listening on it", {
      op: "listen",
      address,
      code: "EADDRINUSE",
    });
  } catch (err) {
    if (err instanceof SockitError) throw err;
    if (!(err instanceof Deno.errors.ConnectionRefused)) {
      throw toSockitError(err, "listen", address);
    }
  }
  trace?.(tag, `unlink(${path}) = 0`);
  Deno.removeSync(path);
  options.onStaleSocket?.(path);
  try {
    return bind();
  } catch (err) {
    throw toSockitError(err, "listen", address);
  }
}
