/**
 * Listening sockets: `Deno.listen` for TCP and Unix behind one listener
 * type, reporting the real bound address, tracing bind/listen/accept, and
 * taking care of Unix socket files.
 *
 * @module
 */

import { formatAddr, formatHost, hostOf, isIPv4, isIPv6 } from "./address.ts";
import type { Endpoint } from "./address.ts";
import { SockitError, toSockitError, UsageError } from "./errors.ts";
import { SocketStream, systemLookup } from "./stream.ts";
import { addressFamily, failedCall } from "./trace.ts";
import type { TraceFn } from "./trace.ts";

let lastListenerId = 0;

/** Deno's listen backlog for TCP (`listen(fd, 511)`, as strace shows). */
export const LISTEN_BACKLOG = 511;

/** Deno's listen backlog for Unix sockets (`listen(fd, 1024)`). */
export const UNIX_LISTEN_BACKLOG = 1024;

/** Options of {@linkcode listen}. */
export interface ListenOptions {
  /** For the port-only form: bind `127.0.0.1` (`4`, default) or `::1` (`6`). */
  family?: 4 | 6;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /**
   * Called when a Unix socket file left by a process that is gone was
   * removed so that the path could be bound again.
   */
  onStaleSocket?: (path: string) => void;
  /** Serve TLS with this certificate and key (PEM text); `tls://` endpoints need it. */
  tls?: { cert: string; key: string; alpn?: string[] };
}

/**
 * A listening socket. {@linkcode Listener.accept} returns each connection as
 * a {@linkcode SocketStream}; {@linkcode Listener.close} stops listening and
 * removes the Unix socket file the listener created.
 *
 * @example Usage
 * ```ts
 * import { listen } from "./listener.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = await listen({ transport: "tcp", port: 0 });
 * assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
 * listener.close();
 * ```
 */
export class Listener {
  /** `L1`, `L2`, …: the tag of trace lines. */
  readonly tag: string;
  /** The bound address, formatted (`127.0.0.1:41663`, `unix:/tmp/s.sock`). */
  readonly address: string;
  /** The bound address as Deno reports it. */
  readonly addr: Deno.Addr;
  /** `tcp`, `tls` or `unix`. */
  readonly transport: "tcp" | "tls" | "unix";
  #listener: Deno.Listener;
  #unixPath?: string;
  #trace?: TraceFn;
  #closed = false;

  /** Wraps a Deno listener; {@linkcode listen} is the usual way to get one. */
  constructor(
    listener: Deno.Listener,
    options: { trace?: TraceFn; unixPath?: string; tls?: boolean } = {},
  ) {
    this.tag = `L${++lastListenerId}`;
    this.#listener = listener;
    this.addr = listener.addr;
    this.address = formatAddr(listener.addr);
    this.transport = listener.addr.transport === "unix" ? "unix" : options.tls ? "tls" : "tcp";
    this.#unixPath = options.unixPath;
    this.#trace = options.trace;
  }

  /** Whether {@linkcode Listener.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Waits for the next connection. Rejects once the listener is closed. */
  async accept(): Promise<SocketStream> {
    let conn: Deno.Conn;
    try {
      conn = await this.#listener.accept();
    } catch (err) {
      if (!this.#closed) this.#trace?.(this.tag, `accept() = ${failedCall(err)}`);
      throw this.#closed ? new SockitError("listener closed", { op: "accept" }) : toSockitError(
        err,
        "accept",
        this.address,
      );
    }
    const stream = SocketStream.from(conn, { trace: this.#trace, tls: this.transport === "tls" });
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
 * Binds and listens on a TCP or Unix endpoint. The port-only form binds
 * loopback; port 0 asks the OS for a free port (see
 * {@linkcode Listener.address}). A Unix socket file left behind by a process
 * that no longer listens on it is removed and bound again; a path in use by
 * a live listener, or that is not a socket, is an "address already in use"
 * error.
 *
 * @example Usage
 * ```ts
 * import { listen } from "./listener.ts";
 * import { connect } from "./stream.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = await listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * const client = await connect({ transport: "tcp", hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
 * const server = await listener.accept();
 * assert.deepEqual(server.remoteAddress, client.localAddress);
 * server.close();
 * client.close();
 * listener.close();
 * ```
 */
export async function listen(endpoint: Endpoint, options: ListenOptions = {}): Promise<Listener> {
  const trace = options.trace;
  const tag = `L${lastListenerId + 1}`;
  if (endpoint.transport === "unix") return await listenUnix(endpoint.path, options);
  if (endpoint.transport === "udp") {
    throw new UsageError(`udp://: a datagram socket does not listen for connections`);
  }
  let hostname = hostOf(endpoint, "listen", options.family);
  if (options.family && (isIPv4(hostname) || isIPv6(hostname))) {
    const family = isIPv4(hostname) ? 4 : 6;
    if (family !== options.family) {
      throw new UsageError(
        `${
          formatHost(hostname)
        }:${endpoint.port}: an IPv${family} address, but -${options.family} was given`,
      );
    }
  } else if (options.family) {
    // A host name with -4/-6: bind the first address of that family.
    const name = hostname;
    try {
      hostname = (await systemLookup(name, options.family))[0] ?? name;
    } catch (err) {
      throw toSockitError(err, "listen", `${name}:${endpoint.port}`);
    }
  }
  const requested = `${formatHost(hostname)}:${endpoint.port}`;
  const preamble = () => {
    trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_STREAM)`);
    trace?.(tag, "setsockopt(SO_REUSEADDR, 1)");
  };
  const tls = options.tls;
  if (endpoint.transport === "tls" && !tls) {
    throw new UsageError(`${requested}: a TLS listener needs a certificate and key`);
  }
  let listener: Deno.Listener;
  try {
    listener = tls
      ? Deno.listenTls({
        hostname,
        port: endpoint.port,
        cert: tls.cert,
        key: tls.key,
        alpnProtocols: tls.alpn,
      })
      : Deno.listen({ hostname, port: endpoint.port, transport: "tcp" });
  } catch (err) {
    preamble();
    trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
    throw toSockitError(err, "listen", requested);
  }
  preamble();
  trace?.(tag, `bind(${requested}) = 0`);
  trace?.(tag, `listen(backlog=${LISTEN_BACKLOG}) = 0`);
  const result = new Listener(listener, { trace, tls: tls !== undefined });
  if (endpoint.port === 0) trace?.(tag, `getsockname() = ${result.address}`);
  return result;
}

async function listenUnix(path: string, options: ListenOptions): Promise<Listener> {
  const trace = options.trace;
  const tag = `L${lastListenerId + 1}`;
  const address = `unix:${path}`;
  trace?.(tag, "socket(AF_UNIX, SOCK_STREAM)");
  const bind = (): Deno.UnixListener => {
    try {
      const listener = Deno.listen({ transport: "unix", path });
      trace?.(tag, `bind(${address}) = 0`);
      trace?.(tag, `listen(backlog=${UNIX_LISTEN_BACKLOG}) = 0`);
      return listener;
    } catch (err) {
      trace?.(tag, `bind(${address}) = ${failedCall(err)}`);
      throw err;
    }
  };
  try {
    return new Listener(bind(), { trace, unixPath: path });
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
    return new Listener(bind(), { trace, unixPath: path });
  } catch (err) {
    throw toSockitError(err, "listen", address);
  }
}
