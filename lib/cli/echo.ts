/**
 * `sockit echo ENDPOINT`: an echo server that keeps accepting — the fixture
 * CI scripts start on port 0 and find through the `listening` event. A
 * connection is relayed into itself; a datagram socket sends each datagram
 * back to its sender.
 *
 * @module
 */

import type { SocketOptions } from "../net/conn.ts";
import { formatEndpoint, requireEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { DatagramSide, formatPeer } from "../net/datagram.ts";
import { exitCodeOf, toSockitError } from "../base/errors.ts";
import { openDatagram } from "../net/open.ts";
import { serve } from "../engine/server.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import { schemePrefix } from "../net/schemes.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import {
  LIFETIME_FLAG,
  SERVER_FLAGS,
  SERVER_SOCKET_FLAGS,
  TRAFFIC_FLAGS,
  WEBSOCKET_FLAGS,
} from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { openServer, serveOptions } from "./serve.ts";
import { TLS_SERVER_FLAGS, tlsServerFlags } from "./tls_flags.ts";
import type { TlsServerFlags } from "./tls_flags.ts";
import {
  datagramFlags,
  familyFlag,
  oneEndpoint,
  refuseFlags,
  serverLimits,
  socketFlags,
  websocketFlags,
} from "./values.ts";
import type { DatagramFlags, WebSocketCommandOptions } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/** Parsed options of `sockit echo`. */
export interface EchoCommandOptions extends GlobalOptions, ServerLimits {
  /** `--reuseport`, `--nodelay`, `--keepalive`. */
  sockets?: { socket: SocketOptions; reusePort: boolean };
  /** UDP: multicast groups to join (and their TTL and loop). */
  datagram?: DatagramFlags;
  /** Where to listen (with `--tls` applied). */
  endpoint: Endpoint;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** TLS server options, when the listener is TLS. */
  tls?: TlsServerFlags;
  /** WebSocket settings, for a `ws://` or `wss://` endpoint. */
  websocket?: WebSocketCommandOptions;
}

/** `sockit echo`. */
export const echoCommand: Command<EchoCommandOptions> = {
  name: "echo",
  noStdout: true,
  summary: "an echo server for TCP, Unix, TLS and UDP; keeps accepting",
  usage: "[options] ENDPOINT",
  description: `An echo server: every byte a client sends comes back to it. Keeps accepting,
clients at once. A client that half-closes gets all its data back, then EOF.
UDP: every datagram goes back to its sender.`,
  sections: [{
    title: "ENDPOINT",
    lines: [
      "0                  127.0.0.1, a free port (see -v / --json)",
      "[::1]:7            IPv6",
      "unix:/tmp/echo.sock",
      "udp://127.0.0.1:0",
      "tls://127.0.0.1:0  TLS (--cert/--key, or an ephemeral certificate)",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        ...SERVER_FLAGS,
        ["idle-timeout", "close a connection after DUR without data"],
        LIFETIME_FLAG,
        "ipv4",
        "ipv6",
      ],
    },
    { title: "TLS", flags: TLS_SERVER_FLAGS },
    { title: "WebSocket (ws://, wss://)", flags: WEBSOCKET_FLAGS },
    { title: "Socket options", flags: SERVER_SOCKET_FLAGS },
    { title: "UDP multicast", flags: ["multicast-join", "multicast-ttl", "multicast-loop"] },
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    'sockit echo 0 --json 2> events.jsonl &   # a fixture; read the port from "listening"',
    "sockit echo udp://127.0.0.1:9999 -v",
  ],
  parse({ values, positionals, globals }) {
    const given = oneEndpoint(positionals);
    const row = requireEndpoint(given, { role: "listen" }, "echo", positionals[0]);
    if (row.kind === "datagram") {
      refuseFlags(values, ["max-conns", "allow", "deny", "idle-timeout"], row);
    }
    const { endpoint, flags: tls } = tlsServerFlags(values, given);
    return {
      ...globals,
      sockets: socketFlags(values),
      datagram: datagramFlags(values, [endpoint], { listening: true }),
      endpoint,
      family: familyFlag(values, endpoint),
      ...serverLimits(values),
      tls,
      websocket: websocketFlags(values, [endpoint], "echo"),
    };
  },
  run: runEcho,
  deadline: (options) => options.lifetime,
};

/**
 * Runs `sockit echo` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runEcho(parseCommand(echoCommand, ["0", "-v"]), ctx);
 * ```
 */
export async function runEcho(options: EchoCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "echo");
  const endpoint = options.endpoint;
  try {
    if (transportOf(endpoint).kind === "datagram") {
      return await echoDatagrams(options, ctx, reporter);
    }
    using listener = await openServer(
      endpoint,
      {
        family: options.family,
        tls: options.tls,
        websocket: options.websocket,
        ...options.sockets,
      },
      reporter,
    );
    await serve(
      listener,
      (conn) =>
        transfer(conn, conn, {
          signal: ctx.signal,
          idleTimeout: options.idleTimeout,
          halfClose: [true, false],
          bufferSize: SERVER_BUFFER,
          events: reporter,
          report: (err) => reporter.warnFailure(err),
        }),
      serveOptions(options, ctx, reporter, options.tls, options.websocket),
    );
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "echo", formatEndpoint(endpoint));
  }
}

/** `echo udp://`: every datagram back to its sender, until a signal. */
async function echoDatagrams(
  options: EchoCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  const socket = await openDatagram(options.endpoint, "listen", {
    family: options.family,
    trace: reporter.traceFn,
    reusePort: options.sockets?.reusePort,
    ...options.datagram,
  });
  reporter.listening(socket.address, options.endpoint.scheme);
  const prefix = schemePrefix(transportOf(options.endpoint));
  const side = new DatagramSide(socket, {
    mode: "reply",
    prefix,
    op: "echo",
    // One sender that cannot be answered does not stop the server.
    onSendError: (err, peer) =>
      reporter.warning(toSockitError(err, "send", formatPeer(peer)).message),
  });
  // The socket's figures at exit: a `closed` event (and with --stats, its line).
  const code = await transfer(side, side, {
    signal: ctx.signal,
    closedName: `${prefix}${socket.address}`,
    events: reporter,
    // The socket failing is the command failing (one sender is only a warning: above).
    report: (err) => reporter.fail(err),
  });
  return code;
}
