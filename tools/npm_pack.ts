/**
 * `deno task npm-pack [--out DIR]`: builds the npm package of sockit in
 * `DIR/npm/` (default `dist/`) and packs it as `DIR/sockit-VERSION.tgz`.
 *
 * The package (docs/ARCHITECTURE.md, "The npm package"):
 *
 * - `bundle/` — `deno bundle` of `main.ts` and of the server worker
 *   (`lib/cli/process_worker.ts`), split into chunks so that `--version`
 *   loads only what it needs and the TLS libraries load only for TLS; the npm
 *   dependencies are inside, so a first run fetches nothing.
 * - `bin/sockit.js` — the Node launcher (`tools/npm/sockit.js`) with the
 *   `deno run` flags of `deno task start`.
 * - `package.json` — name `sockit`, the version of deno.json, and `deno`
 *   pinned to the exact version that built (and tests) the bundle.
 *
 * Prints the tarball's path.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { textSinkOf } from "../lib/cli/context.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** The license the package declares (the repository names none; see the README's Install). */
const LICENSE = "MIT";

const decoder = new TextDecoder();

/** Runs `command args` in `cwd`; throws with its output when it fails. */
async function run(command: string, args: string[], cwd = ROOT): Promise<string> {
  const out = await new Deno.Command(command, { args, cwd, stdin: "null" }).output();
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed (${out.code}):\n${decoder.decode(out.stderr)}${
        decoder.decode(out.stdout)
      }`,
    );
  }
  return decoder.decode(out.stdout);
}

/** `deno run` and the flags `deno task start` runs sockit with, for a bundle outside the repository. */
export function denoRunArgs(
  config: { tasks: Record<string, string>; unstable?: string[] },
): string[] {
  const start = config.tasks.start.trim().split(/\s+/);
  if (start[0] !== "deno" || start[1] !== "run" || start.at(-1) !== "main.ts") {
    throw new Error(`deno.json's start task is not "deno run … main.ts": ${config.tasks.start}`);
  }
  return [
    "run",
    // The package brings everything: no deno.json, lock file or package.json of
    // the caller's directory applies, and nothing is fetched.
    "--no-config",
    "--no-lock",
    "--no-remote",
    "--no-npm",
    ...start.slice(2, -1),
    // deno.json's "unstable" list, which --no-config leaves out.
    ...(config.unstable ?? []).map((feature) => `--unstable-${feature}`),
  ];
}

/** Builds `out/npm/` and packs it; resolves to the tarball's path. */
export async function npmPack(out: string): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const version: string = config.version;
  const dir = `${out}/npm`;
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.mkdir(`${dir}/bin`, { recursive: true });

  await run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--platform=deno",
    "--code-splitting",
    `--outdir=${dir}/bundle`,
    "main.ts",
    "lib/cli/process_worker.ts",
  ]);
  // main.ts starts the server worker from its source file's URL; in the
  // bundle that file is the worker's bundled entry, at the same place.
  const mainJs = `${dir}/bundle/main.js`;
  const bundled = await Deno.readTextFile(mainJs);
  const source = `"./lib/cli/process_worker.ts"`;
  if (bundled.split(source).length !== 2) {
    throw new Error(`${mainJs}: expected the worker's URL ${source} exactly once`);
  }
  await Deno.stat(`${dir}/bundle/lib/cli/process_worker.js`);
  await Deno.writeTextFile(mainJs, bundled.replace(source, `"./lib/cli/process_worker.js"`));

  const launcher = await Deno.readTextFile(`${ROOT}tools/npm/sockit.js`);
  const marker = `["@DENO_ARGS@"]`;
  if (!launcher.includes(marker)) throw new Error(`tools/npm/sockit.js: no ${marker}`);
  await Deno.writeTextFile(
    `${dir}/bin/sockit.js`,
    launcher.replace(marker, JSON.stringify(denoRunArgs(config))),
    { mode: 0o755 },
  );
  await Deno.copyFile(`${ROOT}README.md`, `${dir}/README.md`);

  const manifest = {
    name: "sockit",
    version,
    description:
      "netcat/socat in one command: TCP, UDP and Unix sockets bridged to stdin/stdout, " +
      "servers, proxies, send-and-expect checks, every socket call traced (on Deno)",
    keywords: ["netcat", "nc", "socat", "socket", "tcp", "udp", "unix-socket", "cli", "deno"],
    license: LICENSE,
    bin: { sockit: "bin/sockit.js" },
    files: ["bin/", "bundle/"],
    engines: { node: ">=20" },
    // The Deno that built the bundle is the one that runs it.
    dependencies: { deno: Deno.version.deno },
  };
  await Deno.writeTextFile(`${dir}/package.json`, JSON.stringify(manifest, null, 2) + "\n");

  await run("npm", ["pack", "--silent", "--pack-destination", out, dir]);
  const tgz = `${out}/sockit-${version}.tgz`;
  await Deno.stat(tgz);
  return tgz;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string" } } });
  const out = values.out ?? `${ROOT}dist`;
  await Deno.mkdir(out, { recursive: true });
  textSinkOf(Deno.stdout).write(`${await npmPack(await Deno.realPath(out))}\n`);
}
