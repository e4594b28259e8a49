/**
 * Dialers that compose, in the manner of Go's `x/net/proxy`: a dialer turns
 * a target (host and port, or a Unix path) into a {@linkcode Stream} — a
 * {@linkcode Connection} for a socket; a layer takes a dialer and returns
 * one that does more over what it dialled (TLS gives a `TlsStream`). The
 * chain for `tls://host:443` is `tlsDialer(directDialer())`; a proxy or
 * WebSocket client is one more link. Retries and the deadline
 * wrap the whole chain ({@linkcode dialWithRetry}).
 *
 * ```
 * dialWithRetry ─▶ tlsDialer ─▶ directDialer ─▶ resolve → Deno.connect (each address in turn)
 * ```
 *
 * @module
 */

import { Connection, setConnectionOptions, type StreamSocket } from "./conn.ts";
import type { SocketOptions } from "./conn.ts";
import { delay } from "../engine/deadline.ts";
import { SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, formatUnixName, ipFamily, kernelPath } from "./ip.ts";
import type { UnixName } from "./ip.ts";
import { resolve } from "./resolve.ts";
import type { Lookup } from "./resolve.ts";
import { connectTls } from "../protocols/node_tls.ts";
import { isTlsFailure, tlsFailure, upgradeClient } from "../protocols/tls.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import { securedStream } from "../protocols/tls_stream.ts";
import type { TlsStream } from "../protocols/tls_stream.ts";
import type { Stream } from "./stream.ts";
import { addressFamily, failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

/**
 * Where a dialer connects: a host (name or IP literal) and port, or a Unix
 * socket path (with `abstract`, a Linux abstract name).
 */
export type DialTarget = { host: string; port: number } | { path: string; abstract?: boolean };

/** What one dial gets besides its target. */
export interface DialContext {
  /** The connection number: the `#N` tag of its trace lines. */
  id: number;
  /** Aborts the dial; its reason is what the dial rejects with. */
  signal: AbortSignal;
  /** Prints each socket call (`--trace`). */
  trace?: TraceFn;
  /** Resolve names to IPv4 (`4`) or IPv6 (`6`) addresses only. */
  family?: 4 | 6;
  /** The resolver, for tests; the system's by default. */
  lookup?: Lookup;
  /** Called when an address fails and another is tried, or before a retry. */
  onAttemptFailed?: (address: string, error: SockitError, willRetry: boolean) => void;
  /** TCP options for the socket (`--nodelay`, `--keepalive`). */
  socket?: SocketOptions;
}

/**
 * Opens a connection to a target: a stream of kind `S` (a socket dialer
 * gives a {@linkcode Connection}; a layer's dialer, a layer over one).
 */
export type Dialer<S extends Stream = Stream> = (
  target: DialTarget,
  ctx: DialContext,
) => Promise<S>;

/** Opens one connection to an IP address (the step a direct dialer repeats per address). */
export type AddressOpener = (
  address: string,
  port: number,
  host: string,
  ctx: DialContext,
) => Promise<Connection>;

/**
 * The target as text for messages: `host:port` (IPv6 in brackets) or `unix:path`.
 *
 * @example Usage
 * ```ts
 * import { targetText } from "./dial.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(targetText({ host: "::1", port: 80 }), "[::1]:80");
 * assert.equal(targetText({ path: "/tmp/s" }), "unix:/tmp/s");
 * ```
 */
export function targetText(target: DialTarget): string {
  return "path" in target
    ? `unix:${formatUnixName(unixName(target))}`
    : `${formatHost(target.host)}:${target.port}`;
}

/** A path target's name. */
function unixName(target: { path: string; abstract?: boolean }): UnixName {
  return { path: target.path, abstract: target.abstract ?? false };
}

/**
 * How long a connect may go on after its signal aborts before it is
 * cancelled: long enough for one that is completing to complete, even on a
 * loaded machine; short enough that a signal still ends sockit promptly.
 */
const CANCEL_GRACE = 250;

/**
 * `Deno.connect` that ends when `signal` aborts, without leaking: Deno 2.9
 * loses the socket of a connect that completes just as its own `signal`
 * aborts (the promise rejects, the descriptor stays open for good). So the
 * abort is passed on only after a grace, in which a connect that completes
 * is closed here; one that is still going then (a SYN nobody answers) has
 * nothing to lose. The promise settles once the connect has, so nothing is
 * left running after it. It rejects with `signal.reason` when the connect
 * succeeded or was cancelled after the abort; a connect that failed on its
 * own (refused, unreachable) rejects with that failure even after the
 * abort, so that a caller can tell an answer from silence.
 *
 * @example Usage
 * ```ts
 * import { connectTcp } from "./dial.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const controller = new AbortController();
 * controller.abort(new Error("stop"));
 * await assert.rejects(connectTcp({ port: listener.addr.port }, controller.signal), /stop/);
 * using conn = await connectTcp({ port: listener.addr.port }, new AbortController().signal);
 * assert.equal(conn.remoteAddr.port, listener.addr.port);
 * listener.close();
 * ```
 */
export function connectTcp(
  options: Deno.ConnectOptions,
  signal: AbortSignal,
): Promise<Deno.TcpConn> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const cancel = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => timer = setTimeout(() => cancel.abort(signal.reason), CANCEL_GRACE);
  signal.addEventListener("abort", onAbort, { once: true });
  return Deno.connect({ ...options, signal: cancel.signal }).then(
    (conn) => {
      if (!signal.aborted) return conn;
      conn.close();
      throw signal.reason;
    },
    (err) => {
      throw cancel.signal.aborted ? signal.reason : err;
    },
  ).finally(() => {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  });
}

