/**
 * The `ws://` and `wss://` rows' two halves: a dialer that upgrades what
 * the chain below it dialled (TCP, TLS, a proxy's tunnel), and a listener
 * whose accepted connections are upgraded by the accept loop, under its
 * handshake time limit, after TLS.
 *
 * @module
 */

import type { Endpoint, NetEndpoint } from "../net/address.ts";
import type { Dialer } from "../net/dial.ts";
import { formatHost } from "../net/ip.ts";
import type { Listener } from "../net/listener.ts";
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
  endpoint: Endpoint,
  options: { websocket?: WebSocketServerOptions; trace?: WebSocketServerOptions["trace"] },
): Listener {
  const path = (endpoint as NetEndpoint).resource?.split("?")[0];
  listener.upgrade = (conn, { signal }) =>
    untilAborted(
      signal ?? new AbortController().signal,
      conn,
      websocketServer(conn, { ...options.websocket, path, trace: options.trace }),
    );
  return listener;
}
