/**
 * Throughput: N bytes over loopback from stdin of a client to stdout of a
 * server, sockit (`sockit connect → sockit listen`) against OpenBSD nc
 * (`nc -N → nc -l`) and socat when installed, in the same run, runs
 * interleaved, median reported. The byte count at the server is checked.
 *
 * @module
 */

import {
  baselineShell,
  descendants,
  freeTcpPort,
  median,
  type Row,
  sh,
  sockitFullShell,
  sockitShell,
  waitForTcpListen,
  which,
} from "./util.ts";

/** A client/server pair of shell commands; `{port}` is replaced. */
export interface Tool {
  name: string;
  server: string;
  client: string;
}

/** Options of {@linkcode benchThroughput}. */
export interface ThroughputOptions {
  /** Bytes to send. */
  size: number;
  /** Runs per tool. */
  runs: number;
}

/** One transfer of `size` bytes with `tool`: seconds, peak RSS (KiB) and CPU seconds. */
export async function once(
  tool: Tool,
  size: number,
): Promise<{ seconds: number; rssKiB?: number; cpu?: number }> {
  const port = freeTcpPort();
  const time = which("/usr/bin/time") ? "/usr/bin/time -f 'rss=%M cpu=%U+%S' " : "";
  const server = sh(`${time}${tool.server.replaceAll("{port}", String(port))} | wc -c`);
  await waitForTcpListen(port);
  const started = performance.now();
  const client = sh(
    `head -c ${size} /dev/zero | ${time}${tool.client.replaceAll("{port}", String(port))}`,
  );
  const [s, c] = await Promise.all([server.output(), client.output()]);
  const seconds = (performance.now() - started) / 1000;
  const received = Number(new TextDecoder().decode(s.stdout).trim());
  if (!s.success || !c.success || received !== size) {
    throw new Error(
      `${tool.name}: transfer failed (server ${s.code}, client ${c.code}, ${received} of ${size} bytes)\n` +
        new TextDecoder().decode(s.stderr) + new TextDecoder().decode(c.stderr),
    );
  }
  const stats = [s.stderr, c.stderr].map((e) => new TextDecoder().decode(e));
  const rss = stats.map((e) => Number(/rss=(\d+)/.exec(e)?.[1] ?? NaN));
  const cpu = stats.map((e) => /cpu=([\d.]+)\+([\d.]+)/.exec(e)).map((m) =>
    m ? Number(m[1]) + Number(m[2]) : NaN
  );
  return {
    seconds,
    rssKiB: Math.max(...rss) || undefined,
    cpu: cpu[0] + cpu[1] || undefined,
  };
}

/**
 * Runs the throughput comparison and returns one row per tool, the first
 * row being sockit; `ratio` is sockit's rate over nc's.
 */
export async function benchThroughput(options: ThroughputOptions): Promise<Row[]> {
  const tools: Tool[] = [
    {
      // As the binary runs it (--allow-ffi and the rest).
      name: "sockit",
      server: `${sockitFullShell()} listen 127.0.0.1:{port}`,
      client: `${sockitFullShell()} connect 127.0.0.1:{port}`,
    },
    {
      name: "sockit (--allow-net only)",
      server: `${sockitShell()} listen 127.0.0.1:{port}`,
      client: `${sockitShell()} connect 127.0.0.1:{port}`,
    },
    { name: "nc", server: "nc -l 127.0.0.1 {port}", client: "nc -N 127.0.0.1 {port}" },
  ];
  const baseline = baselineShell(true);
  if (baseline) {
    tools.splice(2, 0, {
      name: "sockit (baseline)",
      server: `${baseline} listen 127.0.0.1:{port}`,
      client: `${baseline} connect 127.0.0.1:{port}`,
    });
  }
  if (which("socat")) {
    tools.push({
      name: "socat",
      server: "socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT",
      client: "socat -u STDIN TCP:127.0.0.1:{port}",
    });
  }
  const times = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  const rss = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  const cpu = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  for (let run = 0; run < options.runs; run++) {
    // Alternate the order so that neither tool always runs on a warmer machine.
    const order = run % 2 === 0 ? tools : [...tools].reverse();
    for (const tool of order) {
      const r = await once(tool, options.size);
      times.get(tool.name)!.push(r.seconds);
      if (r.rssKiB) rss.get(tool.name)!.push(r.rssKiB);
      if (r.cpu) cpu.get(tool.name)!.push(r.cpu);
    }
  }
  const ncRate = options.size / median(times.get("nc")!);
  const ncCpu = median(cpu.get("nc")!);
  const target = (name: string, rate: number, used: number) => {
    const mark = (ok: boolean) => ok ? "met" : "MISSED";
    if (name === "sockit") {
      return `≥ 1.3× nc: ${mark(rate >= 1.3 * ncRate)}; CPU ≤ 0.8× nc's: ${
        mark(used <= 0.8 * ncCpu)
      }; moonshot ≥ 1.5×: ${mark(rate >= 1.5 * ncRate)}`;
    }
    return "";
  };
  return tools.map((tool) => {
    const seconds = median(times.get(tool.name)!);
    const rate = options.size / seconds;
    const peak = rss.get(tool.name)!;
    return {
      bench: `transfer ${options.size / 2 ** 20} MiB`,
      tool: tool.name,
      value: `${seconds.toFixed(3)} s`,
      rate: `${(rate / 2 ** 30).toFixed(2)} GiB/s`,
      ratio: `${(rate / ncRate).toFixed(2)}× nc`,
      "cpu (both ends)": cpu.get(tool.name)!.length
        ? `${median(cpu.get(tool.name)!).toFixed(2)} s`
        : "-",
      "peak rss": peak.length ? `${Math.round(Math.max(...peak) / 1024)} MiB` : "-",
      target: target(tool.name, rate, median(cpu.get(tool.name)!)),
      runs: times.get(tool.name)!.map((t) => t.toFixed(2)).join(" "),
    };
  });
}