/**
 * The plain opener, a direct dialer's default: `Deno.connect` to one
 * address (through libc with `--source`, which binds first), with the
 * socket options of `ctx` applied.
 *
 * @example Usage
 * ```ts
 * import { plainOpener } from "./dial.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using conn = await plainOpener("127.0.0.1", listener.addr.port, "localhost", {
 *   id: 1,
 *   signal: new AbortController().signal,
 * });
 * assert.equal(conn.remoteAddress, `127.0.0.1:${listener.addr.port}`);
 * listener.close();
 * ```
 */
export async function plainOpener(
  address: string,
  port: number,
  _host: string,
  ctx: DialContext,
): Promise<Connection> {
  const source = ctx.socket?.source;
  let conn: StreamSocket;
  if (source) {
    // Deno.connect cannot bind first; a libc socket can (loaded only for this).
    const { connectFrom } = await import("./tcp_libc.ts");
    const libc = await connectFrom(address, port, source, ctx.signal);
    ctx.trace?.(
      `#${ctx.id}`,
      `bind(${formatHost(libc.localAddr.hostname)}:${libc.localAddr.port}) = 0`,
    );
    conn = libc;
  } else {
    conn = await connectTcp({
      hostname: address,
      port,
      // An unresolved name (narrow permissions): let Deno try its addresses.
      autoSelectFamily: ipFamily(address) === undefined,
    }, ctx.signal);
  }
  ctx.trace?.(`#${ctx.id}`, `connect(${formatHost(address)}:${port}) = 0`);
  try {
    setConnectionOptions(conn, ctx.socket, ctx.trace, `#${ctx.id}`);
  } catch (err) {
    conn.close();
    await conn.released;
    throw err;
  }
  return Connection.from(conn, { id: ctx.id, trace: ctx.trace });
}

/**
 * `work`, or `signal.reason` as soon as `signal` aborts. For what cannot be
 * cancelled — a name lookup (getaddrinfo runs to its own end, seconds when
 * a DNS server is silent) — so that a deadline or a signal still ends the
 * dial on time; the work's late result is dropped.
 */
function abandonOnAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  const onAbort = () => reject(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  return promise;
}

/**
 * The first link of every IP chain: resolves the host and tries its
 * addresses one by one until one accepts, so that a server listening on
 * only one family is still found. `open` makes the connection to one
 * address (`Deno.connect` by default).
 *
 * @example Usage
 * ```ts
 * import { directDialer } from "./dial.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const dial = directDialer();
 * using conn = await dial({ host: "127.0.0.1", port: listener.addr.port }, { id: 1, signal: new AbortController().signal });
 * assert.equal(conn.remoteAddress, `127.0.0.1:${listener.addr.port}`);
 * listener.close();
 * ```
 */
