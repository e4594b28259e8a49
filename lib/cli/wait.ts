/**
 * `sockit wait ENDPOINT… [-- CMD ARGS…]`: block until every endpoint accepts
 * connections (or, with `--reverse`, refuses them), then optionally run a
 * command — what CI scripts use wait-on and wait-for-it for.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, requireTransport } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { exitCodeOf, SockitError, TimeoutError, toSockitError, UsageError } from "../errors.ts";
import { checkRunPermission } from "../exec.ts";
import { formatDuration } from "../format.ts";
import { jsonLine } from "../report.ts";
import { waitFor } from "../wait.ts";
import type { WaitResult } from "../wait.ts";
import { durationFlag, FAMILY_FLAGS, makeReporter, parseFlags } from "./args.ts";
import type { GlobalOptions } from "./args.ts";
import type { CommandContext } from "./context.ts";

/** Help text of `sockit wait`. */
export const WAIT_HELP = `Usage: sockit wait [options] ENDPOINT… [-- CMD ARGS…]

Block until every endpoint accepts a connection (a host name: any of its
addresses), then exit 0 — or run CMD and exit with its status. Each endpoint
is tried once per interval. On timeout, exit 124 and name each endpoint that
never came up, with the last error seen for it. One result line per endpoint
goes to stdout as it is settled.

ENDPOINT
  5432 (localhost)   db:5432   [::1]:8080   unix:/run/app.sock

Options
  --timeout DUR      give up after DUR (default 30s)
  --interval DUR     try each endpoint this often (default 250ms)
  --reverse          wait until the endpoints refuse connections (a service stopped)
  -4, -6             resolve host names to IPv4 or IPv6 only
  -q, --quiet        no result lines (only the exit status)
  --json             results as JSON lines on stdout
  -v, --verbose      more on stderr
  --trace            (not used by wait)
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit wait db:5432 redis:6379 --timeout 60s
  sockit wait 127.0.0.1:8080 -- curl -fsS http://127.0.0.1:8080/health
  sockit wait --reverse 127.0.0.1:8080 --timeout 10s
`;

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

/**
 * Parses the arguments of `sockit wait`; everything after `--` is the command.
 *
 * @example Usage
 * ```ts
 * import { parseWaitArgs } from "./wait.ts";
 * import assert from "node:assert/strict";
 *
 * const options = parseWaitArgs(["a:1", "--timeout", "5s", "b:2", "--", "echo", "--up"]);
 * assert.deepEqual([options.endpoints.length, options.timeout, options.command], [2, 5000, ["echo", "--up"]]);
 * ```
 */
export function parseWaitArgs(argv: string[]): WaitCommandOptions {
  const split = argv.indexOf("--");
  const own = split === -1 ? argv : argv.slice(0, split);
  const command = split === -1 ? undefined : argv.slice(split + 1);
  const { values, positionals, globals } = parseFlags(own, {
    timeout: { type: "string" },
    interval: { type: "string" },
    reverse: { type: "boolean" },
    ...FAMILY_FLAGS,
  });
  const base = { ...globals, endpoints: [], timeout: 30_000, interval: 250, reverse: false };
  if (globals.help) return base;
  if (positionals.length === 0) {
    throw new UsageError("missing endpoint (e.g. sockit wait 127.0.0.1:5432)");
  }
  const endpoints = positionals.map((text) => {
    const endpoint = parseEndpoint(text);
    requireTransport(endpoint, ["tcp", "unix"], "wait");
    return endpoint;
  });
  if (command !== undefined && command.length === 0) {
    throw new UsageError("nothing after -- to run");
  }
  if (values.ipv4 && values.ipv6) throw new UsageError("options -4 and -6 contradict each other");
  const interval = durationFlag(values, "interval") ?? 250;
  if (interval <= 0) throw new UsageError("option --interval must be more than 0");
  return {
    ...base,
    endpoints,
    timeout: durationFlag(values, "timeout") ?? 30_000,
    interval,
    reverse: values.reverse === true,
    family: values.ipv4 ? 4 : values.ipv6 ? 6 : undefined,
    command,
  };
}

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
 * const code = await runWait(parseWaitArgs(["127.0.0.1:5432"]), ctx);
 * ```
 */
export async function runWait(options: WaitCommandOptions, ctx: CommandContext): Promise<number> {
  const reporter = makeReporter(options, ctx, "wait");
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

const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGABRT: 6,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGTERM: 15,
};

/** Runs the command after `--` with sockit's stdio; resolves to its exit status. */
async function runCommand(
  argv: string[],
  ctx: CommandContext,
  reporter: ReturnType<typeof makeReporter>,
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
    return status.signal ? 128 + (SIGNAL_NUMBERS[status.signal] ?? 9) : status.code;
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
