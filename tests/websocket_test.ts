/**
 * WebSocket endpoints (`ws://`, `wss://`) against real peers: Python's
 * `websockets` (the system `/usr/bin/python3`, python3-websockets) and
 * Node's `ws` (node-ws), both ways; forward in both directions; TLS; bad
 * requests and bad frames; how sessions end; hostile clients (ping floods,
 * huge heads, endless fragments); frames relayed as they came.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { NODE_PEERS, SYSTEM_PYTHON } from "../tools/peers.ts";
import {
  freePort,
  localhostCertificate,
  randomBytes,
  requireTool,
  runSockit,
  sha256,
  type SockitProcess,
  type SockitResult,
  type SockitRun,
  spawnSockit,
  tempSocketDir,
} from "./helpers.ts";
import { Connection } from "../lib/net/conn.ts";
import { websocketServer } from "../lib/protocols/websocket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** python3-websockets is installed for the system Python, not for a pyenv one first on PATH. */
const PYTHON = SYSTEM_PYTHON;
const NODE_PATH = NODE_PEERS;

/** A Python `websockets` server: echoes; "close:CODE" closes with CODE; prints its port. */
const PY_SERVER = `
import asyncio, sys, websockets
async def handler(ws, path=None):
    async for message in ws:
        if isinstance(message, str) and message.startswith("close:"):
            await ws.close(code=int(message[6:]), reason="bye")
            return
        await ws.send(repr(message) if "repr" in sys.argv else message)
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                subprotocols=["chat.v1"] if "proto" in sys.argv else None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
`;

/** A peer process started here and ended by its PID. */
class Peer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #buffer = "";
  constructor(argv: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      env,
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }
  /** The next line the peer printed. */
  async line(): Promise<string> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`peer ended; printed ${JSON.stringify(this.#buffer)}`);
      this.#buffer += value;
    }
    const i = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return line;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Gone.
    }
    await this.child.stdin.close().catch(() => {});
    await this.#lines.cancel().catch(() => {});
    await this.child.status;
  }
}

function pythonServer(...args: string[]): Peer {
  requireTool("python3");
  return new Peer([PYTHON, "-c", PY_SERVER, ...args]);
}

/** Runs a Node script with `ws` available; returns its stdout. */
async function node(script: string): Promise<string> {
  const out = await new Deno.Command(requireTool("node"), {
    args: ["-e", script],
    env: { NODE_PATH },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`node failed: ${decoder.decode(out.stderr)}`);
  return decoder.decode(out.stdout);
}

Deno.test("ws: connect to python websockets — text lines with UTF-8, empty lines, an unterminated last line", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const input = "hello\nwörld ✓\n\nlast";
  const r = await runSockit(["connect", `ws://127.0.0.1:${port}/`, "-v"], {
    stdin: encoder.encode(input),
  });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.text, "hello\nwörld ✓\n\nlast\n");
  assertMatch(r.stderr, /WebSocket with 127\.0\.0\.1:\d+: 101 \//);
  assertMatch(r.stderr, /close code 1000/);
});

Deno.test("--crlf: each WebSocket text message ends in CRLF (python sees it); TLS gets CRLF too", async () => {
  await using server = pythonServer("repr");
  const port = Number(await server.line());
  const r = await runSockit(["connect", `ws://127.0.0.1:${port}/`, "--crlf"], {
    stdin: encoder.encode("EHLO x\nQUIT\n"),
  });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.text, "'EHLO x\\r\\n'\n'QUIT\\r\\n'\n");
  // Without --crlf a message is the line without its end.
  const plain = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
    stdin: encoder.encode("EHLO x\n"),
  });
  assertEquals(plain.text, "'EHLO x'\n");
  // Over TLS: the bytes the server reads.
  const tls = spawnSockit(["listen", "tls://127.0.0.1:0", "-v"]);
  const tlsPort = await tls.listeningPort();
  const c = await runSockit(["connect", `tls://127.0.0.1:${tlsPort}`, "--insecure", "--crlf"], {
    stdin: encoder.encode("EHLO x\nQUIT\n"),
  });
  assertEquals(c.code, 0, c.stderr);
  assertEquals((await tls.result()).text, "EHLO x\r\nQUIT\r\n");
});

Deno.test("ws: connect --binary carries 16 MiB through python websockets, sha256-equal", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const data = randomBytes(16 * 2 ** 20);
  const r = await runSockit(["connect", `ws://127.0.0.1:${port}`, "--binary"], {
    stdin: data,
    process: true,
    perms: ["--allow-net"],
  });
  assertEquals(r.code, 0, r.stderr);
  assertEquals(sha256(r.stdout), sha256(data));
});

