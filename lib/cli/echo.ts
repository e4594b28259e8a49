/**
 * `sockit echo ENDPOINT`: an echo server for TCP, Unix and UDP that keeps
 * accepting — the fixture CI scripts start on port 0 and find through the
 * `listening` event.
 *
 * @module
 */

import { formatEndpoint, requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf } from "../errors.ts";
import { listen } from "../listener.ts";
import { serve } from "../server.ts";
import {
  FAMILY_FLAGS,
  familyFlag,
  makeReporter,
  oneEndpoint,
  parseFlags,
  SERVER_FLAGS,
  serverLimits,
  TRAFFIC_HELP,
} from "./args.ts";
import type { GlobalOptions, ServerLimits } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { bridge, SERVER_BUFFER } from "./session.ts";
import { runEchoUdp } from "./udp.ts";
import {
  explainTlsListenError,
  serverCertificate,
  TLS_SERVER_FLAGS,
  tlsServerFlags,
} from "./tls_flags.ts";
import type { TlsServerFlags } from "./tls_flags.ts";

/** Help text of `sockit echo`. */
export const ECHO_HELP = `Usage: sockit echo [options] ENDPOINT

An echo server: every byte a client sends comes back to it. Keeps accepting,
clients at once. A client that half-closes gets all its data back, then EOF.
UDP: every datagram goes back to its sender.

ENDPOINT
  0                  127.0.0.1, a free port (see -v / --json)
  [::1]:7            IPv6
  unix:/tmp/echo.sock
  udp://127.0.0.1:0
  tls://127.0.0.1:0  TLS (--cert/--key, or an ephemeral certificate)

Options
  --max-conns N      at most N clients at once; more are closed at once
  --allow CIDR       accept only clients in these ranges (repeatable)
  --deny CIDR        refuse clients in these ranges (repeatable)
  --idle-timeout DUR close a connection after DUR without data
  --tls, --cert PEM, --key PEM, --alpn PROTO   a TLS echo server (see listen --help)
  -4, -6             port-only form binds 127.0.0.1 (default) or ::1
  -v, --verbose      events on stderr: listening, connection from, closed, rejected
  -q, --quiet        no warnings or events
  --json             events as JSON lines on stderr
  --trace            socket calls on stderr
${TRAFFIC_HELP}
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit echo 0 --json 2> events.jsonl &   # a fixture; read the port from "listening"
  sockit echo udp://127.0.0.1:9999 -v
`;

/** Parsed options of `sockit echo`. */
export interface EchoCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to listen. */
  endpoint: Endpoint;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** TLS server options, when the listener is TLS. */
  tls?: TlsServerFlags;
}

/**
 * Parses the arguments of `sockit echo` (without the command name).
 *
 * @example Usage
 * ```ts
 * import { parseEchoArgs } from "./echo.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseEchoArgs(["udp://127.0.0.1:0"]).endpoint.transport, "udp");
 * ```
 */
export function parseEchoArgs(argv: string[]): EchoCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    ...SERVER_FLAGS,
    ...FAMILY_FLAGS,
    ...TLS_SERVER_FLAGS,
  });
  if (globals.help) {
    return { ...globals, endpoint: { transport: "tcp", port: 0 }, access: { allow: [], deny: [] } };
  }
  const endpoint = oneEndpoint(positionals);
  requireTransport(endpoint, ["tcp", "unix", "udp", "tls"], "echo");
  return {
    ...globals,
    endpoint,
    family: familyFlag(values, endpoint),
    ...serverLimits(values),
    tls: tlsServerFlags(values, endpoint),
  };
}

/**
 * Runs `sockit echo` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runEcho(parseEchoArgs(["0", "-v"]), ctx);
 * ```
 */
export async function runEcho(options: EchoCommandOptions, ctx: CommandContext): Promise<number> {
  const reporter = makeReporter(options, ctx, "echo");
  const endpoint = options.endpoint;
  if (endpoint.transport === "udp") {
    return await runEchoUdp({ ...options, endpoint }, ctx, reporter);
  }
  try {
    const tlsFlags = options.tls;
    const tls = tlsFlags ? await serverCertificate(tlsFlags, reporter) : undefined;
    const listener = await listen(endpoint, {
      family: options.family,
      trace: reporter.tracing ? reporter.trace.bind(reporter) : undefined,
      tls,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
    }).catch((err) => Promise.reject(tlsFlags ? explainTlsListenError(err, tlsFlags) : err));
    reporter.listening(listener.address, listener.transport);
    await serve(
      listener,
      (conn) =>
        bridge(conn, conn, reporter, {
          signal: ctx.signal,
          idleTimeout: options.idleTimeout,
          halfClose: [true, false],
          warnOnly: true,
          bufferSize: SERVER_BUFFER,
        }),
      { reporter, signal: ctx.signal, maxConns: options.maxConns, access: options.access },
    );
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "echo", formatEndpoint(endpoint));
  }
}
