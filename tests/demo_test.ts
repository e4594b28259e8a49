/**
 * `deno task demo` on a fresh machine: an empty Deno cache (`DENO_DIR`), so
 * every npm package is fetched. The demo itself — its output, the traced
 * server and client (which run `main.ts` and used to fetch npm metadata for
 * TLS they never use) — shows no "Download …" line. What `deno task` itself
 * prints while it installs deno.json's npm packages before it starts any task
 * (the lines before "Task demo") is Deno's, on any first `deno task`, and is
 * not counted. Needs the npm registry, as a first run does.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { CHILD_ENV } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("demo: a first run with an empty Deno cache prints no download lines", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "sockit-demo-deno-dir-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "demo"],
      cwd: ROOT,
      stdin: "null",
      env: { ...CHILD_ENV, DENO_DIR: denoDir },
      signal: AbortSignal.timeout(120_000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const task = stderr.search(/Task.*demo/);
    assertEquals(task >= 0, true, stderr);
    const demo = `${stdout}\n${stderr.slice(task)}`;
    const downloads = demo.split("\n").filter((line) => /Download/.test(line));
    assertEquals(downloads, [], stderr);
    assertEquals(out.code, 0, stderr);
    assertMatch(stdout, /client stdout: hello!/);
    assertMatch(stdout, /exit status: server 0, client 0/);
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