Deno.test("ws: close codes both ways — the peer's 4001 is exit 1 in words; 1000 is exit 0", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const closed = await runSockit(["connect", `ws://127.0.0.1:${port}/`, "--no-half-close"], {
    stdin: encoder.encode("one\nclose:4001\n"),
  });
  assertEquals(closed.code, 1);
  assertEquals(closed.text, "one\n");
  assertMatch(closed.stderr, /closed by peer: 4001 bye/);
  // Node as the client: sockit's echo answers its 4001 with 4001; sockit's own Close is 1000.
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const echoPort = await echo.listeningPort();
  const seen = await node(`
    const WebSocket = require("ws");
    const ws = new WebSocket("ws://127.0.0.1:${echoPort}/");
    ws.on("open", () => { ws.send("x"); });
    ws.on("message", () => ws.close(4001, "done"));
    ws.on("close", (code) => { console.log(code); });
  `);
  assertEquals(seen.trim(), "4001");
  echo.kill("SIGTERM");
  const e = await echo.result();
  assertMatch(e.stderr, /closed by peer: 4001 done|close code 4001/);
  // sockit listen as the server: node's client sees sockit's Close(1000) at the end of input.
  const listen = spawnSockit(["listen", "ws://127.0.0.1:0/", "-v"], {
    stdin: encoder.encode("bye\n"),
  });
  const listenPort = await listen.listeningPort();
  const got = await node(`
    const WebSocket = require("ws");
    const ws = new WebSocket("ws://127.0.0.1:${listenPort}/");
    const seen = [];
    ws.on("message", (m, binary) => seen.push((binary ? "b:" : "t:") + m.toString()));
    ws.on("close", (code) => console.log(JSON.stringify({ seen, code })));
  `);
  assertEquals(JSON.parse(got), { seen: ["t:bye"], code: 1000 });
  assertEquals((await listen.result()).code, 0);
});

Deno.test("ws: python client ↔ sockit listen — messages to stdout, stdin lines to messages; subprotocol", async () => {
  const listen = spawnSockit(["listen", "ws://127.0.0.1:0/chat", "--protocol", "chat.v1", "-v"], {
    stdin: "piped",
  });
  const port = await listen.listeningPort();
  const writer = listen.stdin.getWriter();
  await using client = new Peer([
    PYTHON,
    "-c",
    `
import asyncio, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:${port}/chat", subprotocols=["x", "chat.v1"]) as ws:
        print(ws.subprotocol, flush=True)
        await ws.send("from python ✓")
        await ws.send(b"\\x00\\x01raw")
        print(await ws.recv(), flush=True)
        await ws.close(code=1000)
asyncio.run(main())
`,
  ]);
  assertEquals(await client.line(), "chat.v1");
  await listen.waitForStderr(/WebSocket with .*101 \/chat, subprotocol chat\.v1/);
  await writer.write(encoder.encode("from sockit\n"));
  assertEquals(await client.line(), "from sockit");
  await writer.close().catch(() => {});
  const r = await listen.result();
  assertEquals(r.code, 0, r.stderr);
  assertEquals(
    r.stdout,
    new Uint8Array([...encoder.encode("from python ✓\n"), 0, 1, ...encoder.encode("raw")]),
  );
});

Deno.test("ws: echo keeps message boundaries and types for node ws (16 MiB binary, text, ping)", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  try {
    const out = await node(`
      const WebSocket = require("ws");
      const crypto = require("crypto");
      const big = crypto.randomBytes(16 * 1024 * 1024);
      const ws = new WebSocket("ws://127.0.0.1:${port}/");
      const got = [];
      let pong = false;
      ws.on("open", () => { ws.ping(); ws.send("text ✓"); ws.send(big); ws.send(Buffer.alloc(0)); });
      ws.on("pong", () => { pong = true; });
      ws.on("message", (m, binary) => {
        got.push(binary ? "b" + m.length + ":" + crypto.createHash("sha256").update(m).digest("hex").slice(0, 16) : "t:" + m.toString());
        if (got.length === 3) ws.close(1000);
      });
      ws.on("close", (code) => console.log(JSON.stringify({ got, code, pong,
        want: "b" + big.length + ":" + crypto.createHash("sha256").update(big).digest("hex").slice(0, 16) })));
    `);
    const { got, code, pong, want } = JSON.parse(out);
    // The empty message too (it used to stay behind until a next message flushed it).
    assertEquals(got, ["t:text ✓", want, "b0:e3b0c44298fc1c14"]);
    assertEquals([code, pong], [1000, true]);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
});

