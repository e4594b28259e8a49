/**
 * sockit as a library: the endpoint grammar and its scheme table,
 * connecting, listening and datagram sockets, the one relay and the
 * transfer engine built on it, servers, `waitFor` and `scan` — what a Deno
 * script needs to start a service, wait for it and talk to it. See
 * `docs/ARCHITECTURE.md` for how the pieces fit.
 *
 * @example Echo one connection
 * ```ts
 * import { connect, listen, parseEndpoint, relay } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = await listen(parseEndpoint("127.0.0.1:0"));
 * const port = (listener.addr as Deno.NetAddr).port;
 * const client = await connect(parseEndpoint(`127.0.0.1:${port}`));
 * const server = await listener.accept();
 * listener.close();
 * const echoed = relay(server, server, { endOnEof: "a", halfClose: [true, false] });
 * await client.write(new TextEncoder().encode("ping"));
 * await client.closeWrite();
 * const buf = new Uint8Array(16);
 * const n = await client.read(buf);
 * assert.deepEqual(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "ping");
 * await echoed;
 * client.close();
 * ```
 *
 * @module
 */

export { formatEndpoint, parseEndpoint, requireEndpoint, transportOf } from "./net/address.ts";
export type {
  Endpoint,
  EndpointNeeds,
  HostPortEndpoint,
  HostProtocolEndpoint,
  NetEndpoint,
  PathEndpoint,
  UrlEndpoint,
} from "./net/address.ts";
export { parseCidr } from "./net/cidr.ts";
export type { AccessRules, Cidr } from "./net/cidr.ts";
export { Connection } from "./net/conn.ts";
export { StreamLayer } from "./net/stream.ts";
export type { Stream } from "./net/stream.ts";
export { DatagramSide } from "./net/datagram.ts";
export type {
  ChildAddress,
  DatagramSideOptions,
  DatagramSocket,
  IpProtocolAddress,
  MulticastOptions,
  PeerAddress,
} from "./net/datagram.ts";
export { DatagramListener, DatagramPeer } from "./net/datagram_listener.ts";
export type {
  DatagramListenerOptions,
  FollowOptions,
  PeerSession,
} from "./net/datagram_listener.ts";
export type { InetAddress, UnixAddress } from "./sys/sockaddr.ts";
export { Dialogue } from "./engine/dialogue.ts";
export type { PendingExpect, Step } from "./engine/dialogue.ts";
export { httpExchange, parseHttpUrl } from "./protocols/http.ts";
export type { HttpRequest, HttpResponse, HttpTarget } from "./protocols/http.ts";
export { dialWithRetry, directDialer, tlsDialer, unixDialer } from "./net/dial.ts";
export type { AddressOpener, DialContext, Dialer, DialTarget, RetryOptions } from "./net/dial.ts";
export { parseDuration } from "./base/duration.ts";
export {
  ExitCode,
  exitCodeOf,
  SignalInterrupt,
  SockitError,
  TimeoutError,
  toSockitError,
  UsageError,
} from "./base/errors.ts";
export type { SockitErrorOptions } from "./base/errors.ts";
export { reportLayers } from "./engine/events.ts";
export type {
  ChunkTap,
  ClosedInfo,
  Counted,
  Events,
  LayerEnd,
  LayerInfo,
  LayerReport,
  PeerInfo,
} from "./engine/events.ts";
export { ChildStream, splitCommand } from "./tools/exec.ts";
export type { ChildOptions } from "./tools/exec.ts";
export { formatAddr, formatHost, isIPv4, isIPv6 } from "./net/ip.ts";
export { Listener } from "./net/listener.ts";
export type { ListenerOptions, ListenerUpgrade, ServerTls } from "./net/listener.ts";
export { acceptTls, connectTls } from "./protocols/node_tls.ts";
export type { AcceptTlsOptions, SecuredConn } from "./protocols/node_tls.ts";
export { Pattern } from "./engine/pattern.ts";
export type { PatternMatch } from "./engine/pattern.ts";
export {
  connect,
  connectAddress,
  connectPeer,
  listen,
  listenPeers,
  openDatagram,
} from "./net/open.ts";
export type { ConnectOptions, ConnectPeerOptions, ListenPeersOptions } from "./net/open.ts";
export { Relay, relay, RelayError } from "./engine/relay.ts";
export type { Direction, Duplex, RelayOptions } from "./engine/relay.ts";
export { systemLookup } from "./net/resolve.ts";
export type { Lookup } from "./net/resolve.ts";
export { ping } from "./tools/ping.ts";
export type {
  IcmpSocketKind,
  PingEvent,
  PingOptions,
  PingSummary,
  RttSummary,
} from "./tools/ping.ts";
export { formatPorts, parsePorts, scan } from "./tools/scan.ts";
export type { PortResult, ScanOptions } from "./tools/scan.ts";
export { serve } from "./engine/server.ts";
export type {
  Client,
  ConnectionHandler,
  ConnectionSlot,
  ServeOptions,
  ServerListener,
} from "./engine/server.ts";
export { ephemeralCertificate } from "./protocols/tls.ts";
export type {
  CertificateInfo,
  HandshakeInfo,
  TlsCertificate,
  TlsClientOptions,
} from "./protocols/tls.ts";
export { TlsStream } from "./protocols/tls_stream.ts";
export type { TraceFn } from "./engine/trace.ts";
export { transfer } from "./engine/transfer.ts";
export type { Peer, TransferOptions } from "./engine/transfer.ts";
export { SCHEMES } from "./net/schemes.ts";
export type {
  AddressForm,
  GroupName,
  Role,
  Scheme,
  SchemeDescriptor,
  TlsSupport,
} from "./net/schemes.ts";
export type { GroupOptions, OpenOptions } from "./net/transports.ts";
export { traceroute } from "./tools/traceroute.ts";
export type { Hop, Probe, TracerouteOptions, TracerouteResult } from "./tools/traceroute.ts";
export { websocketClient, websocketServer, WebSocketSide } from "./protocols/websocket.ts";
export type {
  UpgradeInfo,
  WebSocketClientOptions,
  WebSocketMode,
  WebSocketOptions,
  WebSocketServerOptions,
} from "./protocols/websocket.ts";
export type { WebSocketGroupOptions } from "./protocols/websocket_options.ts";
export type { KeepaliveTimings, SocketOptions, StreamSocket } from "./net/conn.ts";
export type { SourceAddress } from "./net/tcp_libc.ts";
export { waitFor } from "./tools/wait.ts";
export type { StatusSet, WaitOptions, WaitResult, WaitTarget } from "./tools/wait.ts";
