/**
 * Echo: round trips per second through a TCP echo server on 127.0.0.1,
 * `sockit echo` against a Node.js `net` echo server (`s.pipe(s)`) and
 * `ncat -k --exec /bin/cat`, in the same run. The load comes from
 * bench/echo_load.c (compiled here with `cc -O2`): closed-loop ping-pong on
 * 1 connection and on many, every echo checked byte by byte, latency
 * percentiles, and the server's resident set size (its whole process tree,
 * sampled every ~50 ms) at its peak and with the connections held idle.
 *
 * A server that does not start (or breaks) gets a row saying so; the others
 * still run. Every step is bounded in time and every server is stopped.
 *
 * @module
 */

import {
  baselineShell,
  descendants,
  freeTcpPort,
  killTree,
  median,
  type Row,
  sh,
  sockitServerShell,
  sockitShell,
  waitForTcpListen,
  which,
} from "./util.ts";

/** Options of {@linkcode benchEcho}. */
export interface EchoOptions {
  /** Connections of the many-connections scenario (the other has 1). */
  conns: number;
  /** Message size in bytes. */
  size: number;
  /** Seconds of load before the measurement starts. */
  warmup: number;
  /** Seconds measured. */
  measure: number;
  /** Seconds the many connections are held idle before the idle RSS is read (first round). */
  idle: number;
  /** Rounds per server and scenario, servers interleaved; medians are reported. */
  rounds: number;
}

/** The defaults of {@linkcode benchEcho}: about 50 s in all. */
export const echoDefaults: EchoOptions = {
  conns: 1000,
  size: 64,
  warmup: 0.5,
  measure: 1.5,
  idle: 1,
  rounds: 3,
};

/** What bench/echo_load.c prints. */
export interface Load {
  conns: number;
  msgs: number;
  seconds: number;
  rate: number;
  p50_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  /** Round trips per connection: the fewest shows starvation that p99 hides. */
  per_conn: { min: number; p1: number; p50: number; p99: number; max: number; jain: number };
  connect_s: number;
  retries: number;
  peak_rss_kib: number;
  idle_rss_kib: number;
  procs: number;
}

/** Why a server has no figures; `startup` when it never listened (or is not installed). */
export type Failure = { failure: string; startup?: boolean };
type Outcome = { load: Load } | Failure;

/** The measured columns, in table order, between `bench`, `tool` and `note`. */
const columns = [
  "msgs/s",
  "ratio",
  "p50",
  "p99",
  "p99.9",
  "min/conn",
  "peak rss",
  "idle rss",
  "target",
  "runs",
];

/** An echo server under test; `command` is a shell command listening on 127.0.0.1:`port`. */
interface Server {
  name: string;
  command?: (port: number, conns: number) => string;
  /** Why the server is not measured at all. */
  missing?: string;
}

const decoder = new TextDecoder();

/** Terminal colour codes, as in Deno's own error messages. */
const colours = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");

export function firstLine(bytes: Uint8Array): string {
  const text = decoder.decode(bytes).replace(colours, "").trim();
  const line = text.split("\n").find((l) => l.trim()) ?? "";
  return line.length > 100 ? line.slice(0, 97) + "..." : line;
}

/** Waits for a listener on `port` unless `ended()` first; false when it never listened. */
export async function listening(
  port: number,
  ended: () => boolean,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ended() && Date.now() < deadline) {
    try {
      await waitForTcpListen(port, 100);
      return true;
    } catch {
      // Not yet.
    }
  }
  return false;
}

