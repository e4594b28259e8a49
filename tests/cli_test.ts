/**
 * The CLI as a user runs it: a subprocess with the narrow permission flags,
 * real sockets on loopback. Exit codes, stdout cleanliness, help, the seed
 * scenario, listen/connect options and half-close.
 */

import { assert, assertEquals, assertMatch, assertNotMatch } from "./assert.ts";
import { SCHEMES } from "../lib/net/schemes.ts";
import {
  assertUsageError,
  CHILD_ENV,
  decoder,
  encoder,
  exists,
  freePort,
  NET,
  randomBytes,
  readAll,
  runSockit,
  sha256,
  sockitCommand,
  spawnSockit,
  tempSocketDir,
  unixPerms,
  writeAll,
} from "./helpers.ts";
import { PythonServer, READ_TO_EOF_THEN_REPLY, SEND_THEN_RESET } from "./peers.ts";
import denoJson from "../deno.json" with { type: "json" };

// ---- help and version ---------------------------------------------------------

Deno.test("cli: --version prints the version from deno.json", async () => {
  const r = await runSockit(["--version"]);
  assertEquals([r.code, r.text, r.stderr], [0, `sockit ${denoJson.version}\n`, ""]);
});

Deno.test("cli: help goes to stdout with exit 0, with examples", async () => {
  for (
    const args of [["--help"], ["-h"], ["help"], ["help", "listen"], ["listen", "--help"], [
      "connect",
      "-h",
    ], ["help", "connect"]]
  ) {
    const r = await runSockit(args);
    assertEquals(r.code, 0, args.join(" "));
    assertEquals(r.stderr, "", args.join(" "));
    assertMatch(r.text, /Usage: sockit/);
    assertMatch(r.text, /Examples/);
  }
  // --help is answered before anything else on the line is checked.
  for (
    const args of [["listen", "x:99999", "--help"], ["connect", "--bogus", "-h"], ["scan", "-h"]]
  ) {
    const r = await runSockit(args);
    assertEquals([r.code, r.stderr], [0, ""], args.join(" "));
    assertMatch(r.text, new RegExp(`^Usage: sockit ${args[0]} `));
  }
  const main = await runSockit(["--help"]);
  assertMatch(main.text, /listen/);
  assertMatch(main.text, /connect/);
  // Every scheme of the scheme table is in the top-level help.
  for (const scheme of Object.keys(SCHEMES)) {
    assertMatch(main.text, new RegExp(`^  ${scheme}:`, "m"), `scheme ${scheme} in --help`);
  }
});

Deno.test("cli: usage errors are never coloured, even with --color always; -vv is -v twice", async () => {
  const r = await runSockit(["connect", "--color", "always", "--bogus"]);
  assertUsageError(r, /unknown option --bogus/);
  assert(!r.stderr.includes("\x1b"), `no escape codes in ${JSON.stringify(r.stderr)}`);
  const vv = await runSockit(["connect", "127.0.0.1:1", "-vv"]);
  assertEquals(vv.code, 1, vv.stderr);
  assertMatch(vv.stderr, /^sockit: connect 127\.0\.0\.1:1: connection refused\n/m);
  assert(!/,\s*$/m.test(vv.stderr), `no stray comma in ${vv.stderr}`);
});

// ---- usage errors: exit 2, at most two lines, no stack trace -----------------------

