/**
 * Servers: `echo` (TCP v4/v6, Unix, UDP), `listen -k`, `--exec`/`--sh-exec`,
 * `--broker`, `--max-conns`, `--allow`/`--deny`, `--idle-timeout`, and
 * shutdown — against real clients (Deno sockets, socat, Python).
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertUsageError,
  decoder,
  encoder,
  exists,
  NET,
  randomBytes,
  readAll,
  requireTool,
  runSockit,
  sha256,
  spawnSockit,
  tempSocketDir,
  unixPerms,
  writeAll,
} from "./helpers.ts";
import { SockitProcess } from "./helpers.ts";
import type { SockitResult } from "./helpers.ts";

/** Reads exactly `n` bytes (fails on an early EOF). */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let at = 0; at < n;) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new Error(`EOF after ${at} of ${n} bytes`);
    at += got;
  }
  return out;
}

/** Connects `count` clients to 127.0.0.1:port, at most 100 connects pending at once. */
async function connectMany(
  port: number,
  count: number,
  hostname = "127.0.0.1",
): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, count - i) },
      () => Deno.connect({ hostname, port }),
    );
    conns.push(...(await Promise.all(batch)));
  }
  return conns;
}

// ---- echo -----------------------------------------------------------------------

Deno.test("echo: 1,000 concurrent TCP clients, several round trips each, all correct", async () => {
  const server = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const port = await server.listeningPort();
  const conns = await connectMany(port, 1000);
  const results = await Promise.all(conns.map(async (conn, i) => {
    for (let round = 0; round < 5; round++) {
      const message = encoder.encode(
        `client ${i} round ${round} ${"x".repeat((i * 7 + round) % 200)}`,
      );
      await writeAll(conn, message);
      const back = await readExactly(conn, message.length);
      if (decoder.decode(back) !== decoder.decode(message)) return `client ${i}: wrong echo`;
    }
    await conn.closeWrite();
    const rest = await readAll(conn);
    conn.close();
    return rest.length === 0 ? "ok" : `client ${i}: extra bytes`;
  }));
  assertEquals(results.filter((r) => r !== "ok"), []);
  server.kill("SIGINT");
  const done = await server.result();
  assertEquals(done.code, 130);
  assertEquals(done.stderr.match(/connection from/g)?.length, 1000);
  assertEquals(done.stderr.match(/warning/g), null);
});

