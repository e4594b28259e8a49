/**
 * `sockit connect ENDPOINT`: connect and bridge stdin/stdout (nc host port),
 * with send/expect checks, timeouts and retries. A datagram endpoint gets
 * a connected socket: each read of stdin is one datagram, and after the
 * input ends the replies are awaited until they pause.
 *
 * @module
 */

import { requireEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { canConnectDatagram, DatagramSide } from "../net/datagram.ts";
import { exitCodeOf, UsageError } from "../base/errors.ts";
import { formatDuration } from "../base/format.ts";
import { connect, connectAddress, connectDeadline, openDatagram } from "../net/open.ts";
import type { Step } from "../engine/dialogue.ts";
import { reportLayers } from "../engine/events.ts";
import type { SocketOptions } from "../net/conn.ts";
import { checkSendFiles, sendFiles } from "../engine/payload.ts";
import { proxyDialer } from "../protocols/proxy.ts";
import type { ProxySpec } from "../protocols/proxy.ts";
import { schemePrefix } from "../net/schemes.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { CLIENT_SOCKET_FLAGS, TRAFFIC_FLAGS, WEBSOCKET_FLAGS } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { prepareStdio, runSession } from "./session.ts";
import { TLS_CLIENT_FLAGS, tlsClientFlags, tlsClientOptions } from "./tls_flags.ts";
import type { TlsClientFlags } from "./tls_flags.ts";
import {
  countFlag,
  datagramFlags,
  dialogueSteps,
  durationFlag,
  familyFlag,
  oneEndpoint,
  proxyFlag,
  socketFlags,
  sourceFamily,
  websocketFlags,
} from "./values.ts";
import type { DatagramFlags, WebSocketCommandOptions } from "./values.ts";

/** How long `connect udp://` waits for replies after its input ended, by default. */
export const UDP_REPLY_WAIT = 2000;

/** Parsed options of `sockit connect`. */
export interface ConnectCommandOptions extends GlobalOptions {
  /** Where to connect (with `--tls` applied). */
  endpoint: Endpoint;
  /** The `--send`/`--send-file`/`--expect` dialogue, in order. */
  steps?: Step[];
  /** `--send-only`: never read the socket. */
  sendOnly: boolean;
  /** `--recv-only`: never read stdin. */
  recvOnly: boolean;
  /** `--crlf`: input LF as CRLF. */
  crlf?: boolean;
  /** Give up connecting after this many ms (the session may go on longer). */
  connectTimeout?: number;
  /** After the input ends, end once the server has been quiet this long (nc's `-q`). */
  quitAfterInput?: number;
  /** Connect and overall timeout in ms. */
  timeout?: number;
  /** Idle timeout in ms. */
  idleTimeout?: number;
  /** More attempts after the first. */
  retry?: number;
  /** Pause between attempts in ms. */
  retryDelay?: number;
  /** Keep the write side open at end of stdin. */
  noHalfClose: boolean;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** TLS client options, when the connection is TLS. */
  tls?: TlsClientFlags;
  /** `--proxy`: reach the endpoint through this proxy. */
  proxy?: ProxySpec;
  /** WebSocket settings, for a `ws://` or `wss://` endpoint. */
  websocket?: WebSocketCommandOptions;
  /** `--nodelay`, `--keepalive`. */
  socket?: SocketOptions;
  /** UDP: multicast TTL and loop, `--broadcast`. */
  datagram?: DatagramFlags;
}

/** `sockit connect`. */
export const connectCommand: Command<ConnectCommandOptions> = {
  name: "connect",
  summary: "connect; bridge the connection with stdin/stdout",
  usage: "[options] ENDPOINT",
  description: `Connect and bridge the connection with stdin/stdout (nc host port). End of
stdin shuts down the write side (half-close) and the reply keeps flowing; the
session ends when the server closes its side, once everything is on stdout.`,
  sections: [{
    title: "ENDPOINT",
    lines: [
      "8888               localhost:8888 (every address of localhost is tried)",
      "example.com:80     a host name: its addresses are tried one by one",
      "[::1]:8888         an IPv6 literal",
      "host:http          a service name for the port (/etc/services)",
      "unix:/tmp/s.sock   a Unix socket",
      "tls://host:443     TLS, verified against the system's roots (or --tls with host:port)",
      "udp://host:53      UDP: each stdin read is one datagram; replies go to stdout;",
      '                   an ICMP port unreachable is "connection refused" (needs',
      "                   --allow-ffi for a connected socket)",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        "send",
        "send-file",
        "expect",
        "send-only",
        "recv-only",
        "crlf",
        "timeout",
        ["connect-timeout", "give up connecting after DUR; the session may go on (nc's -w)"],
        [
          "idle-timeout",
          "end after DUR without data either way (exit 124); for udp://, how long to wait " +
          "for replies after the input ended (default 2s; then exit 0)",
        ],
        "retry",
        "retry-delay",
        "no-half-close",
        "proxy",
        "ipv4",
        "ipv6",
      ],
    },
    { title: "TLS", flags: TLS_CLIENT_FLAGS },
    { title: "WebSocket (ws://, wss://)", flags: WEBSOCKET_FLAGS },
    { title: "Socket options", flags: CLIENT_SOCKET_FLAGS },
    {
      title: "UDP multicast and broadcast",
      flags: ["multicast-ttl", "multicast-loop", "broadcast"],
    },
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect example.com:80",
    "sockit connect 127.0.0.1:6379 --send 'PING\\r\\n' --expect '^\\+PONG' --timeout 2s",
    "sockit connect unix:/tmp/app.sock < request.bin > reply.bin",
    "sockit connect 127.0.0.1:8888 --retry 10 --retry-delay 500ms",
    "sockit connect --proxy socks5h://127.0.0.1:1080 example.com:22   (ssh ProxyCommand)",
  ],
  parse({ values, positionals, globals, sequence }) {
    const given = oneEndpoint(positionals);
    requireEndpoint(given, { role: "connect" }, "connect", positionals[0]);
    if ("port" in given && given.port === 0) {
      throw new UsageError(`${positionals[0]}: port 0 only means "any free port" when listening`);
    }
    const { endpoint, flags: tls } = tlsClientFlags(values, given);
    const { socket } = socketFlags(values, endpoint);
    const steps = dialogueSteps(sequence);
    const sendOnly = values["send-only"] === true;
    const recvOnly = values["recv-only"] === true;
    if (sendOnly && recvOnly) {
      throw new UsageError("options --send-only and --recv-only contradict each other");
    }
    if (sendOnly && steps?.some((s) => "expect" in s)) {
      throw new UsageError(
        "options --send-only and --expect contradict each other (--send-only never reads)",
      );
    }
    if (recvOnly && steps?.some((s) => !("expect" in s))) {
      throw new UsageError("options --recv-only and --send/--send-file contradict each other");
    }
    return {
      ...globals,
      endpoint,
      steps,
      sendOnly,
      recvOnly,
      crlf: values.crlf === true,
      connectTimeout: durationFlag(values, "connect-timeout", true),
      timeout: durationFlag(values, "timeout", true),
      idleTimeout: durationFlag(values, "idle-timeout", true),
      retry: countFlag(values, "retry"),
      retryDelay: durationFlag(values, "retry-delay"),
      noHalfClose: values["no-half-close"] === true,
      family: sourceFamily(socket.source, familyFlag(values, endpoint)),
      tls,
      proxy: proxyFlag(values, endpoint),
      websocket: websocketFlags(values, [endpoint], "text"),
      socket,
      datagram: datagramFlags(values, [endpoint]),
    };
  },
  run: runConnect,
};

/**
 * Runs `sockit connect`: returns the exit code.
 *
 * @example Usage
 * ```ts ignore
 * import { memoryContext } from "./context.ts";
 * const code = await runConnect(parseCommand(connectCommand, ["127.0.0.1:8888"]), memoryContext({ stdin: "hi" }));
 * ```
 */
export async function runConnect(
  options: ConnectCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  using reporter = makeReporter(options, ctx, "connect");
  const address = connectAddress(options.endpoint, options.family);
  // One clock for connecting and the whole session.
  using deadline = connectDeadline(options.timeout, address, ctx.signal);
  try {
    await checkSendFiles(sendFiles(options.steps));
    return transportOf(options.endpoint).kind === "datagram"
      ? await connectDatagram(options, ctx, reporter, deadline.signal, address)
      : await connectStream(options, ctx, reporter, deadline.signal);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    if (deadline.expired) return reporter.fail(deadline.signal.reason);
    return reporter.fail(err, "connect", address);
  }
}

async function connectStream(
  options: ConnectCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
  signal: AbortSignal,
): Promise<number> {
  const tls = options.tls ? tlsClientOptions(options.tls, reporter) : undefined;
  prepareStdio(options, ctx);
  if (options.proxy) {
    reporter.info(`through the proxy ${options.proxy.text}`, { proxy: options.proxy.text });
  }
  const conn = await connect(options.endpoint, {
    tls,
    base: options.proxy ? proxyDialer(options.proxy) : undefined,
    websocket: options.websocket,
    socket: options.socket,
    timeout: options.connectTimeout,
    family: options.family,
    retry: options.retry,
    retryDelay: options.retryDelay,
    signal,
    trace: reporter.traceFn,
    onAttemptFailed: (target, error, willRetry) =>
      reporter.info(`${error.message}${willRetry ? "; trying again" : ""}`, {
        address: target,
        code: error.code,
      }),
  });
  reporter.connected(conn);
  reportLayers(reporter, conn);
  return await runSession(conn, ctx, reporter, {
    signal,
    steps: options.steps,
    sendOnly: options.sendOnly,
    recvOnly: options.recvOnly,
    crlf: options.crlf,
    quitAfterInput: options.quitAfterInput,
    idleTimeout: options.idleTimeout,
    role: "connect",
    halfClose: [true, !options.noHalfClose],
  });
}

async function connectDatagram(
  options: ConnectCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
  signal: AbortSignal,
  address: string,
): Promise<number> {
  const socket = await openDatagram(options.endpoint, "connect", {
    family: options.family,
    trace: reporter.traceFn,
    socket: options.socket,
    ...options.datagram,
  });
  if (!canConnectDatagram()) {
    reporter.info(
      "without --allow-ffi the UDP socket is not connected: an ICMP port unreachable (connection refused) goes unnoticed",
    );
  }
  const side = new DatagramSide(socket, {
    mode: "connected",
    prefix: schemePrefix(transportOf(options.endpoint)),
    op: "connect",
    peerName: address,
  });
  reporter.connected(side);
  // After the input ends, replies are awaited until they pause (the idle time).
  const code = await runSession(side, ctx, reporter, {
    signal,
    steps: options.steps,
    recvOnly: options.recvOnly,
    endOnEof: "b",
    linger: options.idleTimeout ?? UDP_REPLY_WAIT,
    noMatch: `within ${formatDuration(options.idleTimeout ?? UDP_REPLY_WAIT)} of the last datagram`,
    maxRecord: side.maxDatagram,
  });
  return code;
}