Deno.test("cli: usage errors exit 2 with a one-line message and a hint", async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /missing command/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["--frob"], /unknown option --frob/],
    [["listen"], /missing endpoint/],
    [["listen", "8888", "9999"], /unexpected argument "9999"/],
    [["listen", "x:99999"], /cannot parse endpoint "x:99999": port out of range/],
    [["connect", "[::1:80"], /unbalanced brackets/],
    [["connect", "ftp://h:1"], /unknown scheme "ftp"/],
    [["connect", "unix:"], /empty unix socket path/],
    [["connect", "127.0.0.1:1", "--bogus"], /unknown option --bogus/],
    [["connect", "127.0.0.1:1", "--timeout", "soon"], /cannot parse duration "soon"/],
    [["connect", "127.0.0.1:1", "--timeout"], /option --timeout needs a value/],
    [["connect", "127.0.0.1:1", "--retry", "x"], /--retry needs a whole number/],
    [["connect", "127.0.0.1:1", "--expect", "("], /invalid regular expression/],
    [["connect", "127.0.0.1:1", "-4", "-6"], /-4 and -6 contradict/],
    [["connect", "-4", "[::1]:1"], /an IPv6 address, but -4 was given/],
    [["connect", "127.0.0.1:1", "--send-only", "--recv-only"], /contradict each other/],
    [["connect", "127.0.0.1:1", "--send-only", "--expect", "x"], /--send-only and --expect/],
    [["connect", "127.0.0.1:1", "--recv-only", "--send", "x"], /--recv-only and --send/],
    [["connect", "127.0.0.1:1", "--send", "bad\\q"], /unknown escape "\\q"/],

    [["listen", "udp://127.0.0.1:0", "--tls"], /TLS over UDP \(DTLS\) is not supported/],
    [
      ["connect", "127.0.0.1:1", "--cacert", "x.pem"],
      /option --cacert is for tls:\/\/ or wss:\/\/ endpoints, or --tls/,
    ],
    [["connect", "127.0.0.1:1", "--color", "sometimes"], /--color must be auto, always or never/],
    [["help", "nope"], /unknown command "nope"/],
    [["connect", "127.0.0.1:0"], /port 0 only means "any free port" when listening/],
    // A flag that does nothing for a command is refused, not ignored.
    [["wait", "127.0.0.1:1", "--hex"], /unknown option --hex/],
    [["scan", "127.0.0.1", "22", "--stats"], /unknown option --stats/],
    [["wait", "127.0.0.1:1", "--progress"], /unknown option --progress/],
    [["forward", "1", "127.0.0.1:2", "--tls"], /unknown option --tls/],
    [["connect", "sctp:/x"], /unknown scheme "sctp"/],
    // Near misses get a suggestion, nc habits their sockit spelling.
    [["lsiten", "0"], /unknown command "lsiten": did you mean listen\?/],
    [
      ["connect", "127.0.0.1:1", "--timout", "2"],
      /unknown option --timout: did you mean --timeout\?/,
    ],
    [["connect", "127.0.0.1", "80"], /write the endpoint as 127\.0\.0\.1:80/],
    [["listen", "-l", "-p", "8080"], /unknown option -l: to listen, say `sockit listen PORT`/],
    [["connect", "-z", "127.0.0.1", "80"], /sockit scan HOST PORTS/],
    [["connect", "-u", "127.0.0.1:53"], /udp:\/\/host:port/],
    [["connect", "-w", "3", "127.0.0.1:1"], /--timeout SECS/],
    [["connect", "-q", "1", "127.0.0.1:1"], /-q is --quiet here/],
    [["listen", "--keep-open=yes", "0"], /^sockit: option --keep-open does not take a value\n/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runSockit(args);
    assertUsageError(r, pattern);
    assertEquals(r.text, "", `stdout must stay empty for ${args.join(" ")}`);
  }
});

// ---- events -----------------------------------------------------------------

Deno.test("cli: --json prints the listening event with the real bound address", async () => {
  const server = spawnSockit(["listen", "0", "--json", "--send", "x"]);
  const m = await server.waitForStderr(/^(\{"event":"listening".*\})$/m);
  const event = JSON.parse(m[1]);
  assertEquals(event.event, "listening");
  assertMatch(event.address, /^127\.0\.0\.1:\d+$/);
  assertEquals(event.transport, "tcp");
  assert(!Number.isNaN(Date.parse(event.time)), "timestamp");
  const port = Number(event.address.split(":")[1]);
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "--json"]);
  const done = await server.result();
  assertEquals([client.code, client.text, done.code], [0, "x", 0]);
  for (const line of [...done.stderr.trim().split("\n"), ...client.stderr.trim().split("\n")]) {
    const obj = JSON.parse(line); // every line is JSON
    assert(typeof obj.event === "string" && typeof obj.time === "string", line);
  }
  const events = done.stderr.trim().split("\n").map((l) => JSON.parse(l).event);
  assertEquals(events, ["listening", "accepted", "closed"]);
  const clientEvents = client.stderr.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(clientEvents.map((e) => e.event), ["connected", "closed"]);
  assertEquals([clientEvents[1].received, clientEvents[1].sent], [1, 0]);
});

// ---- stdout carries payload only --------------------------------------------------

Deno.test("cli: stdout is byte-identical with -v, --json and --trace", async () => {
  const payload = randomBytes(2 * 1024 * 1024);
  for (const flag of [[], ["-v"], ["--json"], ["--trace"]]) {
    const server = spawnSockit(["listen", "127.0.0.1:0", "-v", ...flag]);
    const port = await server.listeningPort();
    const client = await runSockit(["connect", `127.0.0.1:${port}`, ...flag], { stdin: payload });
    const done = await server.result();
    assertEquals(client.code, 0, client.stderr);
    assertEquals(done.code, 0, done.stderr);
    assertEquals(sha256(done.stdout), sha256(payload), `flags ${flag}`);
    assertEquals(client.stdout.length, 0);
  }
});

Deno.test("cli: both directions at once, through stdin and stdout of both ends", async () => {
  const up = randomBytes(3 * 1024 * 1024 + 17);
  const down = randomBytes(5 * 1024 * 1024 + 3);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: down });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], { stdin: up });
  const done = await server.result();
  assertEquals([client.code, done.code], [0, 0]);
  assertEquals(sha256(done.stdout), sha256(up));
  assertEquals(sha256(client.stdout), sha256(down));
});

Deno.test("cli: 64 MiB through connect → listen arrives intact", async () => {
  const payload = randomBytes(64 * 1024 * 1024);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"]);
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], { stdin: payload });
  const done = await server.result();
  assertEquals([client.code, done.code], [0, 0]);
  assertEquals(done.stdout.length, payload.length);
  assertEquals(sha256(done.stdout), sha256(payload));
});

// ---- half-close ----------------------------------------------------------------

