/**
 * How sessions end — the EOF matrix of the README ("Sessions, half-close,
 * and how they end"), every cell against a real peer on loopback — and what
 * a session sends: `--send`/`--expect` dialogues, `--send-only`,
 * `--recv-only`.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  CHILD_ENV,
  decoder,
  encoder,
  exists,
  randomBytes,
  readAll,
  requireTool,
  runSockit,
  sockitCommand,
  spawnSockit,
  writeAll,
} from "./helpers.ts";
import type { SockitRun } from "./helpers.ts";
import { PythonServer } from "./peers.ts";

type StdinKind = "terminal" | "pipe" | "file" | "/dev/null";
const KINDS: StdinKind[] = ["terminal", "pipe", "file", "/dev/null"];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The peer's view of a cell: what it received, and whether it saw our EOF before its own end. */
interface PeerView {
  received: string;
  sawEof: boolean;
}

/** Reads until EOF or `ms` without data. */
async function readFor(conn: Deno.Conn, ms: number): Promise<PeerView> {
  const chunks: string[] = [];
  const buf = new Uint8Array(1024);
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf).catch(() => null),
      new Promise<"quiet">((resolve) => (timer = setTimeout(() => resolve("quiet"), ms))),
    ]);
    clearTimeout(timer);
    if (n === "quiet") return { received: chunks.join(""), sawEof: false };
    if (n === null) return { received: chunks.join(""), sawEof: true };
    chunks.push(decoder.decode(buf.subarray(0, n)));
  }
}

/** Starts sockit for a cell; input "IN" (input first) or "A" then "B" later (peer first). */
function startSockit(
  args: string[],
  kind: StdinKind,
  first: "input" | "peer",
): [SockitRun, Promise<void>] {
  const text = first === "input" ? ["IN"] : ["A", "B"];
  if (kind === "/dev/null") return [spawnSockit(args, { stdin: "null" }), Promise.resolve()];
  if (kind === "file") return [spawnSockit(args, { stdin: text.join("") }), Promise.resolve()];
  const run = spawnSockit(args, { stdin: "piped", terminal: kind === "terminal" });
  const writer = run.stdin.getWriter();
  const writing = (async () => {
    // Input first: at once, then the end. Peer first: after the peer has ended,
    // with a pause longer than listen's 200 ms between the pieces.
    if (first === "peer") await sleep(300);
    await writer.write(encoder.encode(text[0]));
    if (text[1]) {
      await sleep(400);
      await writer.write(encoder.encode(text[1]));
    }
    await writer.close();
  })().catch(() => {});
  return [run, writing];
}

/** What the README's matrix says the peer receives and sockit does, for one cell. */
function expected(
  command: "connect" | "listen",
  first: "input" | "peer",
  kind: StdinKind,
): string {
  if (first === "input") return kind === "/dev/null" ? "" : "IN";
  // The peer ended first (it half-closed and reads on).
  if (kind === "/dev/null" || kind === "terminal") return "";
  if (kind === "file") return "AB";
  // A pipe: connect sends all that comes; listen ends once the input pauses 200 ms.
  return command === "connect" ? "AB" : "";
}

/** One cell of the matrix, against a peer made with Deno's own sockets. */
async function cell(
  command: "connect" | "listen",
  first: "input" | "peer",
  kind: StdinKind,
  halfClose: boolean,
): Promise<void> {
  const name = `${command}, ${first} ends first, stdin ${kind}, half-close ${
    halfClose ? "on" : "off"
  }`;
  const flags = halfClose ? [] : ["--no-half-close"];
  let run: SockitRun;
  let writing: Promise<void>;
  let conn: Deno.Conn;
  let listener: Deno.TcpListener | undefined;
  if (command === "connect") {
    listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    [run, writing] = startSockit(
      ["connect", `127.0.0.1:${listener.addr.port}`, ...flags],
      kind,
      first,
    );
    conn = await listener.accept();
    listener.close();
  } else {
    [run, writing] = startSockit(["listen", "127.0.0.1:0", "-v", ...flags], kind, first);
    const port = await run.listeningPort();
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  }
  let view: PeerView;
  if (first === "input") {
    // The peer waits for our input (and our EOF, if half-close is on), then answers and leaves.
    view = await readFor(conn, 600);
    await writeAll(conn, encoder.encode("OUT"));
    conn.close();
  } else {
    // The peer answers and half-closes at once, then reads what still comes.
    await writeAll(conn, encoder.encode("OUT"));
    await (conn as Deno.TcpConn).closeWrite();
    view = await readFor(conn, 1500);
    conn.close();
  }
  const r = await run.result();
  await writing;
  assertEquals(r.code, 0, `${name}: ${r.stderr}`);
  assertEquals(r.text, "OUT", `${name}: sockit's stdout`);
  assertEquals(view.received, expected(command, first, kind), `${name}: what the peer received`);
  if (first === "input" && kind !== "terminal") {
    // Our end of input reaches the peer as EOF exactly when half-close is on.
    assertEquals(view.sawEof, halfClose, `${name}: EOF seen by the peer`);
  }
}

