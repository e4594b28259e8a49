/**
 * The command line: argv → subcommand → exit code. Prints help and the
 * version, turns usage errors into exit 2, and never lets a stack trace out.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { exitCodeOf, UsageError } from "../errors.ts";
import { Reporter } from "../report.ts";
import { CONNECT_HELP, parseConnectArgs, runConnect } from "./connect.ts";
import type { CommandContext } from "./context.ts";
import { ECHO_HELP, parseEchoArgs, runEcho } from "./echo.ts";
import { FORWARD_HELP, parseForwardArgs, runForward } from "./forward.ts";
import { LISTEN_HELP, parseListenArgs, runListen } from "./listen.ts";
import { parseScanArgs, runScan, SCAN_HELP } from "./scan.ts";
import { parseWaitArgs, runWait, WAIT_HELP } from "./wait.ts";

/** The version of sockit, from deno.json. */
export const VERSION: string = denoJson.version;

/** A subcommand: its help, its parser and its runner. */
interface Command {
  help: string;
  summary: string;
  run(argv: string[], ctx: CommandContext): Promise<number>;
}

function command<T extends { help: boolean }>(
  summary: string,
  help: string,
  parse: (argv: string[]) => T,
  run: (options: T, ctx: CommandContext) => Promise<number>,
): Command {
  return {
    summary,
    help,
    async run(argv, ctx) {
      const options = parse(argv);
      if (options.help) {
        await ctx.stdout.write(new TextEncoder().encode(help));
        return 0;
      }
      return await run(options, ctx);
    },
  };
}

/** Every subcommand, by name. */
export const COMMANDS: Record<string, Command> = {
  listen: command(
    "bind, listen, accept one connection; bridge it with stdin/stdout",
    LISTEN_HELP,
    parseListenArgs,
    runListen,
  ),
  connect: command(
    "connect; bridge the connection with stdin/stdout",
    CONNECT_HELP,
    parseConnectArgs,
    runConnect,
  ),
  echo: command(
    "an echo server for TCP, Unix and UDP; keeps accepting",
    ECHO_HELP,
    parseEchoArgs,
    runEcho,
  ),
  forward: command(
    "a port forwarder: accept, connect the target per client, relay both ways",
    FORWARD_HELP,
    parseForwardArgs,
    runForward,
  ),
  wait: command(
    "block until endpoints accept connections (or refuse them); then run a command",
    WAIT_HELP,
    parseWaitArgs,
    runWait,
  ),
  scan: command("a TCP connect scan; prints the open ports", SCAN_HELP, parseScanArgs, runScan),
};

/** Help text of `sockit` itself. */
export const MAIN_HELP = `sockit ${VERSION}: the socket call sequence as a command-line tool

Usage: sockit <command> [options] <endpoints…>
       sockit help <command>
       sockit --version

Commands
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)}${c.summary}`).join("\n")}

Endpoints
  8888  host:8888  1.2.3.4:80  [::1]:8888  tcp://host:port  udp://host:port
  unix:/path/to.sock

Global options
  -v, --verbose   connection events on stderr
  -q, --quiet     no warnings or events
  --json          events as one JSON object per line (stderr)
  --trace         socket calls on stderr, as the system calls they make
  --stats         bytes each way, duration and rate of each connection
  --hex           hex dump of the traffic on stderr (--hex-file PATH: to a file)
  --progress      a refreshing status line on a terminal
  --color WHEN    auto, always or never (NO_COLOR is honoured)
  -h, --help      help for sockit or a command

Exit status: 0 success, 1 network failure, 2 usage error, 124 timeout,
126 permission denied by Deno, 130/143 interrupted by SIGINT/SIGTERM.

Examples
  sockit listen 127.0.0.1:8888 --send 'hello!'
  sockit connect 127.0.0.1:8888
  sockit connect 127.0.0.1:6379 --send 'PING\\r\\n' --expect '^\\+PONG' --timeout 2s
`;

async function print(ctx: CommandContext, text: string): Promise<number> {
  await ctx.stdout.write(new TextEncoder().encode(text));
  return 0;
}

/**
 * Runs the command line `argv` (without the program name) and returns the
 * exit code. Only `main.ts` exits the process.
 *
 * @example Usage
 * ```ts
 * import { main } from "./main.ts";
 * import { memoryContext } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * const ctx = memoryContext();
 * assert.deepEqual(await main(["--version"], ctx), 0);
 * assert.match(ctx.stdoutText(), /^sockit \d+\.\d+\.\d+\n$/);
 * ```
 */
export async function main(argv: string[], ctx: CommandContext): Promise<number> {
  // `deno task start -- <args>` passes the "--" along.
  const [name, ...rest] = argv[0] === "--" ? argv.slice(1) : argv;
  const reporter = new Reporter(ctx.stderr, { command: COMMANDS[name] ? name : undefined });
  try {
    if (name === undefined) {
      throw new UsageError(`missing command (${Object.keys(COMMANDS).join(", ")})`);
    }
    if (name === "--help" || name === "-h") return await print(ctx, MAIN_HELP);
    if (name === "--version" || name === "-V") return await print(ctx, `sockit ${VERSION}\n`);
    if (name === "help") {
      if (rest.length === 0) return await print(ctx, MAIN_HELP);
      const target = COMMANDS[rest[0]];
      if (!target) throw new UsageError(`unknown command ${JSON.stringify(rest[0])}`);
      return await print(ctx, target.help);
    }
    const cmd = COMMANDS[name];
    if (!cmd) {
      throw new UsageError(
        name.startsWith("-")
          ? `unknown option ${name} (options come after the command)`
          : `unknown command ${JSON.stringify(name)}`,
      );
    }
    return await cmd.run(rest, ctx);
  } catch (err) {
    if (err instanceof UsageError) return reporter.usage(err);
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    // Anything else is a bug or an unexpected runtime failure: one line, no stack.
    return reporter.fail(err, name ?? "sockit");
  }
}