Deno.test("ws: forward TCP → WS and WS → TCP carry 16 MiB each way with half-close, sha256-checked", async () => {
  const wsEcho = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const wsPort = await wsEcho.listeningPort();
  const tcpEcho = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const tcpPort = await tcpEcho.listeningPort();
  const toWs = spawnSockit(["forward", "127.0.0.1:0", `ws://127.0.0.1:${wsPort}/`, "-v"]);
  const toWsPort = await toWs.listeningPort();
  const fromWs = spawnSockit(["forward", "ws://127.0.0.1:0/", `127.0.0.1:${tcpPort}`, "-v"]);
  const fromWsPort = await fromWs.listeningPort();
  try {
    const data = randomBytes(16 * 2 ** 20);
    const a = await runSockit(["connect", `127.0.0.1:${toWsPort}`], {
      stdin: data,
      process: true,
      perms: ["--allow-net"],
    });
    assertEquals(a.code, 0, a.stderr);
    assertEquals(sha256(a.stdout), sha256(data));
    const b = await runSockit(["connect", `ws://127.0.0.1:${fromWsPort}/`, "--binary"], {
      stdin: data,
      process: true,
      perms: ["--allow-net"],
    });
    assertEquals(b.code, 0, b.stderr);
    assertEquals(sha256(b.stdout), sha256(data));
  } finally {
    for (const run of [toWs, fromWs, wsEcho, tcpEcho]) {
      run.kill("SIGTERM");
      await run.result();
    }
  }
});

Deno.test("wss: verified with --cacert, refused without it; --insecure warns", async () => {
  const dir = tempSocketDir();
  const { cert, key } = localhostCertificate(dir);
  const echo = spawnSockit(["echo", "wss://127.0.0.1:0/", "--cert", cert, "--key", key, "-v"]);
  const port = await echo.listeningPort();
  try {
    const ok = await runSockit(["connect", `wss://localhost:${port}/`, "--cacert", cert], {
      stdin: encoder.encode("secure\n"),
    });
    assertEquals([ok.code, ok.text], [0, "secure\n"], ok.stderr);
    const refused = await runSockit(["connect", `wss://localhost:${port}/`], {
      stdin: encoder.encode("x\n"),
    });
    assertEquals(refused.code, 1);
    assertMatch(refused.stderr, /certificate|TLS/i);
    const insecure = await runSockit(["connect", `wss://localhost:${port}/`, "--insecure"], {
      stdin: encoder.encode("y\n"),
    });
    assertEquals([insecure.code, insecure.text], [0, "y\n"], insecure.stderr);
    assertMatch(insecure.stderr, /warning: .*not verified|insecure/i);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ws: curl gets 426, a wrong path 404, a stalled upgrade is closed at --handshake-timeout", async () => {
  const listen = spawnSockit([
    "echo",
    "ws://127.0.0.1:0/only",
    "-v",
    "--handshake-timeout",
    "300ms",
  ]);
  const port = await listen.listeningPort();
  try {
    const curl = await new Deno.Command(requireTool("curl"), {
      args: ["-s", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${port}/only`],
      stdout: "piped",
    }).output();
    assertEquals(decoder.decode(curl.stdout), "426");
    const wrong = await runSockit(["connect", `ws://127.0.0.1:${port}/other`], { stdin: "null" });
    assertEquals(wrong.code, 1);
    assertMatch(wrong.stderr, /the server answered 404 Not Found to the WebSocket upgrade/);
    using stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    await stalled.write(encoder.encode("GET /only HTTP/1.1\r\n"));
    const started = Date.now();
    const n = await stalled.read(new Uint8Array(16)).catch(() => null);
    assertEquals(n, null);
    assert(Date.now() - started < 3000, "a stalled upgrade held its connection");
  } finally {
    listen.kill("SIGTERM");
    const r = await listen.result();
    assertMatch(r.stderr, /WebSocket upgrade failed: .*timed out after 300 ms/);
    assertMatch(r.stderr, /WebSocket upgrade failed: .*path \/other/);
  }
});

/** Upgrades a raw socket by hand, as a (misbehaving) client. */
async function rawClient(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(
    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  ));
  let head = "";
  const buf = new Uint8Array(1);
  while (!head.endsWith("\r\n\r\n")) {
    if (await conn.read(buf) === null) throw new Error("closed during the upgrade");
    head += String.fromCharCode(buf[0]);
  }
  assertMatch(head, /^HTTP\/1\.1 101 /);
  return conn;
}

/** The close code of the server's Close frame (after any data frames). */
async function closeCodeFrom(conn: Deno.Conn): Promise<number> {
  const all: number[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    all.push(...buf.subarray(0, n));
  }
  for (let i = 0; i + 1 < all.length;) {
    const op = all[i] & 0x0f;
    const len = all[i + 1] & 0x7f;
    if (op === 8) return (all[i + 2] << 8) | all[i + 3];
    i += 2 + len;
  }
  return -1;
}

Deno.test("ws: bad frames are refused with the right close code, one line each; the server keeps serving", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "--max-message", "1000", "-v"]);
  const port = await echo.listeningPort();
  const mask = [1, 2, 3, 4];
  const masked = (op: number, payload: number[]) =>
    new Uint8Array([
      0x80 | op,
      0x80 | payload.length,
      ...mask,
      ...payload.map((b, i) => b ^ mask[i & 3]),
    ]);
  try {
    // Invalid UTF-8 in a text frame: 1007.
    const a = await rawClient(port);
    await a.write(masked(1, [0xc3, 0x28]));
    assertEquals(await closeCodeFrom(a), 1007);
    a.close();
    // An unmasked frame from a client: 1002.
    const b = await rawClient(port);
    await b.write(new Uint8Array([0x81, 2, 0x68, 0x69]));
    assertEquals(await closeCodeFrom(b), 1002);
    b.close();
    // A message over --max-message: 1009.
    const c = await rawClient(port);
    await c.write(new Uint8Array([0x82, 0x80 | 126, 0x07, 0xd0, ...mask]));
    assertEquals(await closeCodeFrom(c), 1009);
    c.close();
    // And the next client is served.
    const fine = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
      stdin: encoder.encode("still here\n"),
    });
    assertEquals([fine.code, fine.text], [0, "still here\n"], fine.stderr);
  } finally {
    echo.kill("SIGTERM");
    const r = await echo.result();
    for (
      const why of [
        /not UTF-8 \(closed with 1007\)/,
        /unmasked frame from a client \(closed with 1002\)/,
        /over 1000 bytes \(closed with 1009\)/,
      ]
    ) {
      assertEquals(r.stderr.match(new RegExp(why.source, "g"))?.length, 1, `${why}: ${r.stderr}`);
    }
  }
});

