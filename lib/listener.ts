/**
 * Listening stream sockets: `Deno.listen` (TCP, Unix) and `Deno.listenTls`
 * behind one listener type that reports the real bound address, traces
 * bind/listen/accept, hands out {@linkcode Connection}s, and takes care of
 * Unix socket files (a stale one is replaced; the one it made is removed).
 * Which of these an endpoint gets is the transport table's business
 * (`transports.ts`).
 *
 * @module
 */

import { Connection } from "./conn.ts";
import { nodeConn, nodeHandshake } from "./tls.ts";
import type { HandshakeInfo } from "./tls.ts";
import { SockitError, toSockitError } from "./errors.ts";
import { formatAddr, formatHost } from "./ip.ts";
import { addressFamily, failedCall } from "./trace.ts";
import type { TraceFn } from "./trace.ts";

let lastListenerId = 0;

/** Deno's listen backlog for TCP (`listen(fd, 511)`, as strace shows). */
export const LISTEN_BACKLOG = 511;

/** Deno's listen backlog for Unix sockets (`listen(fd, 1024)`). */
export const UNIX_LISTEN_BACKLOG = 1024;

/** A server's certificate and key (PEM text), and the ALPN protocols it accepts. */
export interface ServerTls {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
  /** ALPN protocols to accept. */
  alpn?: string[];
  /** Ask every client for a certificate signed by one of these CAs (PEM), and refuse others. */
  clientCa?: string[];
}

/** Options of {@linkcode listenTcp} and {@linkcode listenUnix}. */
export interface ListenerOptions {
  /** The scheme it serves, as events name it (default `tcp`, or `tls` with `tls`, `unix`). */
  scheme?: string;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** Serve TLS with this certificate (TCP only). */
  tls?: ServerTls;
  /**
   * Called when a Unix socket file left by a process that is gone was
   * removed so that the path could be bound again.
   */
  onStaleSocket?: (path: string) => void;
  /** Called when a client fails the TLS handshake of a `clientCa` listener (it is dropped). */
  onTlsError?: (remote: string, error: unknown) => void;
}

