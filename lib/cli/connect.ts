/**
 * `sockit connect ENDPOINT`: connect and bridge stdin/stdout (nc host port),
 * with send/expect checks, timeouts and retries.
 *
 * @module
 */

import { requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf, UsageError } from "../errors.ts";
import { connect, connectAddress } from "../stream.ts";
import type { SocketStream } from "../stream.ts";
import {
  countFlag,
  durationFlag,
  FAMILY_FLAGS,
  familyFlag,
  makeReporter,
  oneEndpoint,
  parseFlags,
  TRAFFIC_HELP,
} from "./args.ts";
import type { GlobalOptions } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { checkSendFile, prepareStdio, runSession, SEND_FLAGS, sendFlags } from "./session.ts";
import { runConnectUdp } from "./udp.ts";
import { TLS_CLIENT_FLAGS, tlsClientFlags, tlsClientOptions } from "./tls_flags.ts";
import type { TlsClientFlags } from "./tls_flags.ts";

/** Help text of `sockit connect`. */
export const CONNECT_HELP = `Usage: sockit connect [options] ENDPOINT

Connect and bridge the connection with stdin/stdout (nc host port). End of
stdin shuts down the write side (half-close) and the reply keeps flowing; the
session ends when the server closes its side, once everything is on stdout.

ENDPOINT
  8888               localhost:8888 (every address of localhost is tried)
  example.com:80     a host name: its addresses are tried one by one
  [::1]:8888         an IPv6 literal
  unix:/tmp/s.sock   a Unix socket
  tls://host:443     TLS, verified against the system's roots (or --tls with host:port)
  udp://host:53      UDP: each stdin read is one datagram; replies go to stdout;
                     an ICMP port unreachable is "connection refused" (needs
                     --allow-ffi for a connected socket)

Options
  --send TEXT        send TEXT instead of stdin (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH)
  --send-file PATH   send the file instead of stdin
  --expect REGEX     exit 0 as soon as the received text matches (JavaScript
                     regular expression, ^ and $ match at line ends); exit 1 if
                     the server closes first, 124 at --timeout
  --timeout DUR      limit for connecting and for the whole session (exit 124)
  --idle-timeout DUR end after DUR without data either way (exit 124); for
                     udp://, how long to wait for replies after the input
                     ended (default 2s; then exit 0)
  --retry N          try N more times when connecting fails
  --retry-delay DUR  pause between attempts (default 1s)
  --no-half-close    keep the write side open after end of stdin
  --tls              speak TLS (as with a tls:// endpoint)
  --cacert FILE      trust this PEM certificate too (repeatable; added to the system roots)
  --servername NAME  verify (and send as SNI) NAME instead of the host dialled
  --insecure         do not verify the server's certificate
  --alpn PROTO       offer this ALPN protocol (repeatable)
  -4, -6             resolve the host to IPv4 or IPv6 addresses only
  -v, --verbose      events on stderr: connected to, closed, retries
  -q, --quiet        no warnings or events
  --json             events as JSON lines on stderr
  --trace            socket calls on stderr: getaddrinfo, socket, connect, read, write
${TRAFFIC_HELP}
  --color WHEN       auto, always or never
  -h, --help         this help

Durations: 250ms, 2s, 1m; a bare number is seconds.

Examples
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect example.com:80
  sockit connect 127.0.0.1:6379 --send 'PING\\r\\n' --expect '^\\+PONG' --timeout 2s
  sockit connect unix:/tmp/app.sock < request.bin > reply.bin
  sockit connect 127.0.0.1:8888 --retry 10 --retry-delay 500ms
`;

/** Parsed options of `sockit connect`. */
export interface ConnectCommandOptions extends GlobalOptions {
  /** Where to connect. */
  endpoint: Endpoint;
  /** Bytes to send instead of stdin. */
  send?: Uint8Array;
  /** File to send instead of stdin. */
  sendFile?: string;
  /** Succeed when the received text matches. */
  expect?: RegExp;
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
}