Deno.test("ws: --ping-interval pings and sees the pongs; usage errors for WebSocket flags elsewhere", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const r = await runSockit(
    [
      "connect",
      `ws://127.0.0.1:${port}/`,
      "--ping-interval",
      "50ms",
      "--close-delay",
      "300ms",
      "--trace",
    ],
    { stdin: encoder.encode("x\n") },
  );
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /ping\(0\) sent/);
  assertMatch(r.stderr, /pong\(0\) received/);
  const bad = await runSockit(["connect", "127.0.0.1:1", "--binary"]);
  assertEquals(bad.code, 2);
  assertMatch(bad.stderr, /option --binary is for ws:\/\/ or wss:\/\/ endpoints/);
  const free = freePort();
  const refused = await runSockit(["connect", `ws://127.0.0.1:${free}/`], { stdin: "null" });
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /connection refused/);
});

Deno.test("ws: through --proxy (socks5h via sockit proxy), the upgrade goes through the tunnel", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const proxy = spawnSockit(["proxy", "127.0.0.1:0", "-v"]);
  const proxyPort = await proxy.listeningPort();
  try {
    const r = await runSockit(
      ["connect", `ws://localhost:${port}/`, "--proxy", `socks5h://127.0.0.1:${proxyPort}`, "-v"],
      { stdin: encoder.encode("tunnelled\n") },
    );
    assertEquals([r.code, r.text], [0, "tunnelled\n"], r.stderr);
    assertMatch(r.stderr, /WebSocket with localhost:\d+: 101 \//);
  } finally {
    proxy.kill("SIGTERM");
    const p = await proxy.result();
    assertMatch(p.stderr, /→ localhost:\d+ \(127\.0\.0\.1:\d+\) by socks5/);
  }
});

/**
 * A run's result, or a failure naming the hang when it takes longer than
 * `ms` (the process is killed with SIGKILL: a hang may ignore SIGTERM).
 */
async function within(run: SockitRun, ms: number, what: string): Promise<SockitResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), ms));
  const r = await Promise.race([run.result(), hung]);
  clearTimeout(timer);
  if (r !== "hung") return r;
  try {
    run.kill("SIGKILL");
    await run.result();
  } catch {
    // In-process: a hung command cannot be killed; the test fails (and leaks) as it must.
    run.kill("SIGTERM");
  }
  throw new Error(`${what}: still running after ${ms} ms; stderr:\n${run.stderr}`);
}

Deno.test("ws: connect --send --expect ends at the match against python websockets and sockit echo (it hung)", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const echoPort = await echo.listeningPort();
  try {
    for (const target of [port, echoPort]) {
      const run = spawnSockit(
        [
          "connect",
          `ws://127.0.0.1:${target}/`,
          "--send",
          "hi",
          "--expect",
          "hi",
          "--timeout",
          "2s",
        ],
        { process: true, perms: ["--allow-net"] },
      );
      const r = await within(run, 10_000, `connect --expect to ${target}`);
      assertEquals([r.code, r.text], [0, "hi\n"], r.stderr);
    }
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
});