/** What a {@linkcode Listener} accepts from: a Deno listener, or a `node:tls` server. */
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
  readonly transport: string;
  #tls: boolean;
  #listener: AcceptSource;
  #unixPath?: string;
  #trace?: TraceFn;
  #closed = false;

  /** Wraps a Deno listener; {@linkcode listenTcp} and {@linkcode listenUnix} make them. */
  constructor(
    listener: AcceptSource,
    options: { tag: string; scheme: string; trace?: TraceFn; unixPath?: string; tls?: boolean },
  ) {
    this.tag = options.tag;
    this.#listener = listener;
    this.addr = listener.addr;
    this.address = formatAddr(listener.addr);
    this.transport = options.scheme;
    this.#tls = options.tls === true;
    this.#unixPath = options.unixPath;
    this.#trace = options.trace;
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
      throw this.#closed
        ? new SockitError("listener closed", { op: "accept" })
        : toSockitError(err, "accept", this.address);
    }
    const stream = Connection.from(conn, {
      trace: this.#trace,
      tls: this.#tls,
      // A node:tls server's connections are past their handshake already.
      handshake: (conn as { handshakeInfo?: HandshakeInfo }).handshakeInfo,
    });
    this.#trace?.(this.tag, `accept() = ${stream.remoteAddress} [${stream.tag}]`);
    return stream;
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
export async function listenTcp(
  hostname: string,
  port: number,
  options: ListenerOptions = {},
): Promise<Listener> {
  const trace = options.trace;
  const tag = `L${++lastListenerId}`;
  const requested = `${formatHost(hostname)}:${port}`;
  const tls = options.tls;
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_STREAM)`);
  trace?.(tag, "setsockopt(SO_REUSEADDR, 1)");
  let listener: AcceptSource;
  try {
    listener = tls?.clientCa
      ? await nodeTlsServer(hostname, port, tls, options.onTlsError)
      : tls
      ? Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key, alpnProtocols: tls.alpn })
      : Deno.listen({ hostname, port, transport: "tcp" });
  } catch (err) {
    trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
    throw toSockitError(err, "listen", requested);
  }
  trace?.(tag, `bind(${requested}) = 0`);
  trace?.(tag, `listen(backlog=${LISTEN_BACKLOG}) = 0`);
  const scheme = options.scheme ?? (tls ? "tls" : "tcp");
  const result = new Listener(listener, { tag, scheme, trace, tls: tls !== undefined });
  if (port === 0) trace?.(tag, `getsockname() = ${result.address}`);
  return result;
}

/** The address fields of a `node:net` socket (and of the TCP socket under a TLS one). */
interface PeerSocket {
  remoteAddress?: string;
  remotePort?: number;
  _parent?: PeerSocket;
}

/**
 * A TLS server through `node:tls`, for mutual TLS (Deno's own TLS listener
 * cannot ask clients for certificates): every client must present one
 * signed by `tls.clientCa`; one that does not is dropped and reported
 * through `onTlsError`. Its connections are adapted to `Deno.Conn` and
 * carry what the handshake negotiated (`handshakeInfo`).
 */
async function nodeTlsServer(
  hostname: string,
  port: number,
  tls: ServerTls,
  onTlsError?: (remote: string, error: unknown) => void,
): Promise<AcceptSource> {
  const nodeTls = await import("node:tls");
  const queue: Array<Deno.Conn> = [];
  let waiter: ((conn: Deno.Conn | null) => void) | undefined;
  let closed = false;
  const server = nodeTls.createServer({
    cert: tls.cert,
    key: tls.key,
    ca: tls.clientCa,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: tls.alpn,
    allowHalfOpen: true,
  }, (socket) => {
    const conn = Object.assign(nodeConn(socket), { handshakeInfo: nodeHandshake(socket) });
    if (waiter) {
      waiter(conn);
      waiter = undefined;
    } else queue.push(conn);
  });
  server.on("tlsClientError", (err: Error, socket: PeerSocket) => {
    // By now the TLS socket has lost its peer; the TCP socket under it still knows.
    const peer = socket.remoteAddress ? socket : socket._parent ?? socket;
    const host = (peer.remoteAddress ?? "").replace(/^::ffff:/, "");
    onTlsError?.(`${formatHost(host)}:${peer.remotePort}`, err);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as { address: string; port: number };
  return {
    addr: { transport: "tcp", hostname: bound.address, port: bound.port },
    accept: () => {
      const next = queue.shift();
      if (next) return Promise.resolve(next);
      if (closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
      return new Promise((resolve, reject) => {
        waiter = (conn) =>
          conn ? resolve(conn) : reject(new Deno.errors.BadResource("listener closed"));
      });
    },
    close: () => {
      closed = true;
      server.close();
      waiter?.(null);
      for (const conn of queue.splice(0)) conn.close();
    },
  };
}

/**
 * Binds and listens on a Unix socket path. A socket file left behind by a
 * process that no longer listens on it is removed and bound again; a path in
 * use by a live listener, or that is not a socket, is an "address already in
 * use" error.
 *
 * @example Usage
 * ```ts
 * import { listenUnix } from "./listener.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = Deno.makeTempDirSync();
 * using listener = await listenUnix(`${dir}/s.sock`);
 * assert.equal(listener.address, `unix:${dir}/s.sock`);
 * listener.close();
 * Deno.removeSync(dir);
 * ```
 */
export async function listenUnix(path: string, options: ListenerOptions = {}): Promise<Listener> {
  const trace = options.trace;
  const tag = `L${++lastListenerId}`;
  const address = `unix:${path}`;
  trace?.(tag, "socket(AF_UNIX, SOCK_STREAM)");
  const bind = (): Listener => {
    try {
      const listener = Deno.listen({ transport: "unix", path });
      trace?.(tag, `bind(${address}) = 0`);
      trace?.(tag, `listen(backlog=${UNIX_LISTEN_BACKLOG}) = 0`);
      return new Listener(listener, {
        tag,
        scheme: options.scheme ?? "unix",
        trace,
        unixPath: path,
      });
    } catch (err) {
      trace?.(tag, `bind(${address}) = ${failedCall(err)}`);
      throw err;
    }
  };
  try {
    return bind();
  } catch (err) {
    if (!(err instanceof Deno.errors.AddrInUse)) throw toSockitError(err, "listen", address);
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
