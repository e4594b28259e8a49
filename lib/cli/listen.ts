/**
 * `sockit listen ENDPOINT`: bind, listen, accept and bridge each connection
 * with stdin/stdout (nc -l), a child process (`--exec`), or the other
 * clients (`--broker`); `-k` keeps accepting. A datagram endpoint's clients
 * are its senders, a peer each (the listener's); without `-k` its one
 * session bridged to stdio hears every sender and answers the latest.
 *
 * @module
 */

import { formatEndpoint, requireEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import type { FollowOptions } from "../net/datagram_listener.ts";
import { exitCodeOf, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import {
  checkRunPermission,
  childSide,
  ChildStream,
  connectionEnv,
  findProgram,
} from "../tools/exec.ts";
import { Fanout } from "../engine/fanout.ts";
import type { Subscription } from "../engine/fanout.ts";
import { formatBytes, formatDuration } from "../base/format.ts";
import type { Step } from "../engine/dialogue.ts";
import { checkSendFiles, sendDatagrams, sendFiles } from "../engine/payload.ts";
import { Relay } from "../engine/relay.ts";
import type { Duplex } from "../engine/relay.ts";
import { serve } from "../engine/server.ts";
import type { Client, ConnectionHandler } from "../engine/server.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import { schemePrefix } from "../net/schemes.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { FLAGS, LIFETIME_FLAG, TRAFFIC_FLAGS } from "./flags.ts";
import type { FlagName, GlobalOptions } from "./flags.ts";
import { SERVER_SECTIONS } from "./sections.ts";
import type { ParsedGroups } from "./groups.ts";
import type { Reporter } from "./report.ts";
import { openServer, serveOptions } from "./serve.ts";
import { prepareStdio, runSession } from "./session.ts";
import { dialogueSteps, familyFlag, oneEndpoint, serverLimits } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/**
 * After a client's end of input, how long a silent `--exec` child may take
 * before it is ended, by default (`--grace`).
 */
export const EXEC_GRACE: number = FLAGS.grace.default;

/** Parsed options of `sockit listen`. */
export interface ListenCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to listen (with `--tls` applied). */
  endpoint: Endpoint;
  /** The options of the endpoint's groups (TLS, WebSocket, socket options, multicast, …). */
  groups: ParsedGroups;
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
}

/** How long a `--broker` member may stay above its mark before it is dropped, by default. */
export const BROKER_STALL: number = FLAGS["stall-timeout"].default;

/** How much a `--broker` member may have waiting for it before its stall clock runs. */
const BROKER_HIGH_WATER = 256 * 1024;

/** How much may wait for a `--broker` member at most: beyond it, it is dropped at once. */
const BROKER_QUEUE_MAX = 16 << 20;

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
          "at most N clients at once; more are closed at once (udp:// with -k or --exec: N " +
          "peers, default 100; a new peer's datagrams beyond them are dropped)",
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
    ...SERVER_SECTIONS,
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
  endpoints(positionals) {
    const endpoint = oneEndpoint(positionals);
    requireEndpoint(endpoint, { role: "listen" }, "listen", positionals[0]);
    return [{ endpoint, role: "listen", text: positionals[0] }];
  },
  serves: ["keep-open", "broker"],
  parse({ values, given, globals, sequence, endpoints: [at] }) {
    const row = transportOf(at.endpoint);
    if (row.kind === "datagram") {
      // Datagrams have no connections to relay between; with -k or --exec each sender is a
      // session that --max-conns, --allow and --deny apply to; without, the one session hears
      // every sender.
      const sessions = given.has("exec") || given.has("sh-exec") || given.has("keep-open");
      const refused: FlagName[] = [
        "broker",
        ...(sessions ? [] : ["max-conns", "allow", "deny"] as const),
      ];
      const stray = refused.find((name) => given.has(name));
      if (stray) {
        throw new UsageError(`option --${stray} is not supported with ${schemePrefix(row)}`);
      }
    }
    return {
      ...globals,
      endpoint: at.endpoint,
      groups: at.groups,
      steps: dialogueSteps(sequence),
      noHalfClose: values["no-half-close"] === true,
      sendOnly: values["send-only"] === true,
      recvOnly: values["recv-only"] === true,
      crlf: values.crlf === true,
      ...serverLimits(values),
      family: familyFlag(values, at.endpoint),
      keepOpen: values["keep-open"] === true,
      exec: values.exec ?? values["sh-exec"],
      grace: values.grace ?? EXEC_GRACE,
      broker: values.broker === true,
      stallTimeout: values["stall-timeout"],
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
      reporter.relaysTo = `exec ${options.exec[0]}`;
    }
    using listener = await openServer(
      options.endpoint,
      {
        family: options.family,
        groups: options.groups,
        // One session bridged to stdio: a datagram listener's hears every sender.
        follow: many || options.exec ? undefined : follow(options, reporter),
      },
      reporter,
    );
    const code = await serve(listener, connectionHandler(options, ctx, reporter), {
      ...serveOptions(options, ctx, reporter),
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

/**
 * How the one session of `listen` without `-k` takes the senders that come
 * after the first on a datagram endpoint: each is told (`datagrams from`),
 * and greeted with `--send`/`--send-file` as the first is.
 */
function follow(options: ListenCommandOptions, reporter: Reporter): FollowOptions {
  const steps = options.steps;
  let greeting: Promise<Uint8Array[]> | undefined;
  return {
    // The sends whole (read once, when a second sender comes): the peer cuts them to its datagrams.
    greeting: steps && (() => greeting ??= sendDatagrams(steps, Infinity)),
    onPeer: (peer) => reporter.accepted(peer),
  };
}

/** What each accepted client is bridged with, by mode. */
function connectionHandler(
  options: ListenCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
): ConnectionHandler<Client> {
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
      // A datagram peer's child: its output cut into datagrams, its end the session's.
      const side = childSide(conn, child, {
        onDropped: (text) => reporter.warning(`${conn.label}: ${text}`),
      });
      return transfer(conn, side, {
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
    const members = new Map<Subscription, Client>();
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
        // A peer of datagrams: each read of stdin is one datagram for every peer.
        new Relay(stdinSide(ctx, conn.maxDatagram), hubPublisher(hub), {
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

/**
 * The command's stdin as the reading side of a relay; with `max`, record by
 * record (one read of stdin each, at most `max` bytes: one datagram).
 */
function stdinSide(ctx: CommandContext, max?: number): Duplex {
  const stdin = ctx.stdin;
  return {
    label: "stdin",
    readSize: max,
    datagrams: max !== undefined,
    read: max === undefined || !stdin.readRecord ? (p) => stdin.read(p) : async (p) => {
      const record = await stdin.readRecord!(max);
      if (record === null) return null;
      p.set(record);
      return record.length;
    },
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