Deno.test("ws: the peer's Close 4001 after stdin ended is exit 1 naming 4001, in-process and as a process (it hung)", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  for (const process of [false, true]) {
    const run = spawnSockit(["connect", `ws://127.0.0.1:${port}/`, "--trace"], {
      stdin: "close:4001\n",
      process,
      perms: ["--allow-net"],
    });
    const r = await within(run, 10_000, `4001 after the end of stdin (process: ${process})`);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /closed by peer: 4001 bye/);
    assertMatch(r.stderr, /close\(4001\) sent in answer/);
  }
});

Deno.test("ws: after the Close handshake connect ends at once with the close code's status, stdin still open", async () => {
  await using server = pythonServer();
  const port = Number(await server.line());
  for (const [code, status] of [[1000, 0], [4001, 1]]) {
    const run = spawnSockit(["connect", `ws://127.0.0.1:${port}/`, "-v"], {
      stdin: "piped",
      process: true,
      perms: ["--allow-net"],
    });
    const writer = run.stdin.getWriter();
    await writer.write(encoder.encode(`one\nclose:${code}\n`));
    writer.releaseLock();
    // stdin stays open (as from `sleep 12 |`): the peer's Close alone ends the session.
    const r = await within(run, 5_000, `Close ${code} with stdin open`);
    assertEquals([r.code, r.text], [status, "one\n"], r.stderr);
    assertMatch(r.stderr, new RegExp(`close code ${code}`));
  }
});

/**
 * A raw WebSocket client (Python, no library) that upgrades, then sends
 * masked frames — `FRAME` (hex) repeated — for `SECONDS` without ever
 * reading; prints the bytes it got to send.
 */
const PY_FLOOD = `
import select, socket, sys, time
port, frame, secs = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
head = b""
while not head.endswith(b"\\r\\n\\r\\n"):
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
s.setblocking(False)
batch = memoryview(frame * max(1, 65536 // len(frame)))
off = sent = 0
end = time.time() + secs
while time.time() < end:
    if not select.select([], [s], [], 0.2)[1]:
        continue
    try:
        n = s.send(batch[off:])
    except BlockingIOError:
        continue
    off = (off + n) % len(batch)
    sent += n
print(sent, flush=True)
s.close()
`;

/** A masked client frame: opcode, FIN, payload. */
function maskedFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const mask = [0x37, 0xfa, 0x21, 0x3d];
  const n = payload.length;
  const ext = n < 126 ? [0x80 | n] : n < 65536 ? [0x80 | 126, n >> 8, n & 0xff] : [
    0x80 | 127,
    0,
    0,
    0,
    0,
    (n >>> 24) & 0xff,
    (n >>> 16) & 0xff,
    (n >>> 8) & 0xff,
    n & 0xff,
  ];
  const out = new Uint8Array(1 + ext.length + 4 + n);
  out.set([(fin ? 0x80 : 0) | opcode, ...ext, ...mask]);
  for (let i = 0; i < n; i++) out[1 + ext.length + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** VmRSS of a process, in MiB. */
function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

Deno.test("ws: a client flooding pings without reading does not grow echo's or forward's memory; others are served", async () => {
  const ping = maskedFrame(0x9, new Uint8Array(125).fill(0x78));
  const tcpEcho = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const tcpPort = await tcpEcho.listeningPort();
  try {
    for (
      const args of [["echo", "ws://127.0.0.1:0/"], [
        "forward",
        "ws://127.0.0.1:0/",
        `127.0.0.1:${tcpPort}`,
      ]]
    ) {
      const server = spawnSockit([...args, "-v"], { process: true, perms: ["--allow-net"] });
      const port = await server.listeningPort();
      const pid = (server as SockitProcess).child.pid;
      try {
        const before = rssMiB(pid);
        const flood = new Deno.Command(PYTHON, {
          args: ["-c", PY_FLOOD, String(port), hex(ping), "8"],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let peak = before;
        const sampling = (async () => {
          for (let i = 0; i < 40; i++) {
            await new Promise((resolve) => setTimeout(resolve, 250));
            peak = Math.max(peak, rssMiB(pid));
          }
        })();
        const out = await flood.output();
        await sampling;
        assert(out.success, decoder.decode(out.stderr));
        assert(
          peak - before < 200,
          `${args[0]}: RSS ${before.toFixed(0)} → ${peak.toFixed(0)} MiB under a ping flood ` +
            `(${decoder.decode(out.stdout).trim()} B of pings sent)`,
        );
        const next = await runSockit(["connect", `ws://127.0.0.1:${port}/`, "--binary"], {
          stdin: encoder.encode("still served\n"),
        });
        assertEquals([next.code, next.text], [0, "still served\n"], next.stderr);
      } finally {
        server.kill("SIGTERM");
        await server.result();
      }
    }
  } finally {
    tcpEcho.kill("SIGTERM");
    await tcpEcho.result();
  }
});

/** Sends `request` on a new connection; resolves to the status line the server answers. */
async function statusOf(port: number, request: string): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(request)).catch(() => {});
  let got = "";
  const buf = new Uint8Array(4096);
  while (!got.includes("\r\n")) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    got += decoder.decode(buf.subarray(0, n));
  }
  return got.split("\r\n")[0];
}

