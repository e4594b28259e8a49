/**
 * The scheme registry: for each row of the scheme table (`schemes.ts`), the
 * module that connects, listens or opens its datagram socket — loaded when
 * the scheme is first opened (`import()`), so that a command loads only the
 * transports it uses (opening a TCP endpoint loads no raw-socket, Unix
 * datagram, WebSocket or proxy code). `open.ts` asks it for an endpoint's
 * opener; nothing else names a transport module.
 *
 * Adding a transport is its row in `schemes.ts`, its module (exporting an
 * {@linkcode StreamOpener} or {@linkcode DatagramOpener}) and its line here.
 *
 * @module
 */

import type { Endpoint } from "./address.ts";
import type { SchemeName } from "./schemes.ts";
import type { DatagramOpener, Opener, StreamOpener } from "./opener.ts";

export type { DatagramOpener, GroupOptions, OpenOptions, StreamOpener } from "./opener.ts";

// String-literal specifiers: `deno compile` and the npm bundle find them statically.
const OPENERS: { readonly [S in SchemeName]: () => Promise<Opener> } = {
  tcp: async () => (await import("./tcp_transport.ts")).tcp,
  tls: async () => (await import("./tcp_transport.ts")).tls,
  ws: async () => (await import("../protocols/websocket_transport.ts")).ws,
  wss: async () => (await import("../protocols/websocket_transport.ts")).wss,
  udp: async () => (await import("./udp_transport.ts")).udp,
  ip: async () => (await import("./ip_transport.ts")).ip,
  unixgram: async () => (await import("./unixgram_transport.ts")).unixgram,
  unix: async () => (await import("./unix_transport.ts")).unix,
};

/** The opener of an endpoint's scheme, its module loaded on first use. */
async function openerOf(endpoint: Endpoint): Promise<Opener> {
  const load = Object.hasOwn(OPENERS, endpoint.scheme)
    ? OPENERS[endpoint.scheme as SchemeName]
    : undefined;
  if (!load) throw new TypeError(`no transport module for the scheme "${endpoint.scheme}"`);
  return await load();
}

/**
 * How a stream endpoint connects and listens; `undefined` for a datagram one.
 *
 * @example Usage
 * ```ts
 * import { streamOpener } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(await streamOpener({ form: "host-port", scheme: "tcp", port: 80 }));
 * ```
 */
export async function streamOpener(endpoint: Endpoint): Promise<StreamOpener | undefined> {
  const opener = await openerOf(endpoint);
  return "dialer" in opener ? opener : undefined;
}

/**
 * How a datagram endpoint opens its socket; `undefined` for a stream one.
 *
 * @example Usage
 * ```ts
 * import { datagramOpener } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await datagramOpener({ form: "host-port", scheme: "tcp", port: 80 }), undefined);
 * ```
 */
export async function datagramOpener(endpoint: Endpoint): Promise<DatagramOpener | undefined> {
  const opener = await openerOf(endpoint);
  return "datagram" in opener ? opener : undefined;
}