/** Resolves once `path` exists (a Unix socket being bound). */
async function waitForPath(path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  throw new Error(`nothing bound ${path} within ${timeoutMs} ms`);
}

/** Median, range and CPU of some runs, as table cells; `ratio` against `base` seconds. */
function cells(size: number, seconds: number[], cpu: number[], base: number, baseName: string) {
  const mid = median(seconds);
  return {
    value: `${mid.toFixed(3)} s`,
    range: `${Math.min(...seconds).toFixed(2)}–${Math.max(...seconds).toFixed(2)} s`,
    rate: `${(size / mid / 2 ** 30).toFixed(2)} GiB/s`,
    ratio: `${(base / mid).toFixed(2)}× ${baseName}`,
    cpu: cpu.length ? `${median(cpu).toFixed(2)} s` : "-",
  };
}

/** Throughput over a Unix socket: sockit against `nc -U` and socat. */
export async function benchUnix(options: ThroughputOptions): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-unix-" });
  const time = which("/usr/bin/time") ? "/usr/bin/time -f 'cpu=%U+%S' " : "";
  const tools = [
    {
      name: "sockit",
      server: `${sockitFullShell()} listen unix:{path}`,
      client: `${sockitFullShell()} connect unix:{path}`,
    },
    { name: "nc -U", server: "nc -lU {path}", client: "nc -N -U {path}" },
    ...(which("socat")
      ? [{
        name: "socat",
        server: "socat -u UNIX-LISTEN:{path} STDOUT",
        client: "socat -u STDIN UNIX-CONNECT:{path}",
      }]
      : []),
  ];
  const seconds = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  const cpu = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const tool of run % 2 === 0 ? tools : [...tools].reverse()) {
        const path = `${dir}/s${run}.sock`;
        const server = sh(`${time}${tool.server.replaceAll("{path}", path)} | wc -c`);
        await waitForPath(path);
        const started = performance.now();
        const client = sh(
          `head -c ${options.size} /dev/zero | ${time}${tool.client.replaceAll("{path}", path)}`,
        );
        const [s, c] = await Promise.all([server.output(), client.output()]);
        seconds.get(tool.name)!.push((performance.now() - started) / 1000);
        const received = Number(new TextDecoder().decode(s.stdout).trim());
        if (received !== options.size) throw new Error(`${tool.name}: ${received} bytes arrived`);
        const used = [s.stderr, c.stderr].map((e) =>
          /cpu=([\d.]+)\+([\d.]+)/.exec(new TextDecoder().decode(e))
        );
        if (used.every(Boolean)) {
          cpu.get(tool.name)!.push(used.reduce((sum, m) => sum + Number(m![1]) + Number(m![2]), 0));
        }
        await Deno.remove(path).catch(() => {});
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const nc = median(seconds.get("nc -U")!);
  return tools.map((t) => ({
    bench: `unix ${options.size / 2 ** 20} MiB`,
    tool: t.name,
    ...cells(options.size, seconds.get(t.name)!, cpu.get(t.name)!, nc, "nc -U"),
    target: t.name === "sockit"
      ? `≥ 1.2× nc -U: ${nc / median(seconds.get(t.name)!) >= 1.2 ? "met" : "MISSED"}`
      : "",
  }));
}

