/**
 * `sockit listen ENDPOINT`: bind, listen, accept and bridge each connection
 * with stdin/stdout (nc -l), a child process (`--exec`), or the other
 * clients (`--broker`); `-k` keeps accepting.
 *
 * @module
 */

import { formatEndpoint, requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf, UsageError } from "../errors.ts";
import { checkRunPermission, ChildStream, connectionEnv, splitCommand } from "../exec.ts";
import { Fanout } from "../fanout.ts";
import { listen } from "../listener.ts";
import type { Duplex } from "../relay.ts";
import { serve } from "../server.ts";
import type { SocketStream } from "../stream.ts";
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
import {
  bridge,
  checkSendFile,
  prepareStdio,
  runSession,
  SEND_FLAGS,
  sendFlags,
  SERVER_BUFFER,
} from "./session.ts";
import { runListenUdp } from "./udp.ts";
import {
  explainTlsListenError,
  serverCertificate,
  TLS_SERVER_FLAGS,
  tlsServerFlags,
} from "./tls_flags.ts";
import type { TlsServerFlags } from "./tls_flags.ts";

/** Help text of `sockit listen`. */
export const LISTEN_HELP = `Usage: sockit listen [options] ENDPOINT

Bind, listen and accept a connection; bridge it with stdin/stdout (nc -l).
The session ends when both directions have ended: the client has closed its
side (everything it sent is on stdout) and stdin has reached its end (then
sockit half-closes). With stdin at a terminal, the client's close ends it.

ENDPOINT
  8888               127.0.0.1:8888 (loopback unless a host is given)
  0.0.0.0:8888       every IPv4 interface; [::]:8888 every IPv6 one
  [::1]:0            port 0: the OS picks a free port (see -v / --json)
  unix:/tmp/s.sock   a Unix socket (a stale socket file is replaced)
  tls://127.0.0.1:0  a TLS server (or --tls with host:port)
  udp://127.0.0.1:53 UDP: datagrams to stdout; stdin to the latest peer

Options
  -k, --keep-open    keep accepting, clients at once: what each sends goes to
                     stdout, stdin goes to every client
  --send TEXT        send TEXT (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH), then half-close
  --send-file PATH   send the file, then half-close
  --exec 'PROG ARGS' wire each connection to a new child (no shell); the child
                     gets SOCKIT_REMOTE_ADDR/_PORT, SOCKIT_LOCAL_ADDR/_PORT,
                     SOCKIT_PROTO in its environment (needs --allow-run)
  --sh-exec 'CMD'    the same through /bin/sh -c
  --broker           relay between all connected clients (each client's bytes go
                     to every other client); implies -k
  --max-conns N      at most N clients at once; more are closed at once
  --allow CIDR       accept only clients in these ranges (repeatable)
  --deny CIDR        refuse clients in these ranges (repeatable)
  --idle-timeout DUR end a connection after DUR without data (exit 124)
  --tls              serve TLS (as with a tls:// endpoint)
  --cert PEM --key PEM  the certificate and key; without them an ephemeral
                     self-signed certificate (localhost, 127.0.0.1, ::1) is made
                     and its SHA-256 fingerprint printed with -v / --json
  --alpn PROTO       accept this ALPN protocol (repeatable)
  -4, -6             port-only form binds 127.0.0.1 (default) or ::1
  -v, --verbose      events on stderr: listening, connection from, closed, rejected
  -q, --quiet        no warnings or events
  --json             events as JSON lines on stderr
  --trace            socket calls on stderr: socket, bind, listen, accept, read, write
${TRAFFIC_HELP}
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit listen 127.0.0.1:8888 --send 'hello!'
  sockit listen 0 -v > received.bin
  sockit listen -k 8080 --sh-exec 'printf "HTTP/1.0 200 OK\\r\\n\\r\\nhi\\n"'
  sockit listen -k 9000 --exec 'tr a-z A-Z' --max-conns 10 --allow 127.0.0.0/8
  sockit listen --broker 7000
  sockit listen udp://127.0.0.1:5353 -v
`;

