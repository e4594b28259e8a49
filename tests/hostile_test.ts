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
  CHILD_ENV,
  decoder,
  encoder,
  freePort,
  readAll,
  requireTool,
  runSockit,
  sockitCommand,
  type SockitProcess,
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
    /warning: 127\.0\.0\.1:\d+: dropped from the broker: more than 256 KiB waited for it for 1 s \(--stall-timeout\)/,
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

/** The PIDs of the processes whose parent is `pid` (from /proc/PID/stat). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

/** One datagram from each of `count` source addresses 127.0.N.M to 127.0.0.1:`port`, paced. */
async function sourceFlood(port: number, count: number): Promise<void> {
  const script = `
import socket, time
socks = []
for i in range(${count}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.%d.%d" % (1 + i // 250, 1 + i % 250), 0))
    s.sendto(b"hello\\n", ("127.0.0.1", ${port}))
    socks.append(s)
    time.sleep(0.002)  # so that the server's receive buffer overflows nowhere
`;
  const out = await new Deno.Command(requireTool("python3"), { args: ["-c", script] }).output();
  if (out.code !== 0) throw new Error(`source flood failed: ${decoder.decode(out.stderr)}`);
}

Deno.test("hostile: listen -k udp:// --exec holds 100 children by default; new peers beyond are dropped with one warning", async () => {
  const server = spawnSockit(["listen", "-k", "udp://127.0.0.1:0", "--exec", "cat", "-v"], {
    process: true,
    perms: ["--allow-net", "--allow-run"],
  });
  const pid = (server as SockitProcess).child.pid;
  try {
    const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    // 300 source addresses in ~1 s used to start 300 children (a `cat` each).
    await sourceFlood(port, 300);
    await server.waitForCount(/datagrams from 127\./, 100);
    await server.waitForStderr(/sessions reached/);
    await sleep(300);
    const children = childrenOf(pid).length;
    assert(children <= 100, `${children} children for 300 peers`);
    assert(children >= 90, `only ${children} children: the first 100 peers were not all served`);
  } finally {
    server.kill("SIGTERM");
  }
  const r = await server.result();
  assertEquals(r.code, 143, r.stderr);
  // One line, then the count of the others (said when its window closes, or at the end).
  const lines = r.stderr.split("\n").filter((l) => l.includes("sessions reached"));
  assert(lines.length >= 2 && lines.length <= 3, `warning lines:\n${lines.join("\n")}`);
  assertMatch(
    lines[0],
    /^sockit: warning: --max-conns 100 sessions reached: dropped a datagram from a new client$/,
  );
  const more = lines.slice(1).map((l) => Number(/\((\d+) more times\)$/.exec(l)?.[1]));
  const dropped = 1 + more.reduce((a, b) => a + b, 0);
  assert(
    dropped > 150 && dropped <= 200,
    `${dropped} datagrams said dropped:\n${lines.join("\n")}`,
  );
  assertEquals(r.stderr.match(/datagrams from 127\./g)?.length, 100);
});

