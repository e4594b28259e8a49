/**
 * The quick start's `deno task -q demo` on a fresh machine: an empty Deno
 * cache (`DENO_DIR`), so every npm package is fetched. Nothing prints a
 * "Download …" line: not `deno task` (which fetches the lockfile's packages
 * before any task; `-q` hides its lines), and not the demo — its output, the
 * traced server and client (which run `main.ts` and used to fetch npm
 * metadata for TLS they never use). Needs the npm registry, as a first run
 * does.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { CHILD_ENV } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("demo: a first run with an empty Deno cache prints no download lines", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "sockit-demo-deno-dir-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "demo"],
      cwd: ROOT,
      stdin: "null",
      env: { ...CHILD_ENV, DENO_DIR: denoDir },
      signal: AbortSignal.timeout(120_000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const downloads = `${stdout}\n${stderr}`.split("\n").filter((line) => /Download/.test(line));
    assertEquals(downloads, [], stderr);
    assertEquals(out.code, 0, stderr);
    assertMatch(stdout, /client stdout: hello!/);
    assertMatch(stdout, /exit status: server 0, client 0/);
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
