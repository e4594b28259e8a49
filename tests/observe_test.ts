/**
 * Seeing the traffic: the payload is untouched by every diagnostic flag;
 * `--hex` prints exactly the expected dump (and `--hex-file` the same);
 * `--progress` refreshes a line on a terminal and stays silent in a pipe;
 * colour follows `--color` and `NO_COLOR`.
 */

import { assert, assertEquals, assertMatch, assertNotMatch } from "./assert.ts";
import {
  CHILD_ENV,
  decoder,
  freePort,
  NET,
  randomBytes,
  readAll,
  requireTool,
  runSockit,
  sha256,
  sockitCommand,
  spawnSockit,
} from "./helpers.ts";
import { PythonServer, READ_TO_EOF_THEN_REPLY } from "./peers.ts";

/** The escape character that starts every ANSI sequence. */
const ESC = String.fromCharCode(0x1b);

Deno.test("observe: stdout is byte-identical with --stats, --hex, --progress, -v, --json, --trace (16 MiB)", async () => {
  const payload = randomBytes(16 * 1024 * 1024);
  const expected = sha256(payload);
  const hexFile = Deno.makeTempFileSync({ prefix: "sockit-hex-" });
  const variants: string[][] = [
    [],
    ["--stats"],
    ["--hex-file", hexFile],
    ["--progress"],
    ["-v"],
    ["--json"],
    ["--trace"],
    ["--stats", "--progress", "-v", "--json", "--trace", "--hex-file", hexFile],
  ];
  for (const flags of variants) {
    const server = spawnSockit(["listen", "127.0.0.1:0", "-v", ...flags], {
      perms: [...NET, `--allow-write=${hexFile}`],
    });
    const port = await server.listeningPort();
    const client = await runSockit(["connect", `127.0.0.1:${port}`, ...flags], {
      stdin: payload,
      perms: [...NET, `--allow-write=${hexFile}`],
    });
    const done = await server.result();
    assertEquals([client.code, done.code], [0, 0], flags.join(" "));
    assertEquals(
      sha256(done.stdout),
      expected,
      `server stdout with ${flags.join(" ") || "no flags"}`,
    );
    assertEquals(client.stdout.length, 0);
  }
  Deno.removeSync(hexFile);
});

Deno.test("observe: --hex prints the expected dump exactly, and --hex-file writes the same", async () => {
  const run = async (flags: string[], perms = NET) => {
    const peer = new PythonServer(READ_TO_EOF_THEN_REPLY);
    const port = await peer.port();
    const r = await runSockit([
      "connect",
      `127.0.0.1:${port}`,
      "--send",
      "GET / HTTP/1.0\\r\\n\\r\\n",
      ...flags,
      // A process numbers its connections from #1, as the expected dump does.
    ], {
      perms,
      process: true,
    });
    await peer.done();
    return { ...r, port };
  };
  const expected = (port: number) =>
    `> #1 127.0.0.1:${port} 18 bytes\n` +
    "00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a  |GET / HTTP/1.0..|\n" +
    "00000010  0d 0a                                             |..|\n" +
    `< #1 127.0.0.1:${port} 26 bytes\n` +
    "00000000  67 6f 74 20 31 38 3a 20  47 45 54 20 2f 20 48 54  |got 18: GET / HT|\n" +
    "00000010  54 50 2f 31 2e 30 0d 0a  0d 0a                    |TP/1.0....|\n";
  const onStderr = await run(["--hex"]);
  assertEquals(onStderr.code, 0);
  assertEquals(onStderr.text, "got 18: GET / HTTP/1.0\r\n\r\n");
  assertEquals(onStderr.stderr, expected(onStderr.port));

  const file = Deno.makeTempFileSync({ prefix: "sockit-hex-" });
  const toFile = await run(["--hex-file", file], [...NET, `--allow-write=${file}`]);
  assertEquals([toFile.code, toFile.stderr], [0, ""]);
  assertEquals(Deno.readTextFileSync(file), expected(toFile.port));
  Deno.removeSync(file);
  // With --json the dump is `hex` events, and stderr stays JSON lines.
  const json = await run(["--hex", "--json"]);
  assertEquals(json.code, 0);
  const events = json.stderr.trim().split("\n").map((line) => JSON.parse(line));
  const hex = events.filter((e) => e.event === "hex");
  assertEquals(
    hex.map((e) => [e.conn, e.remote, e.direction, e.offset, e.length, e.data]),
    [
      [1, `127.0.0.1:${json.port}`, "sent", 0, 18, "474554202f20485454502f312e300d0a0d0a"],
      [
        1,
        `127.0.0.1:${json.port}`,
        "received",
        0,
        26,
        "676f742031383a20" + "474554202f20485454502f312e300d0a0d0a",
      ],
    ],
  );
  // A dump that cannot be written stops; the payload does not.
  const full = await run(["--hex-file", "/dev/full"], ["--allow-all"]);
  assertEquals([full.code, full.text], [0, "got 18: GET / HTTP/1.0\r\n\r\n"]);
  assertMatch(
    full.stderr,
    /^sockit: warning: write \/dev\/full: no space left on device; the hex dump stops here\n$/,
  );
  // Writing the dump needs --allow-write; without it, exit 126 naming the flag.
  const denied = await runSockit(["connect", "127.0.0.1:9", "--hex-file", file], { process: true });
  assertEquals(denied.code, 126);
  assertMatch(denied.stderr, /--allow-write/);
});