export function directDialer(open: AddressOpener = plainOpener): Dialer<Connection> {
  return async (target, ctx) => {
    if ("path" in target) throw new UsageError(`${targetText(target)}: not an IP target`);
    const tag = `#${ctx.id}`;
    const named = `${formatHost(target.host)}:${target.port}`;
    const candidates = await abandonOnAbort(
      resolve(target.host, {
        op: "connect",
        address: named,
        // A --source address picks the family of the addresses worth trying.
        family: ctx.family ??
          (ctx.socket?.source?.host ? ipFamily(ctx.socket.source.host) : undefined),
        lookup: ctx.lookup,
        trace: ctx.trace,
        tag,
        deferWithoutPermission: true,
      }),
      ctx.signal,
    );
    let lastError: unknown;
    for (const [i, address] of candidates.entries()) {
      const where = `${formatHost(address)}:${target.port}`;
      ctx.trace?.(tag, `socket(${addressFamily(address)}, SOCK_STREAM)`);
      try {
        return await open(address, target.port, target.host, ctx);
      } catch (err) {
        if (isTlsFailure(err) || ctx.signal.aborted) throw err;
        const bind = err instanceof SockitError && err.op === "bind";
        ctx.trace?.(
          tag,
          `${bind ? `bind(${err.address})` : `connect(${where})`} = ${failedCall(err)}`,
        );
        lastError = err;
        const error = toSockitError(err, "connect", where);
        if (error.exitCode !== 1) throw error;
        if (i < candidates.length - 1) ctx.onAttemptFailed?.(where, error, true);
      }
    }
    const error = toSockitError(lastError, "connect", named);
    if (candidates.length < 2) throw error;
    throw new SockitError(`${error.reason} (tried ${candidates.join(", ")})`, {
      op: "connect",
      address: named,
      code: error.code,
      hint: error.hint,
      cause: lastError,
    });
  };
}

/**
 * A Unix-domain stream socket: `connect(2)` to the path.
 *
 * @example Usage
 * ```ts ignore
 * using conn = await unixDialer({ path: "/run/app.sock" }, { id: 1, signal });
 * ```
 */
export async function unixDialer(target: DialTarget, ctx: DialContext): Promise<Connection> {
  if (!("path" in target)) throw new UsageError(`${targetText(target)}: not a Unix socket path`);
  const tag = `#${ctx.id}`;
  const address = targetText(target);
  ctx.trace?.(tag, "socket(AF_UNIX, SOCK_STREAM)");
  try {
    const conn = await Deno.connect({ transport: "unix", path: kernelPath(unixName(target)) });
    ctx.trace?.(tag, `connect(${address}) = 0`);
    return Connection.from(conn, { id: ctx.id, trace: ctx.trace });
  } catch (err) {
    ctx.trace?.(tag, `connect(${address}) = ${failedCall(err)}`);
    throw toSockitError(err, "connect", address);
  }
}

/**
 * TLS over whatever `inner` dials: the handshake completes here, verifying
 * the certificate for the host dialled (or `options.serverName`), so that a
 * verification failure is reported as one. A TLS failure is final: no other
 * address, no retry.
 *
 * @example Usage
 * ```ts ignore
 * const dial = tlsDialer(directDialer(), { caCerts: [pem] });
 * using conn = await dial({ host: "localhost", port: 8443 }, ctx);
 * ```
 */
export function tlsDialer(
  inner: Dialer<Connection>,
  options: TlsClientOptions,
): Dialer<TlsStream> {
  return async (target, ctx) => {
    if ("path" in target) {
      throw new UsageError(
        `${targetText(target)}: TLS over a Unix socket is not supported (Deno's TLS is TCP only)`,
      );
    }
    const plain = await inner(target, ctx);
    const name = options.serverName ?? target.host;
    const tag = `#${ctx.id}`;
    try {
      const upgraded = await upgradeClient(
        plain.conn as Deno.TcpConn,
        name,
        options,
        ctx.signal,
      );
      const alpn = upgraded.info.alpn ? `, alpn ${upgraded.info.alpn}` : "";
      ctx.trace?.(tag, `tls handshake (verified as ${name}) = ok${alpn}`);
      return securedStream(plain, upgraded.conn, upgraded.info);
    } catch (err) {
      ctx.trace?.(tag, `tls handshake (verified as ${name}) = -1 ${(err as Error).message}`);
      // Cut by the deadline or a signal: that is the reason, not a TLS failure.
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw tlsFailure(err, plain.remoteAddress);
    }
  };
}

