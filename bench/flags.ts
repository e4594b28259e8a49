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
  // "again" is plain sockit a second time: the A/A difference is the noise
  // floor that the --stats difference has to be read against.
  const variants = [
    { name: "sockit", tool: sockit(""), wall: [] as number[], cpu: [] as number[] },
    { name: "sockit (again)", tool: sockit(""), wall: [] as number[], cpu: [] as number[] },
    { name: "sockit --stats", tool: sockit("--stats"), wall: [] as number[], cpu: [] as number[] },
  ];
  for (let run = 0; run < options.runs; run++) {
    // Rotate the order so that no variant always runs first or last.
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(run + i) % variants.length];
      const r = await once(v.tool, options.size);
      v.wall.push(r.seconds);
      if (r.cpu !== undefined) v.cpu.push(r.cpu);
    }
  }
  const [plain, again, stats] = variants;
  // Wall time on a shared 2-core machine spreads by ±15%; the CPU both ends
  // spent is the steadier figure, so the target is judged on it when known.
  const hasCpu = variants.every((v) => v.cpu.length > 0);
  const cost = (v: typeof plain) =>
    hasCpu ? median(v.cpu) / median(plain.cpu) - 1 : median(v.wall) / median(plain.wall) - 1;
  const noise = Math.abs(cost(again));
  const statsCost = cost(stats);
  const verdict = statsCost < 0.02
    ? "met"
    : statsCost <= noise
    ? "not resolved: inside the A/A difference"
    : "MISSED";
  const size = `${options.size / 2 ** 20} MiB`;
  const rows: Row[] = variants.map((v, i) => ({
    bench: size,
    variant: v.name,
    time: `${median(v.wall).toFixed(3)} s` + (hasCpu ? `, CPU ${median(v.cpu).toFixed(2)} s` : ""),
    note: i === 0 ? "" : `${hasCpu ? "CPU" : "wall"} ${pct(cost(v))}` +
      (i === 1 ? " (A/A: the noise floor)" : ` (target < 2%: ${verdict})`),
    runs: v.wall.map((t) => t.toFixed(2)).join(" "),
  }));
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