Deno.test("echo: a half-closing client gets all its data back, then EOF", async () => {
  const server = spawnSockit(["echo", "0", "-v"]);
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const payload = randomBytes(4 * 1024 * 1024);
  const reading = readAll(conn);
  await writeAll(conn, payload);
  await conn.closeWrite();
  assertEquals(sha256(await reading), sha256(payload));
  conn.close();
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals(done.code, 143);
  assertMatch(done.stderr, /closed 127\.0\.0\.1:\d+ \(sent 4 MiB, received 4 MiB/);
});

Deno.test("echo: IPv6, and a Unix socket with a socat client", async () => {
  const v6 = spawnSockit(["echo", "[::1]:0", "-v"]);
  const port = Number((await v6.waitForStderr(/listening on \[::1\]:(\d+)/))[1]);
  const conn = await Deno.connect({ hostname: "::1", port });
  await writeAll(conn, encoder.encode("six"));
  assertEquals(decoder.decode(await readExactly(conn, 3)), "six");
  conn.close();
  v6.kill("SIGTERM");
  assertEquals((await v6.result()).code, 143);

  const dir = tempSocketDir();
  const path = `${dir}/echo.sock`;
  const unix = spawnSockit(["echo", `unix:${path}`, "-v"], { perms: unixPerms(path) });
  await unix.waitForStderr(/listening on unix:/);
  const socat = await new Deno.Command(requireTool("socat"), {
    args: ["-t", "2", "-", `UNIX-CONNECT:${path}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = socat.stdin.getWriter();
  await writer.write(encoder.encode("over unix\n"));
  await writer.close();
  const out = await socat.output();
  assertEquals(decoder.decode(out.stdout), "over unix\n");
  unix.kill("SIGTERM");
  assertEquals((await unix.result()).code, 143);
  assert(!exists(path), "the socket file is removed at exit");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("echo: UDP answers every peer (Python clients)", async () => {
  const server = spawnSockit(["echo", "udp://127.0.0.1:0", "-v"]);
  const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/))[1]);
  const out = await new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket
replies = []
for i in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    msg = ("datagram %d " % i).encode() * (i * 1000 + 1)
    s.sendto(msg, ("127.0.0.1", ${port}))
    data, _ = s.recvfrom(65536)
    replies.append(data == msg)
print(all(replies))
`,
    ],
  }).output();
  assertEquals(decoder.decode(out.stdout).trim(), "True");
  server.kill("SIGINT");
  assertEquals((await server.result()).code, 130);
});

// ---- listen -k -----------------------------------------------------------------------

Deno.test("listen -k: 200 clients at once; stdout gets whole chunks, stdin reaches every client", async () => {
  const server = spawnSockit(["listen", "-k", "127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = await server.listeningPort();
  const conns = await connectMany(port, 200);
  await server.waitForCount(/connection from/, 200);
  // Each client sends one line; lines must arrive whole, whatever the order.
  await Promise.all(
    conns.map((c, i) => writeAll(c, encoder.encode(`line from client ${i} ${"-".repeat(i)}\n`))),
  );
  // stdin goes to every client.
  const writer = server.stdin.getWriter();
  await writer.write(encoder.encode("to everyone\n"));
  const heard = await Promise.all(conns.map((c) => readExactly(c, 12)));
  assert(heard.every((h) => decoder.decode(h) === "to everyone\n"));
  await writer.close();
  // stdin ended: every client is half-closed; they close in turn.
  for (const c of conns) {
    assertEquals((await readAll(c)).length, 0);
    c.close();
  }
  await server.waitForCount(/closed 127/, 200);
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals(done.code, 143);
  const lines = done.text.split("\n").filter(Boolean).sort();
  const expected = conns.map((_, i) => `line from client ${i} ${"-".repeat(i)}`).sort();
  assertEquals(lines, expected);
});

Deno.test("listen -k: a client that resets does not disturb the others", async () => {
  const server = spawnSockit(["listen", "-k", "127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = await server.listeningPort();
  const [bad, good] = await connectMany(port, 2);
  // stdin goes to the clients connected when it is read: write it once both are there,
  // more than the kernel buffers, so that the bad client's reset meets a write.
  await server.waitForCount(/connection from/, 2);
  const writer = server.stdin.getWriter();
  writer.write(randomBytes(16 * 1024 * 1024)).then(() => writer.close()).catch(() => {});
  // The bad client closes without reading: unread data makes its kernel send RST.
  await readExactly(bad, 10);
  bad.close();
  const rest = await readAll(good);
  assertEquals(rest.length + 0, 16 * 1024 * 1024);
  good.close();
  await server.waitForCount(/closed 127/, 2);
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals(done.code, 143);
  assertMatch(done.stderr, /warning: .*(reset|broken pipe)/);
});

// ---- --exec / --sh-exec ------------------------------------------------------------------

Deno.test("exec: tr a-z A-Z per connection, with the SOCKIT_* environment", async () => {
  const server = spawnSockit(["listen", "-k", "127.0.0.1:0", "-v", "--exec", "tr a-z A-Z"], {
    perms: [...NET, "--allow-run"],
  });
  const port = await server.listeningPort();
  for (const word of ["first", "second"]) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode(word));
    await conn.closeWrite();
    assertEquals(decoder.decode(await readAll(conn)), word.toUpperCase());
    conn.close();
  }
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);

  const env = spawnSockit([
    "listen",
    "127.0.0.1:0",
    "-v",
    "--sh-exec",
    'echo "$SOCKIT_PROTO $SOCKIT_REMOTE_ADDR $SOCKIT_REMOTE_PORT $SOCKIT_LOCAL_ADDR $SOCKIT_LOCAL_PORT"',
  ], { perms: [...NET, "--allow-run"] });
  const envPort = await env.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: envPort });
  await conn.closeWrite();
  const line = decoder.decode(await readAll(conn)).trim();
  assertEquals(line, `tcp 127.0.0.1 ${conn.localAddr.port} 127.0.0.1 ${envPort}`);
  conn.close();
  assertEquals((await env.result()).code, 0);
});

