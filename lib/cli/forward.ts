/**
 * `sockit forward LISTEN TARGET`: a port forwarder (socat TCP-LISTEN,fork
 * TCP:…). Each accepted client gets a new connection to TARGET, relayed both
 * ways through the one transfer engine, each direction half-closed on its
 * own.
 *
 * @module
 */

import type { SocketOptions } from "../net/conn.ts";
import {
  formatEndpoint,
  isTls,
  parseEndpoint,
  requireEndpoint,
  schemeList,
  transportOf,
} from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import type { Stream } from "../net/stream.ts";
import { Coalescer } from "../engine/coalesce.ts";
import { exitCodeOf, UsageError } from "../base/errors.ts";
import { forwardDatagrams } from "../net/datagram_forward.ts";
import { connect, connectAddress, openDatagram } from "../net/open.ts";
import { proxyDialer } from "../protocols/proxy.ts";
import type { ProxySpec } from "../protocols/proxy.ts";
import { serve } from "../engine/server.ts";
import { reportLayers } from "../engine/events.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import {
  LIFETIME_FLAG,
  MULTICAST_FLAGS,
  SERVER_SOCKET_FLAGS,
  TRAFFIC_FLAGS,
  WEBSOCKET_FLAGS,
} from "./flags.ts";
import type { FlagValues, GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { datagramSessions, openServer, serveOptions } from "./serve.ts";
import { tlsClientFlags, tlsClientOptions, tlsServerFlags } from "./tls_flags.ts";
import type { TlsClientFlags, TlsServerFlags } from "./tls_flags.ts";
import {
  datagramFlags,
  durationFlag,
  familyFlag,
  proxyFlag,
  serverLimits,
  socketFlags,
  websocketFlags,
} from "./values.ts";
import type { DatagramFlags, WebSocketCommandOptions } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/** Parsed options of `sockit forward`. */
export interface ForwardCommandOptions extends GlobalOptions, ServerLimits {
  /** `--reuseport`, `--nodelay`, `--keepalive`. */
  sockets?: { socket: SocketOptions; reusePort: boolean };
  /** UDP: multicast groups (the listener), TTL/loop/broadcast (the target). */
  datagram?: DatagramFlags;
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
  /** `--proxy`: reach the target through this proxy. */
  proxy?: ProxySpec;
  /** WebSocket settings, for `ws://`/`wss://` on either side (binary by default). */
  websocket?: WebSocketCommandOptions;
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
    },
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
    { title: "WebSocket (ws://, wss://)", flags: WEBSOCKET_FLAGS },
    {
      title: "Socket options",
      flags: [...SERVER_SOCKET_FLAGS, [
        "source",
        "connect to the target from this local address and/or port (:PORT alone)",
      ]],
    },
    { title: "UDP multicast and broadcast", flags: MULTICAST_FLAGS },
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    "sockit forward 8080 127.0.0.1:80 -v",
    "sockit forward 127.0.0.1:5433 unix:/var/run/postgresql/.s.PGSQL.5432",
    "sockit forward unix:/tmp/api.sock 127.0.0.1:8000 --max-conns 50",
  ],
  parse({ values, positionals, globals }) {
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
    // --alpn belongs to whichever side speaks TLS (both when both do); --cert/--key to the
    // listener when it speaks TLS, else to the target (a client certificate).
    const serverValues: FlagValues = {
      ...values,
      alpn: isTls(listenAt) ? values.alpn : undefined,
      cert: isTls(listenAt) ? values.cert : undefined,
      key: isTls(listenAt) ? values.key : undefined,
    };
    const clientValues: FlagValues = {
      ...values,
      alpn: isTls(target) ? values.alpn : undefined,
      cert: isTls(listenAt) ? undefined : values.cert,
      key: isTls(listenAt) ? undefined : values.key,
    };
    if (values.alpn !== undefined && !isTls(listenAt) && !isTls(target)) {
      throw new UsageError(
        `option --alpn needs TLS: a ${schemeList((row) => row.tls === "always")} endpoint`,
      );
    }
    if ("port" in target && target.port === 0) {
      throw new UsageError(
        `${positionals[1]}: a target needs a port (0 only means "any free port" when listening)`,
      );
    }
    return {
      ...globals,
      sockets: socketFlags(values, target),
      datagram: datagramFlags(values, [listenAt, target]),
      listen: listenAt,
      target,
      ...serverLimits(values),
      connectTimeout: durationFlag(values, "connect-timeout", true) ?? 10_000,
      // -4/-6 also steer the target's resolution: a Unix LISTEN takes them too.
      family: familyFlag(values, transportOf(listenAt).inet ? listenAt : undefined),
      serverTls: tlsServerFlags(serverValues, listenAt).flags,
      clientTls: tlsClientFlags(clientValues, target).flags,
      proxy: proxyFlag(values, target),
      websocket: websocketFlags(values, [listenAt, target], "binary"),
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
  if (transportOf(options.listen).kind === "datagram") {
    return await forwardDatagramSessions(options, ctx, reporter, targetName);
  }
  try {
    const clientTls = options.clientTls ? tlsClientOptions(options.clientTls, reporter) : undefined;
    const proxy = options.proxy ? proxyDialer(options.proxy) : undefined;
    if (options.proxy) {
      reporter.info(`to ${targetName} through the proxy ${options.proxy.text}`, {
        proxy: options.proxy.text,
      });
    }
    const portOnly = "port" in options.listen && options.listen.hostname === undefined;
    // A target that fails for many clients (down, or out of descriptors) is one line and a count.
    using failures = new Coalescer((line) => reporter.warning(line));
    using listener = await openServer(options.listen, {
      family: portOnly ? options.family : undefined,
      tls: options.serverTls,
      websocket: options.websocket,
      ...options.sockets,
    }, reporter);
    await serve(listener, async (client) => {
      let target: Stream;
      try {
        target = await connect(options.target, {
          tls: clientTls,
          base: proxy,
          websocket: options.websocket,
          socket: options.sockets?.socket,
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
        report: (err) => reporter.warnFailure(err),
      });
    }, serveOptions(options, ctx, reporter, options.serverTls, options.websocket));
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "forward", formatEndpoint(options.listen));
  }
}

/**
 * `forward udp://LISTEN udp://TARGET`: a session per client address, each
 * with its own upstream socket, ended after `--idle-timeout` (default 30 s)
 * without datagrams; `--max-conns` caps the sessions.
 */
async function forwardDatagramSessions(
  options: ForwardCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
  targetName: string,
): Promise<number> {
  try {
    const { multicast, broadcast } = options.datagram ?? {};
    const listener = await openDatagram(options.listen, "listen", {
      family: options.family,
      trace: reporter.traceFn,
      reusePort: options.sockets?.reusePort,
      // The listener joins the groups; TTL, loop and broadcast are the target's.
      multicast: multicast?.join && { join: multicast.join },
    });
    reporter.listening(listener.address, options.listen.scheme);
    await forwardDatagrams(
      listener,
      () =>
        openDatagram(options.target, "connect", {
          family: options.family,
          trace: reporter.traceFn,
          socket: options.sockets?.socket,
          multicast: multicast && { ttl: multicast.ttl, loop: multicast.loop },
          broadcast,
        }),
      datagramSessions(listener, options.listen, options, ctx, reporter, targetName),
    );
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "forward", formatEndpoint(options.listen));
  }
}