/** Parsed options of `sockit listen`. */
export interface ListenCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to listen. */
  endpoint: Endpoint;
  /** Bytes to send to each client instead of stdin. */
  send?: Uint8Array;
  /** File to send to each client instead of stdin. */
  sendFile?: string;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** `-k`: keep accepting. */
  keepOpen: boolean;
  /** `--exec` / `--sh-exec`: the child's argv. */
  exec?: string[];
  /** `--broker`. */
  broker: boolean;
  /** TLS server options, when the listener is TLS. */
  tls?: TlsServerFlags;
}

/**
 * Parses the arguments of `sockit listen` (without the command name).
 *
 * @example Usage
 * ```ts
 * import { parseListenArgs } from "./listen.ts";
 * import assert from "node:assert/strict";
 *
 * const options = parseListenArgs(["127.0.0.1:8888", "--send", "hello!"]);
 * assert.deepEqual(options.endpoint, { transport: "tcp", hostname: "127.0.0.1", port: 8888 });
 * assert.deepEqual(new TextDecoder().decode(options.send), "hello!");
 * assert.deepEqual(parseListenArgs(["-k", "0", "--exec", "tr a-z A-Z"]).exec, ["tr", "a-z", "A-Z"]);
 * ```
 */
export function parseListenArgs(argv: string[]): ListenCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    ...SEND_FLAGS,
    ...SERVER_FLAGS,
    ...FAMILY_FLAGS,
    "keep-open": { type: "boolean", short: "k" },
    exec: { type: "string" },
    "sh-exec": { type: "string" },
    broker: { type: "boolean" },
    ...TLS_SERVER_FLAGS,
  });
  if (globals.help) {
    return {
      ...globals,
      endpoint: { transport: "tcp", port: 0 },
      keepOpen: false,
      broker: false,
      access: { allow: [], deny: [] },
    };
  }
  const endpoint = oneEndpoint(positionals);
  requireTransport(endpoint, ["tcp", "unix", "udp", "tls"], "listen");
  const exclusive = (names: string[]) => {
    const given = names.filter((n) => values[n] !== undefined);
    if (given.length > 1) {
      throw new UsageError(
        `options ${given.map((n) => `--${n}`).join(" and ")} exclude each other`,
      );
    }
  };
  exclusive(["exec", "sh-exec", "send", "send-file", "broker"]);
  let exec: string[] | undefined;
  if (typeof values.exec === "string") {
    exec = splitCommand(values.exec);
    if (exec.length === 0) {
      throw new UsageError("option --exec needs a command, e.g. --exec 'tr a-z A-Z'");
    }
  } else if (typeof values["sh-exec"] === "string") {
    if (values["sh-exec"].trim() === "") throw new UsageError("option --sh-exec needs a command");
    exec = ["/bin/sh", "-c", values["sh-exec"]];
  }
  const options: ListenCommandOptions = {
    ...globals,
    endpoint,
    ...sendFlags(values),
    ...serverLimits(values),
    family: familyFlag(values, endpoint),
    keepOpen: values["keep-open"] === true,
    exec,
    broker: values.broker === true,
    tls: tlsServerFlags(values, endpoint),
  };
  if (endpoint.transport === "udp") {
    const stream = ["keep-open", "exec", "sh-exec", "broker", "max-conns", "allow", "deny"]
      .find((n) => values[n] !== undefined);
    if (stream) throw new UsageError(`option --${stream} is not supported with udp://`);
  }
  return options;
}

/**
 * Runs `sockit listen`: returns the exit code.
 *
 * @example Usage
 * ```ts ignore
 * import { memoryContext } from "./context.ts";
 * const code = await runListen(parseListenArgs(["0", "--send", "hi"]), memoryContext());
 * ```
 */