/** Runs a shell command line under a pseudo-terminal (`script`); returns what the terminal showed. */
async function underPty(commandLine: string): Promise<string> {
  const out = await new Deno.Command(requireTool("script"), {
    args: ["-q", "-c", commandLine, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  return decoder.decode(out.stdout);
}

Deno.test("observe: --progress refreshes one line on a terminal and prints nothing into a pipe", async () => {
  const server = spawnSockit(["listen", "-k", "127.0.0.1:0", "-v"]);
  const port = await server.listeningPort();
  const [cmd, ...prefix] = sockitCommand(NET);
  const sockit = [cmd, ...prefix].map((a) => `'${a}'`).join(" ");
  // A slow producer: 12 chunks, 150 ms apart, so several redraws happen.
  const producer =
    "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do head -c 200000 /dev/zero; sleep 0.15; done";
  const screen = await underPty(
    `${producer} | ${sockit} connect 127.0.0.1:${port} --progress --color never >/dev/null`,
  );
  const redraws = screen.split("\r").filter((part) =>
    /sockit: received 0 B, sent [\d.]+ [KM]i?B/.test(part)
  );
  assert(
    redraws.length >= 5,
    `only ${redraws.length} redraws: ${JSON.stringify(screen.slice(0, 400))}`,
  );
  assert(redraws.length <= 40, `at most ~10 a second: ${redraws.length}`);
  // The last thing on the line is the clearing sequence: the line is gone at the end.
  assertMatch(screen, new RegExp(`\r${ESC}\\[K[^\r]*$`));
  // Into a pipe: nothing.
  const piped = await runSockit(["connect", `127.0.0.1:${port}`, "--progress"], {
    stdin: randomBytes(2_000_000),
  });
  assertEquals([piped.code, piped.stderr], [0, ""]);
  server.kill("SIGTERM");
  await server.result();
});

Deno.test("observe: --progress with --send-file shows the share of the file and an ETA", async () => {
  // A reader that takes 64 KiB every 10 ms (~6 MiB/s): a 16 MiB upload outlasts the 4 MiB
  // that the kernel send buffer can absorb by about two seconds.
  const peer = new PythonServer(`
conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
total = 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    total += len(chunk)
    time.sleep(0.01)
print(total, flush=True)
conn.close()
`);
  const port = await peer.port();
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/upload.bin`;
  Deno.writeFileSync(file, new Uint8Array(16 * 2 ** 20));
  try {
    const [cmd, ...prefix] = sockitCommand([...NET, `--allow-read=${file}`]);
    const sockit = [cmd, ...prefix].map((a) => `'${a}'`).join(" ");
    // A 64-column terminal: every redraw must fit in one row, or \r cannot redraw it.
    const screen = await underPty(
      `stty cols 64 rows 24; ${sockit} connect 127.0.0.1:${port} --send-file '${file}' --progress --color never`,
    );
    const rows = screen.split("\r").map((row) => row.replace(new RegExp(`${ESC}\\[K`, "g"), ""))
      .filter(Boolean);
    const widest = Math.max(...rows.map((row) => [...row].length));
    assert(widest <= 63, `a redraw of ${widest} columns: ${JSON.stringify(rows)}`);
    const shares = [
      ...screen.matchAll(/sent [\d.]+ [KM]i?B of 16 MiB \((\d+)%\)( ETA [\d.]+ m?s)?, /g),
    ];
    assert(
      shares.length >= 3,
      `only ${shares.length} lines: ${JSON.stringify(screen.slice(0, 400))}`,
    );
    const percents = shares.map((m) => Number(m[1]));
    assert(percents.every((p, i) => i === 0 || p >= percents[i - 1]), `not rising: ${percents}`);
    assert(percents.some((p) => p > 0 && p < 100), `no share in between: ${percents}`);
    assert(shares.some((m) => m[2] !== undefined), "no ETA shown");
    assertEquals((await peer.done()).trim(), String(16 * 2 ** 20));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("observe: colour follows --color and NO_COLOR; the payload is never coloured", async () => {
  const escape = new RegExp(`${ESC}\\[`);
  const port = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    l.close();
    return l.addr.port;
  })();
  const always = await runSockit(["connect", `127.0.0.1:${port}`, "--color", "always"]);
  assertEquals(always.code, 1);
  assertMatch(always.stderr, escape);
  const never = await runSockit(["connect", `127.0.0.1:${port}`, "--color", "never"]);
  assertNotMatch(never.stderr, escape);
  // auto on a terminal colours, unless NO_COLOR is set.
  const [cmd, ...prefix] = sockitCommand(NET);
  const line = `${[cmd, ...prefix].map((a) => `'${a}'`).join(" ")} connect 127.0.0.1:${port}`;
  // (The tests' environment sets NO_COLOR for every child: remove it for the first.)
  assertMatch(await underPty(`env -u NO_COLOR ${line}`), escape);
  assertNotMatch(await underPty(`env NO_COLOR=1 ${line}`), escape);
  // The payload on stdout stays plain even with --color always.
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "plain payload"]);
  const p = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${p}`, "--color", "always", "-v"]);
  await server.result();
  assertEquals(client.text, "plain payload");
  assertMatch(client.stderr, escape);
});

Deno.test("observe: -v messages are one per event, greppable, and -q silences warnings too", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "hello!"]);
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "-v"]);
  const done = await server.result();
  const lines = done.stderr.trim().split("\n");
  assertMatch(lines[0], /^sockit: listening on 127\.0\.0\.1:\d+$/);
  assertMatch(lines[1], /^sockit: connection from 127\.0\.0\.1:\d+$/);
  assertMatch(lines[2], /^sockit: closed 127\.0\.0\.1:\d+ \(sent 6 B, received 0 B, \d+ ms\)$/);
  assertMatch(
    client.stderr,
    /^sockit: connected to 127\.0\.0\.1:\d+\nsockit: closed 127\.0\.0\.1:\d+ \(sent 0 B, received 6 B, \d+ ms\)\n$/,
  );
  // A warning (a server's failed connection) shows by default and not with -q.
  for (const [flags, shown] of [[[], true], [["-q"], false]] as const) {
    const fport = freePort();
    const fwd = spawnSockit(["forward", `127.0.0.1:${fport}`, "127.0.0.1:1", ...flags]);
    let conn: Deno.Conn | undefined;
    for (let i = 0; i < 100 && !conn; i++) {
      conn = await Deno.connect({ hostname: "127.0.0.1", port: fport }).catch(() => undefined);
      if (!conn) await new Promise((resolve) => setTimeout(resolve, 30));
    }
    assert(conn, "the forwarder listens");
    await readAll(conn).catch(() => {});
    conn.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    fwd.kill("SIGTERM");
    const r = await fwd.result();
    assertEquals(/warning: .*forward to 127\.0\.0\.1:1 failed/.test(r.stderr), shown, r.stderr);
  }
});

