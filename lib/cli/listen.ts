/**
 * `sockit listen ENDPOINT`: bind, listen, accept and bridge each connection
 * with stdin/stdout (nc -l), a child process (`--exec`), or the other
 * clients (`--broker`); `-k` keeps accepting. A datagram endpoint prints
 * what arrives and answers the latest sender.
 *
 * @module
 */

import type { SocketOptions } from "../net/conn.ts";
import { formatEndpoint, requireEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { DatagramSide, formatPeer } from "../net/datagram.ts";
import type { DatagramSocket } from "../net/datagram.ts";
import { forwardDatagrams } from "../net/datagram_forward.ts";
import { exitCodeOf, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import {
  checkRunPermission,
  ChildDatagrams,
  ChildStream,
  connectionEnv,
  findProgram,
  splitCommand,
} from "../tools/exec.ts";
import type { Stream } from "../net/stream.ts";
import { Fanout } from "../engine/fanout.ts";
import type { Subscription } from "../engine/fanout.ts";
import { formatBytes, formatDuration } from "../base/format.ts";
import { openDatagram } from "../net/open.ts";
import type { Step } from "../engine/dialogue.ts";
import { checkSendFiles, sendDatagrams, sendFiles } from "../engine/payload.ts";
import { Relay } from "../engine/relay.ts";
import type { Duplex } from "../engine/relay.ts";
import { serve } from "../engine/server.ts";
import type { ConnectionHandler } from "../engine/server.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import { schemePrefix } from "../net/schemes.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { LIFETIME_FLAG, SERVER_SOCKET_FLAGS, TRAFFIC_FLAGS, WEBSOCKET_FLAGS } from "./flags.ts";
import type { FlagValues, GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { datagramSessions, openServer, serveOptions } from "./serve.ts";
import { prepareStdio, runSession } from "./session.ts";
import { TLS_SERVER_FLAGS, tlsServerFlags } from "./tls_flags.ts";
import type { TlsServerFlags } from "./tls_flags.ts";
import {
  datagramFlags,
  dialogueSteps,
  durationFlag,
  exclusive,
  familyFlag,
  oneEndpoint,
  refuseFlags,
  serverLimits,
  socketFlags,
  websocketFlags,
} from "./values.ts";
import type { DatagramFlags, WebSocketCommandOptions } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/**
 * After a client's end of input, how long a silent `--exec` child may take
 * before it is ended, by default (`--grace`).
 */
export const EXEC_GRACE = 1000;

/** Parsed options of `sockit listen`. */
export interface ListenCommandOptions extends GlobalOptions, ServerLimits {
  /** `--reuseport`, `--nodelay`, `--keepalive`. */
  sockets?: { socket: SocketOptions; reusePort: boolean };
  /** UDP: multicast groups to join (and their TTL and loop). */
  datagram?: DatagramFlags;
  /** Where to listen (with `--tls` applied). */
  endpoint: Endpoint;
  /** What to send to each client instead of stdin (`--send`, `--send-file`, in order). */
  steps?: Step[];
  /** Keep the write side open at the end of stdin. */
  noHalfClose: boolean;
  /** `--send-only`: never read the client. */
  sendOnly: boolean;
  /** `--recv-only`: never read stdin. */
  recvOnly: boolean;
  /** `--crlf`: input LF as CRLF. */
  crlf?: boolean;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** `-k`: keep accepting. */
  keepOpen: boolean;
  /** `--exec` / `--sh-exec`: the child's argv. */
  exec?: string[];
  /** `--grace`: ms a silent child may take after the client's end of input (Infinity: no limit). */
  grace: number;
  /** `--broker`. */
  broker: boolean;
  /** `--stall-timeout`: ms a broker member may hold up the others (undefined: for ever). */
  stallTimeout?: number;
  /** TLS server options, when the listener is TLS. */
  tls?: TlsServerFlags;
  /** WebSocket settings, for a `ws://` or `wss://` endpoint. */
  websocket?: WebSocketCommandOptions;
}

/** The options that need connections: not for a datagram endpoint. */
const STREAM_ONLY = ["exec", "sh-exec", "broker", "max-conns", "allow", "deny"];

/** What a datagram server with a child per peer (`--exec`) still refuses. */
const NOT_FOR_DATAGRAM_EXEC = ["broker", "send", "send-file", "expect", "send-only", "recv-only"];

/** How long a `--broker` member may stay above its mark before it is dropped, by default. */
export const BROKER_STALL = 5000;

/** How much a `--broker` member may have waiting for it before its stall clock runs. */
const BROKER_HIGH_WATER = 256 * 1024;

/** How much may wait for a `--broker` member at most: beyond it, it is dropped at once. */
const BROKER_QUEUE_MAX = 16 << 20;

/** `--stall-timeout DUR`: only with `--broker`; 0 for never. */
function stallFlag(values: FlagValues): number | undefined {
  if (values["stall-timeout"] === undefined) return BROKER_STALL;
  if (!values.broker) throw new UsageError("option --stall-timeout is for --broker");
  return durationFlag(values, "stall-timeout", true);
}

/** `--grace DUR`: the default without it, no limit for 0; only with `--exec`/`--sh-exec`. */
function graceFlag(values: FlagValues): number {
  if (values.grace !== undefined && values.exec === undefined && values["sh-exec"] === undefined) {
    throw new UsageError("option --grace is for --exec and --sh-exec");
  }
  if (values.grace === undefined) return EXEC_GRACE;
  return durationFlag(values, "grace", true) ?? Infinity;
}

function execArgv(values: FlagValues): string[] | undefined {
  if (typeof values.exec === "string") {
    const argv = splitCommand(values.exec);
    if (argv.length === 0) {
      throw new UsageError("option --exec needs a command, e.g. --exec 'tr a-z A-Z'");
    }
    return argv;
  }
  if (typeof values["sh-exec"] === "string") {
    if (values["sh-exec"].trim() === "") throw new UsageError("option --sh-exec needs a command");
    return ["/bin/sh", "-c", values["sh-exec"]];
  }
  return undefined;
}

/** `sockit listen`. */
export const listenCommand: Command<ListenCommandOptions> = {
  name: "listen",
  summary: "bind, listen, accept one connection; bridge it with stdin/stdout",
  usage: "[options] ENDPOINT",
  description: `Bind, listen and accept a connection; bridge it with stdin/stdout (nc -l).
The session ends when both directions have ended: the client has closed its
side (everything it sent is on stdout) and stdin has reached its end (then
sockit half-closes). With stdin at a terminal, the client's close ends it.`,
  sections: [{
    title: "ENDPOINT",
    lines: [
      "8888               127.0.0.1:8888 (loopback unless a host is given)",
      "0.0.0.0:8888       every IPv4 interface; [::]:8888 every IPv6 one",
      "[::1]:0            port 0: the OS picks a free port (see -v / --json)",
      "unix:/tmp/s.sock   a Unix socket (a stale socket file is replaced)",
      "tls://127.0.0.1:0  a TLS server (or --tls with host:port)",
      "udp://127.0.0.1:53 UDP: datagrams to stdout; stdin to the latest peer",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        "keep-open",
        [
          "send",
          "send TEXT (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH), then half-close; repeatable, in order",
        ],
        ["send-file", "send the file, then half-close (repeatable, in order with --send)"],
        "send-only",
        "recv-only",
        "crlf",
        "exec",
        "sh-exec",
        "grace",
        "broker",
        "stall-timeout",
        [
          "max-conns",
          "at most N clients at once; more are closed at once (udp:// --exec: N children, " +
          "default 100; a new peer's datagrams beyond them are dropped)",
        ],
        "allow",
        "deny",
        ["idle-timeout", "end a connection after DUR without data (exit 124)"],
        LIFETIME_FLAG,
        ["no-half-close", "keep the write side open after the end of stdin (or of --send)"],
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
    "sockit listen 127.0.0.1:8888 --send 'hello!'",
    "sockit listen 0 -v > received.bin",
    "sockit listen -k 8080 --sh-exec 'printf \"HTTP/1.0 200 OK\\r\\n\\r\\nhi\\n\"'",
    "sockit listen -k 9000 --exec 'tr a-z A-Z' --max-conns 10 --allow 127.0.0.0/8",
    "sockit listen --broker 7000",
    "sockit listen udp://127.0.0.1:5353 -v",
  ],
  parse({ values, positionals, globals, sequence }) {
    const given = oneEndpoint(positionals);
    const row = requireEndpoint(given, { role: "listen" }, "listen", positionals[0]);
    // One thing answers each client: a child, the other clients, the texts, or stdin.
    exclusive(values, ["exec", "sh-exec", "send", "broker"]);
    exclusive(values, ["exec", "sh-exec", "send-file", "broker"]);
    exclusive(values, ["exec", "sh-exec", "broker", "send-only"]);
    exclusive(values, ["exec", "sh-exec", "broker", "recv-only"]);
    if (values["send-only"] && values["recv-only"]) {
      throw new UsageError("options --send-only and --recv-only contradict each other");
    }
    if (values["recv-only"] && (values.send || values["send-file"])) {
      throw new UsageError("options --recv-only and --send/--send-file contradict each other");
    }
    if (row.kind === "datagram") {
      const exec = values.exec !== undefined || values["sh-exec"] !== undefined;
      refuseFlags(values, exec ? NOT_FOR_DATAGRAM_EXEC : STREAM_ONLY, row);
    }
    const { endpoint, flags: tls } = tlsServerFlags(values, given);
    return {
      ...globals,
      sockets: socketFlags(values),
      datagram: datagramFlags(values, [endpoint], { listening: true }),
      endpoint,
      steps: dialogueSteps(sequence),
      noHalfClose: values["no-half-close"] === true,
      sendOnly: values["send-only"] === true,
      recvOnly: values["recv-only"] === true,
      crlf: values.crlf === true,
      ...serverLimits(values),
      family: familyFlag(values, endpoint),
      keepOpen: values["keep-open"] === true,
      exec: execArgv(values),
      grace: graceFlag(values),
      broker: values.broker === true,
      stallTimeout: stallFlag(values),
      tls,
      websocket: websocketFlags(values, [endpoint], "text"),
    };
  },
  run: runListen,
  deadline: (options) => options.lifetime,
};

/**
 * Runs `sockit listen`: returns the exit code.
 *
 * @example Usage
 * ```ts ignore
 * import { memoryContext } from "./context.ts";
 * const code = await runListen(parseCommand(listenCommand, ["0", "--send", "hi"]), memoryContext());
 * ```
 */
export async function runListen(
  options: ListenCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  using reporter = makeReporter(options, ctx, "listen");
  const many = options.keepOpen || options.broker;
  try {
    await checkSendFiles(sendFiles(options.steps));
    if (options.exec) {
      checkRunPermission(options.exec[0]);
      if (findProgram(options.exec[0]) === "missing") {
        throw new SockitError("command not found", {
          op: "exec",
          address: options.exec[0],
          code: "ENOENT",
          exitCode: 127,
        });
      }
    }
    if (transportOf(options.endpoint).kind === "datagram") {
      return await listenDatagram(options, ctx, reporter);
    }
    using listener = await openServer(
      options.endpoint,
      {
        family: options.family,
        tls: options.tls,
        websocket: options.websocket,
        ...options.sockets,
      },
      reporter,
    );
    const code = await serve(listener, connectionHandler(options, ctx, reporter), {
      ...serveOptions(options, ctx, reporter, options.tls, options.websocket),
      once: !many,
    });
    if (many) reporter.totals();
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return code;
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "listen", formatEndpoint(options.endpoint));
  }
}

/** `listen udp://`: datagrams to stdout; stdin to the latest peer, until a signal or the idle time. */
async function listenDatagram(
  options: ListenCommandOptions,
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
  if (options.exec) return await execPerPeer(socket, options.exec, options, ctx, reporter);
  // --send greets each new peer; without it, stdin goes to the latest peer.
  const greeting = options.steps
    ? await sendDatagrams(options.steps, socket.maxDatagram).catch((err) => {
      socket.close();
      throw err;
    })
    : undefined;
  const side = new DatagramSide(socket, {
    // -k: stdin goes to every peer heard from in the last minute (ncat -l -u -k).
    mode: options.keepOpen ? "all-peers" : "latest-peer",
    prefix: schemePrefix(transportOf(options.endpoint)),
    op: "listen",
    perPeer: true,
    greeting,
    onPeer: (peer) => {
      const remote = formatPeer(peer);
      reporter.event("peer", `datagrams from ${remote}`, { remote });
    },
  });
  const code = await runSession(side, ctx, reporter, {
    recvOnly: options.recvOnly || greeting !== undefined,
    idleTimeout: options.idleTimeout,
    maxRecord: side.maxDatagram,
    // When no peer came: the socket's own address.
    closedName: () => side.label,
  });
  return code;
}

/**
 * `listen udp:// --exec`: a child per peer (socat `UDP-RECVFROM,fork`,
 * ncat `-u -l -k --exec`): the peer's datagrams are its stdin, each read of
 * its stdout a datagram back; the session ends when the child closes its
 * output or after `--idle-timeout` (default 30 s) without datagrams. Without
 * `-k` only the first peer is served.
 */
async function execPerPeer(
  socket: DatagramSocket,
  argv: string[],
  options: ListenCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  await forwardDatagrams(
    socket,
    (peer) =>
      new ChildDatagrams(
        new ChildStream({
          argv,
          env: connectionEnv(peer, socket.localAddress, protoOf(options.endpoint)),
        }),
        socket.maxDatagram,
        options.grace,
        ctx.signal,
      ),
    {
      ...datagramSessions(socket, options.endpoint, options, ctx, reporter, `exec ${argv[0]}`),
      once: !options.keepOpen,
      upstreamName: `exec ${argv[0]}`,
    },
  );
  if (options.keepOpen) reporter.totals();
  return ctx.signal.aborted ? exitCodeOf(ctx.signal.reason) : 0;
}

/** What each accepted connection is bridged with, by mode. */
function connectionHandler(
  options: ListenCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
): ConnectionHandler {
  const many = options.keepOpen || options.broker;
  const report = (err: unknown) => many ? reporter.warnFailure(err) : reporter.fail(err);
  const common = {
    signal: ctx.signal,
    idleTimeout: options.idleTimeout,
    bufferSize: many ? SERVER_BUFFER : undefined,
    events: reporter,
    report,
  };
  if (options.exec) {
    const argv = options.exec;
    return (conn) => {
      let child: ChildStream;
      try {
        child = new ChildStream({
          argv,
          env: connectionEnv(conn.remoteAddr, conn.localAddr, protoOf(options.endpoint)),
        });
      } catch (err) {
        conn.close();
        return Promise.resolve(reporter.fail(err, "exec", argv[0]));
      }
      return transfer(conn, child, {
        ...common,
        // The client's end of input ends the session once the child has
        // been silent for the grace time (or has exited); then it is ended.
        endOnEof: "a",
        linger: options.grace,
        otherName: { read: `exec ${argv[0]}`, write: `exec ${argv[0]}` },
      }).then((code) => {
        if (child.endedRunning) {
          reporter.warning(
            `exec ${argv[0]} for ${conn.remoteAddress}: still running and silent ` +
              `${formatDuration(options.grace)} after the client's end of input, so it was ` +
              "ended; what it had not written yet is lost (--grace DUR waits longer, 0 for its exit)",
          );
        }
        return code;
      });
    };
  }
  if (options.broker) {
    const members = new Map<Subscription, Stream>();
    const hub = new Fanout({
      highWater: BROKER_HIGH_WATER,
      // Each member has its own queue and writer; the others never wait for it.
      stallLimit: options.stallTimeout,
      maxQueued: BROKER_QUEUE_MAX,
      onDropped: (sub, why) => {
        const conn = members.get(sub);
        if (!conn) return;
        reporter.warning(
          `${conn.remoteAddress}: dropped from the broker: ` +
            (why === "stalled"
              ? `more than ${formatBytes(BROKER_HIGH_WATER)} waited for it for ` +
                `${formatDuration(options.stallTimeout!)} (--stall-timeout)`
              : `${formatBytes(BROKER_QUEUE_MAX)} waited for it (it reads slower than the ` +
                "others send)"),
        );
        conn.close();
      },
    });
    return async (conn) => {
      const port = brokerPort(hub);
      members.set(port.inbox, conn);
      try {
        return await transfer(conn, port, { ...common, endOnEof: "a" });
      } finally {
        members.delete(port.inbox);
      }
    };
  }
  if (options.keepOpen && !options.steps && !options.recvOnly) {
    // stdin goes to every client: one reader, one queue per client.
    const hub = new Fanout();
    let started = false;
    return (conn) => {
      if (!started) {
        started = true;
        new Relay(stdinSide(ctx), hubPublisher(hub), {
          signal: ctx.signal,
          halfClose: [true, false],
        })
          .run().catch((err) => {
            // The clients see the end of stdin; why it ended is said once.
            if (!ctx.signal.aborted) reporter.warning(toSockitError(err, "read", "stdin").message);
            hub.end();
          });
      }
      return runSession(conn, ctx, reporter, {
        input: hub.subscribe(),
        idleTimeout: options.idleTimeout,
        role: "listen",
        crlf: options.crlf,
        sendOnly: options.sendOnly,
        halfClose: [true, !options.noHalfClose],
        warnOnly: true,
      });
    };
  }
  prepareStdio(options, ctx);
  return (conn) =>
    runSession(conn, ctx, reporter, {
      steps: options.steps,
      sendOnly: options.sendOnly,
      recvOnly: options.recvOnly,
      idleTimeout: options.idleTimeout,
      role: "listen",
      crlf: options.crlf,
      halfClose: [true, !options.noHalfClose],
      warnOnly: many,
    });
}

/** The command's stdin as the reading side of a relay. */
function stdinSide(ctx: CommandContext): Duplex {
  return {
    label: "stdin",
    read: (p) => ctx.stdin.read(p),
    write: () => Promise.reject(new Error("stdin is read only")),
    closeWrite: () => Promise.resolve(),
    cancelRead: (linger) => ctx.stdin.cancel(linger),
    close: () => ctx.stdin.cancel(),
  };
}

/** A hub as the writing side of a relay: what is written goes to every subscriber. */
function hubPublisher(hub: Fanout): Duplex {
  return {
    label: "clients",
    read: () => Promise.resolve(null),
    write: async (p) => {
      await hub.publish(p);
      return p.length;
    },
    closeWrite: () => Promise.resolve(hub.end()),
    close: () => hub.end(),
  };
}

/** A client's place in the broker: what it sends goes to all the others. */
function brokerPort(hub: Fanout): Duplex & { inbox: Subscription } {
  const inbox = hub.subscribe();
  return {
    inbox,
    label: "broker",
    read: (p) => inbox.read(p),
    write: async (p) => {
      await hub.publish(p, inbox);
      return p.length;
    },
    closeWrite: () => Promise.resolve(),
    cancelRead: () => inbox.cancel(),
    close: () => inbox.cancel(),
  };
}

/** The protocol a child's `SOCKIT_PROTO` names: the socket's own (`tcp` under `ws://`). */
function protoOf(endpoint: Endpoint): string {
  const row = transportOf(endpoint);
  return row.over ?? row.scheme;
}
