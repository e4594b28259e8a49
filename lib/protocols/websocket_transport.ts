/**
 * The `ws://` and `wss://` transports: a dialer that upgrades what the
 * chain below it dialled (TCP, TLS, a proxy's tunnel), and a listener whose
 * accepted connections are upgraded by the accept loop, under its
 * handshake time limit, after TLS.
 *
 * @module
 */

import type { UrlEndpoint } from "../net/address.ts";
import type { Dialer } from "../net/dial.ts";
import { formatHost } from "../net/ip.ts";
import type { Listener } from "../net/listener.ts";
import type { GroupOptions, StreamOpener } from "../net/opener.ts";
import { listenIp, tcpBelow, tlsOver } from "../net/tcp_transport.ts";
import type { TraceFn } from "../engine/trace.ts";
import { untilAborted } from "./socks.ts";
import { websocketClient, websocketServer } from "./websocket.ts";
import type { WebSocketClientOptions, WebSocketServerOptions } from "./websocket.ts";

/**
 * A dialer that speaks WebSocket over what `inner` dials: the upgrade
 * request goes to `options.resource` with `Host` from the target.
 *
 * @example Usage
 * ```ts ignore
 * const dial = websocketDialer(directDialer(), { host: "", resource: "/chat" });
 * ```
 */
export function websocketDialer(inner: Dialer, options: WebSocketClientOptions): Dialer {
  return async (target, ctx) => {
    const conn = await inner(target, ctx);
    const host = "path" in target
      ? "localhost"
      : options.host || `${formatHost(target.host)}:${target.port}`;
    try {
      return await untilAborted(
        ctx.signal,
        conn,
        websocketClient(conn, { ...options, host, trace: ctx.trace }),
      );
    } catch (err) {
      conn.close();
      throw err;
    }
  };
}

/**
 * Makes `listener` upgrade each accepted connection to a WebSocket on the
 * endpoint's path (any path when it has none).
 */
export function websocketListener(
  listener: Listener,
  endpoint: UrlEndpoint,
  options: { websocket?: WebSocketServerOptions; trace?: TraceFn },
): Listener {
  const path = endpoint.resource?.split("?")[0];
  listener.upgrade = {
    title: "WebSocket",
    open: (conn, { signal }) =>
      untilAborted(
        signal ?? new AbortController().signal,
        conn,
        websocketServer(conn, { ...options.websocket, path, trace: options.trace }),
      ),
  };
  return listener;
}

/** The client options of a `ws://`/`wss://` endpoint: its request target, any `Host`. */
function clientOptions(endpoint: UrlEndpoint, groups: GroupOptions): WebSocketClientOptions {
  return { ...groups.websocket, host: "", resource: endpoint.resource ?? "/" };
}

/** `ws://`: WebSocket over the chain; a TCP listener that upgrades. */
export const ws: StreamOpener = {
  dialer: (base, endpoint, groups) =>
    websocketDialer(tcpBelow(base, groups), clientOptions(endpoint as UrlEndpoint, groups)),
  listen: async (endpoint, options) =>
    websocketListener(
      await listenIp(endpoint as UrlEndpoint, options),
      endpoint as UrlEndpoint,
      { websocket: options.groups?.websocket, trace: options.trace },
    ),
};

/** `wss://`: WebSocket over TLS over the chain; a TLS listener that upgrades. */
export const wss: StreamOpener = {
  dialer: (base, endpoint, groups) =>
    websocketDialer(tlsOver(base, groups), clientOptions(endpoint as UrlEndpoint, groups)),
  listen: async (endpoint, options) =>
    websocketListener(
      await listenIp(endpoint as UrlEndpoint, options, "wss:// listener"),
      endpoint as UrlEndpoint,
      { websocket: options.groups?.websocket, trace: options.trace },
    ),
};
