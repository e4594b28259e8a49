/**
 * Connections: `Deno.connect` behind one stream type, with name resolution
 * address by address, retries, a timeout and `--trace`.
 *
 * @module
 */

import { formatAddr, formatHost, hostOf, isIPv4, isIPv6 } from "./address.ts";
import type { Endpoint } from "./address.ts";
import { SockitError, TimeoutError, toSockitError, UsageError } from "./errors.ts";
import { formatDuration } from "./format.ts";
import type { Duplex } from "./relay.ts";
import { connectInsecure, isTlsFailure, tlsFailure, upgradeClient } from "./tls.ts";
import type { HandshakeInfo, TlsClientOptions } from "./tls.ts";
import { addressFamily, failedCall } from "./trace.ts";
import type { TraceFn } from "./trace.ts";

let lastConnectionId = 0;

/** A new connection number, unique in this process (`#1`, `#2`, …). */
export function nextConnectionId(): number {
  return ++lastConnectionId;
}

/** Options of {@linkcode SocketStream}. */
export interface SocketStreamOptions {
  /** Connection number; a new one is taken when absent. */
  id?: number;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /**
   * A TLS connection: a peer that closes without close_notify ends the
   * stream like EOF (see {@linkcode SocketStream.uncleanClose}).
   */
  tls?: boolean;
}

/**
 * A connected socket (TCP, Unix or TLS) as a {@linkcode Duplex} for the relay.
 * `close()` may be called more than once; `closeWrite()` after the peer has
 * gone is not an error.
 *
 * @example Usage
 * ```ts
 * import { SocketStream } from "./stream.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = SocketStream.from(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
 * const server = await listener.accept();
 * listener.close();
 * await client.write(new TextEncoder().encode("hi"));
 * await client.closeWrite();
 * const buf = new Uint8Array(8);
 * assert.deepEqual(await server.read(buf), 2);
 * assert.deepEqual(await server.read(buf), null);
 * server.close();
 * client.close();
 * client.close(); // harmless
 * ```
 */
export class SocketStream implements Duplex {
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
  /** When the stream was opened (`performance.now()`). */
  readonly openedAt: number = performance.now();
  /** Whether this is a TLS connection. */
  readonly isTls: boolean;
  /** What the TLS handshake negotiated, once known. */
  handshake?: HandshakeInfo;
  /** Set when a TLS peer closed without close_notify (read as EOF). */
  uncleanClose = false;
  #closed = false;
  #writeClosed = false;

  /** Wraps a connection; see {@linkcode SocketStream.from} for tracing. */
  constructor(conn: Deno.Conn, options: SocketStreamOptions = {}) {
    this.conn = conn;
    this.id = options.id ?? nextConnectionId();
    this.tag = `#${this.id}`;
    this.localAddress = formatAddr(conn.localAddr);
    this.remoteAddress = formatAddr(conn.remoteAddr);
    this.isTls = options.tls === true;
    if (this.isTls) {
      // Only TLS pays for the extra promise per read.
      const read = this.read.bind(this);
      this.read = async (p: Uint8Array) => {
        try {
          return await read(p);
        } catch (err) {
          if (!(err instanceof Deno.errors.UnexpectedEof)) throw err;
          this.uncleanClose = true;
          return null;
        }
      };
    }
  }

  /** Wraps a connection, tracing every operation when `options.trace` is set. */
  static from(conn: Deno.Conn, options: SocketStreamOptions = {}): SocketStream {
    const trace = options.trace;
    return trace
      ? new TracedSocketStream(conn, { ...options, trace })
      : new SocketStream(conn, options);
  }

  /** The peer address: the name of this side in messages. */
  get label(): string {
    return this.remoteAddress;
  }

  /** Whether {@linkcode SocketStream.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Reads into `p`; `null` at end of input. */
  read(p: Uint8Array): Promise<number | null> {
    return this.conn.read(p);
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
}

/** A {@linkcode SocketStream} that prints each operation as a system call. */
class TracedSocketStream extends SocketStream {
  #trace: TraceFn;