Deno.test("exec: all of a child's output arrives, even 1 MiB written after it read EOF", async () => {
  const server = spawnSockit([
    "listen",
    "127.0.0.1:0",
    "-v",
    "--sh-exec",
    "cat >/dev/null; head -c 1048576 /dev/zero | tr '\\0' x",
  ], { perms: [...NET, "--allow-run"] });
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode("some input"));
  await conn.closeWrite();
  const out = await readAll(conn);
  conn.close();
  assertEquals(out.length, 1048576);
  assert(out.every((b) => b === 0x78));
  assertEquals((await server.result()).code, 0);
});

Deno.test("exec: a child that exits early closes only its connection", async () => {
  const server = spawnSockit(["listen", "-k", "127.0.0.1:0", "-v", "--sh-exec", "head -c 3"], {
    perms: [...NET, "--allow-run"],
  });
  const port = await server.listeningPort();
  const [a, b] = await connectMany(port, 2);
  // `head -c 3` reads three bytes, prints them and exits, leaving input unread.
  await writeAll(a, encoder.encode("abcdefgh"));
  assertEquals(decoder.decode(await readAll(a)), "abc");
  await writeAll(b, encoder.encode("xyz"));
  assertEquals(decoder.decode(await readAll(b)), "xyz");
  a.close();
  b.close();
  await server.waitForCount(/closed 127/, 2);
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
});

Deno.test("exec: --grace sets how long a silent child may take after the client's EOF; ending one early is said", async () => {
  // The child reads everything, stays silent for 1.5 s, then answers.
  const run = async (extra: string[]) => {
    const server = spawnSockit([
      "listen",
      "127.0.0.1:0",
      "-v",
      "--sh-exec",
      "cat >/dev/null; sleep 1.5; echo late",
      ...extra,
    ]);
    const port = await server.listeningPort();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode("request"));
    await conn.closeWrite();
    const reply = decoder.decode(await readAll(conn));
    conn.close();
    return { reply, ...(await server.result()) };
  };
  const cut = await run([]);
  assertEquals([cut.code, cut.reply], [0, ""]);
  assertMatch(
    cut.stderr,
    /warning: exec \/bin\/sh for 127\.0\.0\.1:\d+: still running and silent 1 s after/,
  );
  const patient = await run(["--grace", "3s"]);
  assertEquals([patient.code, patient.reply], [0, "late\n"]);
  assert(!/warning/.test(patient.stderr), patient.stderr);
  const untilExit = await run(["--grace", "0"]);
  assertEquals([untilExit.code, untilExit.reply], [0, "late\n"]);
});

Deno.test("exec: a program that cannot be found is an error when the server starts", async () => {
  const r = await runSockit(["listen", "127.0.0.1:0", "-v", "--exec", "no-such-program-sockit"]);
  assertEquals(r.code, 127);
  assertEquals(r.stderr, "sockit: exec no-such-program-sockit: command not found\n");
});

Deno.test("exec: the child is ended when the client leaves", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-exec-" });
  const server = spawnSockit([
    "listen",
    "-k",
    "127.0.0.1:0",
    "-v",
    "--sh-exec",
    `echo $$ > ${dir}/pid; exec sleep 30`,
  ], { perms: [...NET, "--allow-run"] });
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let pid = "";
  for (let i = 0; i < 100 && !pid; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    pid = (() => {
      try {
        return Deno.readTextFileSync(`${dir}/pid`).trim();
      } catch {
        return "";
      }
    })();
  }
  assert(pid, "the child started");
  const alive = async () =>
    (await new Deno.Command("kill", { args: ["-0", pid], stderr: "null" }).output()).success;
  assert(await alive(), "the child runs while the client is there");
  conn.close();
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    gone = !(await alive());
  }
  assert(gone, "the child was ended after the client left");
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("exec: without --allow-run, exit 126 naming the flag, before listening", async () => {
  const r = await runSockit(["listen", "127.0.0.1:0", "-v", "--exec", "cat"], { process: true });
  assertEquals(r.code, 126);
  assertMatch(r.stderr, /requires run access to "cat"[\s\S]*--allow-run/);
  assertEquals(/listening/.test(r.stderr), false);
});

// ---- --broker ---------------------------------------------------------------------------

