/**
 * The listener bootstrap every server command shares (`listen`, `echo`,
 * `forward`): the TLS certificate when the endpoint speaks TLS (from
 * `--cert/--key` or made for the run), bind and listen, Deno's complaints
 * about a certificate turned into words, and the `listening` event with
 * the real bound address.
 *
 * @module
 */

import { transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import type { DatagramSocket } from "../net/datagram.ts";
import { DATAGRAM_MAX_SESSIONS, DATAGRAM_SESSION_IDLE } from "../net/datagram_forward.ts";
import type { ForwardDatagramsOptions } from "../net/datagram_forward.ts";
import { schemePrefix } from "../net/schemes.ts";
import { checkSocketOptions } from "../net/conn.ts";
import type { SocketOptions } from "../net/conn.ts";
import type { Listener } from "../net/listener.ts";
import { listen } from "../net/open.ts";
import type { ServeOptions } from "../engine/server.ts";
import type { CommandContext } from "./context.ts";
import type { ServerLimits } from "./values.ts";
import type { Reporter } from "./report.ts";
import { explainTlsListenError, serverCertificate } from "./tls_flags.ts";
import type { TlsServerFlags } from "./tls_flags.ts";
import type { WebSocketServerOptions } from "../protocols/websocket.ts";

/** Options of {@linkcode openServer}. */
export interface OpenServerOptions {
  /** `-4`/`-6` for the port-only form or a host name. */
  family?: 4 | 6;
  /** The TLS flags, when the endpoint speaks TLS. */
  tls?: TlsServerFlags;
  /** WebSocket settings, for a `ws://` or `wss://` endpoint. */
  websocket?: WebSocketServerOptions;
  /** `--reuseport`. */
  reusePort?: boolean;
  /** `--nodelay`, `--keepalive` for accepted connections. */
  socket?: SocketOptions;
}

/**
 * Opens the listening socket of a server command and announces it.
 *
 * @example Usage
 * ```ts ignore
 * using listener = await openServer(endpoint, { family: 4 }, reporter);
 * ```
 */
export async function openServer(
  endpoint: Endpoint,
  options: OpenServerOptions,
  reporter: Reporter,
): Promise<Listener> {
  checkSocketOptions(options.socket);
  const tls = options.tls ? await serverCertificate(options.tls, reporter) : undefined;
  let listener: Listener;
  try {
    listener = await listen(endpoint, {
      family: options.family,
      trace: reporter.traceFn,
      tls,
      websocket: options.websocket && { ...options.websocket, trace: reporter.traceFn },
      reusePort: options.reusePort,
      socket: options.socket,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
    });
  } catch (err) {
    throw options.tls ? explainTlsListenError(err, options.tls) : err;
  }
  reporter.listening(listener.address, listener.scheme);
  return listener;
}

/**
 * How a server command runs its accept loop: the limits it was given,
 * events to the reporter, the context's signal, and a handler that fails
 * as the command's error.
 *
 * @example Usage
 * ```ts ignore
 * await serve(listener, handler, serveOptions(options, ctx, reporter));
 * ```
 */
export function serveOptions(
  limits: ServerLimits,
  ctx: CommandContext,
  reporter: Reporter,
  tls?: TlsServerFlags,
  websocket?: { handshakeTimeout?: number },
): ServeOptions {
  return {
    events: reporter,
    signal: ctx.signal,
    handshakeTimeout: tls?.handshakeTimeout ?? websocket?.handshakeTimeout,
    maxConns: limits.maxConns,
    access: limits.access,
    report: (err) => reporter.fail(err),
  };
}

/**
 * The options of a datagram server of sessions (`forward udp://`, `listen
 * udp:// --exec`) from its limits: the command's signal, `--idle-timeout`
 * per session (default 30 s), `--max-conns` (default 100 sessions),
 * `--allow/--deny`, and what it
 * tells — each new client (`datagrams from CLIENT → to`), each refused one,
 * each session's end with its figures, warnings.
 *
 * @example Usage
 * ```ts ignore
 * await forwardDatagrams(socket, open, datagramSessions(socket, endpoint, options, ctx, reporter, "udp://10.0.0.5:53"));
 * ```
 */
export function datagramSessions(
  listener: DatagramSocket,
  endpoint: Endpoint,
  limits: ServerLimits,
  ctx: CommandContext,
  reporter: Reporter,
  to: string,
): ForwardDatagramsOptions {
  const prefix = schemePrefix(transportOf(endpoint));
  const localAddress = listener.address;
  return {
    signal: ctx.signal,
    idleTimeout: limits.idleTimeout ?? DATAGRAM_SESSION_IDLE,
    maxSessions: limits.maxConns ?? DATAGRAM_MAX_SESSIONS,
    access: limits.access,
    onSession: (client) =>
      reporter.event("peer", `datagrams from ${client} → ${to}`, { remote: `${prefix}${client}` }),
    onRejected: (client, why) =>
      reporter.rejected({ id: 0, remoteAddress: `${prefix}${client}`, localAddress }, why),
    onClosed: (info) =>
      reporter.closed({ id: 0, remoteAddress: `${prefix}${info.client}`, localAddress }, {
        sent: info.sent,
        received: info.received,
        durationMs: Math.round(performance.now() - info.since),
        ...(info.reason ? { reason: info.reason } : {}),
      }),
    onWarning: (text) => reporter.warning(text),
  };
}