  constructor(conn: Deno.Conn, options: SocketStreamOptions & { trace: TraceFn }) {
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

/** Resolves a host name to addresses (IP literals), in the order to try them. */
export type Lookup = (hostname: string, family?: 4 | 6) => Promise<string[]>;

/**
 * The system resolver (getaddrinfo, so `/etc/hosts` counts), through
 * `node:dns`.
 *
 * @example Usage
 * ```ts
 * import { systemLookup } from "./stream.ts";
 * import assert from "node:assert/strict";
 *
 * const addresses = await systemLookup("localhost");
 * assert(addresses.length > 0);
 * ```
 */
export async function systemLookup(hostname: string, family?: 4 | 6): Promise<string[]> {
  const { lookup } = await import("node:dns/promises");
  const results = await lookup(hostname, { all: true, family: family ?? 0, verbatim: true });
  const seen = new Set<string>();
  return results.map((r) => r.address).filter((a) => !seen.has(a) && seen.add(a));
}

/**
 * Opens one connection to `hostname` (an address, or a name Deno resolves)
 * and, for TLS, completes the handshake, verifying the certificate for
 * `host` (the name given) or `tls.serverName`.
 */
async function dial(
  hostname: string,
  host: string,
  port: number,
  id: number,
  signal: AbortSignal,
  options: ConnectOptions,
): Promise<SocketStream> {
  const { trace, tls } = options;
  const tag = `#${id}`;
  const target = `${formatHost(hostname)}:${port}`;
  const named = !isIPv4(host) && !isIPv6(host);
  if (tls?.insecure) {
    const { conn, info } = await connectInsecure(hostname, port, {
      ...tls,
      serverName: tls.serverName ?? (named ? host : undefined),
    }, signal);
    trace?.(tag, `connect(${target}) = 0`);
    trace?.(
      tag,
      `tls handshake (not verified) = ${info.version ?? "ok"}${
        info.alpn ? `, alpn ${info.alpn}` : ""
      }`,
    );
    const stream = SocketStream.from(conn, { id, trace, tls: true });
    stream.handshake = info;
    return stream;
  }
  const conn = await Deno.connect({
    hostname,
    port,
    signal,
    autoSelectFamily: !isIPv4(hostname) && !isIPv6(hostname),
  });
  trace?.(tag, `connect(${target}) = 0`);
  if (!tls) return SocketStream.from(conn, { id, trace });
  const name = tls.serverName ?? host;
  try {
    const upgraded = await upgradeClient(conn, name, tls);
    trace?.(
      tag,
      `tls handshake (verified as ${name}) = ok${
        upgraded.info.alpn ? `, alpn ${upgraded.info.alpn}` : ""
      }`,
    );
    const stream = SocketStream.from(upgraded.conn, { id, trace, tls: true });
    stream.handshake = upgraded.info;
    return stream;
  } catch (err) {
    trace?.(tag, `tls handshake (verified as ${name}) = -1 ${(err as Error).message}`);
    throw tlsFailure(err, target);
  }
}

/** Whether sockit may resolve `host` itself (net permission for the bare host). */
function mayLookUp(host: string): boolean {
  return Deno.permissions.querySync({ name: "net", host }).state === "granted";
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Restrict name resolution to IPv4 (`4`) or IPv6 (`6`), as `-4`/`-6`. */
  family?: 4 | 6;
  /** Give up connecting after this many ms (all attempts together): exit 124. */
  timeout?: number;
  /** Attempts after the first one fails (`--retry N`). */
  retry?: number;
  /** Pause between attempts in ms (default 1000). */
  retryDelay?: number;
  /** Cancels connecting; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** Called when an address fails and another is tried, or before a retry. */
  onAttemptFailed?: (address: string, error: SockitError, willRetry: boolean) => void;
  /** The resolver; {@linkcode systemLookup} by default. */
  lookup?: Lookup;
  /** Speak TLS over the connection (`tls://` endpoints are TLS without this). */
  tls?: TlsClientOptions;
}

/**
 * The address a connection to `endpoint` is reported under: the host as
 * given (or `localhost` for the port-only form) and port, or the Unix path.
 *
 * @example Usage
 * ```ts
 * import { connectAddress } from "./stream.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(connectAddress({ transport: "tcp", port: 8888 }), "localhost:8888");
 * ```
 */
export function connectAddress(endpoint: Endpoint, family?: 4 | 6): string {
  return endpoint.transport === "unix"
    ? `unix:${endpoint.path}`
    : `${formatHost(hostOf(endpoint, "connect", family))}:${endpoint.port}`;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Connects to a TCP or Unix endpoint. A host name is resolved and its
 * addresses are tried one by one until one accepts, so a server listening on
 * only one family is still found; with `retry`, the whole round is repeated
 * after `retryDelay`. Rejects with a {@linkcode SockitError} (or a
 * {@linkcode TimeoutError} when `timeout` expires).
 *
 * @example Usage
 * ```ts
 * import { connect } from "./stream.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const stream = await connect({ transport: "tcp", hostname: "127.0.0.1", port: listener.addr.port });
 * assert.deepEqual(stream.remoteAddress, `127.0.0.1:${listener.addr.port}`);
 * stream.close();
 * listener.close();
 * ```
 */
export async function connect(
  endpoint: Endpoint,
  options: ConnectOptions = {},
): Promise<SocketStream> {
  if (endpoint.transport === "udp") {
    throw new UsageError(
      `${connectAddress(endpoint)}: udp:// needs a datagram socket, not a stream`,
    );
  }
  if (endpoint.transport === "tls" && !options.tls) options = { ...options, tls: {} };
  if (options.tls && endpoint.transport === "unix") {
    throw new UsageError(
      `${
        connectAddress(endpoint)
      }: TLS over a Unix socket is not supported (Deno's TLS is TCP only)`,
    );
  }
  const address = connectAddress(endpoint, options.family);
  const id = nextConnectionId();
  const deadline = options.timeout !== undefined ? AbortSignal.timeout(options.timeout) : undefined;
  const signals = [options.signal, deadline].filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length ? AbortSignal.any(signals) : new AbortController().signal;
  const attempts = 1 + (options.retry ?? 0);
  let lastError: SockitError | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await connectOnce(endpoint, id, address, signal, options);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      // A certificate that fails now will fail again: no retry.
      if (isTlsFailure(err)) throw err;
      if (deadline?.aborted) {
        throw new TimeoutError(`timed out after ${formatDuration(options.timeout!)}`, {
          op: "connect",
          address,
        });
      }
      lastError = toSockitError(err, "connect", address);
      if (err instanceof UsageError) throw err;
      if (lastError.exitCode !== 1) throw lastError;
      const willRetry = attempt < attempts;
      if (willRetry) {
        options.onAttemptFailed?.(address, lastError, true);
        try {
          await delay(options.retryDelay ?? 1000, signal);
        } catch {
          if (options.signal?.aborted) throw options.signal.reason;
          throw new TimeoutError(`timed out after ${formatDuration(options.timeout!)}`, {
            op: "connect",
            address,
          });
        }
      }
    }
  }
  throw lastError;
}

async function connectOnce(
  endpoint: Endpoint,
  id: number,
  address: string,
  signal: AbortSignal,
  options: ConnectOptions,
): Promise<SocketStream> {
  const trace = options.trace;
  const tag = `#${id}`;
  if (endpoint.transport === "unix") {
    trace?.(tag, "socket(AF_UNIX, SOCK_STREAM)");
    try {
      const conn = await Deno.connect({ transport: "unix", path: endpoint.path });
      trace?.(tag, `connect(${address}) = 0`);
      return SocketStream.from(conn, { id, trace });
    } catch (err) {
      trace?.(tag, `connect(${address}) = ${failedCall(err)}`);
      throw toSockitError(err, "connect", address);
    }
  }
  const host = hostOf(endpoint, "connect", options.family);
  let candidates: string[];
  if (isIPv4(host) || isIPv6(host)) {
    const family = isIPv4(host) ? 4 : 6;
    if (options.family && options.family !== family) {
      throw new UsageError(`${address}: an IPv${family} address, but -${options.family} was given`);
    }
    candidates = [host];
  } else if (!options.lookup && !mayLookUp(host)) {
    // Permission for host:port only (--allow-net=example.com:80): Deno may
    // connect there, but sockit may not resolve the name itself. Let Deno do
    // it (it tries the addresses in turn, Happy Eyeballs).
    if (options.family) {
      throw new UsageError(
        `-${options.family} with a host name needs --allow-net for "${host}" itself (sockit resolves it)`,
      );
    }
    candidates = [host];
  } else {
    try {
      candidates = await (options.lookup ?? systemLookup)(host, options.family);
      trace?.(tag, `getaddrinfo("${host}") = ${candidates.join(", ")}`);
    } catch (err) {
      trace?.(tag, `getaddrinfo("${host}") = ${failedCall(err)}`);
      throw toSockitError(err, "connect", address);
    }
    if (candidates.length === 0) {
      throw new SockitError("name not found", { op: "connect", address, code: "ENOTFOUND" });
    }
  }
  let lastError: unknown;
  for (const [i, hostname] of candidates.entries()) {
    const target = `${formatHost(hostname)}:${endpoint.port}`;
    trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_STREAM)`);
    try {
      return await dial(hostname, host, endpoint.port, id, signal, options);
    } catch (err) {
      if (isTlsFailure(err)) throw err;
      if (signal.aborted) throw err;
      trace?.(tag, `connect(${target}) = ${failedCall(err)}`);
      lastError = err;
      const error = toSockitError(err, "connect", target);
      if (error.exitCode !== 1) throw error;
      if (i < candidates.length - 1) options.onAttemptFailed?.(target, error, true);
    }
  }
  const error = toSockitError(lastError, "connect", address);
  if (candidates.length < 2) throw error;
  return Promise.reject(
    new SockitError(`${error.reason} (tried ${candidates.join(", ")})`, {
      op: "connect",
      address,
      code: error.code,
      hint: error.hint,
      cause: lastError,
    }),
  );
}