export async function runListen(
  options: ListenCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  const reporter = makeReporter(options, ctx, "listen");
  const endpoint = options.endpoint;
  if (endpoint.transport === "udp") {
    return await runListenUdp({ ...options, endpoint }, ctx, reporter);
  }
  const trace = reporter.tracing ? reporter.trace.bind(reporter) : undefined;
  const many = options.keepOpen || options.broker;
  let handler: (conn: SocketStream) => Promise<number>;
  try {
    await checkSendFile(options);
    if (options.exec) checkRunPermission(options.exec[0]);
    const tlsFlags = options.tls;
    const tls = tlsFlags ? await serverCertificate(tlsFlags, reporter) : undefined;
    const listener = await listen(options.endpoint, {
      family: options.family,
      trace,
      tls,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
    }).catch((err) => Promise.reject(tlsFlags ? explainTlsListenError(err, tlsFlags) : err));
    reporter.listening(listener.address, listener.transport);
    handler = connectionHandler(options, ctx, reporter);
    const code = await serve(listener, handler, {
      reporter,
      signal: ctx.signal,
      once: !many,
      maxConns: options.maxConns,
      access: options.access,
    });
    if (many) reporter.totals();
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return code;
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "listen", formatEndpoint(options.endpoint));
  }
}

/** What each accepted connection is bridged with, by mode. */
function connectionHandler(
  options: ListenCommandOptions,
  ctx: CommandContext,
  reporter: ReturnType<typeof makeReporter>,
): (conn: SocketStream) => Promise<number> {
  const many = options.keepOpen || options.broker;
  const common = {
    signal: ctx.signal,
    idleTimeout: options.idleTimeout,
    warnOnly: many,
    bufferSize: many ? SERVER_BUFFER : undefined,
  };
  if (options.exec) {
    const argv = options.exec;
    return (conn) => {
      let child: ChildStream;
      try {
        child = new ChildStream({
          argv,
          env: connectionEnv(conn.conn.remoteAddr, conn.conn.localAddr, conn.isTls),
        });
      } catch (err) {
        conn.close();
        return Promise.resolve(reporter.fail(err, "exec", argv[0]));
      }
      return bridge(conn, child, reporter, {
        ...common,
        // The client's end of input ends the session once the child has
        // been silent for EXEC_LINGER ms (or has exited); then it is ended.
        endOnEof: "a",
        linger: EXEC_LINGER,
        otherName: { read: `exec ${argv[0]}`, write: `exec ${argv[0]}` },
      });
    };
  }
  if (options.broker) {
    const hub = new Fanout({ highWater: 256 * 1024 });
    return (conn) => bridge(conn, brokerPort(hub), reporter, { ...common, endOnEof: "a" });
  }
  if (options.keepOpen && !options.send && options.sendFile === undefined) {
    // stdin goes to every client: one reader, one queue per client.
    const hub = new Fanout();
    let started = false;
    return (conn) => {
      if (!started) {
        started = true;
        pumpInto(ctx, hub);
      }
      return runSession(conn, ctx, reporter, {
        source: hub.subscribe(),
        idleTimeout: options.idleTimeout,
        warnOnly: true,
      });
    };
  }
  prepareStdio(options, ctx);
  return (conn) =>
    runSession(conn, ctx, reporter, {
      send: options.send,
      sendFile: options.sendFile,
      idleTimeout: options.idleTimeout,
      warnOnly: many,
    });
}

/** After a client's end of input, how long a silent `--exec` child may take before it is ended. */
export const EXEC_LINGER = 1000;

/** Reads stdin into `hub` until its end. */
async function pumpInto(ctx: CommandContext, hub: Fanout): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await ctx.stdin.read(buf);
      if (n === null) break;
      await hub.publish(buf.subarray(0, n));
    }
  } finally {
    hub.end();
  }
}

/** A client's place in the broker: what it sends goes to all the others. */
function brokerPort(hub: Fanout): Duplex {
  const inbox = hub.subscribe();
  return {
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