for (const command of ["connect", "listen"] as const) {
  for (const first of ["input", "peer"] as const) {
    Deno.test(`EOF matrix: ${command}, ${first} ends first — every stdin kind, half-close on and off`, async () => {
      for (const kind of KINDS) {
        for (const halfClose of [true, false]) await cell(command, first, kind, halfClose);
      }
    });
  }
}

Deno.test("EOF matrix: a real terminal (pty) ends a connect session when the server hangs up", async () => {
  // script(1) gives sockit a pseudo-terminal as stdin: the process finds out by itself.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { sockitCommand, NET } = await import("./helpers.ts");
  const cmd = [...sockitCommand(NET), "connect", `127.0.0.1:${listener.addr.port}`].map((a) =>
    `'${a.replaceAll("'", "'\\''")}'`
  ).join(" ");
  const child = new Deno.Command("script", {
    args: ["-q", "-e", "-c", cmd, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  }).spawn();
  const conn = await listener.accept();
  listener.close();
  await writeAll(conn, encoder.encode("bye\n"));
  conn.close();
  const started = performance.now();
  const status = await child.status;
  const out = decoder.decode(await new Response(child.stdout).bytes());
  await child.stdin.close().catch(() => {});
  assertEquals(status.code, 0);
  assertMatch(out, /bye/);
  assert(performance.now() - started < 3000, "ended when the server hung up, not at end of input");
});

// ---- dialogues ------------------------------------------------------------------------

/** A line-oriented server: answers each line with "echo: LINE", and "bye" at EOF. */
function lineServer(): { port: number; done: Promise<string[]> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    const seen: string[] = [];
    let pending = "";
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      pending += decoder.decode(buf.subarray(0, n));
      let nl;
      while ((nl = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        seen.push(line);
        await writeAll(conn, encoder.encode(`echo: ${line}\n`)).catch(() => {});
      }
    }
    await writeAll(conn, encoder.encode("bye\n")).catch(() => {});
    conn.close();
    return seen;
  })();
  return { port: listener.addr.port, done };
}

Deno.test("dialogue: --send and --expect alternate in order; exit 0 when every expect matched", async () => {
  const server = lineServer();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${server.port}`,
    "--send",
    "SET a 1\\n",
    "--expect",
    "^echo: SET",
    "--send",
    "GET a\\n",
    "--expect",
    "^echo: GET a$",
    "--timeout",
    "5s",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(await server.done, ["SET a 1", "GET a"]);
  assertMatch(r.text, /^echo: SET a 1\necho: GET a\n/);
});

Deno.test("dialogue: --send-file stands in the sequence; the failing expect is named", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-" });
  const file = `${dir}/request.txt`;
  Deno.writeTextFileSync(file, "from a file\n");
  const server = lineServer();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${server.port}`,
    "--send-file",
    file,
    "--expect",
    "file",
    "--send",
    "second\\n",
    "--expect",
    "never",
  ]);
  assertEquals(await server.done, ["from a file", "second"]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /^sockit: expect #2 \/never\/: no match before the peer closed\n/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("dialogue: a send waits for the expect before it (the server speaks first)", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    listener.close();
    // One reader notes when each piece arrives; the greeting goes out after 300 ms.
    let greeted = false;
    const pieces: Array<[boolean, string]> = [];
    const reading = (async () => {
      const buf = new Uint8Array(1024);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        pieces.push([greeted, decoder.decode(buf.subarray(0, n))]);
      }
    })();
    await sleep(300);
    greeted = true;
    await writeAll(conn, encoder.encode("220 ready\n"));
    await reading;
    conn.close();
    return [
      pieces.filter(([after]) => !after).map(([, t]) => t).join(""),
      pieces.filter(([after]) => after).map(([, t]) => t).join(""),
    ];
  })();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${listener.addr.port}`,
    "--expect",
    "^220",
    "--send",
    "HELO x\\n",
  ]);
  // Nothing was sent before the greeting; the send came after it, then the half-close.
  assertEquals(await served, ["", "HELO x\n"]);
  assertEquals([r.code, r.text], [0, "220 ready\n"]);
});

// ---- one-way sessions ----------------------------------------------------------------

Deno.test("--send-only sends and is done without reading; --recv-only never touches stdin", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    // It talks, but --send-only never reads it.
    await writeAll(conn, encoder.encode("ignored")).catch(() => {});
    const got = await readAll(conn);
    conn.close();
    return decoder.decode(got);
  })();
  const sendOnly = await runSockit(["connect", `127.0.0.1:${listener.addr.port}`, "--send-only"], {
    stdin: "upload",
  });
  listener.close();
  assertEquals([sendOnly.code, sendOnly.text, await served], [0, "", "upload"]);

  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "news"]);
  const port = await server.listeningPort();
  // stdin is piped and never written: --recv-only must not wait for it, nor send anything.
  const recvOnly = spawnSockit(["connect", `127.0.0.1:${port}`, "--recv-only"], { stdin: "piped" });
  const r = await recvOnly.result();
  const s = await server.result();
  assertEquals([r.code, r.text], [0, "news"]);
  assertEquals([s.code, s.text], [0, ""]);
  assert(!exists("/nonexistent"));
});

// ---- what is sent decides, not stdin ---------------------------------------------------

/**
 * A Python server that greets, half-closes (as many protocols do), then
 * counts what it reads — to EOF, or, with `upTo`, closes after that much.
 */
function greetingServer(upTo?: number): PythonServer {
  return new PythonServer(`