Deno.test("hostile: forward out of descriptors (ulimit -n 64, 200 clients) says so in a few lines with counts", async () => {
  const echo = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const echoPort = await echo.listeningPort();
  const command = sockitCommand(["--allow-net"]);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const forward = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n 64 && exec ${
        command.map(quote).join(" ")
      } forward 127.0.0.1:0 127.0.0.1:${echoPort} -v`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  let text = "";
  const stderr = forward.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const reading = (async () => {
    for (;;) {
      const { value, done } = await stderr.read();
      if (done) return;
      text += value;
    }
  })();
  try {
    let port: string | undefined;
    for (let i = 0; i < 100 && !port; i++) {
      port = /listening on 127\.0\.0\.1:(\d+)/.exec(text)?.[1];
      if (!port) await sleep(50);
    }
    assert(port, `forward did not start:\n${text}`);
    // 200 clients at once, each holding its pair open a moment: far more than 64 descriptors.
    await Promise.allSettled(Array.from({ length: 200 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
      try {
        await writeAll(conn, encoder.encode("x"));
        await sleep(300);
        await conn.closeWrite();
        await readAll(conn);
      } finally {
        conn.close();
      }
    }));
    await sleep(1100); // the count of repeats is said when its window closes
  } finally {
    forward.kill("SIGTERM");
    assertEquals((await forward.status).code, 143);
    await reading;
    echo.kill("SIGTERM");
    await echo.result();
  }
  // One line per client used to say it (187 lines for 200 clients).
  const lines = text.split("\n").filter((l) => /forward to .* failed/.test(l));
  assert(lines.length >= 1 && lines.length <= 8, `${lines.length} lines:\n${lines.join("\n")}`);
  assertMatch(lines[0], /too many open files; client closed$/);
  assert(lines.some((l) => /\(\d+ more times\)$/.test(l)), lines.join("\n"));
});

Deno.test("hostile: a --broker member that stops reading delays no one while it is still a member", async () => {
  const server = spawnSockit(["listen", "--broker", "127.0.0.1:0", "-v"]); // --stall-timeout 5s
  const port = await server.listeningPort();
  const connect = () => Deno.connect({ hostname: "127.0.0.1", port });
  const stalled = await connect(); // never reads
  const flooder = await connect();
  const sender = await connect();
  const receiver = await connect();
  const members = [stalled, flooder, sender, receiver];
  await server.waitForCount(/connection from/, 4);
  try {
    // Everything but the stalled member reads all the time; the receiver notes when each
    // "M<n>\n" arrives (the flood is all "a").
    const arrived = new Map<number, number>();
    let flood = 0;
    const drain = async (conn: Deno.Conn, note: boolean) => {
      const buf = new Uint8Array(64 * 1024);
      let marker: string | undefined;
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return;
        for (const byte of buf.subarray(0, n)) {
          if (byte === 0x61) {
            if (note) flood++;
          } else if (byte === 0x4d) marker = "";
          else if (byte === 0x0a && marker !== undefined) {
            if (note) arrived.set(Number(marker), performance.now());
            marker = undefined;
          } else if (marker !== undefined) marker += String.fromCharCode(byte);
        }
      }
    };
    const draining = [drain(flooder, false), drain(sender, false), drain(receiver, true)];
    // 16 MiB: far more than the kernel buffers towards the stalled member and its mark.
    const size = 16 << 20;
    const started = performance.now();
    const flooding = writeAll(flooder, new Uint8Array(size).fill(0x61));
    while (flood < size && performance.now() - started < 10_000) await sleep(20);
    const took = performance.now() - started;
    // The hub used to wait for the stalled member up to --stall-timeout (5 s) on every publish.
    assert(took < 3000, `the flood reached the receiver in ${Math.round(took)} ms`);
    await flooding;
    const sent = new Map<number, number>();
    for (let i = 0; i < 5; i++) {
      sent.set(i, performance.now());
      await writeAll(sender, encoder.encode(`M${i}\n`));
      await sleep(100);
    }
    while (arrived.size < 5 && performance.now() - sent.get(4)! < 5000) await sleep(20);
    for (const [i, at] of sent) {
      const latency = (arrived.get(i) ?? Infinity) - at;
      assert(latency < 1000, `message ${i} took ${Math.round(latency)} ms with a member stalled`);
    }
    // And the stalled one is dropped once its 5 s are up.
    await server.waitForStderr(
      /warning: 127\.0\.0\.1:\d+: dropped from the broker: more than 256 KiB waited for it for 5 s/,
    );
    for (const conn of members) conn.close();
    await Promise.all(draining);
  } finally {
    for (const conn of members) {
      try {
        conn.close();
      } catch {
        // Closed above.
      }
    }
    server.kill("SIGTERM");
  }
  assertEquals((await server.result()).code, 143);
});

/** Unix clients bound to names that are not UTF-8 (abstract `\0\xff…`, and paths with `\xff`). */
const NON_UTF8_CLIENTS = `
import os, socket, sys
path, d, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.bind(b"\\0\\xffsockit-%d-%d" % (os.getpid(), i) if i % 2 else d + b"/c\\xff%d" % i)
    s.connect(path)
    socks.append(s)
closed = 0
for s in socks:
    s.settimeout(10)
    try:
        if s.recv(1) == b"":
            closed += 1
    except OSError:
        closed += 1
print(closed, flush=True)
`;

Deno.test("hostile: Unix clients with names that are not UTF-8 are closed at once; the next client is served, no descriptor is left", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/srv.sock`;
  const server = spawnSockit(["echo", `unix:${path}`, "-v"], {
    process: true,
    perms: [`--allow-read=${dir}`, `--allow-write=${dir}`, `--allow-net=unix:${path}`],
  });
  const pid = (server as SockitProcess).child.pid;
  const fds = () => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  const roundTrip = async () => {
    const started = performance.now();
    const conn = await Deno.connect({ transport: "unix", path });
    await writeAll(conn, encoder.encode("ping"));
    await conn.closeWrite();
    const got = decoder.decode(await readAll(conn));
    conn.close();
    assertEquals(got, "ping");
    return performance.now() - started;
  };
  try {
    await server.waitForStderr(/listening on/);
    await roundTrip();
    await sleep(200);
    const before = fds();
    const flood = new Deno.Command(requireTool("python3"), {
      args: ["-c", NON_UTF8_CLIENTS, path, dir, "100"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await server.waitForStderr(/accept on unix:/);
    // Each one used to cost a pause for "resource exhaustion" (5 → 100 ms): 9.85 s for 100.
    const took = await roundTrip();
    const out = await flood.output();
    assertEquals(decoder.decode(out.stdout).trim(), "100", decoder.decode(out.stderr));
    assert(took < 3000, `the client after 100 such clients waited ${Math.round(took)} ms`);
    let after = fds();
    for (let i = 0; i < 20 && after > before; i++) {
      await sleep(100);
      after = fds();
    }
    assertEquals(after, before, "descriptors after 100 clients Deno could not accept");
    await sleep(1100); // the count of repeats is said when its window closes
  } finally {
    server.kill("SIGTERM");
  }
  const r = await server.result();
  assertEquals(r.code, 143, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => l.includes("not UTF-8"));
  assert(lines.length >= 1 && lines.length <= 6, `lines:\n${lines.join("\n")}`);
  assertMatch(
    lines[0],
    /^sockit: warning: accept on unix:\S+: a client bound to a name that is not UTF-8 was closed \(Deno cannot accept it\): "(\\0\\xFF|\/\S+\\xFF)/,
  );
  assertMatch(r.stderr, /\(\d+ more times\)/);
  Deno.removeSync(dir, { recursive: true });
});
