/**
 * The smoke suite (`deno task smoke`): a short end-to-end run of the
 * everyday jobs against the command in `$SOCKIT` — a compiled binary
 * (`SOCKIT=dist/sockit deno task smoke`) or, by default, `deno run` with the
 * narrow permission flags.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import {
  freePort,
  randomBytes,
  runSockit,
  sha256,
  spawnSockit,
  tempSocketDir,
  unixPerms,
} from "./helpers.ts";

/** The smoke suite always runs the command as a process: that is what it checks. */
const PROCESS = { process: true };

Deno.test("smoke: version and help", async () => {
  assertMatch((await runSockit(["--version"], PROCESS)).text, /^sockit \d+\.\d+\.\d+\n$/);
  assertEquals((await runSockit(["help", "connect"], PROCESS)).code, 0);
});

Deno.test("smoke: the seed scenario (a server writes hello!, a client prints it)", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "--send", "hello!", "-v"], PROCESS);
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], PROCESS);
  assertEquals([client.code, client.text], [0, "hello!"]);
  assertEquals((await server.result()).code, 0);
});

Deno.test("smoke: 16 MiB each way, checked by SHA-256", async () => {
  const up = randomBytes(16 * 1024 * 1024);
  const down = randomBytes(16 * 1024 * 1024);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], {
    ...PROCESS,
    stdin: down,
  });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], {
    ...PROCESS,
    stdin: up,
  });
  const done = await server.result();
  assertEquals([client.code, done.code], [0, 0]);
  assertEquals([sha256(done.stdout), sha256(client.stdout)], [sha256(up), sha256(down)]);
});

Deno.test("smoke: a Unix socket round trip", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/smoke.sock`;
  const server = spawnSockit(["listen", `unix:${path}`, "-v", "--send", "pong"], {
    ...PROCESS,
    perms: unixPerms(path),
  });
  await server.waitForStderr(/listening on unix:/);
  const client = await runSockit(["connect", `unix:${path}`], {
    ...PROCESS,
    perms: unixPerms(path),
    stdin: "ping",
  });
  const done = await server.result();
  assertEquals([client.text, done.text, client.code, done.code], ["pong", "ping", 0, 0]);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("smoke: exit codes 1, 2 and 124", async () => {
  assertEquals((await runSockit(["connect", `127.0.0.1:${freePort()}`], PROCESS)).code, 1);
  assertEquals((await runSockit(["connect", "x:99999"], PROCESS)).code, 2);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], {
    ...PROCESS,
    stdin: "piped",
  });
  const port = await server.listeningPort();
  const slow = await runSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--expect",
    "never",
    "--timeout",
    "200ms",
  ], {
    ...PROCESS,
    stdin: "piped",
  });
  assertEquals(slow.code, 124);
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
});