Deno.test("cli: stdin EOF half-closes; a server that reads to EOF then replies is heard", async () => {
  const peer = new PythonServer(READ_TO_EOF_THEN_REPLY);
  const port = await peer.port();
  const r = await runSockit(["connect", `127.0.0.1:${port}`], { stdin: "request" });
  await peer.done();
  assertEquals([r.code, r.text, r.stderr], [0, "got 7: REQUEST", ""]);
});

Deno.test("cli: --no-half-close keeps the write side open after stdin EOF", async () => {
  // The server replies "eof" if it sees our EOF within 500 ms, else "open", then closes.
  const eofWithin500ms = `
conn.settimeout(0.5)
try:
    data = conn.recv(100)
    data2 = conn.recv(100) if data else b""
    conn.sendall(b"eof" if data2 == b"" else b"more")
except socket.timeout:
    conn.sendall(b"open")
conn.close()
`;
  for (const [flags, reply] of [[["--no-half-close"], "open"], [[], "eof"]] as const) {
    const peer = new PythonServer(eofWithin500ms);
    const port = await peer.port();
    const r = await runSockit(["connect", `127.0.0.1:${port}`, ...flags], { stdin: "x" });
    await peer.done();
    assertEquals([r.code, r.text], [0, reply], flags.join(" "));
  }
});

Deno.test("cli: a listener whose stdin is empty half-closes at once, the client still sends everything", async () => {
  const payload = randomBytes(1024 * 1024);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: "null" });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], { stdin: payload });
  const done = await server.result();
  assertEquals([client.code, done.code, client.text], [0, 0, ""]);
  assertEquals(sha256(done.stdout), sha256(payload));
});

Deno.test("cli: listen --send writes, half-closes, still prints what the client sends, exits 0 when it closes", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "--send", "banner\\r\\n", "-v"]);
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // The banner then EOF: the server half-closed.
  assertEquals(decoder.decode(await readAll(conn)), "banner\r\n");
  await writeAll(conn, encoder.encode("client data after the banner"));
  conn.close();
  const done = await server.result();
  assertEquals([done.code, done.text], [0, "client data after the banner"]);
});