conn.sendall(b"hi\\n")
conn.shutdown(socket.SHUT_WR)
n = 0
while ${upTo === undefined ? "True" : `n < ${upTo}`}:
    chunk = conn.recv(65536)
    if not chunk:
        break
    n += len(chunk)
conn.close()
print(n, flush=True)
`);
}

/** Runs sockit in a real terminal (script(1) gives it a pty); returns its status and the pty's text. */
async function inTerminal(args: string[]): Promise<{ code: number; text: string }> {
  const cmd = [...sockitCommand(["--allow-net", "--allow-read"]), ...args]
    .map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const out = await new Deno.Command(requireTool("script"), {
    args: ["-q", "-e", "-c", cmd, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    env: { ...CHILD_ENV },
  }).output();
  return { code: out.code, text: decoder.decode(out.stdout) };
}

Deno.test("--send-file from a terminal is sent whole to a server that greets and half-closes first", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-" });
  const file = `${dir}/big.bin`;
  const size = 8 * 1024 * 1024;
  Deno.writeFileSync(file, randomBytes(size));
  for (const extra of [[], ["--no-half-close"]]) {
    const server = greetingServer();
    const r = await inTerminal([
      "connect",
      `127.0.0.1:${await server.port()}`,
      "--send-file",
      file,
      ...extra,
    ]);
    assertEquals(Number(await server.done()), size, `${extra}: the server counted every byte`);
    assertEquals(r.code, 0, `${extra}: ${r.text}`);
    assertMatch(r.text, /^hi\r?\n/);
  }
  // listen's rule is the same: its client greets and half-closes first.
  const listen = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send-file", file], {
    stdin: "piped",
    terminal: true,
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: await listen.listeningPort() });
  await writeAll(conn, encoder.encode("hi\n"));
  await conn.closeWrite();
  const got = await readAll(conn);
  conn.close();
  const r = await listen.result();
  await listen.stdin.close().catch(() => {});
  assertEquals([r.code, got.length], [0, size], r.stderr);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("--send-file from a terminal that the server stops reading: exit 1, saying it was not delivered", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-" });
  const file = `${dir}/big.bin`;
  Deno.writeFileSync(file, randomBytes(8 * 1024 * 1024));
  // It reads 64 KiB, then closes with the rest unread (a reset).
  const server = greetingServer(65536);
  const r = await inTerminal(["connect", `127.0.0.1:${await server.port()}`, "--send-file", file]);
  assert(Number(await server.done()) < 8 * 1024 * 1024);
  assertEquals(r.code, 1, r.text);
  assertMatch(r.text, /sockit: write 127\.0\.0\.1:\d+: .*of input not delivered/);
  Deno.removeSync(dir, { recursive: true });
});
