/**
 * sockit as a library: the endpoint grammar and its transport table,
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

export { formatEndpoint, parseEndpoint } from "./address.ts";
export type { Endpoint, NetEndpoint, PathEndpoint, Role, Scheme } from "./address.ts";
export { parseCidr } from "./cidr.ts";
export type { AccessRules, Cidr } from "./cidr.ts";
export { Connection } from "./conn.ts";
export { DatagramSide } from "./datagram.ts";
export type {
  DatagramMode,
  DatagramSideOptions,
  DatagramSocket,
  MulticastOptions,
  PeerSession,
} from "./datagram.ts";
export { Dialogue } from "./dialogue.ts";
export type { PendingExpect, Step } from "./dialogue.ts";
export { httpExchange, parseHttpUrl } from "./http.ts";
export type { HttpRequest, HttpResponse, HttpTarget } from "./http.ts";
export { dialWithRetry, directDialer, tlsDialer, unixDialer } from "./dial.ts";
export type { AddressOpener, DialContext, Dialer, DialTarget, RetryOptions } from "./dial.ts";
export { parseDuration } from "./duration.ts";
export {
  ExitCode,
  exitCodeOf,
  SignalInterrupt,
  SockitError,
  TimeoutError,
  toSockitError,
  UsageError,
} from "./errors.ts";
export type { SockitErrorOptions } from "./errors.ts";
export type { ChunkTap, ClosedInfo, Counted, Events, PeerInfo } from "./events.ts";
export { ChildStream, splitCommand } from "./exec.ts";
export type { ChildOptions } from "./exec.ts";
export { formatAddr, formatHost, isIPv4, isIPv6 } from "./ip.ts";
export { Listener } from "./listener.ts";
export type { ListenerOptions, ServerTls } from "./listener.ts";
export { acceptTls, connectTls } from "./node_tls.ts";
export type { AcceptTlsOptions, SecuredConn } from "./node_tls.ts";
export { Pattern } from "./pattern.ts";
export type { PatternMatch } from "./pattern.ts";
export { connect, connectAddress, listen, openDatagram } from "./open.ts";
export type { ConnectOptions } from "./open.ts";
export { Relay, relay, RelayError } from "./relay.ts";
export type { Direction, Duplex, RelayOptions } from "./relay.ts";
export { systemLookup } from "./resolve.ts";
export type { Lookup } from "./resolve.ts";
export { ping } from "./ping.ts";
export type { IcmpSocketKind, PingEvent, PingOptions, PingSummary, RttSummary } from "./ping.ts";
export { formatPorts, parsePorts, scan } from "./scan.ts";
export type { PortResult, ScanOptions } from "./scan.ts";
export { serve } from "./server.ts";
export type { ConnectionHandler, ConnectionSlot, ServeOptions } from "./server.ts";
export { ephemeralCertificate } from "./tls.ts";
export type { CertificateInfo, HandshakeInfo, TlsCertificate, TlsClientOptions } from "./tls.ts";
export type { TraceFn } from "./trace.ts";
export { transfer } from "./transfer.ts";
export type { Peer, TransferOptions } from "./transfer.ts";
export { requireEndpoint, transportOf, TRANSPORTS } from "./transports.ts";
export type {
  AddressForm,
  DialerOptions,
  EndpointNeeds,
  OpenOptions,
  TlsSupport,
  Transport,
} from "./transports.ts";
export { traceroute } from "./traceroute.ts";
export type { Hop, Probe, TracerouteOptions, TracerouteResult } from "./traceroute.ts";
export { websocketClient, websocketServer, WebSocketSide } from "./websocket.ts";
export type {
  UpgradeInfo,
  WebSocketClientOptions,
  WebSocketMode,
  WebSocketOptions,
  WebSocketServerOptions,
} from "./websocket.ts";
export type { KeepaliveTimings, SocketOptions } from "./conn.ts";
export type { SourceAddress } from "./tcp_libc.ts";
export { waitFor } from "./wait.ts";
export type { StatusSet, WaitOptions, WaitResult, WaitTarget } from "./wait.ts";