async function runOne(
  loader: string,
  server: Server,
  conns: number,
  options: EchoOptions,
  idle: number,
): Promise<Outcome> {
  const port = freeTcpPort();
  const child = sh(`ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec ${server.command!(port, conns)}`);
  let ended = false;
  const output = child.output().finally(() => ended = true);
  try {
    if (!await listening(port, () => ended, 15_000)) {
      if (!ended) return { failure: "did not listen within 15 s", startup: true };
      const out = await output;
      return {
        failure: `exited (${out.code}) before listening: ${firstLine(out.stderr) || "no message"}`,
        startup: true,
      };
    }
    const { warmup, measure, size } = options;
    const load = await sh(
      `${loader} ${port} ${conns} ${size} ${warmup} ${measure} ${child.pid} ${idle}`,
    ).output();
    if (!load.success) {
      const why = firstLine(load.stderr) || `load generator exited with ${load.code}`;
      return { failure: ended ? `${why}; server exited (${(await output).code})` : why };
    }
    return { load: JSON.parse(decoder.decode(load.stdout)) as Load };
  } finally {
    // Forking servers (ncat) reap their children as the connections close; stopping them
    // first would leave the children to init.
    for (let wait = 0; !ended && wait < 60 && (await descendants(child.pid)).length; wait++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await killTree(child);
    await output;
  }
}

/**
 * Several rounds as one: medians of the rates and percentiles, the highest
 * peak RSS, the idle RSS of the round that had the idle hold.
 */
function combine(runs: Load[]): Load {
  const mid = (f: (l: Load) => number) => median(runs.map(f));
  return {
    ...runs[0],
    msgs: mid((l) => l.msgs),
    seconds: mid((l) => l.seconds),
    rate: mid((l) => l.rate),
    p50_us: mid((l) => l.p50_us),
    p99_us: mid((l) => l.p99_us),
    p999_us: mid((l) => l.p999_us),
    max_us: Math.max(...runs.map((l) => l.max_us)),
    per_conn: { ...runs[0].per_conn, min: Math.min(...runs.map((l) => l.per_conn.min)) },
    connect_s: mid((l) => l.connect_s),
    retries: runs.reduce((sum, l) => sum + l.retries, 0),
    peak_rss_kib: Math.max(...runs.map((l) => l.peak_rss_kib)),
    idle_rss_kib: Math.max(...runs.map((l) => l.idle_rss_kib)),
    procs: Math.max(...runs.map((l) => l.procs)),
  };
}

export function micros(us: number): string {
  return us < 1000 ? `${us.toFixed(0)} µs` : `${(us / 1000).toFixed(1)} ms`;
}

export function mebibytes(kib: number): string {
  if (kib < 0) return "-";
  return `${(kib / 1024).toFixed(1)} MiB`;
}

/** The targets for sockit, checked against Node in the same scenario. */
function targets(load: Load, node: Load | undefined, many: boolean): string {
  if (!node) return "no node figures";
  const ratio = load.rate / node.rate;
  const mark = (ok: boolean) => ok ? "met" : "MISSED";
  if (!many) return `≥ 1.0× node: ${mark(ratio >= 1)}`;
  return [
    `≥ 1.5× node: ${mark(ratio >= 1.5)}`,
    `p99 ≤ node: ${mark(load.p99_us <= node.p99_us)}`,
    `fair (min/conn ≥ half node's): ${mark(load.per_conn.min * 2 >= node.per_conn.min)}`,
    `idle ≤ 64 MiB: ${mark(load.idle_rss_kib >= 0 && load.idle_rss_kib <= 64 * 1024)}`,
  ].join(", ");
}

/** Builds bench/echo_load.c into `dir`; its path, or why it could not be built. */
export async function compileLoader(dir: string): Promise<string | Failure> {
  if (!which("cc")) return { failure: "no C compiler (cc) for echo_load.c" };
  const loader = `${dir}/echo_load`;
  const source = new URL("./echo_load.c", import.meta.url).pathname;
  const cc = await new Deno.Command("cc", {
    args: ["-O2", "-o", loader, source],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return cc.success ? loader : { failure: `cc failed: ${firstLine(cc.stderr)}` };
}

/**
 * Runs the echo comparison, 1 connection then `options.conns`, and returns
 * one row per server and scenario; `ratio` is the rate over Node's.
 */
export async function benchEcho(options: EchoOptions = echoDefaults): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-echo-" });
  try {
    const loader = await compileLoader(dir);
    if (typeof loader !== "string") return [{ bench: "echo", tool: "-", note: loader.failure }];
    const node = 'require("net").createServer((s) => { s.on("error", () => {}); s.pipe(s); })' +
      '.listen({port}, "127.0.0.1");';
    const servers: Server[] = [
      // As the binary and deno.json's tasks run it: a server in a worker whose tokio runtime
      // caps I/O events per tick at its cooperative budget (128), so that no connection is
      // starved (see README); no variable exported.
      {
        name: "sockit",
        command: (port) => `${sockitServerShell()} echo 127.0.0.1:${port}`,
      },
      {
        name: "sockit (--allow-net only)",
        command: (port) => `${sockitShell()} echo 127.0.0.1:${port}`,
      },
      ...(baselineShell()
        ? [{
          name: "sockit (baseline)",
          command: (port: number) =>
            `env DENO_TOKIO_MAX_IO_EVENTS_PER_TICK=128 ${baselineShell()} echo 127.0.0.1:${port}`,
        }]
        : []),
      {
        // The runtime's floor: a bare Deno read/write loop per connection (bench/deno_echo.ts).
        name: "deno (bare loop)",
        command: (port) =>
          `${Deno.execPath()} run --allow-net ${
            new URL("./deno_echo.ts", import.meta.url).pathname
          } ${port}`,
      },
      which("node")
        ? { name: "node", command: (port) => `node -e '${node.replace("{port}", String(port))}'` }
        : { name: "node", missing: "node is not installed" },
      which("ncat")
        ? {
          name: "ncat",
          // ncat's default limit is 100 connections; each one is a forked ncat plus a cat.
          command: (port, conns) =>
            `ncat -k -l 127.0.0.1 ${port} --max-conns ${conns + 10} --exec /bin/cat`,
        }
        : { name: "ncat", missing: "ncat is not installed" },
    ];
    const rows: Row[] = [];
    const unstartable = new Map<string, string>();
    for (const conns of [1, options.conns]) {
      const many = conns > 1;
      const loads = new Map<string, Load[]>(servers.map((s) => [s.name, []]));
      const failures = new Map<string, Failure>();
      for (let round = 0; round < options.rounds; round++) {
        // Alternate the order so that no server always runs on a warmer (or busier) machine.
        for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
          if (failures.has(server.name)) continue;
          const skip = server.missing ?? unstartable.get(server.name);
          // The idle hold (and so the idle RSS) is in the first round only.
          const idle = many && round === 0 ? options.idle : 0;
          const outcome: Outcome = skip
            ? { failure: skip, startup: true }
            : await runOne(loader, server, conns, options, idle);
          if ("load" in outcome) loads.get(server.name)!.push(outcome.load);
          else {
            failures.set(server.name, outcome);
            if (outcome.startup) unstartable.set(server.name, outcome.failure);
          }
        }
      }
      const node = failures.has("node") ? undefined : combine(loads.get("node")!);
      for (const server of servers) {
        const bench = `echo ${options.size} B, ${conns} conn${many ? "s" : ""}`;
        const failure = failures.get(server.name);
        if (failure) {
          const verb = failure.startup ? "not available" : "failed";
          rows.push({
            bench,
            tool: server.name,
            ...Object.fromEntries(columns.map((c) => [c, "-"])),
            note: `${verb}: ${failure.failure}`,
          });
          continue;
        }
        const runs = loads.get(server.name)!;
        const load = combine(runs);
        const notes = [];
        if (load.retries) notes.push(`${load.retries} connect retries`);
        if (many) notes.push(`connected in ${load.connect_s.toFixed(2)} s`);
        if (load.procs > 1) notes.push(`rss summed over ${load.procs} processes`);
        rows.push({
          bench,
          tool: server.name,
          "msgs/s": Math.round(load.rate).toString(),
          ratio: node ? `${(load.rate / node.rate).toFixed(2)}× node` : "-",
          p50: micros(load.p50_us),
          p99: micros(load.p99_us),
          "p99.9": micros(load.p999_us),
          "min/conn": many ? String(load.per_conn.min) : "",
          "peak rss": mebibytes(load.peak_rss_kib),
          "idle rss": many ? mebibytes(load.idle_rss_kib) : "",
          target: server.name.startsWith("sockit") ? targets(load, node, many) : "",
          runs: runs.map((r) => `${(r.rate / 1000).toFixed(1)}k`).join(" "),
          note: notes.join(", "),
        });
      }
    }
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
