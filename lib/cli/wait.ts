/**
 * `sockit wait ENDPOINT… [-- CMD ARGS…]`: block until every endpoint accepts
 * connections (or, with `--reverse`, refuses them), then optionally run a
 * command — what CI scripts use wait-on and wait-for-it for.
 *
 * @module
 */

import os from "node:os";
import { formatEndpoint, parseEndpoint } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf, SockitError, TimeoutError, toSockitError, UsageError } from "../errors.ts";
import { checkRunPermission } from "../exec.ts";
import { formatDuration, jsonLine } from "../format.ts";
import { requireEndpoint } from "../transports.ts";
import { waitFor } from "../wait.ts";
import type { WaitResult } from "../wait.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import type { GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { durationFlag, familyFlag } from "./values.ts";

/** Parsed options of `sockit wait`. */
export interface WaitCommandOptions extends GlobalOptions {
  /** The endpoints to wait for. */
  endpoints: Endpoint[];
  /** Give up after this many ms. */
  timeout: number;
  /** Try each endpoint this often (ms). */
  interval: number;
  /** Wait for refusals instead. */
  reverse: boolean;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** The command to run once everything is ready. */
  command?: string[];
}

/** `sockit wait`. */
export const waitCommand: Command<WaitCommandOptions> = {
  name: "wait",
  summary: "block until endpoints accept connections (or refuse them); then run a command",
  usage: "[options] ENDPOINT… [-- CMD ARGS…]",
  description: `Block until every endpoint accepts a connection (a host name: any of its
addresses), then exit 0 — or run CMD and exit with its status. Each endpoint
is tried once per interval. On timeout, exit 124 and name each endpoint that
never came up, with the last error seen for it. One result line per endpoint
goes to stdout as it is settled.`,
  sections: [{
    title: "ENDPOINT",
    lines: ["5432 (localhost)   db:5432   [::1]:8080   tcp:db:5432   unix:/run/app.sock"],
  }],
  flags: [{
    title: "Options",
    flags: [
      ["timeout", "give up after DUR (default 30s)"],
      "interval",
      "reverse",
      ["ipv4", "resolve host names to IPv4 only"],
      ["ipv6", "resolve host names to IPv6 only"],
    ],
  }],
  output: ["verbose", "quiet", "json", "color", "help"],
  outputHelp: {
    quiet: "no result lines (only the exit status)",
    json: "results as JSON lines on stdout",
    verbose: "more on stderr",
  },
  examples: [
    "sockit wait db:5432 redis:6379 --timeout 60s",
    "sockit wait 127.0.0.1:8080 -- curl -fsS http://127.0.0.1:8080/health",
    "sockit wait --reverse 127.0.0.1:8080 --timeout 10s",
  ],
  passThrough: true,
  parse({ values, positionals, globals }, command) {
    if (positionals.length === 0) {
      throw new UsageError("missing endpoint (e.g. sockit wait 127.0.0.1:5432)");
    }
    const endpoints = positionals.map((text) => {
      const endpoint = parseEndpoint(text);
      requireEndpoint(endpoint, { role: "connect", kind: "stream", plain: true }, "wait", text);
      return endpoint;
    });
    if (command !== undefined && command.length === 0) {
      throw new UsageError("nothing after -- to run");
    }
    const interval = durationFlag(values, "interval") ?? 250;
    if (interval <= 0) throw new UsageError("option --interval must be more than 0");
    return {
      ...globals,
      endpoints,
      timeout: durationFlag(values, "timeout") ?? 30_000,
      interval,
      reverse: values.reverse === true,
      family: familyFlag(values),
      command,
    };
  },
  run: runWait,
};

/** A result as a line of text. */
function resultText(result: WaitResult, reverse: boolean): string {
  const state = result.ready
    ? (reverse ? "closed" : "ready")
    : (reverse ? "still open" : "not ready");
  const tries = `${result.attempts} attempt${result.attempts === 1 ? "" : "s"}`;
  const why = result.lastError ? `: ${result.lastError}` : "";
  return `${result.address} ${state} after ${formatDuration(result.elapsedMs)} (${tries})${why}\n`;
}

/**
 * Runs `sockit wait`: 0 when all are ready (or the command's status), 124
 * on timeout.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runWait(parseCommand(waitCommand, ["127.0.0.1:5432"]), ctx);
 * ```
 */
export async function runWait(options: WaitCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "wait");
  const encoder = new TextEncoder();
  let results: WaitResult[];
  try {
    if (options.command) checkRunPermission(options.command[0]);
    const pending: Promise<number>[] = [];
    results = await waitFor(options.endpoints, {
      timeout: options.timeout,
      interval: options.interval,
      reverse: options.reverse,
      family: options.family,
      signal: ctx.signal,
      onResult: (result) => {
        if (options.quiet) return;
        const line = options.json
          ? jsonLine("wait", {
            endpoint: result.endpoint,
            address: result.address,
            ready: result.ready,
            reverse: options.reverse,
            elapsedMs: result.elapsedMs,
            attempts: result.attempts,
            lastError: result.lastError ?? null,
          })
          : resultText(result, options.reverse);
        pending.push(ctx.stdout.write(encoder.encode(line)));
      },
    });
    await Promise.all(pending);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "wait", options.endpoints.map(formatEndpoint).join(" "));
  }
  const late = results.filter((r) => !r.ready);
  if (late.length) {
    const names = late.map((r) => `${r.address}${r.lastError ? ` (${r.lastError})` : ""}`).join(
      ", ",
    );
    return reporter.fail(
      new TimeoutError(
        `timed out after ${formatDuration(options.timeout)}; ${
          options.reverse ? "still open" : "not ready"
        }: ${names}`,
        { op: "wait" },
      ),
    );
  }
  if (!options.command) return 0;
  return await runCommand(options.command, ctx, reporter);
}

/** Runs the command after `--` with sockit's stdio; resolves to its exit status. */
async function runCommand(
  argv: string[],
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  await ctx.stdout.flush();
  try {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const stop = () => child.kill("SIGTERM");
    ctx.signal.addEventListener("abort", stop, { once: true });
    const status = await child.status;
    ctx.signal.removeEventListener("abort", stop);
    // A child killed by a signal exits 128 + its number, as shells report it.
    const signals = os.constants.signals as Record<string, number | undefined>;
    return status.signal ? 128 + (signals[status.signal] ?? 9) : status.code;
  } catch (err) {
    const e = toSockitError(err, "exec", argv[0]);
    if (e.code === "ENOENT") {
      reporter.fail(
        new SockitError("command not found", { op: "exec", address: argv[0], code: "ENOENT" }),
      );
      return 127;
    }
    return reporter.fail(e);
  }
}
