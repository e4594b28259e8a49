/**
 * What a transport module gives the scheme registry (`transports.ts`): how
 * one scheme connects, listens or opens a datagram socket, and the options
 * these take. Types only: the registry and every transport module import
 * them, and nothing is loaded for them.
 *
 * @module
 */

import type { Endpoint, Role } from "./address.ts";
import type { Connection, SocketOptions } from "./conn.ts";
import type { DatagramSocket, MulticastOptions } from "./datagram.ts";
import type { Dialer } from "./dial.ts";
import type { Listener, ListenerOptions } from "./listener.ts";
import type { Lookup } from "./resolve.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import type { WebSocketClientOptions, WebSocketServerOptions } from "../protocols/websocket.ts";

/** What the dialers of a transport may use. */
export interface DialerOptions {
  /** TLS client settings (`--cacert`, `--servername`, `--insecure`, `--alpn`). */
  tls?: TlsClientOptions;
  /** WebSocket settings, for `ws://` and `wss://` (the request target is the endpoint's). */
  websocket?: Omit<WebSocketClientOptions, "host" | "resource">;
  /** The client's socket options: with `source`, the TCP socket is node's, so TLS is node's too. */
  socket?: SocketOptions;
}

/** What a transport's listener and datagram socket may use. */
export interface OpenOptions extends ListenerOptions {
  /** WebSocket settings, for a `ws://` or `wss://` listener. */
  websocket?: WebSocketServerOptions;
  /** For the port-only form or a host name: IPv4 (`4`) or IPv6 (`6`). */
  family?: 4 | 6;
  /** The resolver for host names (tests inject one). */
  lookup?: Lookup;
  /** UDP multicast settings. */
  multicast?: MulticastOptions;
  /** SO_BROADCAST for a UDP client (`--broadcast`). */
  broadcast?: boolean;
}

/** How a stream transport connects and listens. */
export interface StreamOpener {
  /** The dialer chain for `endpoint` on top of `base` (the direct dialer, or a proxy). */
  dialer(base: Dialer<Connection>, endpoint: Endpoint, options: DialerOptions): Dialer;
  /** Binds and listens. */
  listen(endpoint: Endpoint, options: OpenOptions): Promise<Listener>;
}

/** How a datagram transport opens its socket. */
export interface DatagramOpener {
  /** A socket bound for `listen`, or talking to one peer for `connect`. */
  datagram(endpoint: Endpoint, role: Role, options: OpenOptions): Promise<DatagramSocket>;
}

/** What a transport module registers for a scheme. */
export type Opener = StreamOpener | DatagramOpener;
