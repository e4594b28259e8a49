/**
 * `sockit connect ENDPOINT`: connect and bridge stdin/stdout (nc host port),
 * with send/expect checks, timeouts and retries. A datagram endpoint gets
 * a connected socket: each read of stdin is one datagram, and after the
 * input ends the replies are awaited until they pause (the session's rule
 * for a peer without half-close).
 *
 * @module
 */

import { requireEndpoint } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { exitCodeOf, UsageError } from "../base/errors.ts";
import { connectAddress, connectDeadline, connectPeer } from "../net/open.ts";
import type { Step } from "../engine/dialogue.ts";
import { reportLayers } from "../engine/events.ts";
import { checkSendFiles, sendFiles } from "../engine/payload.ts";
import { sourceFamily } from "../net/socket_options.ts";
import { PROXY_GROUP } from "../protocols/proxy_options.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { TRAFFIC_FLAGS } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import { prepareGroups } from "./groups.ts";
import type { ParsedGroups } from "./groups.ts";
import { CLIENT_SECTIONS } from "./sections.ts";
import { prepareStdio, runSession } from "./session.ts";
import { dialogueSteps, familyFlag, oneEndpoint } from "./values.ts";

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
  /** The options of the endpoint's groups (TLS, WebSocket, socket options, `--proxy`, …). */
  groups: ParsedGroups;
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
      groups: [PROXY_GROUP],
    },
    ...CLIENT_SECTIONS,
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit connect example.com:80",
    "sockit connect 127.0.0.1:6379 --send 'PING\\r\\n' --expect '^\\+PONG' --timeout 2s",
    "sockit connect unix:/tmp/app.sock < request.bin > reply.bin",
    "sockit connect 127.0.0.1:8888 --retry 10 --retry-delay 500ms",
    "sockit connect --proxy socks5h://127.0.0.1:1080 example.com:22   (ssh ProxyCommand)",
  ],
  endpoints(positionals) {
    const endpoint = oneEndpoint(positionals);
    requireEndpoint(endpoint, { role: "connect" }, "connect", positionals[0]);
    if ("port" in endpoint && endpoint.port === 0) {
      throw new UsageError(`${positionals[0]}: port 0 only means "any free port" when listening`);
    }
    return [{ endpoint, role: "connect", text: positionals[0] }];
  },
  parse({ values, globals, sequence, endpoints: [target] }) {
    return {
      ...globals,
      endpoint: target.endpoint,
      steps: dialogueSteps(sequence),
      sendOnly: values["send-only"] === true,
      recvOnly: values["recv-only"] === true,
      crlf: values.crlf === true,
      connectTimeout: values["connect-timeout"],
      timeout: values.timeout || undefined,
      idleTimeout: values["idle-timeout"],
      retry: values.retry,
      retryDelay: values["retry-delay"],
      noHalfClose: values["no-half-close"] === true,
      family: sourceFamily(target.groups.source, familyFlag(values, target.endpoint)),
      groups: target.groups,
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
    const { groups } = await prepareGroups(options.groups, { reporter, role: "connect" });
    prepareStdio(options, ctx);
    const conn = await connectPeer(options.endpoint, {
      groups,
      timeout: options.connectTimeout,
      family: options.family,
      retry: options.retry,
      retryDelay: options.retryDelay,
      signal: deadline.signal,
      trace: reporter.traceFn,
      onAttemptFailed: (target, error, willRetry) =>
        reporter.info(`${error.message}${willRetry ? "; trying again" : ""}`, {
          address: target,
          code: error.code,
        }),
      onNote: (text) => reporter.info(text),
    });
    reporter.connected(conn);
    reportLayers(reporter, conn);
    return await runSession(conn, ctx, reporter, {
      signal: deadline.signal,
      steps: options.steps,
      sendOnly: options.sendOnly,
      recvOnly: options.recvOnly,
      crlf: options.crlf,
      quitAfterInput: options.quitAfterInput,
      idleTimeout: options.idleTimeout,
      role: "connect",
      halfClose: [true, !options.noHalfClose],
    });
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    if (deadline.expired) return reporter.fail(deadline.signal.reason);
    return reporter.fail(err, "connect", address);
  }
}