/**
 * Parses the arguments of `sockit connect` (without the command name).
 *
 * @example Usage
 * ```ts
 * import { parseConnectArgs } from "./connect.ts";
 * import assert from "node:assert/strict";
 *
 * const options = parseConnectArgs(["--timeout", "2s", "127.0.0.1:6379", "--expect", "^\\+PONG"]);
 * assert.deepEqual(options.timeout, 2000);
 * assert.deepEqual(options.expect?.source, "^\\+PONG");
 * ```
 */
export function parseConnectArgs(argv: string[]): ConnectCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    ...SEND_FLAGS,
    expect: { type: "string" },
    timeout: { type: "string" },
    "idle-timeout": { type: "string" },
    retry: { type: "string" },
    "retry-delay": { type: "string" },
    "no-half-close": { type: "boolean" },
    ...FAMILY_FLAGS,
    ...TLS_CLIENT_FLAGS,
  });
  if (globals.help) {
    return { ...globals, endpoint: { transport: "tcp", port: 0 }, noHalfClose: false };
  }
  const endpoint = oneEndpoint(positionals);
  requireTransport(endpoint, ["tcp", "unix", "udp", "tls"], "connect");
  if (endpoint.transport !== "unix" && endpoint.port === 0) {
    throw new UsageError(`${positionals[0]}: port 0 only means "any free port" when listening`);
  }
  let expect: RegExp | undefined;
  if (typeof values.expect === "string") {
    try {
      expect = new RegExp(values.expect);
    } catch (err) {
      throw new UsageError(
        `option --expect: invalid regular expression ${JSON.stringify(values.expect)}: ` +
          (err as Error).message.replace(/^Invalid regular expression: /, ""),
      );
    }
  }
  return {
    ...globals,
    endpoint,
    ...sendFlags(values),
    expect,
    timeout: durationFlag(values, "timeout", true),
    idleTimeout: durationFlag(values, "idle-timeout", true),
    retry: countFlag(values, "retry"),
    retryDelay: durationFlag(values, "retry-delay"),
    noHalfClose: values["no-half-close"] === true,
    family: familyFlag(values, endpoint),
    tls: tlsClientFlags(values, endpoint),
  };
}

/**
 * Runs `sockit connect`: returns the exit code.
 *
 * @example Usage
 * ```ts ignore
 * import { memoryContext } from "./context.ts";
 * const code = await runConnect(parseConnectArgs(["127.0.0.1:8888"]), memoryContext({ stdin: "hi" }));
 * ```
 */
export async function runConnect(
  options: ConnectCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  const reporter = makeReporter(options, ctx, "connect");
  const endpoint = options.endpoint;
  if (endpoint.transport === "udp") {
    return await runConnectUdp({ ...options, endpoint }, ctx, reporter);
  }
  const trace = reporter.tracing ? reporter.trace.bind(reporter) : undefined;
  const address = connectAddress(options.endpoint, options.family);
  const startedAt = performance.now();
  let conn: SocketStream;
  try {
    await checkSendFile(options);
    const tls = options.tls ? tlsClientOptions(options.tls, reporter) : undefined;
    prepareStdio(options, ctx);
    conn = await connect(options.endpoint, {
      tls,
      family: options.family,
      timeout: options.timeout,
      retry: options.retry,
      retryDelay: options.retryDelay,
      signal: ctx.signal,
      trace,
      onAttemptFailed: (target, error, willRetry) =>
        reporter.info(`${error.message}${willRetry ? "; trying again" : ""}`, {
          address: target,
          code: error.code,
        }),
    });
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "connect", address);
  }
  reporter.connected(conn.id, conn.remoteAddress, conn.localAddress);
  if (conn.handshake) reporter.tls(conn.id, conn.remoteAddress, conn.handshake);
  return await runSession(conn, ctx, reporter, {
    send: options.send,
    sendFile: options.sendFile,
    expect: options.expect,
    halfClose: !options.noHalfClose,
    idleTimeout: options.idleTimeout,
    deadline: options.timeout !== undefined
      ? { ms: options.timeout, startedAt, op: "connect", address }
      : undefined,
  });
}
