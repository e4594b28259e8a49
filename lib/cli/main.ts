/**
 * The command line: argv → command → exit code. Answers `--help` and
 * `--version` before anything is checked, turns usage errors into exit 2,
 * and never lets a stack trace out.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { exitCodeOf, TimeoutError, UsageError } from "../base/errors.ts";
import { Deadline } from "../engine/deadline.ts";
import { formatDuration } from "../base/format.ts";
import { SCHEMES } from "../net/schemes.ts";
import type { Command } from "./command.ts";
import { flagUses, helpText, parseCommand } from "./command.ts";
import { connectCommand } from "./connect.ts";
import type { CommandContext } from "./context.ts";
import { echoCommand } from "./echo.ts";
import { flagName, FLAGS, OUTPUT_FLAGS, TRAFFIC_FLAGS } from "./flags.ts";
import { asksForHelp } from "./quick.ts";
import type { FlagSpec, GlobalOptions } from "./flags.ts";
import { forwardCommand } from "./forward.ts";
import { listenCommand } from "./listen.ts";
import { ncCommand } from "./nc.ts";
import { Reporter } from "./report.ts";
import { pingCommand } from "./ping.ts";
import { proxyCommand } from "./proxy.ts";
import { scanCommand } from "./scan.ts";
import { tracerouteCommand } from "./traceroute.ts";
import { explainUsage, nearest } from "./suggest.ts";
import { waitCommand } from "./wait.ts";

/** The version of sockit, from deno.json. */
export const VERSION: string = denoJson.version;

/** Every command, by name. */
export const COMMANDS: Record<string, Command<unknown>> = Object.fromEntries(
  ([
    listenCommand,
    connectCommand,
    echoCommand,
    forwardCommand,
    proxyCommand,
    waitCommand,
    scanCommand,
    pingCommand,
    tracerouteCommand,
    ncCommand,
  ] as Command<
    unknown
  >[]).map((c) => [c.name, c]),
);

/** The help text of `sockit` itself, generated from the commands, the transport table and the flags. */
export function mainHelp(): string {
  const flag = (name: keyof typeof FLAGS) => {
    const spec: FlagSpec = FLAGS[name];
    const left = `  ${spec.short ? `-${spec.short}, ` : ""}--${name}${
      spec.value ? ` ${spec.value}` : ""
    }`;
    return `${left.padEnd(21)}${spec.help}`;
  };
  const schemes = Object.values(SCHEMES).map((row) => `  ${row.syntax}`.padEnd(21) + row.summary);
  return `sockit ${VERSION}: the socket call sequence as a command-line tool

Usage: sockit <command> [options] <endpoints…>
       sockit help <command>
       sockit --version

Commands
${Object.values(COMMANDS).map((c) => `  ${c.name.padEnd(9)}${c.summary}`).join("\n")}

Endpoints
  8888  host:8888  1.2.3.4:80  [::1]:8888  host:http  tcp:host:8888
${schemes.join("\n")}

Global options
${OUTPUT_FLAGS.map(flag).join("\n")}

Seeing the traffic (listen, connect, echo, forward)
${TRAFFIC_FLAGS.map((use) => flag(typeof use === "string" ? use : use[0])).join("\n")}

Exit status: 0 success, 1 network failure, 2 usage error, 124 timeout,
126 permission denied by Deno, 130/143 interrupted by SIGINT/SIGTERM.

Examples
  sockit listen 127.0.0.1:8888 --send 'hello!'
  sockit connect 127.0.0.1:8888
  sockit connect 127.0.0.1:6379 --send 'PING\\r\\n' --expect '^\\+PONG' --timeout 2s
`;
}

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
 * assert.equal(await main(["--version"], ctx), 0);
 * assert.match(ctx.stdoutText(), /^sockit \d+\.\d+\.\d+\n$/);
 * ```
 */
export async function main(argv: string[], ctx: CommandContext): Promise<number> {
  // `deno task start -- <args>` passes the "--" along.
  const [name, ...rest] = argv[0] === "--" ? argv.slice(1) : argv;
  const command = Object.hasOwn(COMMANDS, name ?? "") ? COMMANDS[name] : undefined;
  const reporter = new Reporter(ctx.stderr, { command: command?.name });
  try {
    if (name === undefined) {
      throw new UsageError(`missing command (${Object.keys(COMMANDS).join(", ")})`);
    }
    if (name === "--help" || name === "-h") return await print(ctx, mainHelp());
    if (name === "--version" || name === "-V") return await print(ctx, `sockit ${VERSION}\n`);
    if (name === "help") {
      if (rest.length === 0) return await print(ctx, mainHelp());
      const target = Object.hasOwn(COMMANDS, rest[0]) ? COMMANDS[rest[0]] : undefined;
      if (!target) throw new UsageError(`unknown command ${JSON.stringify(rest[0])}`);
      return await print(ctx, helpText(target));
    }
    if (!command) {
      const near = nearest(name, Object.keys(COMMANDS));
      throw new UsageError(
        name.startsWith("-")
          ? `unknown option ${name} (options come after the command)`
          : `unknown command ${JSON.stringify(name)}${near ? `: did you mean ${near}?` : ""}`,
      );
    }
    // Help first: whatever else the line says, it is not checked.
    if (asksForHelp(rest)) return await print(ctx, helpText(command));
    let options: unknown;
    try {
      options = parseCommand(command, rest);
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      const longFlags = flagUses(command).map(flagName);
      const better = explainUsage(err.message, command.name, rest, longFlags);
      throw better ? new UsageError(better) : err;
    }
    if (ctx.stdoutMayBeClosed && !command.noStdout) {
      // A closed stdout (>&-) cannot be told from Python's DEVNULL: both run, and -v says so.
      const { verbose, json, quiet } = options as Partial<GlobalOptions>;
      new Reporter(ctx.stderr, { verbose, json, quiet, command: command.name }).info(
        "stdout is /dev/null opened read-write (as a closed stdout, >&-, also is): " +
          "what arrives is discarded",
      );
    }
    const limit = command.deadline?.(options);
    if (limit === undefined) return await command.run(options, ctx);
    // The whole command's --timeout: its signal aborts as a signal would, with a TimeoutError.
    using deadline = new Deadline(
      limit,
      () => new TimeoutError(`timed out after ${formatDuration(limit)}`, { op: name }),
      ctx.signal,
    );
    const code = await command.run(options, { ...ctx, signal: deadline.signal });
    return deadline.expired && !ctx.signal.aborted
      ? reporter.fail(deadline.signal.reason, name)
      : code;
  } catch (err) {
    if (err instanceof UsageError) return reporter.usage(err);
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    // Anything else is a bug or an unexpected runtime failure: one line, no stack.
    return reporter.fail(err, name ?? "sockit");
  }
}