Deno.test("cli: --send-file sends the file, then half-closes", async () => {
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/payload.bin`;
  const payload = randomBytes(3 * 1024 * 1024 + 5);
  Deno.writeFileSync(file, payload);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"]);
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "--send-file", file], {
    perms: [...NET, `--allow-read=${dir}`],
  });
  const done = await server.result();
  assertEquals([client.code, done.code], [0, 0]);
  assertEquals(sha256(done.stdout), sha256(payload));
  const missing = await runSockit(["connect", `127.0.0.1:${port}`, "--send-file", `${dir}/nope`], {
    perms: [...NET, `--allow-read=${dir}`],
  });
  assertEquals(missing.code, 1);
  assertMatch(missing.stderr, /open .*nope: no such file or directory/);
  Deno.removeSync(dir, { recursive: true });
});

// ---- --expect, --timeout, --idle-timeout, --retry ----------------------------------------

Deno.test("cli: --expect matches across TCP segments and exits 0 at once", async () => {
  const peer = new PythonServer(`
conn.sendall(b"+PO")
time.sleep(0.15)
conn.sendall(b"NG\\r\\n")
time.sleep(5)
conn.close()
`);
  const port = await peer.port();
  const started = performance.now();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--send",
    "PING\\r\\n",
    "--expect",
    "^\\+PONG",
  ]);
  const elapsed = performance.now() - started;
  assertEquals([r.code, r.text, r.stderr], [0, "+PONG\r\n", ""]);
  assert(elapsed < 4000, `exited at the match, not when the server closed (${elapsed} ms)`);
  peer.child.kill();
  await peer.child.status;
});

Deno.test("cli: --expect without a match at EOF exits 1; at --timeout exits 124", async () => {
  const peer = new PythonServer(`conn.sendall(b"-ERR nope\\r\\n")\nconn.close()`);
  const r = await runSockit(["connect", `127.0.0.1:${await peer.port()}`, "--expect", "PONG"]);
  await peer.done();
  assertEquals([r.code, r.text], [1, "-ERR nope\r\n"]);
  assertMatch(r.stderr, /expect 127\.0\.0\.1:\d+: no match for \/PONG\/ before the peer closed/);

  const silent = new PythonServer(`time.sleep(3)\nconn.close()`);
  const started = performance.now();
  const t = await runSockit([
    "connect",
    `127.0.0.1:${await silent.port()}`,
    "--expect",
    "PONG",
    "--timeout",
    "300ms",
  ]);
  assertEquals(t.code, 124);
  assertMatch(t.stderr, /connect 127\.0\.0\.1:\d+: timed out after 300 ms/);
  assert(performance.now() - started < 2500, "the timeout cut the session short");
  silent.child.kill();
  await silent.child.status;

  // After data has flowed, it is the session that ran out of time, and it says what moved.
  const talker = new PythonServer(`conn.sendall(b"hello")\ntime.sleep(3)\nconn.close()`);
  const s = await runSockit([
    "connect",
    `127.0.0.1:${await talker.port()}`,
    "--expect",
    "PONG",
    "--timeout",
    "300ms",
  ]);
  assertEquals([s.code, s.text], [124, "hello"]);
  assertMatch(
    s.stderr,
    /^sockit: session 127\.0\.0\.1:\d+: timed out after 300 ms \(--timeout counts the whole session; received 5 B, sent 0 B\)\n$/,
  );
  talker.child.kill();
  await talker.child.status;
});

Deno.test("cli: --idle-timeout ends a silent session with 124", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--idle-timeout", "300ms"], {
    stdin: "piped",
  });
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const done = await server.result();
  assertEquals(done.code, 124);
  assertMatch(done.stderr, /no data for 300 ms/);
  conn.close();
  await server.stdin.close().catch(() => {});
});

Deno.test("cli: --retry waits for a server that comes up late", async () => {
  const port = freePort();
  const client = spawnSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--retry",
    "40",
    "--retry-delay",
    "100ms",
    "-v",
  ]);
  await client.waitForStderr(/connection refused; trying again/);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conn = await listener.accept();
  await writeAll(conn, encoder.encode("late hello"));
  conn.close();
  listener.close();
  const r = await client.result();
  assertEquals([r.code, r.text], [0, "late hello"]);
});

Deno.test("cli: --retry N makes N more attempts, then exits 1", async () => {
  const port = freePort();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--retry",
    "2",
    "--retry-delay",
    "50ms",
    "--trace",
  ]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr.match(/connect\(127\.0\.0\.1:\d+\) = -1 ECONNREFUSED/g)?.length, 3);
  assertMatch(r.stderr, /sockit: connect 127\.0\.0\.1:\d+: connection refused\n/);
});

Deno.test("cli: --timeout bounds connecting with retries (124)", async () => {
  const port = freePort();
  const started = performance.now();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--retry",
    "100",
    "--retry-delay",
    "100ms",
    "--timeout",
    "400ms",
  ]);
  assertEquals(r.code, 124);
  assertMatch(r.stderr, /timed out after 400 ms/);
  assert(performance.now() - started < 3000);
});

// ---- exit codes of failures --------------------------------------------------------

Deno.test("cli: connection refused is exit 1 with operation, address and reason", async () => {
  const port = freePort();
  const r = await runSockit(["connect", `127.0.0.1:${port}`]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr, `sockit: connect 127.0.0.1:${port}: connection refused\n`);
});

Deno.test("cli: a name that does not resolve is exit 1", async () => {
  const r = await runSockit(["connect", "no-such-host.invalid:80"]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /^sockit: connect no-such-host\.invalid:80: name not found\n/);
});

Deno.test("cli: address in use is exit 1", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const r = await runSockit(["listen", `127.0.0.1:${taken.addr.port}`]);
  taken.close();
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /^sockit: listen 127\.0\.0\.1:\d+: address already in use\n/);
});

Deno.test("cli: a peer reset is exit 1 and what arrived before it is on stdout", async () => {
  const peer = new PythonServer(SEND_THEN_RESET);
  const r = await runSockit(["connect", `127.0.0.1:${await peer.port()}`], { stdin: "piped" });
  await peer.done();
  assertEquals(r.code, 1);
  assertEquals(r.text, "partial reply");
  assertMatch(r.stderr, /sockit: read 127\.0\.0\.1:\d+: connection reset by peer/);
});

Deno.test("cli: a denied permission is exit 126 and names the flag, without prompting", async () => {
  const port = freePort();
  const connect = await runSockit(["connect", `127.0.0.1:${port}`], { perms: [], process: true });
  assertEquals(connect.code, 126);
  assertMatch(connect.stderr, /permission denied.*\n.*--allow-net/);
  const listen = await runSockit(["listen", "127.0.0.1:0"], { perms: [], process: true });
  assertEquals(listen.code, 126);
  assertMatch(listen.stderr, /--allow-net/);
  const dir = tempSocketDir();
  const unix = await runSockit(["listen", `unix:${dir}/s.sock`], { perms: NET, process: true });
  assertEquals(unix.code, 126);
  assertMatch(unix.stderr, /--allow-(read|write)/);
  const file = await runSockit(["connect", `127.0.0.1:${port}`, "--send-file", "/etc/hostname"], {
    process: true,
  });
  assertEquals(file.code, 126);
  assertMatch(file.stderr, /--allow-read/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("cli: SIGINT and SIGTERM stop a waiting listener with 130 and 143", async () => {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    const server = spawnSockit(["listen", "127.0.0.1:0", "-v"]);
    await server.listeningPort();
    server.kill(signal);
    const r = await server.result();
    assertEquals(r.code, code, signal);
    assertNotMatch(r.stderr, /error|Uncaught/);
  }
});

Deno.test("cli: SIGTERM during a session flushes what was received, then exits 143", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const payload = randomBytes(512 * 1024);
  await writeAll(conn, payload);
  // Wait until the server has seen it all (it cannot know the size; poll its -v stats later).
  await new Promise((resolve) => setTimeout(resolve, 300));
  server.kill("SIGTERM");
  const r = await server.result();
  assertEquals(r.code, 143);
  assertEquals(sha256(r.stdout), sha256(payload));
  conn.close();
  await server.stdin.close().catch(() => {});
});

// ---- IPv6, families, Unix sockets ----------------------------------------------------

Deno.test("cli: IPv6 literals and -6", async () => {
  const server = spawnSockit(["listen", "-6", "0", "-v", "--send", "over v6"]);
  const bound = await server.waitForStderr(/listening on \[::1\]:(\d+)/);
  const client = await runSockit(["connect", `[::1]:${bound[1]}`]);
  const done = await server.result();
  assertEquals([client.code, client.text, done.code], [0, "over v6", 0]);
});

Deno.test("cli: -4 and -6 restrict name resolution", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "v4"]);
  const port = await server.listeningPort();
  const r = await runSockit(["connect", "-4", `localhost:${port}`, "--trace"]);
  assertEquals([r.code, r.text], [0, "v4"]);
  assertMatch(r.stderr, /getaddrinfo\("localhost"\) = 127\.0\.0\.1\n/);
  await server.result();
});

Deno.test("cli: Unix sockets with the narrow permissions, file removed at exit", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/s.sock`;
  const server = spawnSockit(["listen", `unix:${path}`, "-v", "--send", "over unix"], {
    perms: unixPerms(path),
  });
  await server.waitForStderr(/listening on unix:/);
  const client = await runSockit(["connect", `unix:${path}`], {
    perms: unixPerms(path),
    stdin: "hi",
  });
  const done = await server.result();
  assertEquals([client.code, client.text], [0, "over unix"]);
  assertEquals([done.code, done.text], [0, "hi"]);
  assertMatch(done.stderr, /connection from unix:\(unnamed\)/);
  assert(!exists(path), "the socket file is removed");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("cli: a stale Unix socket file is replaced; a live one or a regular file is refused", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/stale.sock`;
  // A socket file whose process is gone: bound, never listened on, left behind.
  const stale = new Deno.Command("python3", {
    args: ["-c", `import socket; s = socket.socket(socket.AF_UNIX); s.bind("${path}")`],
  });
  assert((await stale.output()).success);
  assert(Deno.lstatSync(path).isSocket);
  const server = spawnSockit(["listen", `unix:${path}`, "-v", "--send", "ok"], {
    perms: unixPerms(path),
  });
  await server.waitForStderr(/listening on unix:/);
  assertMatch(server.stderr, /removed stale socket file/);
  const client = await runSockit(["connect", `unix:${path}`], { perms: unixPerms(path) });
  assertEquals([client.code, client.text], [0, "ok"]);
  assertEquals((await server.result()).code, 0);

  // A path a live process listens on is refused (and left alone).
  const live = new Deno.Command("python3", {
    args: [
      "-c",
      `import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind("${path}"); s.listen(8)
print("up", flush=True)
sys.stdin.read()`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = live.stdout.getReader();
  await reader.read();
  const second = await runSockit(["listen", `unix:${path}`], { perms: unixPerms(path) });
  assertEquals(second.code, 1);
  assertMatch(second.stderr, /address already in use: another process is listening on it/);
  assert(Deno.lstatSync(path).isSocket, "the live socket file is kept");
  await live.stdin.close();
  reader.releaseLock();
  await live.stdout.cancel();
  await live.status;

  // A regular file is never removed.
  const file = `${dir}/file`;
  Deno.writeTextFileSync(file, "keep me");
  const refused = await runSockit(["listen", `unix:${file}`], { perms: unixPerms(file) });
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /the path exists and is not a socket/);
  assertEquals(Deno.readTextFileSync(file), "keep me");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("cli: narrow --allow-net=127.0.0.1 is enough for TCP on loopback", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "narrow"], {
    perms: ["--allow-net=127.0.0.1"],
  });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], {
    perms: [`--allow-net=127.0.0.1:${port}`],
  });
  assertEquals([client.code, client.text], [0, "narrow"]);
  assertEquals((await server.result()).code, 0);
});

// ---- how sessions end (README: "Sessions, half-close, and how they end"), and what the review found ---------------------------

Deno.test("cli: the client closing ends a listen session even while stdin stays open", async () => {
  // stdin is a pipe that stays open and idle: the session must not wait for it.
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = await server.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, encoder.encode("hi\n"));
  conn.close();
  const started = performance.now();
  const r = await server.result();
  assertEquals([r.code, r.text], [0, "hi\n"]);
  assert(performance.now() - started < 3000, "ended soon after the client left");
});

Deno.test("cli: a server that half-closes still gets input that comes later (connect, stdin a pipe)", async () => {
  // A greeter: sends its piece, shuts down its write side, reads to EOF, prints what came.
  const peer = new PythonServer(`
conn.sendall(b"greeting\\n")
conn.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
print(repr(data), flush=True)
conn.close()
`);
  const port = await peer.port();
  const client = spawnSockit(["connect", `127.0.0.1:${port}`], { stdin: "piped" });
  const writer = client.stdin.getWriter();
  await writer.write(encoder.encode("a\n"));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await writer.write(encoder.encode("b\n"));
  await writer.close();
  const r = await client.result();
  assertEquals([r.code, r.text], [0, "greeting\n"]);
  assertEquals((await peer.done()).trim(), "b'a\\nb\\n'");
});

Deno.test("cli: a server that closes for good: input that cannot be delivered is an error saying how much", async () => {
  // The server closes at once; the client's later input meets a reset.
  const peer = new PythonServer(`conn.sendall(b"bye\\n")\nconn.close()`);
  const port = await peer.port();
  const client = spawnSockit(["connect", `127.0.0.1:${port}`], { stdin: "piped" });
  const writer = client.stdin.getWriter();
  await peer.done();
  for (let i = 0; i < 5; i++) {
    await writer.write(encoder.encode("more input\n")).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await writer.close().catch(() => {});
  const r = await client.result();
  assertEquals([r.code, r.text], [1, "bye\n"]);
  assertMatch(r.stderr, /write 127\.0\.0\.1:\d+: .*; 11 B of input not delivered\n/);
});

Deno.test("cli: after the peer closes, input that keeps flowing is still sent whole", async () => {
  // The listener half-closes at once (stdin /dev/null); the client sends 8 MiB after that.
  const payload = randomBytes(8 * 1024 * 1024);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], { stdin: "null" });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`], { stdin: payload });
  const done = await server.result();
  assertEquals([client.code, done.code], [0, 0]);
  assertEquals(sha256(done.stdout), sha256(payload));
});

