/**
 * `sockit ping HOST`: ICMP echo with iputils ping's lines and statistics.
 *
 * @module
 */

import { exitCodeOf, SockitError, UsageError } from "../base/errors.ts";
import { jsonLine } from "../base/format.ts";
import { formatHost } from "../net/ip.ts";
import { ping } from "../tools/ping.ts";
import type { PingEvent, PingSummary } from "../tools/ping.ts";
import { requireRawSockets, unmappedAddress } from "../net/raw.ts";
import { resolve } from "../net/resolve.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { LIFETIME_FLAG } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import { familyFlag } from "./values.ts";

/** Parsed options of `sockit ping`. */
export interface PingCommandOptions extends GlobalOptions {
  /** The host as given. */
  host: string;
  /** `-c`: requests to send (undefined: until interrupted or the deadline). */
  count?: number;
  /** `-i` in ms (default 1000). */
  interval: number;
  /** `-W` in ms (default 10000). */
  timeout: number;
  /** `-w` in ms. */
  deadline?: number;
  /** `--timeout`: the whole command's limit in ms (exit 124). */
  lifetime?: number;
  /** `-s`: data bytes (default 56). */
  size: number;
  /** `--ttl`. */
  ttl?: number;
  /** `--socket`. */
  socket: "auto" | "raw" | "dgram";
  /** `-4` / `-6`. */
  family?: 4 | 6;
}

/** `sockit ping`. */
export const pingCommand: Command<PingCommandOptions> = {
  name: "ping",
  summary: "ICMP echo over a raw socket (iputils ping's lines)",
  usage: "[options] HOST",
  description: `Sends ICMP echo requests to HOST and prints each reply as iputils ping does,
then the statistics. A raw socket needs root or CAP_NET_RAW; without them an
ICMP datagram socket is used where net.ipv4.ping_group_range allows one.
Needs --allow-ffi. Sends until -c, -w or Ctrl-C (as iputils does).
Exit 0 when replies came, 1 when none did, 126 when the system allows no ICMP
socket, 130/143 when interrupted (after the statistics).`,
  flags: [{
    title: "Options",
    flags: [
      "count",
      [
        "interval",
        "between requests (default 1s; below 2ms needs a raw socket; 0 = as fast as replies)",
      ],
      "reply-timeout",
      "deadline",
      LIFETIME_FLAG,
      "size",
      "ttl",
      "socket",
      ["ipv4", "resolve HOST to IPv4"],
      ["ipv6", "resolve HOST to IPv6"],
    ],
  }],
  output: ["verbose", "quiet", "json", "trace", "color", "help"],
  outputHelp: {
    json: "one JSON object per event on stdout: ping, reply, icmp, done",
    verbose: "which socket was used, on stderr",
    quiet: "only the header and the statistics",
  },
  examples: [
    "sockit ping -c 3 127.0.0.1",
    "sockit ping -c 1 -W 1s --ttl 1 ::1 --json",
  ],
  parse({ values, positionals, globals }) {
    if (positionals.length < 1) throw new UsageError("expected HOST, e.g. sockit ping 127.0.0.1");
    if (positionals.length > 1) {
      throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
    }
    const host = positionals[0].replace(/^\[(.*)\]$/, "$1");
    if (!/^[A-Za-z0-9_.:%-]+$/.test(host)) {
      throw new UsageError(`invalid host ${JSON.stringify(positionals[0])}`);
    }
    return {
      ...globals,
      host,
      count: values.count,
      interval: values.interval ?? 1000,
      timeout: values["reply-timeout"]!,
      deadline: values.deadline,
      lifetime: values.timeout || undefined,
      size: values.size!,
      ttl: values.ttl,
      socket: values.socket!,
      family: familyFlag(values),
    };
  },
  run: runPing,
  deadline: (options) => options.lifetime,
};

/**
 * A round-trip time as iputils prints it: three significant digits below
 * 100 ms (`0.045`, `1.23`, `12.3`), whole milliseconds above.
 *
 * @example Usage
 * ```ts
 * import { formatRtt } from "./ping.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([0.0451, 1.234, 12.34, 123.4].map(formatRtt), ["0.045", "1.23", "12.3", "123"]);
 * ```
 */
