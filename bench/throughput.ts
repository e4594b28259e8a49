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
  freeTcpPort,
  median,
  type Row,
  sh,
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
      name: "sockit",
      server: `${sockitShell()} listen 127.0.0.1:{port}`,
      client: `${sockitShell()} connect 127.0.0.1:{port}`,
    },
    { name: "nc", server: "nc -l 127.0.0.1 {port}", client: "nc -N 127.0.0.1 {port}" },
  ];
  const baseline = baselineShell();
  if (baseline) {
    tools.splice(1, 0, {
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
      runs: times.get(tool.name)!.map((t) => t.toFixed(2)).join(" "),
    };
  });
}
