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
  const wall = { plain: [] as number[], stats: [] as number[] };
  const cpu = { plain: [] as number[], stats: [] as number[] };
  for (let run = 0; run < options.runs; run++) {
    for (
      const [name, tool] of run % 2 === 0
        ? [["plain", plain], ["stats", stats]] as const
        : [["stats", stats], ["plain", plain]] as const
    ) {
      const r = await once(tool, options.size);
      wall[name].push(r.seconds);
      if (r.cpu !== undefined) cpu[name].push(r.cpu);
    }
  }
  // Wall time on a shared 2-core machine spreads by ±15%; the CPU both ends
  // spent is the steadier figure, so the target is judged on it when known.
  const wallLoss = 1 - median(wall.plain) / median(wall.stats);
  const cpuLoss = cpu.stats.length ? median(cpu.stats) / median(cpu.plain) - 1 : undefined;
  const judged = cpuLoss ?? wallLoss;
  const size = `${options.size / 2 ** 20} MiB`;
  const cpuText = (xs: number[]) => xs.length ? `, CPU ${median(xs).toFixed(2)} s` : "";
  const rows: Row[] = [
    {
      bench: size,
      variant: "sockit",
      time: `${median(wall.plain).toFixed(3)} s${cpuText(cpu.plain)}`,
      note: "",
      runs: wall.plain.map((t) => t.toFixed(2)).join(" "),
    },
    {
      bench: size,
      variant: "sockit --stats",
      time: `${median(wall.stats).toFixed(3)} s${cpuText(cpu.stats)}`,
      note: `wall ${pct(wallLoss)}` + (cpuLoss === undefined ? "" : `, CPU ${pct(cpuLoss)}`) +
        ` (target < 2%: ${judged < 0.02 ? "met" : "MISSED"})`,
      runs: wall.stats.map((t) => t.toFixed(2)).join(" "),
    },
  ];
  // --hex writes ~4.3 bytes of text per byte: dump to /dev/null, watch the
  // memory. The heap grows to its working size over the first tens of MiB,
  // so flatness is judged between the two larger sizes.
  const hex: Tool = {
    name: "sockit --hex",
    // sh -c: the dump goes to /dev/null, /usr/bin/time's report still to stderr.
    server: `sh -c '${sockitShell()} listen 127.0.0.1:{port} --hex 2>/dev/null'`,
    client: `sh -c '${sockitShell()} connect 127.0.0.1:{port} --hex 2>/dev/null'`,
  };
  const sizes = [16 * 2 ** 20, 64 * 2 ** 20, 256 * 2 ** 20];
  const hexRuns = [];
  for (const size of sizes) hexRuns.push(await once(hex, size));
  for (const [i, r] of hexRuns.entries()) {
    const before = hexRuns[i - 1]?.rssKiB;
    rows.push({
      bench: `${sizes[i] / 2 ** 20} MiB`,
      variant: "sockit --hex",
      time: `${r.seconds.toFixed(2)} s (${(sizes[i] / 2 ** 20 / r.seconds).toFixed(1)} MiB/s)`,
      note: `peak RSS ${r.rssKiB ? Math.round(r.rssKiB / 1024) : "-"} MiB` +
        (i === sizes.length - 1 && before && r.rssKiB
          ? ` (4× the data: ${r.rssKiB <= before * 1.15 ? "memory flat, met" : "memory GREW"})`
          : ""),
      runs: "",
    });
  }
  return rows;
}

function pct(x: number): string {
  return `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
}