Deno.test("broker: with 3 clients, each hears the other two and never itself", async () => {
  const server = spawnSockit(["listen", "--broker", "127.0.0.1:0", "-v"]);
  const port = await server.listeningPort();
  const clients = await connectMany(port, 3);
  await server.waitForCount(/connection from/, 3);
  for (const [i, c] of clients.entries()) await writeAll(c, encoder.encode(`<${i}>`));
  const heard = await Promise.all(clients.map((c) => readExactly(c, 6)));
  for (const [i, h] of heard.entries()) {
    const text = decoder.decode(h);
    assert(!text.includes(`<${i}>`), `client ${i} heard itself: ${text}`);
    const others = [0, 1, 2].filter((j) => j !== i);
    for (const j of others) assert(text.includes(`<${j}>`), `client ${i} missed ${j}: ${text}`);
  }
  for (const c of clients) c.close();
  await server.waitForCount(/closed 127/, 3);
  server.kill("SIGINT");
  assertEquals((await server.result()).code, 130);
});

// ---- limits ------------------------------------------------------------------------------

Deno.test("limits: --max-conns N closes client N+1 at once with nothing sent", async () => {
  const server = spawnSockit(["echo", "127.0.0.1:0", "-v", "--max-conns", "2"]);
  const port = await server.listeningPort();
  const [a, b] = await connectMany(port, 2);
  await server.waitForCount(/connection from/, 2);
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  assertEquals((await readAll(c).catch(() => new Uint8Array())).length, 0);
  c.close();
  await server.waitForStderr(/rejected 127\.0\.0\.1:\d+: --max-conns 2 reached/);
  // The two others are still served.
  await writeAll(a, encoder.encode("ok"));
  assertEquals(decoder.decode(await readExactly(a, 2)), "ok");
  a.close();
  b.close();
  server.kill("SIGTERM");
  await server.result();
});

/** Starts an echo server with `flags`; returns whether a client from `from` to `host` is served. */
async function served(host: string, flags: string[]): Promise<{ ok: boolean; stderr: string }> {
  const server = spawnSockit([
    "echo",
    `${host.includes(":") ? `[${host}]` : host}:0`,
    "-v",
    ...flags,
  ]);
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: host === "::" ? "127.0.0.1" : host, port });
  await writeAll(conn, encoder.encode("?")).catch(() => {});
  await conn.closeWrite().catch(() => {});
  const back = await readAll(conn).catch(() => new Uint8Array());
  conn.close();
  server.kill("SIGTERM");
  const done = await server.result();
  return { ok: decoder.decode(back) === "?", stderr: done.stderr };
}

Deno.test("limits: --allow / --deny with IPv4, IPv6 and IPv4-mapped peers", async () => {
  const cases: Array<[string, string[], boolean, RegExp?]> = [
    ["127.0.0.1", [], true],
    ["127.0.0.1", ["--allow", "127.0.0.0/8"], true],
    ["127.0.0.1", ["--allow", "10.0.0.0/8"], false, /not in any --allow range/],
    ["127.0.0.1", ["--deny", "127.0.0.1"], false, /denied by --deny 127\.0\.0\.1/],
    ["127.0.0.1", ["--allow", "127.0.0.0/8", "--deny", "127.0.0.0/24"], false, /denied by --deny/],
    ["::1", ["--allow", "::1/128"], true],
    ["::1", ["--deny", "::/0"], false, /denied by --deny ::\/0/],
    ["::1", ["--allow", "127.0.0.0/8"], false, /not in any --allow range/],
    // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1: matched as IPv4.
    ["::", ["--deny", "127.0.0.1"], false, /denied by --deny 127\.0\.0\.1/],
    ["::", ["--allow", "127.0.0.0/8"], true],
  ];
  for (const [host, flags, ok, reason] of cases) {
    const r = await served(host, flags);
    assertEquals(r.ok, ok, `${host} ${flags.join(" ")}: ${r.stderr}`);
    if (reason) assertMatch(r.stderr, reason);
  }
});

