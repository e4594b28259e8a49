/**
 * The fault matrix: what goes wrong around sockit, and what sockit must do
 * about it. Here: a reset flood against every kind of server, a descriptor
 * limit of 64 against a burst of 200 clients, a sender killed with SIGKILL,
 * and a forward whose target resets. Elsewhere in the suite (named so the
 * README's list can point at them): a peer that resets mid-transfer
 * (`cli_test.ts`), a target down then up (`forward_test.ts`), stdout to
 * `/dev/full` and to a closed pipe (`cli_test.ts`), a TLS slowloris and a
 * broker member that stops reading (`hostile_test.ts`), a row for each
 * transport — resets mid-stream, silent peers, closes in the handshake
 * (`faults_transports_test.ts`) — and the WebSocket Close at each moment
 * with each code (`faults_websocket_test.ts`).
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertNoSocketsLeft,
  CHILD_ENV,
  decoder,
  encoder,
  openSockets,
  readAll,
  runSockit,
  sockitCommand,
  spawnSockit,
  writeAll,
} from "./helpers.ts";
import { PythonServer, resetFlood, SEND_THEN_RESET } from "./peers.ts";
import { connectTcp } from "../lib/net/dial.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("faults: after a reset flood every kind of server still serves at once", async () => {
  const kinds: Array<{ name: string; args: string[]; check: (port: number) => Promise<void> }> = [
    {
      name: "listen -k --send",
      args: ["listen", "-k", "127.0.0.1:0", "--send", "hello"],
      check: async (port) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        assertEquals(decoder.decode(await readAll(conn)), "hello");
        conn.close();
      },
    },
    {
      name: "listen -k --exec cat",
      args: ["listen", "-k", "127.0.0.1:0", "--exec", "cat"],
      check: async (port) => {
        const r = await runSockit(["connect", `127.0.0.1:${port}`, "--send", "ping"]);
        assertEquals([r.code, r.text], [0, "ping"], r.stderr);
      },
    },
    {
      name: "echo tls://",
      args: ["echo", "tls://127.0.0.1:0"],
      check: async (port) => {
        const r = await runSockit([
          "connect",
          `tls://127.0.0.1:${port}`,
          "--insecure",
          "-q",
          "--send",
          "ping",
        ]);
        assertEquals([r.code, r.text], [0, "ping"], r.stderr);
      },
    },
    {
      name: "listen --broker",
      args: ["listen", "--broker", "127.0.0.1:0"],
      check: async (port) => {
        const a = await Deno.connect({ hostname: "127.0.0.1", port });
        const b = await Deno.connect({ hostname: "127.0.0.1", port });
        await sleep(100);
        await writeAll(a, encoder.encode("to b"));
        const buf = new Uint8Array(16);
        const n = await b.read(buf);
        assertEquals(decoder.decode(buf.subarray(0, n ?? 0)), "to b");
        a.close();
        b.close();
      },
    },
  ];
  for (const kind of kinds) {
    const server = spawnSockit([...kind.args, "-v"], { stdin: "null" });
    const port = await server.listeningPort();
    await resetFlood(port, 300);
    const started = performance.now();
    await kind.check(port);
    const took = performance.now() - started;
    assert(took < 3000, `${kind.name}: a client after 300 resets waited ${took.toFixed(0)} ms`);
    server.kill("SIGTERM");
    const r = await server.result();
    assertEquals(r.code, 143, `${kind.name}: ${r.stderr}`);
    assert(!/warning: accept/.test(r.stderr), `${kind.name}: ${r.stderr}`);
  }
});

/** How many descriptors process `pid` has open. */
async function openFds(pid: number): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", `ls /proc/${pid}/fd | wc -l`] }).output();
  return Number(decoder.decode(out.stdout).trim());
}