Deno.test("cli: a reader that leaves stdout early is not an error; a full disk is", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v"], {
    stdin: randomBytes(4 * 1024 * 1024),
  });
  const port = await server.listeningPort();
  const [cmd, ...prefix] = sockitCommand(NET);
  const head = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `"$@" </dev/null | head -c 10 >/dev/null; echo "\${PIPESTATUS:-}"`,
      "sh",
      cmd,
      ...prefix,
      "connect",
      `127.0.0.1:${port}`,
    ],
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  await server.result();
  assertEquals(decoder.decode(head.stderr), "", "no message when stdout's reader leaves");
  const full = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "data"]);
  const port2 = await full.listeningPort();
  const out = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `"$@" </dev/null >/dev/full`,
      "sh",
      cmd,
      ...prefix,
      "connect",
      `127.0.0.1:${port2}`,
    ],
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  await full.result();
  assertEquals(out.code, 1);
  assertEquals(decoder.decode(out.stderr), "sockit: write stdout: no space left on device\n");
});

Deno.test("cli: 'deno task start -- args' style argv, and --timeout 0 means no limit", async () => {
  assertEquals((await runSockit(["--", "--version"])).text, `sockit ${denoJson.version}\n`);
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "late"]);
  const port = await server.listeningPort();
  const r = await runSockit([
    "connect",
    `127.0.0.1:${port}`,
    "--timeout",
    "0",
    "--idle-timeout",
    "0",
  ]);
  assertEquals([r.code, r.text], [0, "late"]);
  await server.result();
});

