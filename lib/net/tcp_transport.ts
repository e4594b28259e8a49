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
import type { DialerOptions, OpenOptions, StreamOpener } from "./opener.ts";
import { bindHost } from "./resolve.ts";

/**
 * TLS on top of `base`: Deno's TLS verifies over a Deno socket; node:tls
 * does what it cannot (--insecure, a client certificate, TLS over the libc
 * socket that --source needs).
 *
 * @example Usage
 * ```ts ignore
 * const dial = tlsOver(directDialer(), { tls: { serverName: "example.com" } });
 * ```
 */
export function tlsOver(base: Dialer<Connection>, options: DialerOptions): Dialer {
  return options.tls?.insecure || options.tls?.cert || options.socket?.source
    ? nodeTlsDialer(base, options.tls ?? {})
    : tlsDialer(base, options.tls ?? {});
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
  if (secure && !options.tls) {
    throw new UsageError(
      `${formatHost(host)}:${endpoint.port}: a ${secure} needs a certificate and key`,
    );
  }
  return listenTcp(host, endpoint.port, {
    ...options,
    scheme: endpoint.scheme,
    tls: secure ? options.tls : undefined,
  });
}

/** `tcp://`: the chain as it is; a TCP listener. */
export const tcp: StreamOpener = {
  dialer: (base) => base,
  listen: (endpoint, options) => listenIp(endpoint as HostPortEndpoint, options),
};

/** `tls://`: TLS over the chain; a TLS listener. */
export const tls: StreamOpener = {
  dialer: (base, _endpoint, options) => tlsOver(base, options),
  listen: (endpoint, options) => listenIp(endpoint as HostPortEndpoint, options, "TLS listener"),
};