Deno.test("observe: UDP — echo and connect dump each datagram with its peer; echo's --stats per peer", async () => {
  const echo = spawnSockit(["echo", "udp://127.0.0.1:0", "--hex", "--stats", "-v"]);
  const port = Number((await echo.waitForStderr(/listening on 127\.0\.0\.1:(\d+) \(udp\)/))[1]);
  const client = await runSockit(["connect", `udp://127.0.0.1:${port}`, "--hex"], {
    stdin: "ping",
    process: true, // a process numbers its connections from #1
  });
  assertEquals([client.code, client.text], [0, "ping"]);
  const dump = "00000000  70 69 6e 67                                       |ping|\n";
  assertEquals(
    client.stderr,
    `> #1 udp://127.0.0.1:${port} 4 bytes\n${dump}< #1 udp://127.0.0.1:${port} 4 bytes\n${dump}`,
  );
  echo.kill("SIGTERM");
  const r = await echo.result();
  assertEquals(r.code, 143);
  // The echo server names the client's port: received first, then sent back.
  const from = new RegExp(`< #(\\d+) udp://127\\.0\\.0\\.1:(\\d+) 4 bytes\n`).exec(r.stderr);
  assert(from, r.stderr);
  const [, id, clientPort] = from;
  assert(
    r.stderr.includes(`< #${id} udp://127.0.0.1:${clientPort} 4 bytes\n${dump}`) &&
      r.stderr.includes(`> #${id} udp://127.0.0.1:${clientPort} 4 bytes\n${dump}`),
    r.stderr,
  );
  // Each sender is the echo's peer, with its own figures (and a total at exit).
  assertMatch(
    r.stderr,
    new RegExp(
      `stats udp://127\\.0\\.0\\.1:${clientPort}: sent 4 B \\(.*\\), received 4 B \\(.*\\) in `,
    ),
  );
  assertMatch(
    r.stderr,
    new RegExp(`closed udp://127\\.0\\.0\\.1:${clientPort} \\(sent 4 B, received 4 B, `),
  );
  assertMatch(r.stderr, /stats total, 1 connection: sent 4 B .*, received 4 B /);
});

