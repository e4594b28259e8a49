/**
 * `forward`: curl through it to a Python http.server, Unix↔TCP with socat
 * peers, a target that is down then up, a client reset mid-transfer, and
 * 256 MiB each way with half-close, all checked by SHA-256.
 */

import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  decoder,
  encoder,
  freePort,
  NET,
  noise,
  randomBytes,
  readAll,
  requireTool,
  sha256,
  spawnSockit,
  tempSocketDir,
  writeAll,
} from "./helpers.ts";

/** A Python http.server on 127.0.0.1 serving `dir`. */
async function httpServer(dir: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = freePort();
  const child = new Deno.Command(requireTool("python3"), {
    args: ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    const ok = await Deno.connect({ hostname: "127.0.0.1", port }).then(
      (c) => (c.close(), true),
      () => false,
    );
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    port,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

Deno.test("forward: curl through it, 20 parallel requests, bodies checked by SHA-256", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-www-" });
  const files = Array.from({ length: 20 }, (_, i) => {
    const body = randomBytes(64 * 1024 + i * 37_000);
    Deno.writeFileSync(`${dir}/f${i}.bin`, body);
    return sha256(body);
  });
  const http = await httpServer(dir);
  const fwd = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${http.port}`, "-v"]);
  const port = await fwd.listeningPort();
  const curl = requireTool("curl");
  const outs = await Promise.all(
    files.map((_, i) =>
      new Deno.Command(curl, {
        args: ["-sf", `http://127.0.0.1:${port}/f${i}.bin`],
        stdout: "piped",
      }).output()
    ),
  );
  for (const [i, out] of outs.entries()) {
    assertEquals(out.code, 0, `curl ${i}`);
    assertEquals(sha256(out.stdout), files[i], `body ${i}`);
  }
  await fwd.waitForCount(/closed 127/, 20);
  fwd.kill("SIGTERM");
  const done = await fwd.result();
  assertEquals(done.code, 143);
  assertEquals(done.stderr.match(/connected to 127\.0\.0\.1:\d+/g)?.length, 20);
  assertEquals(done.stderr.match(/warning/g), null);
  await http.stop();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("forward: TCP → Unix and Unix → TCP with socat peers", async () => {
  const socat = requireTool("socat");
  const dir = tempSocketDir();
  const backend = `${dir}/backend.sock`;
  const front = `${dir}/front.sock`;
  // A Unix-socket echo service, exposed on a TCP port.
  const service = new Deno.Command(socat, {
    args: [`UNIX-LISTEN:${backend},fork`, "EXEC:cat"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      if (Deno.lstatSync(backend).isSocket) break;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  const perms = [...NET, `--allow-read=${dir}`, `--allow-write=${dir}`];
  const toUnix = spawnSockit(["forward", "127.0.0.1:0", `unix:${backend}`, "-v"], { perms });
  const port = await toUnix.listeningPort();
  const client = await new Deno.Command(socat, {
    args: ["-t", "2", "-", `TCP:127.0.0.1:${port}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = client.stdin.getWriter();
  await w.write(encoder.encode("tcp to unix\n"));
  await w.close();
  assertEquals(decoder.decode((await client.output()).stdout), "tcp to unix\n");

  // The other way: a Unix socket in front of the TCP port.
  const toTcp = spawnSockit(["forward", `unix:${front}`, `127.0.0.1:${port}`, "-v"], { perms });
  await toTcp.waitForStderr(/listening on unix:/);
  const client2 = await new Deno.Command(socat, {
    args: ["-t", "2", "-", `UNIX-CONNECT:${front}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w2 = client2.stdin.getWriter();
  await w2.write(encoder.encode("unix to tcp to unix\n"));
  await w2.close();
  assertEquals(decoder.decode((await client2.output()).stdout), "unix to tcp to unix\n");

  for (const p of [toTcp, toUnix]) {
    p.kill("SIGTERM");
    assertEquals((await p.result()).code, 143);
  }
  service.kill("SIGTERM");
  await service.status;
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("forward: a target that is down closes the client at once; once up, clients are served", async () => {
  const targetPort = freePort();
  const fwd = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${targetPort}`, "-v"]);
  const port = await fwd.listeningPort();
  const started = performance.now();
  const early = await Deno.connect({ hostname: "127.0.0.1", port });
  assertEquals((await readAll(early)).length, 0);
  early.close();
  assert(performance.now() - started < 2000, "closed promptly");
  await fwd.waitForStderr(/forward to 127\.0\.0\.1:\d+ failed: connection refused/);
  const target = Deno.listen({ hostname: "127.0.0.1", port: targetPort });
  const served = (async () => {
    const conn = await target.accept();
    await writeAll(conn, encoder.encode("target is up"));
    conn.close();
  })();
  const late = await Deno.connect({ hostname: "127.0.0.1", port });
  assertEquals(decoder.decode(await readAll(late)), "target is up");
  late.close();
  await served;
  target.close();
  fwd.kill("SIGTERM");
  assertEquals((await fwd.result()).code, 143);
});

Deno.test("forward: a client reset mid-transfer closes its pair; the forwarder goes on", async () => {
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fwd = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${target.addr.port}`, "-v"]);
  const port = await fwd.listeningPort();
  const bad = await Deno.connect({ hostname: "127.0.0.1", port });
  const backend = await target.accept();
  // The target streams to the client; the client reads a little and vanishes (RST).
  const streaming = (async () => {
    try {
      for (;;) await writeAll(backend, new Uint8Array(64 * 1024));
    } catch {
      // The forwarder closed its side towards us.
    }
  })();
  const buf = new Uint8Array(1024);
  await bad.read(buf);
  bad.close();
  await streaming;
  backend.close();
  // Another client is served normally.
  const good = await Deno.connect({ hostname: "127.0.0.1", port });
  const backend2 = await target.accept();
  await writeAll(good, encoder.encode("after the reset"));
  await good.closeWrite();
  assertEquals(decoder.decode(await readAll(backend2)), "after the reset");
  backend2.close();
  assertEquals((await readAll(good)).length, 0);
  good.close();
  target.close();
  fwd.kill("SIGTERM");
  const done = await fwd.result();
  assertEquals(done.code, 143);
  assertMatch(done.stderr, /warning: .*(reset|broken pipe)/);
});

Deno.test("forward: 256 MiB each way with half-close in both directions, SHA-256", async () => {
  const total = 256 * 1024 * 1024;
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fwd = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${target.addr.port}`, "-v"]);
  const port = await fwd.listeningPort();
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const backend = await target.accept();
  /** Sends `total` bytes of noise, then half-closes; resolves to their hash. */
  const send = async (conn: Deno.Conn, seed: number) => {
    const hash = createHash("sha256");
    for (const chunk of noise(total, 1 << 20, seed)) {
      hash.update(chunk);
      await writeAll(conn, chunk);
    }
    await conn.closeWrite();
    return hash.digest("hex");
  };
  /** Reads to EOF; resolves to the hash and the count. */
  const receive = async (conn: Deno.Conn) => {
    const hash = createHash("sha256");
    const buf = new Uint8Array(1 << 18);
    let count = 0;
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
      count += n;
    }
    return [hash.digest("hex"), count] as const;
  };
  // The client sends first and half-closes; the target replies only after EOF.
  const [sentUp, [gotUp, countUp]] = await Promise.all([send(client, 1), receive(backend)]);
  const [sentDown, [gotDown, countDown]] = await Promise.all([send(backend, 2), receive(client)]);
  client.close();
  backend.close();
  target.close();
  assertEquals([countUp, countDown], [total, total]);
  assertEquals([gotUp, gotDown], [sentUp, sentDown]);
  await fwd.waitForStderr(/closed 127\.0\.0\.1:\d+ \(sent 256 MiB, received 256 MiB/);
  fwd.kill("SIGTERM");
  assertEquals((await fwd.result()).code, 143);
});

Deno.test("forward: limits and events (--deny, --json closed with bytes each way)", async () => {
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const denied = spawnSockit([
    "forward",
    "127.0.0.1:0",
    `127.0.0.1:${target.addr.port}`,
    "-v",
    "--deny",
    "127.0.0.0/8",
  ]);
  const port = await denied.listeningPort();
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  assertEquals((await readAll(c).catch(() => new Uint8Array())).length, 0);
  c.close();
  await denied.waitForStderr(/rejected 127\.0\.0\.1:\d+: denied by --deny 127\.0\.0\.0\/8/);
  denied.kill("SIGTERM");
  await denied.result();

  const json = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${target.addr.port}`, "--json"]);
  const port2 = await json.listeningPort();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: port2 });
  const backend = await target.accept();
  await writeAll(client, encoder.encode("12345"));
  await client.closeWrite();
  assertEquals(decoder.decode(await readAll(backend)), "12345");
  await writeAll(backend, encoder.encode("abc"));
  backend.close();
  assertEquals(decoder.decode(await readAll(client)), "abc");
  client.close();
  await json.waitForStderr(/"event":"closed"/);
  json.kill("SIGTERM");
  const done = await json.result();
  const closed = done.stderr.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) =>
    e.event === "closed"
  );
  assertEquals([closed.received, closed.sent], [5, 3]);
  assert(typeof closed.durationMs === "number");
  target.close();
});
