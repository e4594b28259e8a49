/**
 * Soak: `sockit echo` and `sockit forward` (to a `sockit echo`) under load
 * for a bounded time, then under a stream of short connections, watching
 * for errors and for what a long-running server must not do: keep memory or
 * descriptors it no longer needs.
 *
 * 1. Many clients: bench/echo_load.c holds `conns` connections doing
 *    closed-loop 64-byte round trips for `seconds`, every echo checked.
 *    Reported: round trips per second, p99, errors (a broken connection or a
 *    wrong echo ends the load with a reason; refused connects are retried
 *    and counted), and the server's RSS and open descriptors before, at the
 *    peak and after the clients have gone.
 * 2. Short connections: `short` connections, `parallel` at a time, each
 *    connect, 16 bytes there and back, close. Reported: connections per
 *    second, p99 of the whole exchange, errors, and RSS and descriptors after
 *    the first 1,000, half-way and at the end; the drift is over the second
 *    half (V8 grows its young generation for a while before it settles, so
 *    growth early on is not a leak; growth that goes on is).
 *
 * The server's figures are read from /proc (through `grep`/`ls`, which need
 * only --allow-run). Target: 0 errors, descriptors back to where they were,
 * RSS drift under {@linkcode DRIFT_MIB} over the second half of the short
 * connections.
 *
 * @module
 */

import { compileLoader, firstLine, listening, type Load, mebibytes, micros } from "./echo.ts";
import { freeTcpPort, killTree, type Row, sh, sockitServerShell } from "./util.ts";

/** Options of {@linkcode benchSoak}. */
export interface SoakOptions {
  /** Connections held at once in the many-clients phase. Default 1000. */
  conns: number;
  /** Seconds of load in the many-clients phase. Default 20. */
  seconds: number;
  /** Short connections in the second phase. Default 10,000. */
  short: number;
  /** Short connections open at a time. Default 16. */
  parallel: number;
}

/** The defaults of {@linkcode benchSoak}: about a minute in all. */
export const soakDefaults: SoakOptions = { conns: 1000, seconds: 20, short: 10_000, parallel: 16 };

/**
 * RSS growth over the second half of the short connections (4,500 by default)
 * that counts as drift: V8 collects when it chooses, so RSS moves by several
 * MiB either way between samples; 8 MiB catches a leak of 2 KiB or more per
 * connection.
 */
export const DRIFT_MIB = 8;

/** A server's resident set and open descriptors. */
interface Sample {
  rssKib: number;
  fds: number;
}

const decoder = new TextDecoder();

/** Reads `pid`'s RSS and descriptor count from /proc. */
async function sample(pid: number): Promise<Sample> {
  const out = await sh(`grep VmRSS /proc/${pid}/status; ls /proc/${pid}/fd | wc -l`).output();
  const text = decoder.decode(out.stdout);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(text)?.[1] ?? -1);
  const fds = Number(text.trim().split("\n").at(-1));
  return { rssKib: rss, fds: Number.isFinite(fds) ? fds : -1 };
}

/** Samples until the descriptors are back to `baseline` or stop falling (at most 5 s). */
async function settled(pid: number, baseline: number): Promise<Sample> {
  let last = await sample(pid);
  for (let i = 0, steady = 0; i < 50 && last.fds > baseline && steady < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const next = await sample(pid);
    steady = next.fds === last.fds ? steady + 1 : 0;
    last = next;
  }
  return last;
}

/** One round trip of `size` bytes on a new connection; its duration in µs. */
async function shortExchange(port: number, size: number): Promise<number> {
  const start = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new Uint8Array(size).fill(0x61));
    const back = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const n = await conn.read(back.subarray(got));
      if (n === null) throw new Error(`the echo ended after ${got} of ${size} bytes`);
      got += n;
    }
    if (!back.every((b) => b === 0x61)) throw new Error("wrong echo");
  } finally {
    conn.close();
  }
  return (performance.now() - start) * 1000;
}

interface ShortResult {
  rate: number;
  p99: number;
  errors: number;
  firstError?: string;
  /** After how many connections the samples were taken. */
  marks: number[];
  samples: Sample[];
}

async function shortConnections(
  port: number,
  pid: number,
  baselineFds: number,
  options: SoakOptions,
): Promise<ShortResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const batch = async (count: number) => {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        next++;
        try {
          latencies.push(await shortExchange(port, 16));
        } catch (error) {
          errors++;
          firstError ??= error instanceof Error ? error.message : String(error);
        }
      }
    };
    await Promise.all(Array.from({ length: options.parallel }, worker));
  };
  // Samples after the first 1,000 (the server warmed up), half-way and at the end, each
  // once the connections are gone; the pauses do not count towards the rate.
  const first = Math.min(1000, options.short);
  const marks = [first, Math.round((first + options.short) / 2), options.short];
  const samples: Sample[] = [];
  let seconds = 0;
  let done = 0;
  for (const mark of marks) {
    const start = performance.now();
    await batch(mark - done);
    seconds += (performance.now() - start) / 1000;
    done = mark;
    samples.push(await settled(pid, baselineFds));
  }
  latencies.sort((a, b) => a - b);
  return {
    rate: options.short / seconds,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    errors,
    firstError,
    marks,
    samples,
  };
}

