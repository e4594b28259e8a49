/**
 * `unixgram:` endpoints against OpenBSD nc (`-U -u`) and socat, both ways;
 * the client's temporary path is gone after it exits.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { requireTool, runSockit, spawnSockit, tempSocketDir, waitForPath } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("unixgram: listen answers nc -U -u; connect talks to socat UNIX-RECVFROM; nothing left behind", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/log.sock`;
  try {
    // nc as the client of sockit listen.
    const listen = spawnSockit(["listen", `unixgram:${path}`, "-v"], { stdin: "piped" });
    await listen.waitForStderr(/listening on unixgram:/);
    const nc = new Deno.Command(requireTool("nc"), {
      args: ["-U", "-u", path],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const ncIn = nc.stdin.getWriter();
    await ncIn.write(encoder.encode("from nc\n"));
    await listen.waitForStderr(/datagrams from \//);
    const toNc = listen.stdin.getWriter();
    await toNc.write(encoder.encode("answer\n"));
    const reader = nc.stdout.getReader();
    const { value } = await reader.read();
    assertEquals(decoder.decode(value), "answer\n");
    await reader.cancel();
    await ncIn.close().catch(() => {});
    nc.kill("SIGTERM");
    await nc.status;
    await toNc.close().catch(() => {});
    listen.kill("SIGTERM");
    const l = await listen.result();
    assertEquals(l.text, "from nc\n");
    assert(
      !Deno.statSync(dir).isFile && [...Deno.readDirSync(dir)].length === 0,
      "the socket file stayed",
    );
    // sockit connect as the client of socat.
    const socat = new Deno.Command(requireTool("socat"), {
      args: ["-u", `UNIX-RECVFROM:${path}`, "STDOUT"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    await waitForPath(path);
    const before = [...Deno.readDirSync("/tmp")].filter((e) => e.name.startsWith("sockit-")).length;
    const sent = await runSockit([
      "connect",
      `unixgram:${path}`,
      "--send",
      "to socat\\n",
      "--idle-timeout",
      "200ms",
    ]);
    assertEquals(sent.code, 0, sent.stderr);
    const got = await socat.output();
    assertEquals(decoder.decode(got.stdout), "to socat\n");
    const after = [...Deno.readDirSync("/tmp")].filter((e) => e.name.startsWith("sockit-")).length;
    assert(after <= before, "the client's temporary path stayed");
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("unixgram: without --allow-ffi, exit 126 naming the flag", async () => {
  const dir = tempSocketDir();
  try {
    const r = await runSockit(["listen", `unixgram:${dir}/x.sock`], {
      process: true,
      perms: [`--allow-read=${dir}`, `--allow-write=${dir}`],
    });
    assertEquals(r.code, 126);
    assertMatch(r.stderr, /needs --allow-ffi/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unixgram: sockit nc -U -u sends to OpenBSD nc -lUu", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/nc.sock`;
  try {
    const server = new Deno.Command(requireTool("nc"), {
      args: ["-lUu", path],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    await waitForPath(path);
    const r = await runSockit(["nc", "-U", "-u", "-w1", path], {
      stdin: encoder.encode("via sockit nc\n"),
    });
    assertEquals(r.code, 0, r.stderr);
    const reader = server.stdout.getReader();
    const { value } = await reader.read();
    assertEquals(decoder.decode(value), "via sockit nc\n");
    await reader.cancel();
    server.kill("SIGTERM");
    await server.status;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