const UPGRADE_HEAD = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

Deno.test("ws: upgrade heads are parsed in linear time; an oversize head gets 431, a malformed one 400; others are served", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"], {
    process: true,
    perms: ["--allow-net"],
  });
  const port = await echo.listeningPort();
  try {
    // Values that cost a backtracking header regex ~0.6 s each (here 8 at once).
    const heavy = `${UPGRADE_HEAD}Sec-WebSocket-Protocol: a${" \t".repeat(7500)}b\r\n\r\n`;
    const attackers = Array.from({ length: 8 }, () => statusOf(port, heavy));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    const r = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
      stdin: encoder.encode("served\n"),
    });
    const took = performance.now() - started;
    assertEquals([r.code, r.text], [0, "served\n"], r.stderr);
    assert(took < 2500, `another client's upgrade and echo took ${took.toFixed(0)} ms`);
    for (const status of await Promise.all(attackers)) assertMatch(status, /^HTTP\/1\.1 101 /);
    // Over the 16 KiB bound: 431; a header line without a colon, or folded: 400.
    const huge = `${UPGRADE_HEAD}X-Big: ${"y".repeat(20_000)}\r\n\r\n`;
    assertMatch(await statusOf(port, huge), /^HTTP\/1\.1 431 /);
    assertMatch(await statusOf(port, `${UPGRADE_HEAD}Bogus line\r\n\r\n`), /^HTTP\/1\.1 400 /);
    assertMatch(
      await statusOf(port, `${UPGRADE_HEAD}X-A: 1\r\n folded\r\n\r\n`),
      /^HTTP\/1\.1 400 /,
    );
    assertMatch(await statusOf(port, `${UPGRADE_HEAD}X A: 1\r\n\r\n`), /^HTTP\/1\.1 400 /);
    const after = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
      stdin: encoder.encode("still served\n"),
    });
    assertEquals([after.code, after.text], [0, "still served\n"], after.stderr);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
  assertMatch(echo.stderr, /WebSocket upgrade failed: a request head over 16 KiB/);
  assertMatch(echo.stderr, /WebSocket upgrade failed: a malformed header line/);
});

Deno.test("ws: connect refuses a server's oversize or malformed answer to the upgrade in words", async () => {
  for (
    const [answer, why] of [
      [`HTTP/1.1 101 Switching Protocols\r\nX-Big: ${"y".repeat(20_000)}\r\n\r\n`, /over 16 KiB/],
      ["HTTP/1.1 101 Switching Protocols\r\nno colon here\r\n\r\n", /malformed header line/],
    ] as const
  ) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      using conn = await listener.accept();
      await conn.read(new Uint8Array(4096));
      await conn.write(encoder.encode(answer)).catch(() => {});
      await conn.read(new Uint8Array(4096)).catch(() => null);
    })();
    const r = await runSockit(["connect", `ws://127.0.0.1:${listener.addr.port}/`], {
      stdin: "null",
    });
    listener.close();
    await serving;
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, why);
    assertEquals(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  }
});

/** Reads a connection until EOF or `ms`, then closes it; resolves to what came. */
async function readFor(conn: Deno.Conn, ms: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let closed = false;
  const timer = setTimeout(() => (closed = true, conn.close()), ms);
  const buf = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
    if (!closed) conn.close();
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  chunks.reduce((at, c) => (out.set(c, at), at + c.length), 0);
  return out;
}

/** The frames in `bytes` (a server's: unmasked) as [opcode, fin, payload]. */
function framesOf(bytes: Uint8Array): Array<[number, boolean, Uint8Array]> {
  const out: Array<[number, boolean, Uint8Array]> = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i + 2 <= bytes.length;) {
    let n = bytes[i + 1] & 0x7f;
    let at = i + 2;
    if (n === 126) [n, at] = [view.getUint16(i + 2), i + 4];
    else if (n === 127) [n, at] = [Number(view.getBigUint64(i + 2)), i + 10];
    if (at + n > bytes.length) break;
    out.push([bytes[i] & 0x0f, (bytes[i] & 0x80) !== 0, bytes.subarray(at, at + n)]);
    i = at + n;
  }
  return out;
}

/** The close code of the Close frame among `frames` (-1: none). */
function closeCodeOf(frames: Array<[number, boolean, Uint8Array]>): number {
  const close = frames.find(([op]) => op === 8);
  return close ? (close[2][0] << 8) | close[2][1] : -1;
}

