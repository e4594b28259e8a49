/**
 * `sockit listen ENDPOINT`: bind, listen, accept one connection and bridge
 * it with stdin/stdout (nc -l).
 *
 * @module
 */

import { formatEndpoint, requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf } from "../errors.ts";
import { listen } from "../listener.ts";
import type { SocketStream } from "../stream.ts";
import {
  durationFlag,
  FAMILY_FLAGS,
  familyFlag,
  makeReporter,
  oneEndpoint,
  parseFlags,
} from "./args.ts";
import type { GlobalOptions } from "./args.ts";
import type { CommandContext } from "./context.ts";
import { checkSendFile, prepareStdio, runSession, SEND_FLAGS, sendFlags } from "./session.ts";

/** Help text of `sockit listen`. */
export const LISTEN_HELP = `Usage: sockit listen [options] ENDPOINT

Bind, listen and accept one connection; bridge it with stdin/stdout (nc -l).
The session ends when the client closes its side, once everything it sent is
on stdout; end of stdin shuts down the write side (half-close).

ENDPOINT
  8888               127.0.0.1:8888 (loopback unless a host is given)
  0.0.0.0:8888       every IPv4 interface; [::]:8888 every IPv6 one
  [::1]:0            port 0: the OS picks a free port (see -v / --json)
  unix:/tmp/s.sock   a Unix socket (a stale socket file is replaced)

Options
  --send TEXT        send TEXT (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH), then half-close
  --send-file PATH   send the file, then half-close
  --idle-timeout DUR end the session after DUR without data (exit 124)
  -4, -6             port-only form binds 127.0.0.1 (default) or ::1
  -v, --verbose      events on stderr: listening, connection from, closed
  -q, --quiet        no warnings or events
  --json             events as JSON lines on stderr
  --trace            socket calls on stderr: socket, bind, listen, accept, read, write
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit listen 127.0.0.1:8888 --send 'hello!'
  sockit listen 0 -v > received.bin
  sockit listen unix:/tmp/app.sock --json
`;

/** Parsed options of `sockit listen`. */
export interface ListenCommandOptions extends GlobalOptions {
  /** Where to listen. */
  endpoint: Endpoint;
  /** Bytes to send to the client instead of stdin. */
  send?: Uint8Array;
  /** File to send to the client instead of stdin. */
  sendFile?: string;
  /** Idle timeout in ms. */
  idleTimeout?: number;
  /** `-4` / `-6`. */
  family?: 4 | 6;
}

/**
 * Parses the arguments of `sockit listen` (without the command name).
 *
 * @example Usage
 * ```ts
 * import { parseListenArgs } from "./listen.ts";
 * import { assertEquals } from "node:assert/strict";
 *
 * const options = parseListenArgs(["127.0.0.1:8888", "--send", "hello!"]);
 * assertEquals(options.endpoint, { transport: "tcp", hostname: "127.0.0.1", port: 8888 });
 * assertEquals(new TextDecoder().decode(options.send), "hello!");
 * ```
 */
export function parseListenArgs(argv: string[]): ListenCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    ...SEND_FLAGS,
    "idle-timeout": { type: "string" },
    ...FAMILY_FLAGS,
  });
  if (globals.help) return { ...globals, endpoint: { transport: "tcp", port: 0 } };
  const endpoint = oneEndpoint(positionals);
  requireTransport(endpoint, ["tcp", "unix"], "listen");
  return {
    ...globals,
    endpoint,
    ...sendFlags(values),
    family: familyFlag(values, endpoint),
    idleTimeout: durationFlag(values, "idle-timeout"),
  };
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
  const trace = reporter.tracing ? reporter.trace.bind(reporter) : undefined;
  let conn: SocketStream;
  try {
    await checkSendFile(options);
    const listener = await listen(options.endpoint, {
      family: options.family,
      trace,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
    });
    const stopListening = () => listener.close();
    ctx.signal.addEventListener("abort", stopListening, { once: true });
    try {
      reporter.listening(listener.address, listener.transport);
      prepareStdio(options, ctx);
      conn = await listener.accept();
    } finally {
      ctx.signal.removeEventListener("abort", stopListening);
      listener.close();
    }
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "listen", formatEndpoint(options.endpoint));
  }
  reporter.accepted(conn.id, conn.remoteAddress, conn.localAddress);
  return await runSession(conn, ctx, reporter, {
    send: options.send,
    sendFile: options.sendFile,
    idleTimeout: options.idleTimeout,
  });
}
