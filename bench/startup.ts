/**
 * Start-up: how long a whole command takes from exec to exit when it has
 * next to nothing to do — `sockit --version`, `sockit --help`, and
 * `sockit connect --send x` to a port that listens (the first byte's cost) —
 * beside `deno run` of an empty file (the floor for anything run by Deno)
 * and `nc -N`. With npm on the machine, also the npm package
 * (`tools/npm_pack.ts`, installed into a temporary prefix): `deno run` of its
 * bundle, and its `sockit` command through the Node launcher — this
 * machine's `node`, and the Node named by `$NODE_EXECVE` (22.15+, where the
 * launcher becomes Deno through `process.execve`). Runs interleaved, medians
 * with the range, CPU (user+sys, from `/usr/bin/time`) beside wall time.
 *
 * @module
 */

import { denoRunArgs, npmPack } from "../tools/npm_pack.ts";
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
  /** Compared with this variant's median: at most `ms` more. */
  over?: { name: string; ms: number };
}

/** Packs the npm package and installs it into `dir/prefix`; the commands to compare. */
async function npmVariants(dir: string, port: number): Promise<Variant[]> {
  const tgz = await npmPack(dir);
  const install = await sh(
    `npm install -g --prefer-offline --no-fund --no-audit --prefix ${dir}/prefix ${tgz}`,
  ).output();
  if (!install.success) throw new Error(`npm install: ${decoder.decode(install.stderr)}`);
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const pkg = `${dir}/prefix/lib/node_modules/sockit`;
  const bundle = `${Deno.execPath()} ${denoRunArgs(config).join(" ")} ${pkg}/bundle/main.js`;
  const node = decoder.decode((await sh("node --version").output()).stdout).trim();
  const launchers: [string, string][] = [[`npm sockit (node ${node})`, `${dir}/prefix/bin/sockit`]];
  const execve = Deno.env.get("NODE_EXECVE");
  if (execve) {
    const version = decoder.decode((await sh(`${execve} --version`).output()).stdout).trim();
    launchers.push([`npm sockit (node ${version}, execve)`, `${execve} ${pkg}/bin/sockit.js`]);
  }
  const variants: Variant[] = [
    { name: "deno run bundle --version", command: `${bundle} --version`, wall: [], cpu: [] },
    {
      name: "deno run bundle connect --send x",
      command: `${bundle} connect 127.0.0.1:${port} --send x`,
      wall: [],
      cpu: [],
    },
  ];
  for (const [name, command] of launchers) {
    const execs = name.includes("execve");
    variants.push(
      {
        name: `${name} --version`,
        command: `${command} --version`,
        wall: [],
        cpu: [],
        over: execs ? { name: "deno run bundle --version", ms: 10 } : undefined,
      },
      {
        name: `${name} connect --send x`,
        command: `${command} connect 127.0.0.1:${port} --send x`,
        wall: [],
        cpu: [],
        over: execs ? { name: "deno run bundle connect --send x", ms: 10 } : undefined,
      },
    );
  }
  return variants;
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
      ...(which("npm") && which("node") ? await npmVariants(dir, port) : []),
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
    const over = (v: Variant, limit: { name: string; ms: number }) => {
      const base = variants.find((other) => other.name === limit.name);
      if (!base) return "";
      const extra = (median(v.wall) - median(base.wall)) * 1000;
      return `≤ +${limit.ms} ms over ${limit.name}: ${extra <= limit.ms ? "met" : "MISSED"} (${
        extra >= 0 ? "+" : ""
      }${extra.toFixed(0)} ms)`;
    };
    const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
    return variants.map((v) => ({
      bench: "start to exit",
      tool: v.name,
      median: ms(median(v.wall)),
      range: `${ms(Math.min(...v.wall))}–${ms(Math.max(...v.wall))}`,
      cpu: v.cpu.length ? ms(median(v.cpu)) : "-",
      "vs deno run empty": `${(median(v.wall) / floor).toFixed(2)}×`,
      target: v.target ? v.target(median(v.wall), floor) : v.over ? over(v, v.over) : "",
    }));
  } finally {
    listener.close();
    await serving.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}
