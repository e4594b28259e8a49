/**
 * Servers against hostile clients, each case a finding of the reliability
 * audit that once stalled or fooled sockit: resets before accept, TLS
 * clients that never finish their handshake, IPv4-mapped `--deny` ranges, a
 * broker member that stops reading, a backtracking `--expect`, warning
 * floods, `--exec` children at SIGTERM and over Unix sockets, and a stdout
 * that is /dev/null open read-write (closed at start, or Python's DEVNULL).
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  decoder,
  encoder,
  freePort,
  readAll,
  requireTool,
  runSockit,
  sockitCommand,
  spawnSockit,
  tempSocketDir,
  writeAll,
} from "./helpers.ts";
import { resetFlood } from "./peers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long one echo round trip takes through `port`, in ms. */
async function roundTrip(port: number): Promise<number> {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode("ping"));
  await conn.closeWrite();
  const got = decoder.decode(await readAll(conn));
  conn.close();
  assertEquals(got, "ping");
  return performance.now() - started;
}

Deno.test("hostile: clients that reset before accept do not hold up the next one (echo, forward)", async () => {
  const echo = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const echoPort = await echo.listeningPort();
  const forward = spawnSockit(["forward", "127.0.0.1:0", `127.0.0.1:${echoPort}`, "-v"]);
  const forwardPort = await forward.listeningPort();
  for (const port of [echoPort, forwardPort]) {
    await resetFlood(port, 200);
    // Each reset used to cost every server a 100 ms pause: 20 s for this one.
    const took = await roundTrip(port);
    assert(took < 3000, `a client after 200 resets waited ${took.toFixed(0)} ms`);
  }
  await sleep(1100); // the count of repeats is said when its window closes
  echo.kill("SIGTERM");
  forward.kill("SIGTERM");
  const [e, f] = [await echo.result(), await forward.result()];
  for (const r of [e, f]) {
    assertEquals(r.code, 143, r.stderr);
    // One line and a count per condition, each naming the address once.
    const lines = r.stderr.split("\n").filter((l) => l.includes("accept on"));
    assert(lines.length >= 1 && lines.length <= 6, `accept lines:\n${lines.join("\n")}`);
    for (const line of lines) assertEquals(line.match(/127\.0\.0\.1:\d+/g)?.length, 1, line);
    assertMatch(r.stderr, /\(\d+ more times\)/);
    assert(!/warning: accept/.test(r.stderr), "a client's reset is not a warning");
  }
});

Deno.test("hostile: a TLS client that never finishes its handshake is closed (--handshake-timeout)", async () => {
  const server = spawnSockit([
    "echo",
    "tls://127.0.0.1:0",
    "-v",
    "--handshake-timeout",
    "300ms",
  ]);
  const port = await server.listeningPort();
  // Connect and say nothing: the socket must be closed, not merely forgotten.
  const idle = await Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    idle.read(new Uint8Array(16)).then(() => true, () => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
  ]);
  clearTimeout(timer);
  idle.close();
  assert(closed, "the idle client's socket is still open 5 s later");
  await server.waitForStderr(
    /TLS handshake failed: timed out after 300 ms \(--handshake-timeout\)/,
  );
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
});

Deno.test("hostile: with --max-conns, clients stuck in the handshake do not lock out a real one", async () => {
  const server = spawnSockit([
    "echo",
    "tls://127.0.0.1:0",
    "-v",
    "--max-conns",
    "2",
    "--handshake-timeout",
    "1s",
  ]);
  const port = await server.listeningPort();
  const idle = [
    await Deno.connect({ hostname: "127.0.0.1", port }),
    await Deno.connect({ hostname: "127.0.0.1", port }),
  ];
  await server.waitForCount(/connection from/, 2);
  // Both slots are held by handshakes that never finish: the newcomer waits for a slot.
  const client = await runSockit([
    "connect",
    `tls://127.0.0.1:${port}`,
    "--insecure",
    "-q",
    "--send",
    "real client",
    "--timeout",
    "5s",
  ]);
  for (const conn of idle) conn.close();
  assertEquals([client.code, client.text], [0, "real client"], client.stderr);
  server.kill("SIGTERM");
  const r = await server.result();
  assertMatch(r.stderr, /TLS handshake failed: timed out after 1 s/);
  assert(!/rejected/.test(r.stderr), r.stderr);
});