export function formatRtt(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

/** The line of one event, as iputils prints it. */
export function eventLine(event: PingEvent): string | undefined {
  if (event.type === "reply") {
    return `${event.bytes} bytes from ${event.from}: icmp_seq=${event.seq}${
      event.ttl !== undefined ? ` ttl=${event.ttl}` : ""
    } time=${formatRtt(event.rttMs)} ms${event.duplicate ? " (DUP!)" : ""}${
      event.badChecksum ? " (BAD CHECKSUM!)" : ""
    }`;
  }
  if (event.type === "error") return `From ${event.from} icmp_seq=${event.seq} ${event.message}`;
  return undefined;
}

/**
 * The statistics block, as iputils prints it.
 *
 * @example Usage
 * ```ts
 * import { statisticsText } from "./ping.ts";
 * import assert from "node:assert/strict";
 *
 * const text = statisticsText("127.0.0.1", {
 *   transmitted: 2, received: 1, errors: 0, duplicates: 0, corrupted: 0, elapsedMs: 1001.4,
 *   rtt: { minMs: 0.05, avgMs: 0.05, maxMs: 0.05, mdevMs: 0 },
 * });
 * assert.equal(text.split("\n")[2], "2 packets transmitted, 1 received, 50% packet loss, time 1001ms");
 * ```
 */
export function statisticsText(host: string, s: PingSummary): string {
  const loss = s.transmitted ? ((s.transmitted - s.received) / s.transmitted) * 100 : 0;
  const lossText = Number.isInteger(loss) ? `${loss}` : loss.toFixed(4).replace(/0+$/, "");
  const lines = [
    "",
    `--- ${host} ping statistics ---`,
    `${s.transmitted} packets transmitted, ${s.received} received` +
    (s.duplicates ? `, +${s.duplicates} duplicates` : "") +
    (s.corrupted ? `, +${s.corrupted} corrupted` : "") +
    (s.errors ? `, +${s.errors} errors` : "") +
    `, ${lossText}% packet loss, time ${Math.round(s.elapsedMs)}ms`,
  ];
  if (s.rtt) {
    const r = s.rtt;
    lines.push(
      `rtt min/avg/max/mdev = ${r.minMs.toFixed(3)}/${r.avgMs.toFixed(3)}/${r.maxMs.toFixed(3)}/${
        r.mdevMs.toFixed(3)
      } ms`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * Runs `sockit ping`.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runPing(parseCommand(pingCommand, ["-c", "3", "127.0.0.1"]), ctx);
 * ```
 */
export async function runPing(options: PingCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "ping");
  const encoder = new TextEncoder();
  const out = (text: string) => ctx.stdout.write(encoder.encode(text));
  let address = options.host;
  let target = address;
  try {
    requireRawSockets("ping", options.host);
    // An IPv4-mapped literal is IPv4 (for -4/-6 too); names resolve as they are.
    [address] = await resolve(unmappedAddress(options.host), {
      op: "ping",
      family: options.family,
      address: formatHost(options.host),
    });
    const writes: Promise<unknown>[] = [];
    const summary = await ping(address, {
      count: options.count,
      interval: options.interval,
      timeout: options.timeout,
      deadline: options.deadline,
      size: options.size,
      ttl: options.ttl,
      socket: options.socket,
      signal: ctx.signal,
      trace: reporter.traceFn,
      onEvent: (event) => {
        let text: string | undefined;
        if (event.type === "start") {
          reporter.info(
            event.socket === "raw"
              ? `a raw socket (SOCK_RAW), identifier ${event.id}`
              : `an ICMP datagram socket (net.ipv4.ping_group_range), identifier ${event.id}`,
            { socket: event.socket },
          );
          // iputils names the address it sends to, but keeps `::` as it is (replies come from ::1).
          const shown = event.family === 4 ? event.address : address;
          target = event.address;
          if (options.json) {
            text = jsonLine("ping", {
              host: options.host,
              address: event.address,
              family: event.family,
              socket: event.socket,
              size: event.size,
              id: event.id,
            });
          } else {
            text = event.family === 6
              ? `PING ${options.host}(${shown}) ${event.size} data bytes\n`
              : `PING ${options.host} (${shown}) ${event.size}(${
                event.size + 28
              }) bytes of data.\n`;
          }
        } else if (options.json) {
          const { type, ...fields } = event;
          text = jsonLine(type === "reply" ? "reply" : "icmp", {
            ...fields,
            ...(type === "reply" ? { rttMs: round3(event.rttMs) } : {}),
          });
        } else if (!options.quiet || event.type !== "reply" && event.type !== "error") {
          text = `${eventLine(event)}\n`;
        }
        if (text) writes.push(out(text));
      },
    });
    await Promise.all(writes);
    if (options.json) {
      await out(jsonLine("done", {
        host: options.host,
        address: target,
        transmitted: summary.transmitted,
        received: summary.received,
        errors: summary.errors,
        duplicates: summary.duplicates,
        corrupted: summary.corrupted,
        lossPercent: summary.transmitted
          ? round3(((summary.transmitted - summary.received) / summary.transmitted) * 100)
          : 0,
        timeMs: Math.round(summary.elapsedMs),
        ...(summary.rtt
          ? {
            rtt: {
              minMs: round3(summary.rtt.minMs),
              avgMs: round3(summary.rtt.avgMs),
              maxMs: round3(summary.rtt.maxMs),
              mdevMs: round3(summary.rtt.mdevMs),
            },
          }
          : {}),
      }));
    } else {
      await out(statisticsText(options.host, summary));
    }
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return summary.received > 0 ? 0 : 1;
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(
      err instanceof UsageError || err instanceof SockitError ? err : err,
      "ping",
      formatHost(address),
    );
  }
}

/** Milliseconds to three decimals, as the lines print them. */
function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
