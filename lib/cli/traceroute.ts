/**
 * `sockit traceroute HOST`: the hops to HOST, one line each, as
 * `traceroute -n` prints them.
 *
 * @module
 */

import { exitCodeOf, UsageError } from "../base/errors.ts";
import { jsonLine } from "../base/format.ts";
import { formatHost } from "../net/ip.ts";
import { requireRawSockets, unmappedAddress } from "../net/raw.ts";
import { resolve } from "../net/resolve.ts";
import { traceroute } from "../tools/traceroute.ts";
import type { Hop } from "../tools/traceroute.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { LIFETIME_FLAG } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import { familyFlag } from "./values.ts";

/** Parsed options of `sockit traceroute`. */
export interface TracerouteCommandOptions extends GlobalOptions {
  /** The host as given. */
  host: string;
  /** `-m`. */
  maxHops: number;
  /** `-q`. */
  queries: number;
  /** `-w` in ms. */
  probeTimeout: number;
  /** `-p`. */
  port: number;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** `--timeout`: the whole command's limit in ms (exit 124). */
  lifetime?: number;
}

/** `sockit traceroute`. */
export const tracerouteCommand: Command<TracerouteCommandOptions> = {
  name: "traceroute",
  summary: "the routers on the way to a host (traceroute -n's lines)",
  usage: "[options] HOST",
  description: `Sends UDP probes to HOST with TTL 1, 2, … and prints who answers each hop
("time exceeded" from routers, "port unreachable" from HOST), as traceroute -n
does; * for a probe nobody answered. An unreachable from a router (!H, !N,
!X…) ends the trace, as it does traceroute's. Reads the answers from a raw
ICMP socket: needs root or CAP_NET_RAW, and --allow-ffi.
Exit 0 when HOST answered, 1 when it did not (within the hops, or a router
said it is unreachable), 126 without a raw socket.`,
  flags: [{
    title: "Options",
    flags: [
      "max-hops",
      "queries",
      "probe-timeout",
      LIFETIME_FLAG,
      "port",
      "numeric",
      ["ipv4", "resolve HOST to IPv4"],
      ["ipv6", "resolve HOST to IPv6"],
    ],
  }],
  output: ["verbose", "json", "trace", "color", "help"],
  outputHelp: {
    json: "one JSON object per hop on stdout (hop, probes with from and rttMs), then traced",
  },
  examples: [
    "sockit traceroute -n 127.0.0.1",
    "sockit traceroute -q 1 -w 1s ::1 --json",
  ],
  parse({ values, positionals, globals }) {
    const args = positionals;
    if (args.length < 1) throw new UsageError("expected HOST, e.g. sockit traceroute 127.0.0.1");
    if (args.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(args[1])}`);
    const host = args[0].replace(/^\[(.*)\]$/, "$1");
    if (!/^[A-Za-z0-9_.:%-]+$/.test(host)) {
      throw new UsageError(`invalid host ${JSON.stringify(args[0])}`);
    }
    return {
      ...globals,
      host,
      maxHops: values["max-hops"]!,
      queries: values.queries!,
      probeTimeout: values["probe-timeout"]!,
      port: values.port!,
      family: familyFlag(values),
      lifetime: values.timeout || undefined,
    };
  },
  run: runTraceroute,
  deadline: (options) => options.lifetime,
};

/**
 * One hop as `traceroute -n` prints it: the TTL, then each probe's time,
 * with the answering address before the first of its times (and again
 * when it changes), `*` for no answer.
 *
 * @example Usage
 * ```ts
 * import { hopLine } from "./traceroute.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   hopLine({ ttl: 1, probes: [{ from: "127.1.0.2", rttMs: 0.0712 }, {}, { from: "127.1.0.2", rttMs: 0.02 }] }),
 *   " 1  127.1.0.2  0.071 ms *  0.020 ms",
 * );
 * assert.equal(hopLine({ ttl: 12, probes: [{}, {}, {}] }), "12  * * *");
 * ```
 */
export function hopLine(hop: Hop): string {
  let line = `${String(hop.ttl).padStart(2)} `;
  let last: string | undefined;
  for (const probe of hop.probes) {
    if (probe.from === undefined) {
      line += " *";
      continue;
    }
    if (probe.from !== last) line += ` ${probe.from}`;
    last = probe.from;
    line += `  ${probe.rttMs!.toFixed(3)} ms${probe.mark ? ` ${probe.mark}` : ""}`;
  }
  return line;
}

/**
 * Runs `sockit traceroute`.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runTraceroute(parseCommand(tracerouteCommand, ["127.0.0.1"]), ctx);
 * ```
 */
export async function runTraceroute(
  options: TracerouteCommandOptions,
  ctx: CommandContext,
): Promise<number> {
  using reporter = makeReporter(options, ctx, "traceroute");
  const encoder = new TextEncoder();
  const writes: Promise<unknown>[] = [];
  const out = (text: string) => writes.push(ctx.stdout.write(encoder.encode(text)));
  let address = options.host;
  try {
    requireRawSockets("traceroute", options.host);
    // An IPv4-mapped literal is IPv4 (for -4/-6 too), as traceroute(8) takes it.
    [address] = await resolve(unmappedAddress(options.host), {
      op: "traceroute",
      family: options.family,
      address: formatHost(options.host),
    });
    const family = address.includes(":") ? 6 : 4;
    const size = 32;
    const packet = size + 8 + (family === 6 ? 40 : 20);
    out(
      options.json
        ? jsonLine("traceroute", {
          host: options.host,
          address,
          maxHops: options.maxHops,
          packetBytes: packet,
        })
        : `traceroute to ${options.host} (${address}), ${options.maxHops} hops max, ${packet} byte packets\n`,
    );
    const result = await traceroute(address, {
      maxHops: options.maxHops,
      queries: options.queries,
      probeTimeout: options.probeTimeout,
      port: options.port,
      size,
      signal: ctx.signal,
      trace: reporter.traceFn,
      onHop: (hop) =>
        out(
          options.json
            ? jsonLine("hop", {
              hop: hop.ttl,
              probes: hop.probes.map((p) =>
                p.from === undefined ? { timeout: true } : {
                  from: p.from,
                  rttMs: Math.round(p.rttMs! * 1000) / 1000,
                  ...(p.mark ? { mark: p.mark } : {}),
                }
              ),
            })
            : `${hopLine(hop)}\n`,
        ),
    });
    if (options.json) {
      out(jsonLine("traced", { address, reached: result.reached, hops: result.hops.length }));
    }
    await Promise.all(writes);
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    if (!result.reached) {
      const by = result.endedBy;
      reporter.info(
        by
          ? `${formatHost(address)} not reached: ${by.from} answered ${
            by.mark ?? "port unreachable"
          } at hop ${by.ttl}`
          : `${formatHost(address)} did not answer within ${options.maxHops} hops`,
      );
    }
    return result.reached ? 0 : 1;
  } catch (err) {
    await Promise.all(writes);
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "traceroute", formatHost(address));
  }
}
