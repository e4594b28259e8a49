/**
 * The `tcp://` and `tls://` transports: a TCP dialer (the chain below it:
 * direct, or a proxy's tunnel) with TLS on top for `tls://`, and a TCP
 * listener (serving TLS for `tls://`).
 *
 * @module
 */

import type { HostPortEndpoint, UrlEndpoint } from "./address.ts";
import type { Connection } from "./conn.ts";
import { nodeTlsDialer, tlsDialer } from "./dial.ts";
import type { Dialer } from "./dial.ts";
import { UsageError } from "../base/errors.ts";
import { formatHost } from "./ip.ts";
import { listenTcp } from "./listener.ts";
import type { Listener } from "./listener.ts";
import type { GroupOptions, OpenOptions, StreamOpener } from "./opener.ts";
import { bindHost } from "./resolve.ts";

/**
 * What a TCP row dials over: the proxy's tunnel (`--proxy`) or `base`, with
 * the connection's socket options and `--source` given to the dial.
 *
 * @example Usage
 * ```ts ignore
 * const dial = tcpBelow(directDialer(), { socket: { nodelay: true } });
 * ```
 */
export function tcpBelow(base: Dialer<Connection>, groups: GroupOptions): Dialer<Connection> {
  const below = groups.proxy ?? base;
  if (!groups.socket && !groups.source) return below;
  const socket = { ...groups.socket, ...(groups.source ? { source: groups.source } : {}) };
  return (target, ctx) => below(target, { ...ctx, socket });
}

/**
 * TLS on top of `base`: Deno's TLS verifies over a Deno socket; node:tls
 * does what it cannot (--insecure, a client certificate, TLS over the libc
 * socket that --source needs).
 *
 * @example Usage
 * ```ts ignore
 * const dial = tlsOver(directDialer(), { "tls-client": { serverName: "example.com" } });
 * ```
 */
export function tlsOver(base: Dialer<Connection>, groups: GroupOptions): Dialer {
  const tls = groups["tls-client"] ?? {};
  const below = tcpBelow(base, groups);
  return tls.insecure || tls.cert || groups.source
    ? nodeTlsDialer(below, tls)
    : tlsDialer(below, tls);
}

/**
 * A TCP listener on an IP endpoint, for its scheme; with `secure` (what its
 * listener is called: `TLS listener`) it serves TLS, which needs a
 * certificate and key in `options.tls`.
 *
 * @example Usage
 * ```ts ignore
 * using listener = await listenIp({ form: "host-port", scheme: "tcp", port: 0 }, {});
 * ```
 */
export async function listenIp(
  endpoint: HostPortEndpoint | UrlEndpoint,
  options: OpenOptions,
  secure?: string,
): Promise<Listener> {
  const host = await bindHost(endpoint, options);
  const groups = options.groups ?? {};
  const tls = groups["tls-server"];
  if (secure && !tls) {
    throw new UsageError(
      `${formatHost(host)}:${endpoint.port}: a ${secure} needs a certificate and key`,
    );
  }
  return listenTcp(host, endpoint.port, {
    scheme: endpoint.scheme,
    trace: options.trace,
    reusePort: groups.reuseport,
    socket: groups.socket,
    tls: secure ? tls : undefined,
  });
}

/** `tcp://`: the chain as it is; a TCP listener. */
export const tcp: StreamOpener = {
  dialer: (base, _endpoint, groups) => tcpBelow(base, groups),
  listen: (endpoint, options) => listenIp(endpoint as HostPortEndpoint, options),
};

/** `tls://`: TLS over the chain; a TLS listener. */
export const tls: StreamOpener = {
  dialer: (base, _endpoint, groups) => tlsOver(base, groups),
  listen: (endpoint, options) => listenIp(endpoint as HostPortEndpoint, options, "TLS listener"),
};