Deno.test("faults: with ulimit -n 64, a burst of 200 clients; served after it, descriptors back to where they were", async () => {
  const command = sockitCommand(["--allow-net"]);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const child = new Deno.Command("sh", {
    args: ["-c", `ulimit -n 64 && exec ${command.map(quote).join(" ")} echo 127.0.0.1:0 -v`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(text)) {
    const { value, done } = await stderr.read();
    if (done) throw new Error(`echo did not start:\n${text}`);
    text += value;
  }
  const reading = (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      text += value;
    }
  })();
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(text)![1]);
  const ping = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("ping"));
    await conn.closeWrite();
    const got = decoder.decode(await readAll(conn));
    conn.close();
    return got;
  };
  assertEquals(await ping(), "ping");
  await sleep(200);
  const baseline = await openFds(child.pid);
  // 200 clients at once, each holding its connection open a moment: far more than 64 descriptors.
  const burst = await Promise.allSettled(Array.from({ length: 200 }, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(conn, encoder.encode("x"));
      await sleep(300);
      await conn.closeWrite();
      return decoder.decode(await readAll(conn));
    } finally {
      conn.close();
    }
  }));
  const served = burst.filter((r) => r.status === "fulfilled" && r.value === "x").length;
  assert(served > 0, "nobody in the burst was served");
  // After the burst: served at once, and nothing left open.
  assertEquals(await ping(), "ping");
  let after = await openFds(child.pid);
  for (let i = 0; i < 20 && after > baseline; i++) {
    await sleep(100);
    after = await openFds(child.pid);
  }
  assertEquals(after, baseline, "descriptors after the burst");
  child.kill("SIGTERM");
  assertEquals((await child.status).code, 143);
  await reading;
  assertMatch(text, /too many open files/i);
  assert(!/Uncaught|\n\s+at /.test(text), text);
});

Deno.test("faults: a sender killed with SIGKILL looks like a clean end; --expect on an end marker tells", async () => {
  // TCP sends a FIN for a killed process: the receiver cannot tell it from a
  // finished sender, so it exits 0 with what arrived. A script that must
  // know checks for an end marker (or compares --stats with what was sent).
  for (const expectEnd of [false, true]) {
    const sender = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: "piped", process: true });
    const port = await sender.listeningPort();
    const writer = sender.stdin.getWriter();
    await writer.write(encoder.encode("line 1\nline 2\n"));
    const receiving = runSockit([
      "connect",
      `127.0.0.1:${port}`,
      ...(expectEnd ? ["--expect", "^END$"] : []),
    ], { stdin: "null" });
    await sender.waitForStderr(/connection from/);
    await sleep(300);
    sender.kill("SIGKILL");
    await sender.result();
    await writer.close().catch(() => {});
    const r = await receiving;
    assertEquals(r.text, "line 1\nline 2\n", "what arrived is written out");
    if (expectEnd) {
      assertEquals(r.code, 1, "without the end marker, --expect fails");
      assertMatch(r.stderr, /no match for \/\^END\$\/ before the peer closed/);
    } else {
      assertEquals(r.code, 0, "a killed sender looks like one that finished");
    }
  }
});

Deno.test("faults: a forward whose target resets: the client gets what came first, forward says why", async () => {
  const target = new PythonServer(SEND_THEN_RESET);
  const forward = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${await target.port()}`, "-v"]);
  const port = await forward.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const got = decoder.decode(await readAll(conn));
  conn.close();
  await target.done();
  assertEquals(got, "partial reply");
  await forward.waitForStderr(/read 127\.0\.0\.1:\d+: connection reset by peer/);
  forward.kill("SIGTERM");
  assertEquals((await forward.result()).code, 143);
});

Deno.test("faults: a connect cut off just as it completes leaves no socket behind", async () => {
  // Deno 2.9's Deno.connect loses such a socket when given the signal itself (a few of
  // the aborted ones here); the sanitizers do not see it, so count the sockets open.
  const before = await openSockets();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  let connected = 0;
  let aborted = 0;
  for (let i = 0; i < 6000; i++) {
    const controller = new AbortController();
    const connecting = connectTcp(
      { hostname: "127.0.0.1", port: listener.addr.port },
      controller.signal,
    );
    setTimeout(() => controller.abort(new Error("cut off")), 0);
    // Hold the event loop for a moment spread over the connect's own duration.
    const start = performance.now();
    const spin = Math.random() * 0.3;
    while (performance.now() - start < spin) { /* the kernel completes the connect meanwhile */ }
    try {
      (await connecting).close();
      connected++;
    } catch (err) {
      assertEquals((err as Error).message, "cut off");
      aborted++;
    }
  }
  listener.close();
  await accepting.catch(() => {});
  for (const conn of accepted) conn.close();
  assert(connected > 0 && aborted > 0, `connected ${connected}, aborted ${aborted}`);
  await assertNoSocketsLeft(before, `sockets (after ${aborted} aborted connects)`);
});
