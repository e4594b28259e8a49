/**
 * Start-up: how long a whole command takes from exec to exit when it has
 * next to nothing to do — `sockit --version`, `sockit --help`, and
 * `sockit connect --send x` to a port that listens (the first byte's cost) —
 * beside `deno run` of an empty file (the floor for anything run by Deno)
 * and `nc -N`. Runs interleaved, medians with the range, CPU (user+sys, from
 * `/usr/bin/time`) beside wall time.
 *
 * @module
 */

import { median, type Row, sh, sockitShell, which } from "./util.ts";

/** Options of {@linkcode benchStartup}. */
export interface StartupOptions {
  /** Runs of each command. Default 21. */
  runs: number;
}

interface Variant {
  name: string;
  command: string;
  wall: number[];
  cpu: number[];
  target?: (me: number, floor: number) => string;
}

const decoder = new TextDecoder();

/** Runs the start-up comparison; one row per command. */
export async function benchStartup(options: StartupOptions = { runs: 21 }): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-startup-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  // The listening end: take each connection, read it to the end, close it.
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(1024);
        try {
          while (await conn.read(buf) !== null) { /* discard */ }
        } catch {
          // The client reset: nothing to do.
        } finally {
          conn.close();
        }
      })();
    }
  })();
  try {
    const empty = `${dir}/empty.ts`;
    await Deno.writeTextFile(empty, "");
    const config = new URL("../deno.json", import.meta.url).pathname;
    const time = which("/usr/bin/time") ? "/usr/bin/time -f '%e %U %S' " : "";
    const within = (limit: number) => (me: number, floor: number) =>
      `≤ ${limit}× deno run empty: ${me <= limit * floor ? "met" : "MISSED"} (${
        (me / floor).toFixed(2)
      }×)`;
    const variants: Variant[] = [
      {
        name: "deno run (empty file)",
        command: `${Deno.execPath()} run --no-prompt --config=${config} --allow-net ${empty}`,
        wall: [],
        cpu: [],
      },
      {
        name: "sockit --version",
        command: `${sockitShell()} --version`,
        wall: [],
        cpu: [],
        target: within(1.3),
      },
      {
        name: "sockit --help",
        command: `${sockitShell()} --help`,
        wall: [],
        cpu: [],
        target: within(1.3),
      },
      {
        name: "sockit connect --send x",
        command: `${sockitShell()} connect 127.0.0.1:${port} --send x`,
        wall: [],
        cpu: [],
      },
      ...(which("nc")
        ? [{
          name: "nc -N (same connection)",
          command: `printf x | nc -N 127.0.0.1 ${port}`,
          wall: [],
          cpu: [],
        }]
        : []),
    ];
    for (let run = 0; run < options.runs; run++) {
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(run + i) % variants.length];
        const started = performance.now();
        // /usr/bin/time reports on the last line of stderr.
        const out = await sh(`${time}sh -c '${v.command.replaceAll("'", "'\\''")}' >/dev/null`)
          .output();
        const seconds = (performance.now() - started) / 1000;
        if (!out.success) throw new Error(`${v.name} failed: ${decoder.decode(out.stderr)}`);
        v.wall.push(seconds);
        const last = decoder.decode(out.stderr).trim().split("\n").at(-1) ?? "";
        const [, user, sys] = last.split(" ").map(Number);
        if (time && Number.isFinite(user + sys)) v.cpu.push(user + sys);
      }
    }
    const floor = median(variants[0].wall);
    const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
    return variants.map((v) => ({
      bench: "start to exit",
      tool: v.name,
      median: ms(median(v.wall)),
      range: `${ms(Math.min(...v.wall))}–${ms(Math.max(...v.wall))}`,
      cpu: v.cpu.length ? ms(median(v.cpu)) : "-",
      "vs deno run empty": `${(median(v.wall) / floor).toFixed(2)}×`,
      target: v.target ? v.target(median(v.wall), floor) : "",
    }));
  } finally {
    listener.close();
    await serving.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}
