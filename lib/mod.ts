/**
 * sockit as a library: the endpoint grammar, listeners and connections, and
 * the one relay that every sockit command is built on.
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

export {
  formatAddr,
  formatEndpoint,
  formatHost,
  hostOf,
  isIPv4,
  isIPv6,
  MAX_UNIX_PATH_BYTES,
  parseEndpoint,
  requireTransport,
} from "./address.ts";
export type { Endpoint, NetEndpoint, Role, Transport, UnixEndpoint } from "./address.ts";
export { cidrContains, ipToBigInt, parseCidr, refusal } from "./cidr.ts";
export type { AccessRules, Cidr } from "./cidr.ts";
export {
  bindDatagram,
  canConnectDatagram,
  connectDatagram,
  MAX_DATAGRAM,
  RECEIVE_BUFFER,
} from "./datagram.ts";
export type { DatagramOptions, DatagramSocket } from "./datagram.ts";
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
export { decodeEscapes } from "./escapes.ts";
export { checkRunPermission, ChildStream, connectionEnv, splitCommand } from "./exec.ts";
export type { ChildOptions } from "./exec.ts";
export { EXPECT_OVERLAP, EXPECT_WINDOW, ExpectMatcher } from "./expect.ts";
export { Fanout, Subscription } from "./fanout.ts";
export type { FanoutOptions } from "./fanout.ts";
export { formatBytes, formatDuration, formatRate } from "./format.ts";
export { hexDump, HexTap } from "./hexdump.ts";
export type { HexSink } from "./hexdump.ts";
export { listen, LISTEN_BACKLOG, Listener, UNIX_LISTEN_BACKLOG } from "./listener.ts";
export type { ListenOptions } from "./listener.ts";
export { Relay, relay, RelayError } from "./relay.ts";
export type { Direction, Duplex, RelayOptions } from "./relay.ts";
export { jsonLine, PROGRESS_INTERVAL, Reporter } from "./report.ts";
export type { ClosedInfo, Counted, ReporterOptions, TextSink } from "./report.ts";
export { formatPorts, parsePorts, PROBES_PER_WORKER, scan } from "./scan.ts";
export type { PortResult, ScanOptions } from "./scan.ts";
export { HANDSHAKE_TIMEOUT, serve } from "./server.ts";
export type { ConnectionHandler, ServeOptions } from "./server.ts";
export { StdinReader, StdoutWriter } from "./stdio.ts";
export type { ByteReader, ByteWriter, Input, Output } from "./stdio.ts";
export { connect, connectAddress, nextConnectionId, SocketStream, systemLookup } from "./stream.ts";
export type { ConnectOptions, Lookup, SocketStreamOptions } from "./stream.ts";
export {
  certificateInfo,
  connectInsecure,
  ephemeralCertificate,
  isTlsFailure,
  loadCaCerts,
  loadCertificate,
  serverHandshake,
  tlsFailure,
  upgradeClient,
} from "./tls.ts";
export type { CertificateInfo, HandshakeInfo, TlsCertificate, TlsClientOptions } from "./tls.ts";
export { addressFamily, failedCall } from "./trace.ts";
export type { TraceFn } from "./trace.ts";
export { waitFor } from "./wait.ts";
export type { WaitOptions, WaitResult } from "./wait.ts";