/**
 * TLS through `node:tls` over whatever `inner` dials, for what Deno's own
 * TLS cannot do per connection: skip verification (`--insecure`) or
 * present a client certificate (`--cert/--key`, mutual TLS). Like
 * {@linkcode tlsDialer}, a TLS failure is final.
 *
 * @example Usage
 * ```ts ignore
 * const dial = nodeTlsDialer(directDialer(), { insecure: true });
 * using conn = await dial({ host: "127.0.0.1", port: 8443 }, ctx);
 * ```
 */
export function nodeTlsDialer(
  inner: Dialer<Connection>,
  options: TlsClientOptions,
): Dialer<TlsStream> {
  return async (target, ctx) => {
    if ("path" in target) {
      throw new UsageError(`${targetText(target)}: TLS over a Unix socket is not supported`);
    }
    const plain = await inner(target, ctx);
    const tag = `#${ctx.id}`;
    const name = options.serverName ?? target.host;
    const how = options.insecure ? "not verified" : `verified as ${name}`;
    const mutual = options.cert ? ", client certificate" : "";
    try {
      const { conn, info } = await connectTls(
        plain.conn,
        { ...options, host: target.host },
        ctx.signal,
      );
      ctx.trace?.(
        tag,
        `tls handshake (${how}${mutual}) = ${info.version ?? "ok"}${
          info.alpn ? `, alpn ${info.alpn}` : ""
        }`,
      );
      return securedStream(plain, conn, info);
    } catch (err) {
      plain.close();
      if (ctx.signal.aborted) throw err;
      ctx.trace?.(tag, `tls handshake (${how}${mutual}) = -1 ${(err as Error).message}`);
      throw tlsFailure(err, plain.remoteAddress);
    }
  };
}

/** Options of {@linkcode dialWithRetry}. */
export interface RetryOptions {
  /** Attempts after the first one fails (`--retry N`). */
  retry?: number;
  /** Pause between attempts in ms (default 1000). */
  retryDelay?: number;
  /** The target as the user named it, for messages. */
  address: string;
}

/**
 * Dials with `dialer`, trying again `options.retry` times after a network
 * failure, pausing `retryDelay` between attempts. Usage errors, denied
 * permissions and TLS failures are final. When `ctx.signal` aborts (the
 * command's deadline or a signal) it rejects with the signal's reason.
 *
 * @example Usage
 * ```ts
 * import { dialWithRetry, directDialer } from "./dial.ts";
 * import assert from "node:assert/strict";
 *
 * const port = (() => { const l = Deno.listen({ port: 0 }); const p = l.addr.port; l.close(); return p; })();
 * const failures: string[] = [];
 * await assert.rejects(
 *   dialWithRetry(directDialer(), { host: "127.0.0.1", port }, {
 *     id: 1,
 *     signal: new AbortController().signal,
 *     onAttemptFailed: (_address, error) => failures.push(error.reason),
 *   }, { retry: 1, retryDelay: 10, address: `127.0.0.1:${port}` }),
 *   /connection refused/,
 * );
 * assert.deepEqual(failures, ["connection refused"]);
 * ```
 */
export async function dialWithRetry<S extends Stream>(
  dialer: Dialer<S>,
  target: DialTarget,
  ctx: DialContext,
  options: RetryOptions,
): Promise<S> {
  const attempts = 1 + (options.retry ?? 0);
  let lastError: SockitError | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await dialer(target, ctx);
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (isTlsFailure(err) || err instanceof UsageError) throw err;
      lastError = toSockitError(err, "connect", options.address);
      if (lastError.exitCode !== 1) throw lastError;
      if (attempt < attempts) {
        ctx.onAttemptFailed?.(options.address, lastError, true);
        await delay(options.retryDelay ?? 1000, ctx.signal);
      }
    }
  }
  throw lastError;
}
