/**
 * Interoperability with OpenBSD netcat (netcat-openbsd) in both directions,
 * with SHA-256-checked transfers.
 */

import { assertEquals } from "./assert.ts";
import { CHILD_ENV, freePort, randomBytes, requireTool, sha256, spawnSockit } from "./helpers.ts";

/** Runs OpenBSD nc with `args` and `stdin`; resolves to its exit code and stdout. */
async function netcat(args: string[], stdin: Uint8Array) {
  const child = new Deno.Command(requireTool("nc.openbsd"), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  const writer = child.stdin.getWriter();
  const fed = writer.write(stdin).then(() => writer.close()).catch(() => {});
  const out = await child.output();
  await fed;
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("interop: nc client → sockit listen, both directions, SHA-256", async () => {
  const up = randomBytes(8 * 1024 * 1024 + 11);
  const down = randomBytes(4 * 1024 * 1024 + 7);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: down });
  const port = await server.listeningPort();
  // -N: shut down the write side at end of stdin, as sockit does.
  const nc = await netcat(["-N", "127.0.0.1", String(port)], up);
  const done = await server.result();
  assertEquals([nc.code, done.code], [0, 0], nc.stderr + done.stderr);
  assertEquals(sha256(done.stdout), sha256(up));
  assertEquals(sha256(nc.stdout), sha256(down));
});

Deno.test("interop: sockit connect → nc -l, both directions, SHA-256", async () => {
  const up = randomBytes(8 * 1024 * 1024 + 3);
  const down = randomBytes(2 * 1024 * 1024 + 5);
  const port = freePort();
  const ncRun = netcat(["-N", "-l", "127.0.0.1", String(port)], down);
  // nc -l has no readiness signal: retry until it listens.
  const client = spawnSockit(
    ["connect", `127.0.0.1:${port}`, "--retry", "100", "--retry-delay", "20ms"],
    { stdin: up },
  );
  const [nc, done] = await Promise.all([ncRun, client.result()]);
  assertEquals([nc.code, done.code], [0, 0], nc.stderr + done.stderr);
  assertEquals(sha256(nc.stdout), sha256(up));
  assertEquals(sha256(done.stdout), sha256(down));
});

Deno.test("interop: nc over a Unix socket to sockit listen", async () => {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "sockit-" });
  const path = `${dir}/nc.sock`;
  const payload = randomBytes(1024 * 1024);
  const server = spawnSockit(["listen", `unix:${path}`, "-v", "--send", "from sockit"], {
    perms: [`--allow-read=${dir}`, `--allow-write=${dir}`, `--allow-net=unix:${path}`],
  });
  await server.waitForStderr(/listening on unix:/);
  const nc = await netcat(["-N", "-U", path], payload);
  const done = await server.result();
  assertEquals([nc.code, done.code], [0, 0]);
  assertEquals(sha256(done.stdout), sha256(payload));
  assertEquals(new TextDecoder().decode(nc.stdout), "from sockit");
  Deno.removeSync(dir, { recursive: true });
});