Deno.test("limits: --idle-timeout closes a silent connection; the server goes on", async () => {
  const server = spawnSockit(["echo", "127.0.0.1:0", "-v", "--idle-timeout", "300ms"]);
  const port = await server.listeningPort();
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  await readAll(silent).catch(() => {});
  const waited = performance.now() - started;
  silent.close();
  assert(waited >= 250 && waited < 3000, `closed after ${waited} ms`);
  const next = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(next, encoder.encode("still here"));
  assertEquals(decoder.decode(await readExactly(next, 10)), "still here");
  next.close();
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals(done.code, 143);
  assertMatch(done.stderr, /no data for 300 ms/);
});

// ---- UDP: listen and connect -------------------------------------------------------------

Deno.test("udp: listen prints datagrams and answers the latest peer (socat client)", async () => {
  const server = spawnSockit(["listen", "udp://127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/))[1]);
  const socat = new Deno.Command(requireTool("socat"), {
    args: ["-t", "1", "-", `UDP:127.0.0.1:${port}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const sw = socat.stdin.getWriter();
  await sw.write(encoder.encode("hello listener"));
  await server.waitForStderr(/datagrams from 127\.0\.0\.1:\d+/);
  const writer = server.stdin.getWriter();
  await writer.write(encoder.encode("hello peer"));
  await writer.close();
  await sw.close();
  const out = await socat.output();
  assertEquals(decoder.decode(out.stdout), "hello peer");
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals([done.code, done.text], [143, "hello listener"]);
});

Deno.test("udp: listen --send greets each new peer, and counts each peer on its own", async () => {
  const server = spawnSockit([
    "listen",
    "udp://127.0.0.1:0",
    "--send",
    "hello\\n",
    "-v",
    "--stats",
  ]);
  const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const out = await new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket
got = []
for msg in (b"one", b"three"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(msg, ("127.0.0.1", ${port}))
    data, _ = s.recvfrom(100)
    got.append(data)
    s.sendto(msg, ("127.0.0.1", ${port}))
print(got)
`,
    ],
    stdout: "piped",
  }).output();
  assertEquals(decoder.decode(out.stdout).trim(), "[b'hello\\n', b'hello\\n']");
  await server.waitForCount(/datagrams from/, 2);
  await new Promise((resolve) => setTimeout(resolve, 100));
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals([done.code, done.text], [143, "oneonethreethree"]);
  // Each peer: 6 B sent (the greeting), and what it sent itself.
  assertMatch(done.stderr, /stats 127\.0\.0\.1:\d+: sent 6 B .*, received 6 B /);
  assertMatch(done.stderr, /stats 127\.0\.0\.1:\d+: sent 6 B .*, received 10 B /);
});

Deno.test("udp: connect sends each read as a datagram and waits for replies (Python echo)", async () => {
  const peer = new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(30)
print(s.getsockname()[1], flush=True)
data, addr = s.recvfrom(65536)
import time; time.sleep(0.3)
s.sendto(b"reply to " + data, addr)
`,
    ],
    stdout: "piped",
  }).spawn();
  const reader = peer.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const r = await runSockit(["connect", `udp://127.0.0.1:${port}`], {
    stdin: "ping",
    perms: [...NET, "--allow-ffi"],
  });
  // The peer exits after its reply: read its stdout to the end, which closes it.
  while (!(await reader.read()).done) { /* drain */ }
  await peer.status;
  assertEquals([r.code, r.text], [0, "reply to ping"]);
});

Deno.test("udp: an empty datagram is still one — echoed back, and sent by --send ''", async () => {
  const server = spawnSockit(["echo", "udp://127.0.0.1:0", "-v"]);
  const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/))[1]);
  const out = await new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"", ("127.0.0.1", ${port}))
data, _ = s.recvfrom(100)
print(repr(data))
`,
    ],
    stdout: "piped",
  }).output();
  assertEquals(decoder.decode(out.stdout).trim(), "b''");
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
  // A listener sees the empty datagram from connect --send '' as a new peer.
  const listener = spawnSockit(["listen", "udp://127.0.0.1:0", "-v"]);
  const lport = Number((await listener.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const sent = await runSockit([
    "connect",
    `udp://127.0.0.1:${lport}`,
    "--send",
    "",
    "--idle-timeout",
    "100ms",
  ]);
  assertEquals(sent.code, 0);
  await listener.waitForStderr(/datagrams from 127\.0\.0\.1:\d+/);
  listener.kill("SIGTERM");
  const done = await listener.result();
  assertEquals([done.code, done.text], [143, ""]);
  // The listener names its latest peer when it closes, as a plain address.
  assertMatch(done.stderr, /closed 127\.0\.0\.1:\d+ \(sent 0 B, received 0 B/);
});

