/**
 * Ping: the time per ping of a flood (each request sent as soon as the
 * previous reply came) — `sockit ping -i 0` against iputils `ping -f`, both
 * as root over 127.0.0.1 — with start-up taken out: each tool runs with
 * `-c 1` and with `-c N`, interleaved, and the time per ping is
 * (T(N) − T(1)) / (N − 1). The round-trip times each tool reports are
 * printed beside (their difference is the per-ping overhead a user sees
 * in the lines). CPU (user+sys) from `/usr/bin/time`.
 *
 * @module
 */

import { median, type Row, sh, sockitFullShell, which } from "./util.ts";

/** Options of {@linkcode benchPing}. */
export interface PingBenchOptions {
  /** Pings in the flood. Default 1000. */
  count: number;
  /** Runs of each command. Default 7. */
  runs: number;
}

const decoder = new TextDecoder();

interface Tool {
  name: string;
  command: (count: number) => string;
  one: number[];
  many: number[];
  cpu: number[];
  rtt: number[];
}

/** Runs the ping comparison; one row per tool. */
export async function benchPing(
  options: PingBenchOptions = { count: 1000, runs: 7 },
): Promise<Row[]> {
  const uid = decoder.decode((await sh("id -u").output()).stdout).trim();
  if (uid !== "0") return [{ bench: "ping", tool: "-", note: "needs root (a flood)" }];
  if (!which("ping")) return [{ bench: "ping", tool: "-", note: "iputils-ping is not installed" }];
  const time = which("/usr/bin/time") ? "/usr/bin/time -f 'cpu=%U+%S' " : "";
  const tools: Tool[] = [
    {
      name: "sockit ping -i 0",
      command: (n) => `${sockitFullShell()} ping -q -i 0 -c ${n} 127.0.0.1`,
      one: [],
      many: [],
      cpu: [],
      rtt: [],
    },
    {
      name: "iputils ping -f",
      command: (n) => `ping -q -f -c ${n} 127.0.0.1`,
      one: [],
      many: [],
      cpu: [],
      rtt: [],
    },
  ];
  const timed = async (command: string) => {
    const started = performance.now();
    const out = await sh(`exec ${time}${command}`).output();
    const seconds = (performance.now() - started) / 1000;
    const stdout = decoder.decode(out.stdout);
    const stderr = decoder.decode(out.stderr);
    if (!out.success) throw new Error(`${command} failed: ${stderr}`);
    const cpu = /cpu=([\d.]+)\+([\d.]+)/.exec(stderr);
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(stdout);
    return {
      seconds,
      cpu: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN,
      rtt: rtt ? Number(rtt[1]) : NaN,
    };
  };
  for (let run = 0; run < options.runs; run++) {
    for (const tool of run % 2 === 0 ? tools : [...tools].reverse()) {
      tool.one.push((await timed(tool.command(1))).seconds);
      const many = await timed(tool.command(options.count));
      tool.many.push(many.seconds);
      tool.cpu.push(many.cpu);
      tool.rtt.push(many.rtt);
    }
  }
  const perPing = (t: Tool) => t.many.map((s, i) => ((s - t.one[i]) / (options.count - 1)) * 1e6);
  const theirs = median(perPing(tools[1]));
  return tools.map((t) => {
    const mine = perPing(t);
    const mid = median(mine);
    return {
      bench: `ping flood ${options.count}`,
      tool: t.name,
      value: `${mid.toFixed(1)} µs/ping`,
      range: `${Math.min(...mine).toFixed(1)}–${Math.max(...mine).toFixed(1)} µs`,
      ratio: `${(mid / theirs).toFixed(2)}× iputils`,
      cpu: `${median(t.cpu).toFixed(2)} s`,
      rtt: `avg ${median(t.rtt).toFixed(3)} ms`,
      target: t.name.startsWith("sockit")
        ? `≤ 1.5× iputils per ping: ${mid <= 1.5 * theirs ? "met" : "MISSED"}`
        : "",
    };
  });
}
