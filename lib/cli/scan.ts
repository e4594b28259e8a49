/**
 * `sockit scan HOST PORTS`: a TCP connect scan (nc -z); prints the open
 * ports, one per line.
 *
 * @module
 */

import { exitCodeOf, toSockitError, UsageError } from "../base/errors.ts";
import { formatDuration, jsonLine } from "../base/format.ts";
import { formatHost } from "../net/ip.ts";
import { resolve } from "../net/resolve.ts";
import { formatPorts, parsePorts, scan, scanUdp } from "../tools/scan.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import type { GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { familyFlag } from "./values.ts";
import { sourceFamily } from "../net/socket_options.ts";
import type { SourceAddress } from "../net/tcp_libc.ts";
import { proxyDialer } from "../protocols/proxy.ts";
import type { ProxySpec } from "../protocols/proxy_options.ts";

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
  /** `--proxy`: probe through this proxy. */
  proxy?: ProxySpec;
  /** `-u`: a UDP scan. */
  udp?: boolean;
  /** `--source ADDR`: probe from this local address. */
  source?: SourceAddress;
}

/** `--source ADDR` of a scan: an address only, as the probes are many at once. */
export function scanSource(
  source: SourceAddress | undefined,
  proxied: boolean,
): SourceAddress | undefined {
  if (source?.port !== undefined) {
    throw new UsageError(
      "a scan probes many ports at once, so --source takes an address, not a port",
    );
  }
  if (source && proxied) {
    throw new UsageError("options --source and --proxy do not mix in a scan");
  }
  return source;
}

/** `sockit scan`. */
export const scanCommand: Command<ScanCommandOptions> = {
  name: "scan",
  summary: "a TCP connect scan; prints the open ports",
  usage: "[options] HOST PORTS",
  description: `A TCP connect scan: prints each open port of HOST on a line of its own, in
order. Exit 0 when at least one port is open, 1 when none is, 2 on bad input.`,
  sections: [{
    title: "PORTS",
    lines: ["22,80,443   8000-8100   1-65535   ssh,http   (ports 1–65535, ranges ascending)"],
  }],
  flags: [{
    title: "Options",
    flags: [
      "concurrency",
      ["timeout", "a port that has not answered after DUR is filtered (default 1s)"],
      ["ipv4", "resolve HOST to IPv4"],
      ["ipv6", "resolve HOST to IPv6"],
      "udp",
      ["source", "probe from this local address (no port: the probes are many at once)"],
      [
        "proxy",
        "probe through a proxy: a port is open when the proxy's tunnel opens (default concurrency 16)",
      ],
    ],
  }],
  output: ["verbose", "quiet", "json", "color", "help"],
  outputHelp: {
    json: "one JSON object per open port on stdout (port, state, latencyMs)",
    verbose: "a summary on stderr",
    quiet: "nothing on stdout (only the exit status)",
  },
  examples: [
    "sockit scan 127.0.0.1 1-65535",
    "sockit scan localhost 5432,6379,8000-8100 --json",
  ],
  parse({ values, positionals, globals }) {
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
    const timeout = values.timeout ?? 1000;
    if (timeout <= 0) throw new UsageError("option --timeout must be more than 0");
    const source = scanSource(values.source, values.proxy !== undefined);
    return {
      ...globals,
      host,
      ports: parsePorts(positionals[1]),
      concurrency: values.concurrency,
      timeout,
      family: sourceFamily(source, familyFlag(values)),
      proxy: values.proxy,
      udp: values.udp === true,
      source,
    };
  },
  run: runScan,
};

/**
 * Runs `sockit scan`: 0 when a port is open, 1 when none.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runScan(parseCommand(scanCommand, ["127.0.0.1", "1-1024"]), ctx);
 * ```
 */
export async function runScan(options: ScanCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "scan");
  const started = performance.now();
  let address = options.host;
  try {
    if (options.udp) return await runUdpScan(options, ctx, reporter, started);
    // Through a proxy that resolves names (socks5h, socks4a, http), the name goes to the proxy.
    const remoteNames = options.proxy &&
      ["socks5h", "socks4a", "http"].includes(options.proxy.scheme);
    if (!remoteNames) {
      [address] = await resolve(options.host, { op: "scan", family: options.family });
    }
    const open = await scan(address, options.ports, {
      dialer: options.proxy ? proxyDialer(options.proxy) : undefined,
      source: options.source,
      concurrency: options.concurrency,
      timeout: options.timeout,
      signal: ctx.signal,
      onPath: (path) =>
        reporter.info(
          path === "libc"
            ? "probing through libc: non-blocking connect() and poll(), in batches per worker"
            : path === "proxy"
            ? `probing through the proxy ${options.proxy?.text}: a port is open when its tunnel opens`
            : path === "source"
            ? `probing from ${options.source?.host}: libc sockets that bind before they connect`
            : "probing with Deno.connect (libc needs --allow-ffi)",
          { path },
        ),
    });
    await printPorts(open, options, ctx, address);
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

/** The ports found, one a line on stdout (JSON objects with `--json`); nothing with `-q`. */
async function printPorts(
  found: Array<{ port: number; state: string; latencyMs?: number }>,
  options: ScanCommandOptions,
  ctx: CommandContext,
  address: string,
): Promise<void> {
  if (options.quiet) return;
  const text = found.map((r) =>
    options.json
      ? jsonLine("port", {
        host: options.host,
        address,
        port: r.port,
        state: r.state,
        // A UDP probe has no connect time.
        latencyMs: r.latencyMs ?? null,
      })
      : `${r.port}\n`
  ).join("");
  await ctx.stdout.write(new TextEncoder().encode(text));
}

/** `scan -u`: the ports that did not refuse, with their state. */
async function runUdpScan(
  options: ScanCommandOptions,
  ctx: CommandContext,
  reporter: Reporter,
  started: number,
): Promise<number> {
  if (options.proxy) {
    throw new UsageError("options -u and --proxy do not mix (a proxy tunnels TCP)");
  }
  const [address] = await resolve(options.host, { op: "scan", family: options.family });
  if (!/^127\.|^::1$/.test(address)) {
    reporter.info(
      "across hosts the target's kernel rate-limits ICMP port unreachable (about 1/s): a port " +
        "it had no budget to refuse shows as open|filtered, and a full scan takes hours",
    );
  }
  const results = await scanUdp(address, options.ports, {
    source: options.source,
    timeout: options.timeout,
    concurrency: options.concurrency,
    signal: ctx.signal,
  });
  await printPorts(results, options, ctx, address);
  const open = results.filter((r) => r.state === "open").length;
  reporter.event(
    "scanned",
    `scanned ${options.ports.length} UDP port${options.ports.length === 1 ? "" : "s"} of ${
      formatHost(address)
    } in ${formatDuration(performance.now() - started)}: ${open} open, ${
      results.length - open
    } open|filtered`,
    {
      address,
      ports: formatPorts(options.ports),
      open: results.length,
      durationMs: Math.round(performance.now() - started),
    },
  );
  return results.length > 0 ? 0 : 1;
}