Deno.test("udp: an ICMP port unreachable is 'connection refused', exit 1", async () => {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const r = await runSockit(["connect", `udp://127.0.0.1:${port}`, "--send", "anyone?"], {
    perms: [...NET, "--allow-ffi"],
  });
  assertEquals(r.code, 1);
  assertEquals(r.stderr, `sockit: connect udp://127.0.0.1:${port}: connection refused\n`);
});

Deno.test("udp: a broadcast address is refused in words, with a hint", async () => {
  const r = await runSockit(["connect", "udp://255.255.255.255:9", "--send", "x"]);
  assertEquals(r.code, 1);
  assertMatch(
    r.stderr,
    /^sockit: connect udp:\/\/255\.255\.255\.255:9: permission denied: a broadcast address needs SO_BROADCAST/,
  );
  assertMatch(r.stderr, /\nsockit: hint: /);
});

Deno.test("udp: --expect ends at the matching datagram", async () => {
  const server = spawnSockit(["echo", "udp://127.0.0.1:0", "-v"]);
  const port = Number((await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const started = performance.now();
  const r = await runSockit(
    [
      "connect",
      `udp://127.0.0.1:${port}`,
      "--send",
      "PONG please",
      "--expect",
      "^PONG",
      "--idle-timeout",
      "5s",
    ],
    { perms: [...NET, "--allow-ffi"] },
  );
  assertEquals([r.code, r.text], [0, "PONG please"]);
  assert(performance.now() - started < 4000, "did not wait for the idle time");
  server.kill("SIGTERM");
  await server.result();
});

// ---- bad input ---------------------------------------------------------------------------

Deno.test("servers: bad input is a one-line usage error, exit 2", async () => {
  const cases: Array<[string[], RegExp]> = [
    [
      ["echo", "0", "--allow", "10.0.0.0/33"],
      /cannot parse CIDR "10\.0\.0\.0\/33": prefix must be 0–32/,
    ],
    [["listen", "0", "--deny", "not-an-ip"], /cannot parse CIDR "not-an-ip"/],
    [["listen", "0", "--exec", ""], /--exec needs a command/],
    [["listen", "0", "--exec", "'unterminated"], /unterminated '/],
    [["listen", "0", "--broker", "--exec", "cat"], /--exec and --broker exclude each other/],
    [
      ["listen", "0", "--exec", "cat", "--sh-exec", "cat"],
      /--exec and --sh-exec exclude each other/,
    ],
    [["listen", "0", "--send", "x", "--exec", "cat"], /exclude each other/],
    [["echo", "0", "--max-conns", "0"], /--max-conns needs at least 1/],
    [["listen", "udp://127.0.0.1:0", "--broker"], /--broker is not supported with udp:\/\//],
    [["echo", "unix:/tmp/x.sock", "--tls"], /TLS over a Unix socket is not supported/],
  ];
  for (const [args, pattern] of cases) assertUsageError(await runSockit(args), pattern);
});

Deno.test("udp: input larger than a datagram goes as consecutive datagrams (stdin, --send, --send-file)", async () => {
  const dir = tempSocketDir();
  const file = `${dir}/big.bin`;
  Deno.writeFileSync(file, randomBytes(100_000));
  for (
    const [how, args, stdin] of [
      ["stdin", [], randomBytes(70_000)],
      ["--send", ["--send", "a".repeat(70_000)], undefined],
      ["--send-file", ["--send-file", file], undefined],
    ] as const
  ) {
    const peer = new Deno.Command(requireTool("python3"), {
      args: [
        "-c",
        `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(5)
print(s.getsockname()[1], flush=True)
sizes = []
try:
    while True:
        data, _ = s.recvfrom(70000)
        sizes.append(len(data))
        s.settimeout(1)
except socket.timeout:
    pass
print(sizes, flush=True)
`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = peer.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const port = Number((await reader.read()).value?.trim());
    const r = await runSockit(
      ["connect", `udp://127.0.0.1:${port}`, "--idle-timeout", "100ms", ...args],
      { stdin: stdin ?? "null" },
    );
    let out = "";
    for (let c = await reader.read(); !c.done; c = await reader.read()) out += c.value;
    await peer.status;
    assertEquals(r.code, 0, `${how}: ${r.stderr}`);
    const total = how === "--send-file" ? 100_000 : 70_000;
    const expected = [
      65507,
      ...(total - 65507 > 65507 ? [65507, total - 2 * 65507] : [total - 65507]),
    ];
    assertEquals(out.trim(), `[${expected.join(", ")}]`, how);
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("servers: SIGTERM on a keep-open Unix server removes its socket file", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/k.sock`;
  const server = spawnSockit(["listen", "-k", `unix:${path}`, "-v"], { perms: unixPerms(path) });
  await server.waitForStderr(/listening on unix:/);
  const conn = await Deno.connect({ transport: "unix", path });
  await writeAll(conn, encoder.encode("in flight"));
  await server.waitForStderr(/connection from/);
  await new Promise((resolve) => setTimeout(resolve, 100));
  server.kill("SIGTERM");
  const done = await server.result();
  conn.close();
  assertEquals([done.code, done.text], [143, "in flight"]);
  assert(!exists(path), "socket file removed");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("servers: with --allow-env for the tokio variable, a server runs in a fair worker — same bytes, same signals, same exit codes", async () => {
  const perms = ["--allow-net", "--allow-read", "--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK"];
  const echo = spawnSockit(["echo", "127.0.0.1:0", "-v"], { perms, process: true });
  const port = await echo.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode("round trip\n"));
  await conn.closeWrite();
  assertEquals(decoder.decode(await readAll(conn)), "round trip\n");
  conn.close();
  echo.kill("SIGTERM");
  const r = await echo.result();
  assertEquals(r.code, 143, r.stderr);

  // listen -k: what a client sends reaches stdout; SIGTERM ends it.
  const listen = spawnSockit(["listen", "127.0.0.1:0", "-k", "-v"], { perms, process: true });
  const listenPort = await listen.listeningPort();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listenPort });
  await writeAll(client, encoder.encode("to stdout\n"));
  client.close();
  await listen.waitForStderr(/closed/);
  listen.kill("SIGTERM");
  const l = await listen.result();
  assertEquals([l.code, l.text], [143, "to stdout\n"], l.stderr);

  // Which path: the variable is set in the worker (children inherit it) — for listen -k,
  // not for a plain listen, which serves one client.
  for (const [keep, expected] of [[true, "tokio=128\n"], [false, "tokio=\n"]] as const) {
    const shown = spawnSockit(
      [
        "listen",
        "127.0.0.1:0",
        "-v",
        ...(keep ? ["-k"] : []),
        "--sh-exec",
        "echo tokio=$DENO_TOKIO_MAX_IO_EVENTS_PER_TICK",
      ],
      { perms: [...perms, "--allow-run"], process: true },
    );
    const shownPort = await shown.listeningPort();
    const asker = await Deno.connect({ hostname: "127.0.0.1", port: shownPort });
    await asker.closeWrite();
    assertEquals(decoder.decode(await readAll(asker)), expected, `listen -k: ${keep}`);
    asker.close();
    if (keep) {
      await shown.waitForStderr(/closed/);
      shown.kill("SIGTERM");
    }
    assertEquals((await shown.result()).code, keep ? 143 : 0);
  }
});

// ---- exec children and their descendants --------------------------------------------------

/**
 * Live processes whose command line is `sleep SECONDS` (`ps`: Deno asks
 * --allow-all for /proc; a zombie shows as `[sleep] <defunct>`, so only
 * processes that still run are found): the grandchild a test started,
 * named by its unique `SECONDS`.
 */
function sleepers(seconds: string): number[] {
  const out = new Deno.Command("ps", { args: ["-eo", "pid=,args="], stderr: "null" }).outputSync();
  return decoder.decode(out.stdout).split("\n").flatMap((line) => {
    const m = /^\s*(\d+) (.*)$/.exec(line);
    return m && m[2] === `sleep ${seconds}` ? [Number(m[1])] : [];
  });
}

/** Waits (bounded) until `check` holds; returns whether it did. */
async function eventually(check: () => boolean, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return check();
}

/**
 * Waits for sockit's process to exit, at most 5 s from now (a bound on a
 * hang), then asserts that none of the `sleep SECONDS` processes runs;
 * any that does is ended, and so is a sockit past the bound.
 */
async function endsWithAll(run: SockitProcess, seconds: string[]): Promise<SockitResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    run.child.status.then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
  ]);
  clearTimeout(timer);
  // sockit ends a group before it exits; the kernel may take a moment to tear a SIGKILLed one down.
  const gone = exited &&
    await eventually(() => seconds.every((s) => sleepers(s).length === 0), 1000);
  const left = seconds.flatMap(sleepers);
  // They hold sockit's stderr open: the run's result waits for them.
  for (const pid of left) Deno.kill(pid, "SIGKILL");
  if (!exited) run.kill("SIGKILL");
  const r = await run.result();
  assert(exited, "sockit still ran 5 s later");
  assert(gone, `left running: ${left.length} of sleep ${seconds.join(", ")}`);
  return r;
}

Deno.test("exec: SIGTERM to sockit ends every descendant of a child (TCP and UDP), not just the child", async () => {
  // /bin/sh (dash) forks `sleep` and waits for it: the sleep is sockit's grandchild.
  const perms = [...NET, "--allow-run"];
  const tcp = new SockitProcess(
    ["listen", "-k", "127.0.0.1:0", "-v", "--sh-exec", "sleep 30.123"],
    { perms },
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: await tcp.listeningPort() });
  assert(await eventually(() => sleepers("30.123").length === 1), "the grandchild started");
  tcp.kill("SIGTERM");
  const tcpEnd = await endsWithAll(tcp, ["30.123"]).finally(() => conn.close());
  assertEquals(tcpEnd.code, 143);

  const udp = new SockitProcess(
    ["listen", "-k", "udp://127.0.0.1:0", "-v", "--sh-exec", "sleep 30.124"],
    { perms },
  );
  const port = await udp.listeningPort();
  const peer = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  await peer.send(encoder.encode("start one"), { transport: "udp", hostname: "127.0.0.1", port });
  assert(await eventually(() => sleepers("30.124").length === 1), "the grandchild started");
  udp.kill("SIGTERM");
  const udpEnd = await endsWithAll(udp, ["30.124"]).finally(() => peer.close());
  assertEquals(udpEnd.code, 143);
});

Deno.test("exec: a child ended at --grace after its client left takes its descendants with it, SIGKILL for those that ignore SIGTERM", async () => {
  const server = new SockitProcess([
    "listen",
    "127.0.0.1:0",
    "-v",
    "--grace",
    "100ms",
    // A background job that ignores SIGTERM (SIGKILL 2 s later ends it), and a foreground
    // one the shell waits for.
    "--sh-exec",
    "(trap '' TERM; exec sleep 30.125) & sleep 30.126",
  ], { perms: [...NET, "--allow-run"] });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: await server.listeningPort() });
  assert(
    await eventually(() => sleepers("30.125").length + sleepers("30.126").length === 2),
    "the grandchildren started",
  );
  await conn.closeWrite();
  const r = await endsWithAll(server, ["30.125", "30.126"]).finally(() => conn.close());
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /still running and silent 100 ms after the client's end of input/);
});

Deno.test("exec: the same signal twice within 0.5 s is one stop (Ctrl-C that the npm launcher passes on too): children still ended", async () => {
  // A child that ignores SIGTERM holds the shutdown for 2 s (then SIGKILL); a second
  // signal 100 ms after the first is the same stop, not "exit at once" (which would leave it).
  const server = new SockitProcess(
    ["listen", "-k", "127.0.0.1:0", "-v", "--sh-exec", "trap '' TERM; exec sleep 30.131"],
    { perms: [...NET, "--allow-run"] },
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: await server.listeningPort() });
  assert(await eventually(() => sleepers("30.131").length === 1), "the child started");
  server.kill("SIGINT");
  await new Promise((resolve) => setTimeout(resolve, 100));
  server.kill("SIGINT");
  const r = await endsWithAll(server, ["30.131"]).finally(() => conn.close());
  assertEquals(r.code, 130, r.stderr);
});