Deno.test("observe: TCP echo dumps both ways and counts what it sends; -q keeps the --stats asked for", async () => {
  const echo = spawnSockit(["echo", "127.0.0.1:0", "--hex", "--stats", "-v"]);
  const port = await echo.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "-q", "--stats"], {
    stdin: "ping",
  });
  assertEquals([client.code, client.text], [0, "ping"]);
  assertMatch(
    client.stderr,
    /^sockit: stats 127\.0\.0\.1:\d+: sent 4 B \(.*\), received 4 B \(.*\) in [\d.]+ m?s\n$/,
  );
  echo.kill("SIGTERM");
  const r = await echo.result();
  const dump = "00000000  70 69 6e 67                                       |ping|\n";
  const id = /< #(\d+) 127\.0\.0\.1:\d+ 4 bytes\n/.exec(r.stderr)?.[1];
  assert(id, r.stderr);
  assertMatch(
    r.stderr,
    new RegExp(`< #${id} 127\\.0\\.0\\.1:\\d+ 4 bytes\\n${dump.replaceAll("|", "\\|")}`),
  );
  assertMatch(
    r.stderr,
    new RegExp(`> #${id} 127\\.0\\.0\\.1:\\d+ 4 bytes\\n${dump.replaceAll("|", "\\|")}`),
  );
  assertMatch(r.stderr, /stats 127\.0\.0\.1:\d+: sent 4 B .*, received 4 B /);
  assertMatch(r.stderr, /stats total, 1 connection: sent 4 B .*, received 4 B /);
});

Deno.test("observe: when stderr's reader goes away, the dump stops and the payload still arrives whole", async () => {
  const payload = randomBytes(4 * 2 ** 20);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: payload });
  const port = await server.listeningPort();
  const dir = Deno.makeTempDirSync();
  try {
    const [cmd, ...prefix] = sockitCommand(NET);
    const sockit = [cmd, ...prefix].map((a) => `'${a}'`).join(" ");
    // stderr into `head -c 100`, which exits after 100 bytes of dump.
    const out = await new Deno.Command("sh", {
      args: [
        "-c",
        `{ ${sockit} connect 127.0.0.1:${port} --hex </dev/null 2>&1 >'${dir}/out'; echo $? >'${dir}/code'; } | head -c 100 >/dev/null`,
      ],
      env: CHILD_ENV,
      stdout: "piped",
    }).output();
    assert(out.success);
    assertEquals(Deno.readTextFileSync(`${dir}/code`).trim(), "0");
    assertEquals(sha256(Deno.readFileSync(`${dir}/out`)), sha256(payload));
    assertEquals((await server.result()).code, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