Deno.test("hostile: --deny with IPv4-mapped IPv6 ranges refuses the IPv4 address they name", async () => {
  for (const range of ["::ffff:127.0.0.1/128", "::ffff:0:0/96", "::ffff:127.0.0.0/104"]) {
    const denied = spawnSockit([
      "listen",
      "-k",
      "127.0.0.1:0",
      "-v",
      "--deny",
      range,
      "--send",
      "x",
    ]);
    const port = await denied.listeningPort();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const got = await readAll(conn).catch(() => new Uint8Array());
    conn.close();
    await denied.waitForStderr(/rejected 127\.0\.0\.1:\d+/);
    denied.kill("SIGTERM");
    await denied.result();
    assertEquals(decoder.decode(got), "", `--deny ${range} let 127.0.0.1 in`);
    // The same range in --allow lets it in.
    const allowed = spawnSockit(["listen", "127.0.0.1:0", "-v", "--allow", range, "--send", "x"]);
    const allowedPort = await allowed.listeningPort();
    const ok = await Deno.connect({ hostname: "127.0.0.1", port: allowedPort });
    const text = decoder.decode(await readAll(ok));
    ok.close();
    assertEquals([text, (await allowed.result()).code], ["x", 0], `--allow ${range}`);
  }
});

Deno.test("hostile: a --broker member that stops reading is dropped; the others keep flowing", async () => {
  const server = spawnSockit(["listen", "--broker", "127.0.0.1:0", "-v", "--stall-timeout", "1s"]);
  const port = await server.listeningPort();
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port }); // never reads
  const reader = await Deno.connect({ hostname: "127.0.0.1", port });
  const sender = await Deno.connect({ hostname: "127.0.0.1", port });
  await server.waitForCount(/connection from/, 3);
  const size = 16 << 20; // far more than the kernel buffers and the hub's bound together
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    let got = 0;
    while (got < size) {
      const n = await reader.read(buf);
      if (n === null) break;
      got += n;
    }
    return got;
  })();
  await writeAll(sender, new Uint8Array(size).fill(0x61));
  const got = await reading;
  assertEquals(got, size, "the member that reads got everything");
  await server.waitForStderr(
    /warning: 127\.0\.0\.1:\d+: dropped from the broker: it read none of the 256 KiB waiting for it for 1 s/,
  );
  for (const conn of [stalled, reader, sender]) conn.close();
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
});

Deno.test("hostile: a backtracking --expect cannot outlast --timeout or a signal", async () => {
  // A peer sends what makes (a+)+$ backtrack for hours in a backtracking engine, then waits.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peers: Deno.Conn[] = [];
  const serving = (async () => {
    for (let i = 0; i < 2; i++) {
      const conn = await listener.accept();
      peers.push(conn);
      await writeAll(conn, encoder.encode("a".repeat(40) + "b\n"));
    }
  })();
  const target = `127.0.0.1:${listener.addr.port}`;
  const timed = await runSockit(["connect", target, "--expect", "(a+)+$", "--timeout", "500ms"]);
  assertEquals(timed.code, 124, timed.stderr);
  const run = spawnSockit(["connect", target, "--expect", "(a+)+$"]);
  await sleep(500);
  run.kill("SIGTERM");
  assertEquals((await run.result()).code, 143);
  await serving;
  for (const conn of peers) conn.close();
  listener.close();
  // What the engine cannot do in linear time is refused up front.
  const look = await runSockit(["connect", target, "--expect", "a(?=b)"]);
  assertEquals(look.code, 2);
  assertMatch(look.stderr, /lookaround .* is not supported/);
});