Deno.test("ws: a message kept open by empty continuation frames is closed 1009 after 65536 fragments", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  try {
    const conn = await rawClient(port);
    const empty = maskedFrame(0x0, new Uint8Array(0), false);
    const batch = new Uint8Array(empty.length * 10_000);
    for (let i = 0; i < 10_000; i++) batch.set(empty, i * empty.length);
    const writing = (async () => {
      await conn.write(maskedFrame(0x1, encoder.encode("a"), false));
      for (let i = 0; i < 7; i++) {
        for (let at = 0; at < batch.length;) at += await conn.write(batch.subarray(at));
      }
    })().catch(() => {});
    const frames = framesOf(await readFor(conn, 10_000));
    await writing;
    assertEquals(closeCodeOf(frames), 1009);
    const fine = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
      stdin: encoder.encode("next\n"),
    });
    assertEquals([fine.code, fine.text], [0, "next\n"], fine.stderr);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
  assertMatch(echo.stderr, /a message in more than 65536 fragments \(closed with 1009\)/);
});

Deno.test("ws: a message still open after maxMessageTime is closed 1008 (library option)", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = Connection.from(await listener.accept());
    const ws = await websocketServer(conn, { mode: "binary", maxMessageTime: 300 });
    const buf = new Uint8Array(1024);
    try {
      for (;;) if (await ws.read(buf) === null) return "ended";
    } catch (err) {
      return (err as Error).message;
    } finally {
      ws.close();
    }
  })();
  const conn = await rawClient(listener.addr.port);
  await conn.write(maskedFrame(0x2, new Uint8Array([1]), false));
  await new Promise((resolve) => setTimeout(resolve, 500));
  await conn.write(maskedFrame(0x0, new Uint8Array([2]), true)).catch(() => 0);
  const frames = framesOf(await readFor(conn, 5_000));
  assertEquals(closeCodeOf(frames), 1008);
  assertMatch(await serving, /a message still open after 300 ms \(closed with 1008\)/);
});

Deno.test("ws: echo sends an empty message back at once, on its own, before the next; 1,000 empty ones all come back", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  try {
    const out = await node(`
      const WebSocket = require("ws");
      const ws = new WebSocket("ws://127.0.0.1:${port}/");
      const got = [];
      let wake = null;
      const next = (ms) => new Promise((resolve) => {
        const timer = setTimeout(() => { wake = null; resolve("none"); }, ms);
        wake = (m) => { clearTimeout(timer); wake = null; resolve(m); };
      });
      let empties = 0;
      ws.on("message", (m, binary) => {
        const seen = (binary ? "b:" : "t:") + m.toString();
        if (wake) wake(seen); else if (seen === "b:") empties++; else got.push("late " + seen);
      });
      ws.on("open", async () => {
        ws.send("");
        got.push(await next(3000));
        ws.send("abc");
        got.push(await next(3000));
        for (let i = 0; i < 1000; i++) ws.send(Buffer.alloc(0));
        const until = Date.now() + 5000;
        while (empties < 1000 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        ws.close(1000);
      });
      ws.on("close", (code) => console.log(JSON.stringify({ got, empties, code })));
    `);
    assertEquals(JSON.parse(out), { got: ["t:", "t:abc"], empties: 1000, code: 1000 });
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
});

Deno.test("ws: echo gives frames back as they came — one 4 MiB frame is one frame; fragments ending in an empty FIN frame", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  try {
    const big = randomBytes(4 * 2 ** 20);
    const conn = await rawClient(port);
    const frames = [
      maskedFrame(0x2, big),
      maskedFrame(0x1, encoder.encode("x".repeat(2 ** 20)), false),
      maskedFrame(0x0, encoder.encode("y".repeat(3 * 2 ** 20)), false),
      maskedFrame(0x0, new Uint8Array(0), true),
      maskedFrame(0x8, new Uint8Array([0x03, 0xe8])),
    ];
    const writing = (async () => {
      for (const frame of frames) {
        for (let at = 0; at < frame.length;) at += await conn.write(frame.subarray(at));
      }
    })();
    const back = framesOf(await readFor(conn, 20_000));
    await writing;
    assertEquals(
      back.map(([op, fin, payload]) => [op, fin, payload.length]),
      [[2, true, 4 * 2 ** 20], [1, false, 2 ** 20], [0, false, 3 * 2 ** 20], [0, true, 0], [
        8,
        true,
        2,
      ]],
    );
    assertEquals(sha256(back[0][2]), sha256(big));
    // Python's websockets sends an iterable as fragments and an empty final frame.
    const py = await new Deno.Command(PYTHON, {
      args: [
        "-c",
        `
import asyncio, hashlib, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:${port}/", max_size=None) as ws:
        chunks = [bytes([i]) * 65536 for i in range(64)]
        await ws.send(chunks)
        try:
            back = await asyncio.wait_for(ws.recv(), 5)
        except asyncio.TimeoutError:
            back = b"timeout"
        print(len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest())
asyncio.run(main())
`,
      ],
      stdout: "piped",
    }).output();
    assertEquals(decoder.decode(py.stdout).trim(), `${4 * 2 ** 20} True`);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
});

