/**
 * `sockit forward LISTEN TARGET`: a port forwarder (socat TCP-LISTEN,fork
 * TCP:…). Each accepted client gets a new connection to TARGET, relayed both
 * ways through the one transfer engine, each direction half-closed on its
 * own. Datagrams the same way (socat UDP-LISTEN,fork UDP:…): each sender is
 * a client (the listener's peer), with a socket of its own to TARGET.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, requireEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { Coalescer } from "../engine/coalesce.ts";
import { exitCodeOf, toSockitError, UsageError } from "../base/errors.ts";
import { connectAddress, connectPeer } from "../net/open.ts";
import { serve } from "../engine/server.ts";
import { reportLayers } from "../engine/events.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { PROXY_GROUP } from "../protocols/proxy_options.ts";
import { LIFETIME_FLAG, TRAFFIC_FLAGS } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import { prepareGroups } from "./groups.ts";
import type { ParsedGroups } from "./groups.ts";
import { forwarderSections } from "./sections.ts";
import { openServer, serveOptions } from "./serve.ts";
import { familyFlag, serverLimits } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/** Parsed options of `sockit forward`. */
export interface ForwardCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to accept. */
  listen: Endpoint;
  /** The options of the listener's groups (TLS termination, WebSocket, socket options, …). */
  listenGroups: ParsedGroups;
  /** Where each client is forwarded. */
  target: Endpoint;
  /** The options of the target's groups (TLS origination, `--proxy`, `--source`, …). */
  targetGroups: ParsedGroups;
  /** Give up connecting to the target after this many ms. */
  connectTimeout: number;
  /** `-4` / `-6`. */
  family?: 4 | 6;
}

/** `sockit forward`. */
export const forwardCommand: Command<ForwardCommandOptions> = {
  name: "forward",
  noStdout: true,
  summary: "a port forwarder: accept, connect the target per client, relay both ways",
  usage: "[options] LISTEN TARGET",
  description: `Accept connections on LISTEN; for each, connect to TARGET and relay both ways.
End of input in one direction is passed on as a half-close; a reset on either
side closes the other. A TARGET that is down closes that client at once (the
reason is a warning, and an event with -v/--json); later clients are served
when it is back. Keeps running until SIGINT/SIGTERM.`,
  sections: [{
    title: "Endpoints: any mix of tcp (v4/v6), unix and tls",
    lines: [
      "8080 unix:/run/app.sock          expose a Unix-socket service on a port",
      "unix:/tmp/db.sock 127.0.0.1:5432 and the other way round",
      "tls://0.0.0.0:8443 127.0.0.1:80  TLS termination (--cert/--key, or ephemeral)",
      "8080 tls://example.com:443       TLS origination (verified; --cacert, --servername)",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        "connect-timeout",
        [
          "proxy",
          "reach TARGET through a proxy (socks5://, socks5h://, socks4://, socks4a://, http://)",
        ],
        [
          "max-conns",
          "at most N clients at once; more are closed at once (udp://: N sessions, default " +
          "100; a new client's datagrams beyond them are dropped)",
        ],
        "allow",
        "deny",
        ["idle-timeout", "close a connection pair after DUR without data"],
        LIFETIME_FLAG,
        ["ipv4", "port-only LISTEN binds 127.0.0.1; TARGET resolves to IPv4"],
        ["ipv6", "port-only LISTEN binds ::1; TARGET resolves to IPv6"],
      ],
      groups: [PROXY_GROUP],
    },
    ...forwarderSections(
      {
        title: "TLS",
        flags: [
          [
            "cert",
            "certificate of a tls:// LISTEN (with --key; default: ephemeral, printed with -v); " +
            "with a plain LISTEN, the client certificate for a tls:// TARGET (mutual TLS)",
          ],
          "key",
          "client-ca",
          "handshake-timeout",
          ["cacert", "trust this certificate too for a tls:// TARGET (repeatable)"],
          ["servername", "verify the tls:// TARGET as NAME (and send it as SNI)"],
          ["insecure", "do not verify the tls:// TARGET's certificate"],
          ["alpn", "ALPN protocol for the TLS side(s) (repeatable)"],
        ],
      },
      ["source", "connect to the target from this local address and/or port (:PORT alone)"],
    ),
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    "sockit forward 8080 127.0.0.1:80 -v",
    "sockit forward 127.0.0.1:5433 unix:/var/run/postgresql/.s.PGSQL.5432",
    "sockit forward unix:/tmp/api.sock 127.0.0.1:8000 --max-conns 50",
  ],
  endpoints(positionals) {
    if (positionals.length < 2) {
      throw new UsageError("expected LISTEN and TARGET, e.g. sockit forward 8080 127.0.0.1:80");
    }
    if (positionals.length > 2) {
      throw new UsageError(`unexpected argument ${JSON.stringify(positionals[2])}`);
    }
    const listenAt = parseEndpoint(positionals[0]);
    const target = parseEndpoint(positionals[1]);
    // Streams to streams, or datagrams to datagrams (a session per client: udp:// → udp://).
    const kind = requireEndpoint(listenAt, { role: "listen" }, "forward", positionals[0]).kind;
    requireEndpoint(target, { role: "connect", kind }, "forward", positionals[1]);
    if ("port" in target && target.port === 0) {
      throw new UsageError(
        `${positionals[1]}: a target needs a port (0 only means "any free port" when listening)`,
      );
    }
    return [
      { endpoint: listenAt, role: "listen", text: positionals[0] },
      { endpoint: target, role: "connect", text: positionals[1] },
    ];
  },
  partner: "endpoint",
  serves: true,
  parse({ values, globals, endpoints: [at, to] }) {
    // --cert/--key are the listener's when it speaks TLS, else the target's (a client
    // certificate); --alpn is each TLS side's.
    const server = at.groups["tls-server"];
    const client = to.groups["tls-client"];
    const targetGroups = server && client
      ? { ...to.groups, "tls-client": { ...client, cert: undefined, key: undefined } }
      : to.groups;
    return {
      ...globals,
      listen: at.endpoint,
      listenGroups: at.groups,
      target: to.endpoint,
      targetGroups,
      ...serverLimits(values),
      connectTimeout: values["connect-timeout"] ?? 10_000,
      // -4/-6 also steer the target's resolution: a Unix LISTEN takes them too.
      family: familyFlag(values, transportOf(at.endpoint).inet ? at.endpoint : undefined),
    };
  },
  run: runForward,
  deadline: (options) => options.lifetime,
};

