/**
 * What a transport module gives the scheme registry (`transports.ts`): how
 * one scheme connects, listens or opens a datagram socket — and the
 * options it is given: its row's option groups (`groups`, by the names the
 * scheme table lists), which the generic layers pass through without
 * looking inside. Types only: the registry and every transport module
 * import them, and nothing is loaded for them.
 *
 * @module
 */

import type { Endpoint, Role } from "./address.ts";
import type { Connection, SocketOptions } from "./conn.ts";
import type { DatagramSocket, MulticastOptions } from "./datagram.ts";
import type { Dialer } from "./dial.ts";
import type { Listener, ServerTls } from "./listener.ts";
import type { Lookup } from "./resolve.ts";
import type { SourceAddress } from "./tcp_libc.ts";
import type { TraceFn } from "../engine/trace.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import type { WebSocketGroupOptions } from "../protocols/websocket_options.ts";

/**
 * The options of the option groups, by group name: each transport takes
 * those of the groups its row lists (`schemes.ts`), and is given no other.
 */
export interface GroupOptions {
  /** TLS client settings (`--cacert`, `--servername`, `--insecure`, `--alpn`, a client certificate). */
  "tls-client"?: TlsClientOptions;
  /** The certificate a TLS server presents, its ALPN and the client CAs it asks for. */
  "tls-server"?: ServerTls;
  /** WebSocket settings of either end (the request target is the endpoint's). */
  websocket?: WebSocketGroupOptions;
  /** TCP options of each connection (`--nodelay`, `--keepalive`, `--ttl`). */
  socket?: SocketOptions;
  /** SO_REUSEPORT on a server's socket (`--reuseport`). */
  reuseport?: true;
  /** A client's own address or path (`--source`). */
  source?: SourceAddress;
  /** UDP multicast settings. */
  multicast?: MulticastOptions;
  /** SO_BROADCAST on a UDP client (`--broadcast`). */
  broadcast?: true;
  /** The dialer of the proxy a client reaches its target through (`--proxy`). */
  proxy?: Dialer<Connection>;
}

/** What a transport's listener and datagram socket may use. */
export interface OpenOptions {
  /** For the port-only form or a host name: IPv4 (`4`) or IPv6 (`6`). */
  family?: 4 | 6;
  /** The resolver for host names (tests inject one). */
  lookup?: Lookup;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /**
   * Called when a Unix socket file left by a process that is gone was
   * removed so that the path could be bound again.
   */
  onStaleSocket?: (path: string) => void;
  /** The options of the row's groups. */
  groups?: GroupOptions;
}

/** How a stream transport connects and listens. */
export interface StreamOpener {
  /**
   * The dialer chain for `endpoint` on top of `base` (the direct dialer, or
   * a tunnel), with the options of the row's groups.
   */
  dialer(base: Dialer<Connection>, endpoint: Endpoint, groups: GroupOptions): Dialer;
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
