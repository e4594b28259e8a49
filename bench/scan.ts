/**
 * Scan and wait: a full TCP connect scan of 127.0.0.1 ports 1–65535 by
 * `sockit scan`, `nc -z` (and `nmap -sT` when installed) in the same run,
 * runs interleaved, with every tool's open ports compared (zero false
 * results); and how soon `sockit wait` notices a listener that appears.
 *
 * @module
 */

import { freeTcpPort, median, type Row, sh, sockitShell, which } from "./util.ts";

/** Options of {@linkcode benchScan}. */
export interface ScanBenchOptions {
  /** Rounds per tool. */
  rounds: number;
  /** Runs of the wait-detection measurement. */
  waits: number;
}

const decoder = new TextDecoder();

/** A scanner: its command, and how to read the open ports from its output. */
interface Scanner {
  name: string;
  command: string;
  ports: (stdout: string, stderr: string) => number[];
}

async function timed(
  command: string,
): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const started = performance.now();
  const out = await sh(command).output();
  return {
    seconds: (performance.now() - started) / 1000,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** Ports listening on 127.0.0.1 (or any address) now, from /proc/net/tcp{,6}. */
async function listeningPorts(): Promise<Set<number>> {
  const out = await sh("cat /proc/net/tcp /proc/net/tcp6").output();
  const ports = new Set<number>();
  for (const line of decoder.decode(out.stdout).split("\n")) {
    const m = /^\s*\d+: ([0-9A-F]+):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A /.exec(line);
    if (!m) continue;
    const local = m[1];
    // 127.0.0.1, 0.0.0.0, :: (dual-stack) and ::ffff:127.0.0.1 are reachable at 127.0.0.1;
    // ::1 is not (it is IPv6 only).
    if (/^(0100007F|00000000|0{32}|0000000000000000FFFF00000100007F)$/.test(local)) {
      ports.add(parseInt(m[2], 16));
    }
  }
  return ports;
}

/** The full-range scan comparison: one row per tool. */
async function fullScan(rounds: number): Promise<Row[]> {
  // A few listeners of our own, so that there is something to find.
  const listeners = Array.from(
    { length: 5 },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const scanners: Scanner[] = [
    {
      // As the binary runs it: with --allow-ffi, probing through libc.
      name: "sockit scan",
      command: `${sockitShell().replace(" --allow-net ", " --allow-net --allow-ffi ")} scan ` +
        "127.0.0.1 1-65535",
      ports: (stdout) => stdout.split("\n").filter(Boolean).map(Number),
    },
    {
      name: "sockit scan (--allow-net only)",
      command: `${sockitShell()} scan 127.0.0.1 1-65535`,
      ports: (stdout) => stdout.split("\n").filter(Boolean).map(Number),
    },
    {
      // Timed quiet: with -v, nc prints a line for every refused port.
      name: "nc -z",
      command: "nc -z -w 1 127.0.0.1 1-65535",
      ports: () => [],
    },
  ];
  if (which("nmap")) {
    scanners.push({
      name: "nmap -sT",
      command: "nmap -sT -p 1-65535 -n -T4 --open -oG - 127.0.0.1",
      ports: (stdout) => [...stdout.matchAll(/(\d+)\/open\/tcp/g)].map((m) => Number(m[1])),
    });
  }
  const verboseNc = (stderr: string) =>
    [...stderr.matchAll(/Connection to \S+ (\d+) port .* succeeded/g)].map((m) => Number(m[1]));
  const times = new Map<string, number[]>(scanners.map((s) => [s.name, []]));
  const falses = new Map<string, string[]>(scanners.map((s) => [s.name, []]));
  const opens = new Map<string, number>();
  /** Compares what a scan reported with what listened before and after it. */
  const judge = (name: string, reported: number[], before: Set<number>, after: Set<number>) => {
    const stable = [...before].filter((p) => after.has(p));
    const fp = reported.filter((p) => !before.has(p) && !after.has(p));
    const fn = stable.filter((p) => !reported.includes(p));
    if (fp.length) falses.get(name)!.push(`false positive ${fp.join(",")}`);
    if (fn.length) falses.get(name)!.push(`missed ${fn.join(",")}`);
    opens.set(name, reported.length);
  };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const scanner of round % 2 === 0 ? scanners : [...scanners].reverse()) {
        const before = await listeningPorts();
        const r = await timed(scanner.command);
        const after = await listeningPorts();
        times.get(scanner.name)!.push(r.seconds);
        if (scanner.name !== "nc -z") {
          judge(scanner.name, scanner.ports(r.stdout, r.stderr), before, after);
        }
      }
    }
    const before = await listeningPorts();
    const verbose = await timed("nc -z -v -w 1 127.0.0.1 1-65535");
    judge("nc -z", verboseNc(verbose.stderr), before, await listeningPorts());
  } finally {
    for (const l of listeners) l.close();
  }
  const nc = median(times.get("nc -z")!);
  return scanners.map((s) => {
    const time = median(times.get(s.name)!);
    return {
      bench: "scan 127.0.0.1 1-65535",
      tool: s.name,
      time: `${time.toFixed(3)} s`,
      "vs nc": `${(time / nc).toFixed(2)}× nc's time`,
      open: String(opens.get(s.name) ?? "-"),
      "false results": [...new Set(falses.get(s.name))].join("; ") || "none",
      target: s.name === "sockit scan"
        ? `≤ 0.7× nc's time, no false result: ${
          time <= 0.7 * nc && !falses.get(s.name)!.length ? "met" : "MISSED"
        }`
        : "",
      runs: times.get(s.name)!.map((t) => t.toFixed(2)).join(" "),
    };
  });
}

/** How long after a listener appears `sockit wait` exits, against its interval. */
async function waitDetection(runs: number): Promise<Row> {
  const interval = 250;
  const delays: number[] = [];
  for (let i = 0; i < runs; i++) {
    const port = freeTcpPort();
    const waiting = sh(
      `${sockitShell()} wait 127.0.0.1:${port} --interval ${interval}ms --timeout 10s -q`,
    );
    // Appear at a random moment within a few intervals.
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 3 * interval));
    const appeared = performance.now();
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    const status = await waiting.status;
    delays.push(performance.now() - appeared);
    listener.close();
    await waiting.stdout.cancel();
    await waiting.stderr.cancel();
    if (!status.success) throw new Error(`sockit wait failed (${status.code})`);
  }
  const worst = Math.max(...delays);
  return {
    bench: `wait, interval ${interval} ms`,
    tool: "sockit wait",
    time: `median ${median(delays).toFixed(0)} ms, max ${
      worst.toFixed(0)
    } ms after the listener appeared`,
    "vs nc": "",
    open: "",
    "false results": "",
    target: `within one interval (+ exit): ${worst <= interval + 100 ? "met" : "MISSED"}`,
    runs: delays.map((d) => d.toFixed(0)).join(" "),
  };
}

/** Runs the scan and wait benchmarks. */
export async function benchScan(options: ScanBenchOptions): Promise<Row[]> {
  return [...(await fullScan(options.rounds)), await waitDetection(options.waits)];
}