Deno.test("hostile: --exec over a Unix socket gets the peer's (empty) address; SIGTERM ends the children", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/exec.sock`;
  const server = spawnSockit([
    "listen",
    "-k",
    `unix:${path}`,
    "-v",
    "--sh-exec",
    'echo "[$SOCKIT_REMOTE_ADDR] $SOCKIT_PROTO $$"; trap "" TERM; sleep 30',
  ]);
  await server.waitForStderr(/listening on/);
  const clients = [0, 1].map(async () => {
    const conn = await Deno.connect({ transport: "unix", path });
    const buf = new Uint8Array(256);
    let line = "";
    while (!line.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      line += decoder.decode(buf.subarray(0, n));
    }
    return { conn, line };
  });
  const got = await Promise.all(clients);
  const pids: number[] = [];
  for (const { line } of got) {
    const m = /^\[\] unix (\d+)\n/.exec(line);
    assert(m, `child said ${JSON.stringify(line)}`);
    pids.push(Number(m[1]));
  }
  // The children ignore SIGTERM: sockit must not leave them behind.
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
  for (const { conn } of got) conn.close();
  for (const pid of pids) {
    const alive = await new Deno.Command("kill", { args: ["-0", String(pid)], stderr: "null" })
      .output();
    assert(!alive.success, `child ${pid} still runs after sockit ended`);
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("hostile: a closed stdout (>&-) runs and discards what arrives; -v says so", async () => {
  // A closed stdout looks exactly like Python's DEVNULL (see the next test): running is the
  // lesser harm; -v names it.
  const command = sockitCommand(["--allow-net", "--allow-read", "--allow-ffi"]);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await writeAll(conn, encoder.encode("dropped\n"));
    const got = await readAll(conn);
    conn.close();
    return decoder.decode(got);
  })();
  const args = ["connect", `127.0.0.1:${listener.addr.port}`, "--send", "sent", "-v"];
  const closed = await new Deno.Command("sh", {
    args: ["-c", `exec ${[...command, ...args].map(quote).join(" ")} >&-`],
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  listener.close();
  assertEquals([closed.code, await served], [0, "sent"], decoder.decode(closed.stderr));
  assertMatch(decoder.decode(closed.stderr), /^sockit: stdout is \/dev\/null opened read-write/);
});

Deno.test("hostile: Python's subprocess.DEVNULL on stdin, stdout and stderr: connect and listen run", async () => {
  // DEVNULL opens /dev/null read-write, which once made sockit refuse to run (exit 1).
  const command = sockitCommand(["--allow-net", "--allow-read", "--allow-ffi"]);
  const port = freePort();
  const script = `
import json, socket, subprocess, sys, threading, time
SOCKIT = json.loads(sys.argv[1])
DN = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
out = {}
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1); srv.settimeout(30)
def serve():
    conn, _ = srv.accept()
    conn.sendall(b"welcome\\n")
    got = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk: break
        got += chunk
    out["server got"] = got.decode(); conn.close()
t = threading.Thread(target=serve, daemon=True); t.start()
r = subprocess.run(SOCKIT + ["connect", "127.0.0.1:%d" % srv.getsockname()[1], "--send", "hello"], **DN)
t.join(timeout=None if r.returncode == 0 else 0.1); out["connect"] = r.returncode
p = subprocess.Popen(SOCKIT + ["listen", "127.0.0.1:${port}", "--send", "hi"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
c = None
for _ in range(300):
    if p.poll() is not None: break
    try:
        c = socket.create_connection(("127.0.0.1", ${port})); break
    except ConnectionRefusedError:
        time.sleep(0.05)
if c is None:
    out["listen"] = p.wait(timeout=30); print(json.dumps(out)); sys.exit(0)
c.sendall(b"from client"); c.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = c.recv(4096)
    if not chunk: break
    got += chunk
c.close(); out["client got"] = got.decode(); out["listen"] = p.wait(timeout=30)
print(json.dumps(out))
`;
  const out = await new Deno.Command(requireTool("python3"), {
    args: ["-c", script, JSON.stringify(command)],
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  }).output();
  assertEquals(out.code, 0, decoder.decode(out.stderr));
  assertEquals(JSON.parse(decoder.decode(out.stdout)), {
    "server got": "hello",
    connect: 0,
    "client got": "hi",
    listen: 0,
  });
});
