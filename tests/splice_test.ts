/**
 * The splice(2) fast path: with `--allow-ffi`, a session between a plain
 * TCP connection and stdin/stdout pipes moves its bytes in the kernel. The
 * same bytes must arrive (SHA-256, both directions at once, half-close),
 * without `--allow-ffi` too, and a peer's reset is reported as on the
 * ordinary path. Real processes: the fast path needs fd 0 and 1 to be pipes.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  CHILD_ENV,
  customCommand,
  decoder,
  freePort,
  requireTool,
  sockitCommand,
  spawnSockit,
  unixPerms,
} from "./helpers.ts";
import { PythonServer } from "./peers.ts";

const quote = (words: string[]) => words.map((w) => `'${w}'`).join(" ");

/** Runs a shell pipeline; resolves to its exit code and stderr. */
async function sh(script: string): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", script],
    stdout: "null",
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  return { code: out.code, stderr: decoder.decode(out.stderr) };
}

async function sha256(path: string): Promise<string> {
  const out = await new Deno.Command(requireTool("sha256sum"), { args: [path], stdout: "piped" })
    .output();
  return decoder.decode(out.stdout).split(" ")[0];
}

/** Both ends at once: a client and a server each send a file and save what they receive. */
async function exchange(perms: string[], size: number, unix = false) {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-splice-" });
  try {
    for (const name of ["a", "b"]) {
      const made = await sh(`head -c ${size} /dev/urandom > ${dir}/${name}`);
      assertEquals(made.code, 0, made.stderr);
    }
    const endpoint = unix ? `unix:${dir}/s.sock` : `127.0.0.1:${freePort()}`;
    const sockit = quote(sockitCommand(unix ? [...perms, ...unixPerms(`${dir}/s.sock`)] : perms));
    const server = sh(
      `cat ${dir}/a | ${sockit} listen ${endpoint} -v 2>${dir}/server.err | cat > ${dir}/got-b`,
    );
    const client = await sh(
      `for i in $(seq 100); do grep -q listening ${dir}/server.err 2>/dev/null && break; ` +
        `sleep 0.05; done; cat ${dir}/b | ${sockit} connect ${endpoint} -v | cat > ${dir}/got-a`,
    );
    const served = await server;
    return {
      client,
      server: { code: served.code, stderr: Deno.readTextFileSync(`${dir}/server.err`) },
      aSame: (await sha256(`${dir}/a`)) === (await sha256(`${dir}/got-a`)),
      bSame: (await sha256(`${dir}/b`)) === (await sha256(`${dir}/got-b`)),
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("splice: 256 MiB each way at once, half-closed, arrive intact (SHA-256), both directions moved by splice(2)", async () => {
  const r = await exchange(["--allow-net", "--allow-ffi"], 256 << 20);
  assertEquals([r.client.code, r.server.code], [0, 0], r.client.stderr + r.server.stderr);
  assert(r.aSame, "server → client bytes differ");
  assert(r.bSame, "client → server bytes differ");
  for (const stderr of [r.client.stderr, r.server.stderr]) {
    assertMatch(
      stderr,
      /stdio → 127\.0\.0\.1:\d+: moved by splice\(2\) in the kernel \(268435456 B/,
    );
    assertMatch(
      stderr,
      /127\.0\.0\.1:\d+ → stdio: moved by splice\(2\) in the kernel \(268435456 B/,
    );
    assertMatch(stderr, /closed .*sent 256 MiB, received 256 MiB/);
  }
});

Deno.test("splice: over a Unix socket too, 64 MiB each way, intact and spliced", async () => {
  const r = await exchange(["--allow-net", "--allow-ffi"], 64 << 20, true);
  assertEquals([r.client.code, r.server.code], [0, 0], r.client.stderr + r.server.stderr);
  assert(r.aSame && r.bSame, "bytes differ");
  for (const stderr of [r.client.stderr, r.server.stderr]) {
    assertMatch(stderr, /stdio → unix:\S+: moved by splice\(2\) in the kernel \(67108864 B/);
    assertMatch(stderr, /unix:\S+ → stdio: moved by splice\(2\) in the kernel \(67108864 B/);
  }
});

Deno.test("splice: without --allow-ffi the ordinary path moves the same bytes", async () => {
  if (customCommand) {
    // A binary has --allow-ffi built in: this half cannot be run against it; the other
    // tests cover its fast path.
    return;
  }
  const r = await exchange(["--allow-net"], 32 << 20);
  assertEquals([r.client.code, r.server.code], [0, 0], r.client.stderr + r.server.stderr);
  assert(r.aSame && r.bSame, "bytes differ");
  assert(!/splice/.test(r.client.stderr + r.server.stderr), "spliced without --allow-ffi");
});

Deno.test("splice: a peer that resets mid-transfer is reported as on the ordinary path", async () => {
  const peer = new PythonServer(`
conn.recv(65536)
time.sleep(0.2)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
`);
  const port = await peer.port();
  const sockit = quote(sockitCommand(["--allow-net", "--allow-ffi"]));
  // stdout a pipe too (the fast path's condition); sockit's own exit code said on stderr.
  const r = await sh(
    `{ head -c 1000000000 /dev/zero | ${sockit} connect 127.0.0.1:${port} -v; ` +
      `echo "exit $?" >&2; } | cat`,
  );
  await peer.done();
  assertMatch(r.stderr, /^exit 1$/m);
  assertMatch(r.stderr, /moved by splice\(2\)/);
  assertMatch(
    r.stderr,
    /sockit: (write|read) 127\.0\.0\.1:\d+: (connection reset by peer|broken pipe)/,
  );
});

Deno.test("splice: forward hands a bulk connection to the kernel after its first MiBs; the bytes are the same", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-splice-forward-" });
  try {
    const made = await sh(`head -c ${48 << 20} /dev/urandom > ${dir}/a`);
    assertEquals(made.code, 0, made.stderr);
    // The target: a Deno listener that hashes what arrives, then closes.
    const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const hashed = target.accept().then(async (conn) => {
      const hash = new Deno.Command(requireTool("sha256sum"), { stdin: "piped", stdout: "piped" })
        .spawn();
      await conn.readable.pipeTo(hash.stdin);
      return decoder.decode((await hash.output()).stdout).split(" ")[0];
    });
    const forward = spawnSockit(
      ["forward", "127.0.0.1:0", `127.0.0.1:${target.addr.port}`, "-v"],
      { perms: ["--allow-net", "--allow-ffi"], process: true },
    );
    const port = await forward.listeningPort();
    const sent = await sh(`${requireTool("nc")} -N 127.0.0.1 ${port} < ${dir}/a`);
    assertEquals(sent.code, 0, sent.stderr);
    assertEquals(await hashed, await sha256(`${dir}/a`));
    await forward.waitForStderr(/closed/);
    forward.kill("SIGTERM");
    const r = await forward.result();
    target.close();
    assertMatch(
      r.stderr,
      /127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+: moved by splice\(2\) in the kernel/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("splice: --trace names the splice calls of each direction", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const drained = listener.accept().then(async (conn) => {
    await conn.readable.pipeTo(new WritableStream());
  });
  const sockit = quote(sockitCommand(["--allow-net", "--allow-ffi"]));
  const r = await sh(
    `head -c 3000000 /dev/zero | ${sockit} connect 127.0.0.1:${listener.addr.port} --trace | cat`,
  );
  await drained;
  listener.close();
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /\[#1\] splice\(stdio → 127\.0\.0\.1:\d+\) × \d+ = 3000000 bytes/);
  assertMatch(r.stderr, /\[#1\] shutdown\(SHUT_WR\)/);
});
