/**
 * `sockit forward LISTEN TARGET`: a port forwarder (socat TCP-LISTEN,fork
 * TCP:…). Each accepted client gets a new connection to TARGET, relayed both
 * ways through the one relay, each direction half-closed on its own.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf, UsageError } from "../errors.ts";
import { listen } from "../listener.ts";
import { serve } from "../server.ts";
import { connect, connectAddress } from "../stream.ts";
import type { SocketStream } from "../stream.ts";
import {
  durationFlag,
  FAMILY_FLAGS,
  familyFlag,
  makeReporter,
  parseFlags,
  SERVER_FLAGS,
  serverLimits,
  TRAFFIC_HELP,
} from "./args.ts";
import type { GlobalOptions, ServerLimits } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { bridge, SERVER_BUFFER } from "./session.ts";
import {
  explainTlsListenError,
  serverCertificate,
  TLS_CLIENT_FLAGS,
  TLS_SERVER_FLAGS,
  tlsClientFlags,
  tlsClientOptions,
  tlsServerFlags,
} from "./tls_flags.ts";
import type { TlsClientFlags, TlsServerFlags } from "./tls_flags.ts";

/** Help text of `sockit forward`. */
export const FORWARD_HELP = `Usage: sockit forward [options] LISTEN TARGET

Accept connections on LISTEN; for each, connect to TARGET and relay both ways.
End of input in one direction is passed on as a half-close; a reset on either
side closes the other. A TARGET that is down closes that client at once (the
reason is a warning, and an event with -v/--json); later clients are served
when it is back. Keeps running until SIGINT/SIGTERM.

Endpoints: any mix of tcp (v4/v6), unix and tls:
  8080 unix:/run/app.sock          expose a Unix-socket service on a port
  unix:/tmp/db.sock 127.0.0.1:5432 and the other way round
  tls://0.0.0.0:8443 127.0.0.1:80  TLS termination (--cert/--key, or ephemeral)
  8080 tls://example.com:443       TLS origination (verified; --cacert, --servername)

Options
  --connect-timeout DUR  give up connecting to TARGET after DUR (default 10s)
  --cert PEM --key PEM   certificate of a tls:// LISTEN (default: ephemeral, printed with -v)
  --cacert PEM       trust this certificate too for a tls:// TARGET (repeatable)
  --servername NAME  verify the tls:// TARGET as NAME (and send it as SNI)
  --insecure         do not verify the tls:// TARGET's certificate
  --alpn PROTO       ALPN protocol for the TLS side(s) (repeatable)
  --max-conns N      at most N clients at once; more are closed at once
  --allow CIDR       accept only clients in these ranges (repeatable)
  --deny CIDR        refuse clients in these ranges (repeatable)
  --idle-timeout DUR close a connection pair after DUR without data
  -4, -6             port-only LISTEN binds 127.0.0.1 or ::1; TARGET resolves to v4 or v6
  -v, --verbose      events on stderr: connection from, connected to, closed, rejected
  -q, --quiet        no warnings or events
  --json             events as JSON lines on stderr
  --trace            socket calls on stderr, for both sides
${TRAFFIC_HELP}
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit forward 8080 127.0.0.1:80 -v
  sockit forward 127.0.0.1:5433 unix:/var/run/postgresql/.s.PGSQL.5432
  sockit forward unix:/tmp/api.sock 127.0.0.1:8000 --max-conns 50
`;

/** Parsed options of `sockit forward`. */
export interface ForwardCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to accept. */
  listen: Endpoint;
  /** Where each client is forwarded. */
  target: Endpoint;
  /** Give up connecting to the target after this many ms. */
  connectTimeout: number;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** TLS on the listening side (termination). */
  serverTls?: TlsServerFlags;
  /** TLS to the target (origination). */
  clientTls?: TlsClientFlags;
}

/**
 * Parses the arguments of `sockit forward`.
 *
 * @example Usage
 * ```ts
 * import { parseForwardArgs } from "./forward.ts";
 * import assert from "node:assert/strict";
 *
 * const options = parseForwardArgs(["8080", "unix:/run/app.sock", "--max-conns", "5"]);
 * assert.deepEqual([options.listen.transport, options.target.transport, options.maxConns], ["tcp", "unix", 5]);
 * ```
 */
