/**
 * What the diagnostic flags cost: a transfer with `--stats` against the same
 * transfer without (runs interleaved), and `--hex` — slow by nature — at two
 * sizes, to show that its memory does not grow with the transfer.
 *
 * @module
 */

import { once, type Tool } from "./throughput.ts";
import { median, type Row, sockitShell } from "./util.ts";

/** Options of {@linkcode benchFlags}. */
export interface FlagsOptions {
  /** Bytes for the --stats comparison. */
  size: number;
  /** Runs of each variant. */
  runs: number;
}

function sockit(flags: string): Tool {
  return {
    name: `sockit ${flags}`.trim(),
    server: `${sockitShell()} listen 127.0.0.1:{port} ${flags}`,
    client: `${sockitShell()} connect 127.0.0.1:{port} ${flags}`,
  };
}

/** Runs the flag-cost comparison. */
export async function benchFlags(options: FlagsOptions): Promise<Row[]> {
  const plain = sockit("");
  const stats = sockit("--stats");
  const times = { plain: [] as number[], stats: [] as number[] };
  for (let run = 0; run < options.runs; run++) {
    for (
      const [name, tool] of run % 2 === 0
        ? [["plain", plain], ["stats", stats]] as const
        : [["stats", stats], ["plain", plain]] as const
    ) {
      times[name].push((await once(tool, options.size)).seconds);
    }
  }
  const loss = 1 - median(times.plain) / median(times.stats);
  const rows: Row[] = [
    {
      bench: `${options.size / 2 ** 20} MiB`,
      variant: "sockit",
      time: `${median(times.plain).toFixed(3)} s`,
      note: "",
      runs: times.plain.map((t) => t.toFixed(2)).join(" "),
    },
    {
      bench: `${options.size / 2 ** 20} MiB`,
      variant: "sockit --stats",
      time: `${median(times.stats).toFixed(3)} s`,
      note: `${(loss * 100).toFixed(1)}% slower (target < 2%: ${loss < 0.02 ? "met" : "MISSED"})`,
      runs: times.stats.map((t) => t.toFixed(2)).join(" "),
    },
  ];
  // --hex writes ~4.3 lines of text per 16 bytes: dump to /dev/null, watch the memory.
  const hex: Tool = {
    name: "sockit --hex",
    // sh -c: the dump goes to /dev/null, /usr/bin/time's report still to stderr.
    server: `sh -c '${sockitShell()} listen 127.0.0.1:{port} --hex 2>/dev/null'`,
    client: `sh -c '${sockitShell()} connect 127.0.0.1:{port} --hex 2>/dev/null'`,
  };
  const sizes = [16 * 2 ** 20, 64 * 2 ** 20];
  const hexRuns = [];
  for (const size of sizes) hexRuns.push(await once(hex, size));
  const [small, big] = hexRuns;
  for (const [i, r] of hexRuns.entries()) {
    rows.push({
      bench: `${sizes[i] / 2 ** 20} MiB`,
      variant: "sockit --hex",
      time: `${r.seconds.toFixed(2)} s (${(sizes[i] / 2 ** 20 / r.seconds).toFixed(1)} MiB/s)`,
      note: `peak RSS ${r.rssKiB ? Math.round(r.rssKiB / 1024) : "-"} MiB` +
        (i === 1 && small.rssKiB && big.rssKiB
          ? ` (4× the data: ${
            big.rssKiB <= small.rssKiB * 1.25 ? "memory flat, met" : "memory GREW"
          })`
          : ""),
      runs: "",
    });
  }
  return rows;
}
