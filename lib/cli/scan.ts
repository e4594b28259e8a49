/**
 * `sockit scan HOST PORTS`: a TCP connect scan (nc -z); prints the open
 * ports, one per line.
 *
 * @module
 */

import { formatHost, isIPv4, isIPv6 } from "../address.ts";
import { exitCodeOf, SockitError, toSockitError, UsageError } from "../errors.ts";
import { formatDuration } from "../format.ts";
import { jsonLine } from "../report.ts";
import { formatPorts, parsePorts, scan } from "../scan.ts";
import { systemLookup } from "../stream.ts";
import {
  countFlag,
  durationFlag,
  FAMILY_FLAGS,
  familyFlag,
  makeReporter,
  parseFlags,
} from "./args.ts";
import type { GlobalOptions } from "./args.ts";
import type { CommandContext } from "./context.ts";

/** Help text of `sockit scan`. */
export const SCAN_HELP = `Usage: sockit scan [options] HOST PORTS

A TCP connect scan: prints each open port of HOST on a line of its own, in
order. Exit 0 when at least one port is open, 1 when none is, 2 on bad input.

PORTS
  22,80,443   8000-8100   1-65535   (ports 1–65535, ranges ascending)

Options
  --concurrency N    probes in flight at once (default 200)
  --timeout DUR      a port that has not answered after DUR is filtered (default 1s)
  -4, -6             resolve HOST to IPv4 or IPv6
  --json             one JSON object per open port on stdout (port, state, latencyMs)
  -v, --verbose      a summary on stderr
  -q, --quiet        nothing on stdout (only the exit status)
  --color WHEN       auto, always or never
  -h, --help         this help

Examples
  sockit scan 127.0.0.1 1-65535
  sockit scan localhost 5432,6379,8000-8100 --json
`;

/** Parsed options of `sockit scan`. */
export interface ScanCommandOptions extends GlobalOptions {
  /** The host as given. */
  host: string;
  /** The ports, in order. */
  ports: number[];
  /** Probes in flight. */
  concurrency?: number;
  /** Per-port timeout in ms. */
  timeout: number;
  /** `-4` / `-6`. */
  family?: 4 | 6;
}

/**
 * Parses the arguments of `sockit scan`.
 *
 * @example Usage
 * ```ts
 * import { parseScanArgs } from "./scan.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseScanArgs(["127.0.0.1", "22,80-81"]).ports, [22, 80, 81]);
 * ```
 */
export function parseScanArgs(argv: string[]): ScanCommandOptions {
  const { values, positionals, globals } = parseFlags(argv, {
    concurrency: { type: "string" },
    timeout: { type: "string" },
    ...FAMILY_FLAGS,
  });
  if (globals.help) return { ...globals, host: "", ports: [], timeout: 1000 };
  if (positionals.length < 2) {
    throw new UsageError("expected HOST and PORTS, e.g. sockit scan 127.0.0.1 1-1024");
  }
  if (positionals.length > 2) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[2])}`);
  }
  const host = positionals[0].replace(/^\[(.*)\]$/, "$1");
  if (!/^[A-Za-z0-9_.:%-]+$/.test(host)) {
    throw new UsageError(`invalid host ${JSON.stringify(positionals[0])}`);
  }
  const concurrency = countFlag(values, "concurrency");
  if (concurrency === 0) throw new UsageError("option --concurrency needs at least 1");
  const timeout = durationFlag(values, "timeout") ?? 1000;
  if (timeout <= 0) throw new UsageError("option --timeout must be more than 0");
  return {
    ...globals,
    host,
    ports: parsePorts(positionals[1]),
    concurrency,
    timeout,
    family: familyFlag(values, { transport: "tcp", port: 0 }),
  };
}

/**
 * Runs `sockit scan`: 0 when a port is open, 1 when none.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runScan(parseScanArgs(["127.0.0.1", "1-1024"]), ctx);
 * ```
 */
export async function runScan(options: ScanCommandOptions, ctx: CommandContext): Promise<number> {
  const reporter = makeReporter(options, ctx, "scan");
  const started = performance.now();
  let address = options.host;
  try {
    if (!isIPv4(address) && !isIPv6(address)) {
      const found = await systemLookup(address, options.family);
      if (!found.length) {
        throw new SockitError("name not found", { op: "scan", address, code: "ENOTFOUND" });
      }
      address = found[0];
    } else if (options.family && options.family !== (isIPv4(address) ? 4 : 6)) {
      throw new UsageError(
        `${address}: an IPv${isIPv4(address) ? 4 : 6} address, but -${options.family} was given`,
      );
    }
    const open = await scan(address, options.ports, {
      concurrency: options.concurrency,
      timeout: options.timeout,
      signal: ctx.signal,
    });
    if (!options.quiet) {
      const text = open.map((r) =>
        options.json
          ? jsonLine("port", {
            host: options.host,
            address,
            port: r.port,
            state: r.state,
            latencyMs: r.latencyMs,
          })
          : `${r.port}\n`
      ).join("");
      await ctx.stdout.write(new TextEncoder().encode(text));
    }
    reporter.event(
      "scanned",
      `scanned ${options.ports.length} port${options.ports.length === 1 ? "" : "s"} of ` +
        `${formatHost(address)} in ${
          formatDuration(performance.now() - started)
        }: ${open.length} open`,
      {
        address,
        ports: formatPorts(options.ports),
        open: open.length,
        durationMs: Math.round(performance.now() - started),
      },
    );
    return open.length > 0 ? 0 : 1;
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(
      err instanceof UsageError ? err : toSockitError(err, "scan", options.host),
    );
  }
}