export function parseForwardArgs(argv: string[]): ForwardCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    ...SERVER_FLAGS,
    ...FAMILY_FLAGS,
    "connect-timeout": { type: "string" },
    cert: TLS_SERVER_FLAGS.cert,
    key: TLS_SERVER_FLAGS.key,
    cacert: TLS_CLIENT_FLAGS.cacert,
    servername: TLS_CLIENT_FLAGS.servername,
    insecure: TLS_CLIENT_FLAGS.insecure,
    alpn: TLS_CLIENT_FLAGS.alpn,
  });
  const none: Endpoint = { transport: "tcp", port: 0 };
  if (globals.help) {
    return {
      ...globals,
      listen: none,
      target: none,
      connectTimeout: 10_000,
      access: { allow: [], deny: [] },
    };
  }
  if (positionals.length < 2) {
    throw new UsageError("expected LISTEN and TARGET, e.g. sockit forward 8080 127.0.0.1:80");
  }
  if (positionals.length > 2) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[2])}`);
  }
  const listenAt = parseEndpoint(positionals[0]);
  const target = parseEndpoint(positionals[1]);
  requireTransport(listenAt, ["tcp", "unix", "tls"], "forward");
  requireTransport(target, ["tcp", "unix", "tls"], "forward");
  // --alpn belongs to whichever side speaks TLS (both when both do).
  const serverValues = { ...values, alpn: listenAt.transport === "tls" ? values.alpn : undefined };
  const clientValues = { ...values, alpn: target.transport === "tls" ? values.alpn : undefined };
  if (values.alpn !== undefined && listenAt.transport !== "tls" && target.transport !== "tls") {
    throw new UsageError("option --alpn needs TLS: a tls:// endpoint");
  }
  if (target.transport !== "unix" && target.port === 0) {
    throw new UsageError(
      `${positionals[1]}: a target needs a port (0 only means "any free port" when listening)`,
    );
  }
  const family = familyFlag(values, { transport: "tcp", port: 0 });
  return {
    ...globals,
    listen: listenAt,
    target,
    ...serverLimits(values),
    connectTimeout: durationFlag(values, "connect-timeout", true) ?? 10_000,
    family,
    serverTls: tlsServerFlags(serverValues, listenAt),
    clientTls: tlsClientFlags(clientValues, target),
  };
}

/**
 * Runs `sockit forward` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runForward(parseForwardArgs(["8080", "127.0.0.1:80"]), ctx);
 * ```
 */
export async function runForward(
  options: ForwardCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  const reporter = makeReporter(options, ctx, "forward");
  const trace = reporter.tracing ? reporter.trace.bind(reporter) : undefined;
  const targetName = connectAddress(options.target, options.family);
  try {
    const serverFlags = options.serverTls;
    const serverTls = serverFlags ? await serverCertificate(serverFlags, reporter) : undefined;
    const clientTls = options.clientTls ? tlsClientOptions(options.clientTls, reporter) : undefined;
    const listener = await listen(options.listen, {
      tls: serverTls,
      family: options.listen.transport === "tcp" && options.listen.hostname === undefined
        ? options.family
        : undefined,
      trace,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
    }).catch((err) => Promise.reject(serverFlags ? explainTlsListenError(err, serverFlags) : err));
    reporter.listening(listener.address, listener.transport);
    await serve(listener, async (client) => {
      let target: SocketStream;
      try {
        target = await connect(options.target, {
          tls: clientTls,
          family: options.family,
          timeout: options.connectTimeout,
          signal: ctx.signal,
          trace,
        });
      } catch (err) {
        client.close();
        if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
        const reason = (err as { reason?: string }).reason ?? (err as Error).message;
        reporter.warn(
          `${client.remoteAddress}: forward to ${targetName} failed: ${reason}; client closed`,
        );
        reporter.closed(client.id, client.remoteAddress, {
          sent: 0,
          received: 0,
          durationMs: Math.round(performance.now() - client.openedAt),
          reason: `target ${targetName}: ${reason}`,
        });
        return 1;
      }
      reporter.connected(target.id, target.remoteAddress, target.localAddress);
      if (target.handshake) reporter.tls(target.id, target.remoteAddress, target.handshake);
      const code = await bridge(client, target, reporter, {
        signal: ctx.signal,
        idleTimeout: options.idleTimeout,
        warnOnly: true,
        bufferSize: SERVER_BUFFER,
        otherName: { read: target.remoteAddress, write: target.remoteAddress },
      });
      return code;
    }, { reporter, signal: ctx.signal, maxConns: options.maxConns, access: options.access });
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "forward", formatEndpoint(options.listen));
  }
}