Deno.test("ws: forward ws:// → ws:// keeps each message's kind and boundaries both ways, empty ones included", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const echoPort = await echo.listeningPort();
  const forward = spawnSockit([
    "forward",
    "ws://127.0.0.1:0/",
    `ws://127.0.0.1:${echoPort}/`,
    "-v",
  ]);
  const port = await forward.listeningPort();
  try {
    const out = await node(`
      const WebSocket = require("ws");
      const crypto = require("crypto");
      const big = crypto.randomBytes(3 * 1024 * 1024);
      const ws = new WebSocket("ws://127.0.0.1:${port}/");
      const got = [];
      const sent = ["text ✓", Buffer.from([0, 1, 2]), "", Buffer.alloc(0), big, "end"];
      ws.on("open", () => { for (const m of sent) ws.send(m); });
      ws.on("message", (m, binary) => {
        got.push((binary ? "b" : "t") + m.length + ":" + crypto.createHash("sha256").update(m).digest("hex").slice(0, 12));
        if (got.length === sent.length) ws.close(1000);
      });
      ws.on("close", (code) => console.log(JSON.stringify({ got, code, want: sent.map((m) =>
        (typeof m === "string" ? "t" : "b") + Buffer.from(m).length + ":" +
        crypto.createHash("sha256").update(m).digest("hex").slice(0, 12)) })));
    `);
    const { got, code, want } = JSON.parse(out);
    assertEquals([got, code], [want, 1000]);
  } finally {
    for (const run of [forward, echo]) {
      run.kill("SIGTERM");
      await run.result();
    }
  }
});

Deno.test("ws: listen writes an empty text message as its newline, a big one whole", async () => {
  const listen = spawnSockit(["listen", "ws://127.0.0.1:0/", "-v"], { stdin: "null" });
  const port = await listen.listeningPort();
  await using client = new Peer([
    PYTHON,
    "-c",
    `
import asyncio, websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:${port}/") as ws:
        await ws.send("")
        await ws.send("z" * 300000)
        await ws.send("")
        await ws.wait_closed()
    print("done", flush=True)
asyncio.run(main())
`,
  ]);
  assertEquals(await client.line(), "done");
  const r = await listen.result();
  assertEquals([r.code, r.text], [0, `\n${"z".repeat(300000)}\n\n`], r.stderr);
});

Deno.test("ws: echo closes a connection whose text frame turns out not UTF-8 after part of it was echoed", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  try {
    const conn = await rawClient(port);
    const payload = new Uint8Array(100_000).fill(0x61);
    payload.set([0xc3, 0x28], payload.length - 2);
    const frame = maskedFrame(0x1, payload);
    const cut = frame.length - 30_000;
    for (let at = 0; at < cut;) at += await conn.write(frame.subarray(at, cut));
    // The first part is echoed before the rest (and the bad bytes) come.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await conn.write(frame.subarray(cut)).catch(() => 0);
    const back = await readFor(conn, 5_000);
    assert(back.length > 1000 && back.length < 100_000, `${back.length} B came back`);
    assertEquals(framesOf(back).length, 0, "a whole frame came back");
    const fine = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
      stdin: encoder.encode("next\n"),
    });
    assertEquals([fine.code, fine.text], [0, "next\n"], fine.stderr);
  } finally {
    echo.kill("SIGTERM");
    await echo.result();
  }
  assertMatch(echo.stderr, /not UTF-8 \(closed without a Close frame: one of ours was half sent\)/);
});

Deno.test("ws: an --exec child of a wss:// server gets SOCKIT_PROTO=tls, of a ws:// one tcp", async () => {
  const dir = tempSocketDir();
  const { cert, key } = localhostCertificate(dir);
  try {
    for (const [scheme, proto] of [["wss", "tls"], ["ws", "tcp"]]) {
      const tls = scheme === "wss" ? ["--cert", cert, "--key", key] : [];
      const server = spawnSockit([
        "listen",
        `${scheme}://127.0.0.1:0/`,
        ...tls,
        "--sh-exec",
        'echo "$SOCKIT_PROTO"',
        "-v",
      ], { perms: ["--allow-net", "--allow-read", "--allow-run"] });
      const port = await server.listeningPort();
      try {
        const client = await runSockit(
          ["connect", `${scheme}://localhost:${port}/`, ...(tls.length ? ["--cacert", cert] : [])],
          { stdin: new Uint8Array(0) },
        );
        assertEquals([client.code, client.text], [0, `${proto}\n`], client.stderr);
      } finally {
        server.kill("SIGTERM");
        await server.result();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