/**
 * Throughput through a forwarder: `nc -N` → forwarder → `nc -l` (TCP → TCP)
 * or `nc -lU` (TCP → Unix), sockit forward against `socat -b131072`; the CPU
 * is the forwarder's alone.
 */
export async function benchForward(options: ThroughputOptions): Promise<Row[]> {
  if (!which("socat")) return [{ bench: "forward", tool: "-", note: "socat is not installed" }];
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-forward-" });
  const time = which("/usr/bin/time") ? "/usr/bin/time -f 'cpu=%U+%S' " : "";
  const relays = [
    {
      name: "sockit forward",
      command: `${sockitFullShell()} forward 127.0.0.1:{listen} {target}`,
    },
    {
      name: "socat -b131072",
      command: "socat -b131072 TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork {socatTarget}",
    },
    // The ceiling: the same nc ends joined directly, no forwarder. A forwarder cannot beat it.
    { name: "none (nc → nc)", command: "" },
  ];
  const rows: Row[] = [];
  try {
    for (const kind of ["tcp", "unix"] as const) {
      const seconds = new Map<string, number[]>(relays.map((r) => [r.name, []]));
      const cpu = new Map<string, number[]>(relays.map((r) => [r.name, []]));
      for (let run = 0; run < options.runs; run++) {
        for (const relay of run % 2 === 0 ? relays : [...relays].reverse()) {
          const listen = freeTcpPort();
          const sinkPort = freeTcpPort();
          const path = `${dir}/t${run}.sock`;
          const sink = sh(
            kind === "tcp" ? `nc -l 127.0.0.1 ${sinkPort} | wc -c` : `nc -lU ${path} | wc -c`,
          );
          if (kind === "tcp") await waitForTcpListen(sinkPort);
          else await waitForPath(path);
          const command = relay.command.replaceAll("{listen}", String(listen))
            .replaceAll("{target}", kind === "tcp" ? `127.0.0.1:${sinkPort}` : `unix:${path}`)
            .replaceAll(
              "{socatTarget}",
              kind === "tcp" ? `TCP:127.0.0.1:${sinkPort}` : `UNIX-CONNECT:${path}`,
            );
          const forwarder = command ? sh(`exec ${time}${command}`) : undefined;
          if (forwarder) await waitForTcpListen(listen);
          const to = forwarder
            ? `127.0.0.1 ${listen}`
            : kind === "tcp"
            ? `127.0.0.1 ${sinkPort}`
            : `-U ${path}`;
          const started = performance.now();
          const source = await sh(`head -c ${options.size} /dev/zero | nc -N ${to}`).output();
          const out = await sink.output();
          seconds.get(relay.name)!.push((performance.now() - started) / 1000);
          const received = Number(new TextDecoder().decode(out.stdout).trim());
          // Stop the forwarder itself (not /usr/bin/time, which then reports its CPU).
          let f: Deno.CommandOutput | undefined;
          if (forwarder) {
            const [pid] = time ? await descendants(forwarder.pid) : [forwarder.pid];
            if (pid) Deno.kill(pid, "SIGTERM");
            f = await forwarder.output();
          }
          if (!source.success || received !== options.size) {
            throw new Error(`${relay.name} (${kind}): ${received} of ${options.size} bytes`);
          }
          const m = f && /cpu=([\d.]+)\+([\d.]+)/.exec(new TextDecoder().decode(f.stderr));
          if (m) cpu.get(relay.name)!.push(Number(m[1]) + Number(m[2]));
          await Deno.remove(path).catch(() => {});
        }
      }
      const socat = median(seconds.get("socat -b131072")!);
      for (const relay of relays) {
        const mine = median(seconds.get(relay.name)!);
        const myCpu = median(cpu.get(relay.name)!);
        const theirCpu = median(cpu.get("socat -b131072")!);
        rows.push({
          bench: `forward ${kind === "tcp" ? "TCP → TCP" : "TCP → Unix"} ${
            options.size / 2 ** 20
          } MiB`,
          tool: relay.name,
          ...cells(options.size, seconds.get(relay.name)!, cpu.get(relay.name)!, socat, "socat"),
          target: relay.name === "sockit forward"
            ? `≥ 1.3× socat: ${socat / mine >= 1.3 ? "met" : "MISSED"}; relay CPU ≤ socat's: ${
              myCpu <= theirCpu ? "met" : "MISSED"
            }`
            : "",
        });
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}