/**
 * Runs `sockit forward` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runForward(parseCommand(forwardCommand, ["8080", "127.0.0.1:80"]), ctx);
 * ```
 */
export async function runForward(
  options: ForwardCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  using reporter = makeReporter(options, ctx, "forward");
  const targetName = connectAddress(options.target, options.family);
  reporter.relaysTo = targetName;
  try {
    const { groups } = await prepareGroups(options.targetGroups, {
      reporter,
      role: "connect",
      to: targetName,
    });
    const portOnly = "port" in options.listen && options.listen.hostname === undefined;
    // A target that fails for many clients (down, or out of descriptors) is one line and a count.
    using failures = new Coalescer((line) => reporter.warning(line));
    using listener = await openServer(options.listen, {
      family: portOnly ? options.family : undefined,
      groups: options.listenGroups,
    }, reporter);
    await serve(listener, async (client) => {
      let target;
      try {
        target = await connectPeer(options.target, {
          groups,
          family: options.family,
          timeout: options.connectTimeout,
          signal: ctx.signal,
          trace: reporter.traceFn,
        });
      } catch (err) {
        client.close();
        if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
        const reason = (err as { reason?: string }).reason ?? (err as Error).message;
        const failed = `forward to ${targetName} failed: ${reason}; client closed`;
        failures.say(failed, `${client.remoteAddress}: ${failed}`);
        reporter.closed(client, {
          sent: 0,
          received: 0,
          durationMs: Math.round(performance.now() - client.openedAt),
          reason: `target ${targetName}: ${reason}`,
        });
        return 1;
      }
      reporter.connected(target);
      reportLayers(reporter, target);
      return await transfer(client, target, {
        signal: ctx.signal,
        idleTimeout: options.idleTimeout,
        bufferSize: SERVER_BUFFER,
        // A connection that moves megabytes is handed to the kernel (a few at a time).
        splice: "bulk",
        otherName: { read: target.remoteAddress, write: target.remoteAddress },
        events: reporter,
        // The same failure of many clients' pairs (a target that refuses datagrams) is one line.
        report: (err) => {
          if (err instanceof UsageError) return reporter.warnFailure(err);
          const error = toSockitError(err, "forward", client.remoteAddress);
          failures.say(error.message);
          return error.exitCode;
        },
      });
    }, serveOptions(options, ctx, reporter));
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "forward", formatEndpoint(options.listen));
  }
}