Deno.test("cli: narrow --allow-net=host:port works with a host name", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", "narrow name"]);
  const port = await server.listeningPort();
  const r = await runSockit(["connect", `localhost:${port}`], {
    perms: [`--allow-net=localhost:${port}`],
  });
  assertEquals([r.code, r.text, r.stderr], [0, "narrow name", ""]);
  await server.result();
});

Deno.test("cli: -v prints a failed connect once", async () => {
  const r = await runSockit(["connect", `127.0.0.1:${freePort()}`, "-v"]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr.match(/connection refused/g)?.length, 1, r.stderr);
});

Deno.test("cli: listen -6 with a host name binds IPv6 or fails, never IPv4", async () => {
  const server = spawnSockit(["listen", "-6", "localhost:0", "-v"]);
  const m = await server.waitForStderr(/listening on (\S+)|name not found/);
  server.kill("SIGTERM");
  await server.result();
  // localhost has an IPv6 address here (bound) or not (refused): never 127.0.0.1.
  assert(m[1] === undefined || /^\[[0-9a-f:]+\]:\d+$/.test(m[1]), m[0]);
});

Deno.test("cli: a Unix socket path may contain spaces", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/with space.sock`;
  const server = spawnSockit(["listen", `unix:${path}`, "-v", "--send", "spaced"], {
    perms: unixPerms(path),
  });
  await server.waitForStderr(/listening on unix:/);
  const client = await runSockit(["connect", `unix:${path}`], { perms: unixPerms(path) });
  assertEquals([client.code, client.text], [0, "spaced"]);
  assertEquals((await server.result()).code, 0);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("cli: the help answered before loading (help_text.ts) is what the declarations say now", async () => {
  const { HELP, VERSION_LINE } = await import("../lib/cli/help_text.ts");
  const { COMMANDS, mainHelp, VERSION } = await import("../lib/cli/main.ts");
  const { helpText } = await import("../lib/cli/command.ts");
  const stale = "lib/cli/help_text.ts is stale: run `deno task gen-help`";
  assertEquals(VERSION_LINE, `sockit ${VERSION}\n`, stale);
  assertEquals(HELP[""], mainHelp(), stale);
  assertEquals(
    Object.keys(HELP).filter((k) => k).sort(),
    Object.keys(COMMANDS).sort(),
    stale,
  );
  for (const command of Object.values(COMMANDS)) {
    assertEquals(HELP[command.name], helpText(command), `${stale} (${command.name})`);
  }
  // And the process answers from it, the same as in-process.
  for (const argv of [["--version"], ["--help"], ["help", "scan"], ["listen", "-vh"]]) {
    const r = await runSockit(argv, { process: true });
    assertEquals([r.code, r.stderr], [0, ""], argv.join(" "));
    assertEquals(
      r.text,
      argv[0] === "--version"
        ? VERSION_LINE
        : HELP[argv.at(-1) === "--help" ? "" : argv[0] === "help" ? argv[1] : argv[0]],
    );
  }
});

// ---- option groups, flag declarations, fair runtime ---------------------------

Deno.test("option groups: a group's flag where no endpoint's row takes the group is one line naming the rows that do", async () => {
  const dir = tempSocketDir();
  const cases: Array<[string[], RegExp]> = [
    // Options a socket would have ignored are refused (TCP options on UDP, SO_REUSEPORT on Unix).
    [
      ["connect", "udp://127.0.0.1:9", "--nodelay"],
      /^sockit: option --nodelay is for tcp:\/\/, tls:\/\/, ws:\/\/ or wss:\/\/ endpoints\n/,
    ],
    [["connect", "udp://127.0.0.1:9", "--ttl", "5"], /option --ttl is for tcp:\/\/, tls:\/\//],
    [
      ["listen", `unix:${dir}/r.sock`, "--reuseport"],
      /option --reuseport is for tcp:\/\/, tls:\/\/, ws:\/\/, wss:\/\/ or udp:\/\/ endpoints/,
    ],
    // A flag two groups take: the rows of either; --tls would make one.
    [
      ["listen", "127.0.0.1:0", "--handshake-timeout", "1s"],
      /option --handshake-timeout is for tls:\/\/, ws:\/\/ or wss:\/\/ endpoints, or --tls/,
    ],
    // forward: --source is the target's, --alpn either side's (forward has no --tls).
    [
      ["forward", "0", `unix:${dir}/t.sock`, "--source", "127.0.0.1"],
      /option --source is for tcp:\/\/, tls:\/\/, ws:\/\/, wss:\/\/, udp:\/\/ or unixgram: endpoints/,
    ],
    [
      ["forward", "0", "127.0.0.1:1", "--alpn", "h2"],
      /option --alpn is for tls:\/\/ or wss:\/\/ endpoints\n/,
    ],
    // wait: every target a proxy would be asked to reach must be one it can reach.
    [
      ["wait", "127.0.0.1:1", `unix:${dir}/w.sock`, "--proxy", "socks5://127.0.0.1:1"],
      /option --proxy is for tcp:\/\/, tls:\/\/, ws:\/\/ or wss:\/\/ endpoints/,
    ],
    [["wait", `file:${dir}/f`, "--proxy", "socks5://127.0.0.1:1"], /option --proxy is for/],
    // A listener sets what it sends to a group through a membership.
    [
      ["listen", "udp://127.0.0.1:0", "--multicast-ttl", "2"],
      /options --multicast-ttl and --multicast-loop on a server's socket come with --multicast-join/,
    ],
  ];
  try {
    for (const [args, pattern] of cases) assertUsageError(await runSockit(args), pattern);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("option groups: the options reach the endpoint whose row takes the group, parsed by the group", async () => {
  const { parseCommand } = await import("../lib/cli/command.ts");
  const { COMMANDS } = await import("../lib/cli/main.ts");
  // A WebSocket server's upgrade has a time limit too: --handshake-timeout is its server limit.
  const ws = parseCommand(COMMANDS.listen, ["ws://127.0.0.1:0/", "--handshake-timeout", "2s"]) as {
    handshakeTimeout?: number;
    groups: Record<string, unknown>;
  };
  assertEquals(ws.handshakeTimeout, 2000);
  assertEquals((ws.groups.websocket as { mode: string }).mode, "text");
  // --tls makes the row one that takes the TLS group; the echo's WebSocket echoes messages.
  const echo = parseCommand(COMMANDS.echo, ["ws://127.0.0.1:0/", "--tls"]) as {
    endpoint: { scheme: string };
    groups: Record<string, unknown>;
  };
  assertEquals(echo.endpoint.scheme, "wss");
  assertEquals(Object.keys(echo.groups).sort(), ["tls-server", "websocket"]);
  assertEquals((echo.groups.websocket as { mode: string }).mode, "echo");
  // forward: the listener joins the group, the target sends to it; --cert is the TLS listener's.
  const udp = parseCommand(COMMANDS.forward, [
    "udp://0.0.0.0:0",
    "udp://239.1.2.3:5000",
    "--multicast-join",
    "239.1.2.3",
    "--multicast-ttl",
    "4",
    "--broadcast",
  ]) as { listenGroups: Record<string, unknown>; targetGroups: Record<string, unknown> };
  assertEquals(udp.listenGroups, { multicast: { join: [{ group: "239.1.2.3" }] } });
  assertEquals(udp.targetGroups, { multicast: { ttl: 4 }, broadcast: true });
  // A forwarder's TTL is its target's: no membership needed on its listener.
  const ttl = parseCommand(COMMANDS.forward, [
    "udp://0.0.0.0:0",
    "udp://239.1.2.3:5000",
    "--multicast-ttl",
    "4",
  ]) as {
    listenGroups: Record<string, unknown>;
  };
  assertEquals(ttl.listenGroups, {});
  const tls = parseCommand(COMMANDS.forward, [
    "tls://127.0.0.1:0",
    "tls://127.0.0.1:1",
    "--cert",
    "c.pem",
    "--key",
    "k.pem",
  ]) as {
    listenGroups: Record<string, { cert?: string }>;
    targetGroups: Record<string, { cert?: string }>;
  };
  assertEquals([tls.listenGroups["tls-server"].cert, tls.targetGroups["tls-client"].cert], [
    "c.pem",
    undefined,
  ]);
});

Deno.test("flags: values arrive parsed as declared, defaults fill the rest, relations are checked once", async () => {
  const { FLAGS, parseFlags } = await import("../lib/cli/flags.ts");
  const { values, given } = parseFlags(
    ["--timeout", "2s", "--keepalive=30,5,3", "--max-conns", "3", "--exec", "cat"],
    ["timeout", "keepalive", "max-conns", "exec", "sh-exec", "grace"],
  );
  assertEquals([values.timeout, values["max-conns"], values.keepalive], [2000, 3, {
    idle: 30,
    interval: 5,
    count: 3,
  }]);
  // --grace has its default without being given.
  assertEquals([values.grace, given.has("grace")], [1000, false]);
  const usage = (argv: string[], uses: Parameters<typeof parseFlags>[1]) => {
    try {
      parseFlags(argv, uses);
    } catch (err) {
      return (err as Error).message;
    }
    return "";
  };
  assertEquals(
    usage(["--grace", "1s"], ["exec", "sh-exec", "grace"]),
    "option --grace is for --exec and --sh-exec",
  );
  assertEquals(usage(["--key", "k"], ["cert", "key"]), "options --cert and --key go together");
  assertEquals(
    usage(["--broker", "--exec", "cat"], ["exec", "broker"]),
    "options --exec and --broker exclude each other",
  );
  assertEquals(usage(["-6", "-4"], ["ipv4", "ipv6"]), "options -4 and -6 contradict each other");
  // Every relation names a declared flag.
  for (const [name, spec] of Object.entries(FLAGS)) {
    const related = [
      ...("conflicts" in spec ? spec.conflicts : []),
      ...("depends" in spec ? spec.depends : []),
    ];
    for (const other of related) assert(Object.hasOwn(FLAGS, other), `--${name}: --${other}`);
  }
});

Deno.test("option groups: every group a command shows is declared whole and taken by some row", async () => {
  const { COMMANDS } = await import("../lib/cli/main.ts");
  const { FLAGS } = await import("../lib/cli/flags.ts");
  for (const command of Object.values(COMMANDS)) {
    for (const group of command.flags.flatMap((section) => section.groups ?? [])) {
      assert(
        Object.values(SCHEMES).some((row) =>
          (row.groups as readonly string[]).includes(group.name)
        ),
        `${command.name}: no row takes the ${group.name} group`,
      );
      for (const use of [...group.flags, ...Object.keys(group.shares ?? {})]) {
        const name = typeof use === "string" ? use : use[0];
        assert(Object.hasOwn(FLAGS, name), `${group.name}: --${name} is not declared`);
      }
      for (const [name, spec] of Object.entries(group.specs)) {
        assert(
          Object.is((FLAGS as Record<string, unknown>)[name], spec),
          `--${name} is declared twice`,
        );
      }
    }
  }
});

Deno.test("fair runtime: whether a command serves many clients is its declaration, not argv's spelling", async () => {
  const { servesMany } = await import("../lib/cli/command.ts");
  const { COMMANDS } = await import("../lib/cli/main.ts");
  const { fairRuntime, FAIR_IO_VARIABLE } = await import("../lib/cli/process.ts");
  assert(servesMany(COMMANDS.listen, ["-vk", "0"]));
  assert(servesMany(COMMANDS.listen, ["0", "--broker"]));
  assert(!servesMany(COMMANDS.listen, ["0"]));
  // -o takes a value: -okeep.txt is --output keep.txt, not -k.
  assert(!servesMany(COMMANDS.listen, ["-okeep.txt", "0"]));
  assert(servesMany(COMMANDS.echo, ["0"]));
  assert(servesMany(COMMANDS.proxy, []));
  assert(!servesMany(COMMANDS.connect, ["127.0.0.1:1"]));
  // The process's choice reads it (when the variable is not set for the whole process).
  const free = Deno.env.get(FAIR_IO_VARIABLE) === undefined;
  assertEquals(fairRuntime(["listen", "-okeep.txt", "0"]), false);
  assertEquals(fairRuntime(["listen", "-k", "0"]), free);
  assertEquals(fairRuntime(["forward", "0", "127.0.0.1:1"]), free);
});