/** Starts `command` (with the hard descriptor limit) and waits for it on `port`. */
async function start(command: string, port: number) {
  const child = sh(`ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec ${command}`);
  let ended = false;
  const output = child.output().finally(() => ended = true);
  const ok = await listening(port, () => ended, 15_000);
  const stop = async () => {
    await killTree(child);
    return await output;
  };
  if (!ok) {
    const out = await stop();
    throw new Error(`did not listen on ${port}: ${firstLine(out.stderr) || "no message"}`);
  }
  return { pid: child.pid, stop };
}

function signed(value: number, digits = 0): string {
  return `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`;
}

/**
 * Runs the soak against `sockit echo` and `sockit forward` and returns two
 * rows per server: the many-clients phase and the short connections.
 */
export async function benchSoak(options: SoakOptions = soakDefaults): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-soak-" });
  const rows: Row[] = [];
  try {
    const loader = await compileLoader(dir);
    if (typeof loader !== "string") return [{ bench: "soak", tool: "-", note: loader.failure }];
    const sockit = sockitServerShell();
    for (const kind of ["echo", "forward"] as const) {
      const tool = `sockit ${kind}`;
      const port = freeTcpPort();
      const stops: Array<() => Promise<unknown>> = [];
      try {
        let command = `${sockit} echo 127.0.0.1:${port}`;
        if (kind === "forward") {
          const target = freeTcpPort();
          const echo = await start(`${sockit} echo 127.0.0.1:${target}`, target);
          stops.push(echo.stop);
          command = `${sockit} forward 127.0.0.1:${port} 127.0.0.1:${target}`;
        }
        const server = await start(command, port);
        stops.push(server.stop);
        await shortExchange(port, 16);
        const before = await sample(server.pid);
        const run = await sh(
          `${loader} ${port} ${options.conns} 64 1 ${options.seconds} ${server.pid} 0`,
        ).output();
        const after = await settled(server.pid, before.fds);
        const many = `${options.conns} clients × ${options.seconds} s`;
        const memory = (peak: string) =>
          `${mebibytes(before.rssKib)} → ${peak} → ${mebibytes(after.rssKib)}; ` +
          `fds ${before.fds} → ${after.fds}`;
        if (run.success) {
          const load = JSON.parse(decoder.decode(run.stdout)) as Load;
          rows.push({
            bench: many,
            tool,
            rate: `${Math.round(load.rate)} msgs/s`,
            p99: micros(load.p99_us),
            errors: "0",
            "rss, fds": memory(mebibytes(load.peak_rss_kib)),
            target: after.fds <= before.fds ? "met" : "MISSED (descriptors kept)",
            note: load.retries ? `${load.retries} connect retries` : "",
          });
        } else {
          rows.push({
            bench: many,
            tool,
            errors: "≥ 1",
            "rss, fds": memory("?"),
            target: "MISSED",
            note: firstLine(run.stderr) || `load generator exited with ${run.code}`,
          });
        }
        const short = await shortConnections(port, server.pid, before.fds, options);
        const [, half, end] = short.samples;
        const rssDrift = (end.rssKib - half.rssKib) / 1024;
        const ok = short.errors === 0 && end.fds <= before.fds && rssDrift < DRIFT_MIB;
        rows.push({
          bench: `${options.short} short connections, ${options.parallel} at a time`,
          tool,
          rate: `${Math.round(short.rate)} conns/s`,
          p99: micros(short.p99),
          errors: String(short.errors),
          "rss, fds": `after ${short.marks.join(" / ")}: ` +
            `${short.samples.map((s) => mebibytes(s.rssKib)).join(" / ")}; ` +
            `fds ${short.samples.map((s) => s.fds).join(" / ")}`,
          target: ok ? "met" : "MISSED",
          note: [
            short.firstError ?? "",
            `drift over the last ${short.marks[2] - short.marks[1]}: ` +
            `${signed(rssDrift, 1)} MiB, ${signed(end.fds - half.fds)} fds`,
          ].filter(Boolean).join("; "),
        });
      } catch (error) {
        rows.push({
          bench: "soak",
          tool,
          note: `failed: ${error instanceof Error ? error.message : error}`,
        });
      } finally {
        for (const stop of stops.reverse()) await stop();
      }
    }
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
