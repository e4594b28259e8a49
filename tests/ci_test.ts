/**
 * The CI toolkit: `wait`, `scan`, send/expect health checks against a real
 * Redis, and `--json` output of every command checked against the schema
 * documented in the README.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import fc from "fast-check";
import {
  assertNoSocketsLeft,
  assertUsageError,
  decoder,
  freePort,
  NET,
  openSockets,
  requireTool,
  runSockit,
  sockitCommand,
  spawnSockit,
  tempSocketDir,
} from "./helpers.ts";
import { privateNamespace, runArgv } from "./netns.ts";
import { formatPorts, parsePorts } from "../lib/tools/scan.ts";
import { UsageError } from "../lib/base/errors.ts";

// ---- wait -----------------------------------------------------------------------

Deno.test("wait: a listener that appears late is seen within one interval", async () => {
  const port = freePort();
  const waiting = spawnSockit([
    "wait",
    `127.0.0.1:${port}`,
    "--interval",
    "200ms",
    "--timeout",
    "10s",
    "--json",
  ]);
  await new Promise((resolve) => setTimeout(resolve, 700));
  const appeared = performance.now();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const r = await waiting.result();
  const noticed = performance.now() - appeared;
  listener.close();
  assertEquals(r.code, 0, r.stderr);
  const result = JSON.parse(r.text);
  assertEquals([result.event, result.ready, result.address], ["wait", true, `127.0.0.1:${port}`]);
  assert(result.attempts >= 3, `kept trying (${result.attempts} attempts)`);
  // One interval, plus process exit and scheduling slack.
  assert(noticed < 200 + 400, `noticed after ${noticed} ms`);
});

Deno.test("wait: never ready is 124, naming each endpoint with its last error", async () => {
  const port = freePort();
  const dir = tempSocketDir();
  const r = await runSockit(
    [
      "wait",
      `127.0.0.1:${port}`,
      `unix:${dir}/none.sock`,
      "--timeout",
      "600ms",
      "--interval",
      "100ms",
    ],
    {
      perms: [
        `--allow-net=127.0.0.1,unix:${dir}/none.sock`,
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
      ],
    },
  );
  Deno.removeSync(dir, { recursive: true });
  assertEquals(r.code, 124);
  assertMatch(
    r.text,
    new RegExp(
      `127\\.0\\.0\\.1:${port} not ready after \\d+ ms \\(\\d+ attempts\\): connection refused`,
    ),
  );
  assertMatch(
    r.stderr,
    /timed out after 600 ms; not ready: 127\.0\.0\.1:\d+ \(connection refused\), unix:.*none\.sock \(no such file or directory\)/,
  );
  assertEquals(r.stderr.trim().split("\n").length, 1);
});

Deno.test("wait: several endpoints, some ready at once and one later", async () => {
  const a = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const b = Deno.listen({ hostname: "::1", port: 0 });
  const late = freePort();
  const waiting = spawnSockit([
    "wait",
    `127.0.0.1:${a.addr.port}`,
    `[::1]:${b.addr.port}`,
    `127.0.0.1:${late}`,
    "--interval",
    "100ms",
  ]);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const c = Deno.listen({ hostname: "127.0.0.1", port: late });
  const r = await waiting.result();
  for (const l of [a, b, c]) l.close();
  assertEquals(r.code, 0);
  const lines = r.text.trim().split("\n");
  assertEquals(lines.length, 3);
  assert(lines.every((l) => / ready after /.test(l)), r.text);
  // Results come as each endpoint is settled: the late one last.
  assertMatch(lines[2], new RegExp(`^127\\.0\\.0\\.1:${late} ready`));
});

Deno.test("wait --reverse: until the endpoint stops accepting", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const waiting = spawnSockit(["wait", "--reverse", `127.0.0.1:${port}`, "--interval", "100ms"]);
  // Accept (and drop) the probes while it is up.
  const accepting = (async () => {
    try {
      for (;;) (await listener.accept()).close();
    } catch {
      // Closed.
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 500));
  listener.close();
  await accepting;
  const r = await waiting.result();
  assertEquals(r.code, 0);
  assertMatch(r.text, new RegExp(`127\\.0\\.0\\.1:${port} closed after`));
  const still = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stuck = spawnSockit([
    "wait",
    "--reverse",
    `127.0.0.1:${still.addr.port}`,
    "--timeout",
    "300ms",
  ]);
  const served = (async () => {
    try {
      for (;;) (await still.accept()).close();
    } catch {
      // Closed.
    }
  })();
  const r2 = await stuck.result();
  still.close();
  await served;
  assertEquals(r2.code, 124);
  assertMatch(r2.stderr, /still open: 127\.0\.0\.1:\d+ \(accepted a connection\)/);
});

Deno.test("wait: localhost finds a server on 127.0.0.1 (and the library finds one on ::1 only)", async () => {
  const v4 = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const r = await runSockit(["wait", `localhost:${v4.addr.port}`, "--timeout", "3s"]);
  v4.close();
  assertEquals(r.code, 0, r.stderr);
  // This machine's localhost may have no IPv6 address; the resolver is injected to say it has.
  const { waitFor } = await import("../lib/mod.ts");
  const v6 = Deno.listen({ hostname: "::1", port: 0 });
  const [result] = await waitFor(
    [{ form: "host-port", scheme: "tcp", hostname: "localhost", port: v6.addr.port }],
    {
      timeout: 3000,
      lookup: () => Promise.resolve(["127.0.0.1", "::1"]),
    },
  );
  v6.close();
  assert(result.ready, JSON.stringify(result));
});

Deno.test("wait -- CMD: runs the command once ready and exits with its status", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const r = await runSockit(
    ["wait", `127.0.0.1:${listener.addr.port}`, "-q", "--", "sh", "-c", "echo ran; exit 7"],
    // The command inherits sockit's stdio: only a process shows where its output goes.
    { perms: [...NET, "--allow-run"], process: true },
  );
  listener.close();
  assertEquals([r.code, r.text], [7, "ran\n"]);
  const missing = await runSockit([
    "wait",
    `127.0.0.1:${freePort()}`,
    "--timeout",
    "200ms",
    "--",
    "echo",
    "never",
  ], {
    perms: [...NET, "--allow-run"],
  });
  assertEquals(missing.code, 124);
  assert(!missing.text.includes("never"), "the command does not run when not ready");
  const denied = await runSockit(["wait", "127.0.0.1:1", "--", "echo", "x"], { process: true });
  assertEquals(denied.code, 126);
  assertMatch(denied.stderr, /--allow-run/);
});

Deno.test("wait: the library never leaks a connection past its deadline", async () => {
  const { waitFor } = await import("../lib/mod.ts");
  // A listener that never accepts: connects complete in the kernel's queue.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const results = await waitFor(
    [{ form: "host-port", scheme: "tcp", hostname: "127.0.0.1", port: listener.addr.port }, {
      form: "host-port",
      scheme: "tcp",
      hostname: "127.0.0.1",
      port: freePort(),
    }],
    { timeout: 400, interval: 50 },
  );
  listener.close();
  assertEquals(results.map((r) => r.ready), [true, false]);
  // The resource sanitizer fails this test if a connection were left open.
});

// ---- scan -------------------------------------------------------------------------

/** Ephemeral-range ports where nothing listens, so that probes may connect to themselves. */
function quietRange(size: number): [number, number] {
  const base = 40000 + Math.floor(Math.random() * 15000);
  return [base, base + size - 1];
}

Deno.test("scan: finds exactly the listeners in a range of the ephemeral ports", async () => {
  const [from, to] = quietRange(3000);
  const listeners: Deno.Listener[] = [];
  for (let port = from + 7; port <= to && listeners.length < 25; port += 113) {
    try {
      listeners.push(Deno.listen({ hostname: "127.0.0.1", port }));
    } catch {
      // Taken by something else: not ours to count.
    }
  }
  const expected = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  const r = await runSockit(["scan", "127.0.0.1", `${from}-${to}`]);
  const found = r.text.trim().split("\n").filter(Boolean).map(Number);
  for (const l of listeners) l.close();
  assertEquals(r.code, 0);
  // Other programs may listen in the range too; every one of ours is found, none is invented.
  for (const port of expected) assert(found.includes(port), `missed ${port}`);
  const others = found.filter((p) => !expected.includes(p));
  for (const port of others) {
    const check = await Deno.connect({ hostname: "127.0.0.1", port }).then(
      (c) => (c.close(), true),
      () => false,
    );
    assert(check, `reported ${port}, which is not listening`);
  }
});

Deno.test("scan: nothing open is exit 1; --json gives one object per open port", async () => {
  const [from, to] = quietRange(200);
  const none = await runSockit(["scan", "127.0.0.1", `${from}-${to}`, "--timeout", "300ms"]);
  if (none.code === 0) {
    // Something else listens there; the check below still holds for what is reported.
    assert(none.text.trim().length > 0);
  } else {
    assertEquals([none.code, none.text], [1, ""]);
  }
  const a = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const b = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ports = [a.addr.port, b.addr.port].sort((x, y) => x - y);
  const r = await runSockit(["scan", "localhost", ports.join(","), "--json"]);
  a.close();
  b.close();
  assertEquals(r.code, 0);
  const objects = r.text.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(objects.map((o) => o.port), ports);
  for (const o of objects) {
    assertEquals([o.event, o.state, o.host], ["port", "open", "localhost"]);
    assert(typeof o.latencyMs === "number" && typeof o.time === "string");
  }
});

Deno.test("scan: bad ports and bad options are usage errors", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["scan", "127.0.0.1", "90-80"], /range must ascend/],
    [["scan", "127.0.0.1", "0-10"], /port 0 is out of range 1–65535/],
    [["scan", "127.0.0.1", "65536"], /port 65536 is out of range/],
    [["scan", "127.0.0.1", "22,x"], /"x" is not a port or a range/],
    [["scan", "127.0.0.1", ""], /empty/],
    [["scan", "127.0.0.1"], /expected HOST and PORTS/],
    [["scan", "127.0.0.1", "22", "--concurrency", "0"], /--concurrency needs at least 1/],
  ];
  for (const [args, pattern] of cases) assertUsageError(await runSockit(args), pattern);
  const denied = await runSockit(["scan", "127.0.0.1", "1-100"], {
    perms: ["--allow-net=127.0.0.1:22"],
    process: true,
  });
  assertEquals(denied.code, 126);
  assertMatch(denied.stderr, /--allow-net/);
});

Deno.test("scan: property — valid port lists round-trip, garbage is a usage error", () => {
  const ranges = fc.array(
    fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 50 })).map((
      [from, len],
    ) => [from, Math.min(65535, from + len)] as const),
    { minLength: 1, maxLength: 8 },
  );
  fc.assert(fc.property(ranges, (rs) => {
    const text = rs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
    const ports = parsePorts(text);
    const expected = [
      ...new Set(rs.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i))),
    ]
      .sort((x, y) => x - y);
    assertEquals(ports, expected);
    assertEquals(parsePorts(formatPorts(ports)), ports);
  }));
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), (text) => {
      try {
        const ports = parsePorts(text);
        assert(ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535));
      } catch (err) {
        assert(err instanceof UsageError, String(err));
        assert(err.message.startsWith(`cannot parse ports ${JSON.stringify(text)}: `), err.message);
      }
    }),
    { numRuns: 3000 },
  );
});

// ---- smoke checks against a real Redis ----------------------------------------------

Deno.test("expect: a one-line Redis health check (PING → +PONG)", async () => {
  const port = freePort();
  const redis = new Deno.Command(requireTool("redis-server"), {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const ready = await runSockit(["wait", `127.0.0.1:${port}`, "--timeout", "10s", "-q"]);
    assertEquals(ready.code, 0);
    const ok = await runSockit([
      "connect",
      `127.0.0.1:${port}`,
      "--send",
      "PING\\r\\n",
      "--expect",
      "^\\+PONG",
      "--timeout",
      "2s",
    ]);
    assertEquals([ok.code, ok.text], [0, "+PONG\r\n"]);
    const wrong = await runSockit([
      "connect",
      `127.0.0.1:${port}`,
      "--send",
      "GET nosuchkey\\r\\n",
      "--expect",
      "^\\+PONG",
      "--timeout",
      "500ms",
    ]);
    // Redis answers $-1 and closes after our half-close: no match before EOF.
    assertEquals([wrong.code, wrong.text], [1, "$-1\r\n"]);
    assertMatch(wrong.stderr, /no match for \/\^\\\+PONG\/ before the peer closed/);
  } finally {
    redis.kill("SIGTERM");
    await redis.status;
  }
});

// ---- --json everywhere ---------------------------------------------------------------

/** The documented fields of each event (README "-v and --json events"). */
const SCHEMA: Record<string, string[]> = {
  listening: ["address", "transport"],
  accepted: ["conn", "remote", "local"],
  connected: ["conn", "remote", "local"],
  closed: ["conn", "remote", "sent", "received", "durationMs"],
  rejected: ["conn", "remote", "reason"],
  peer: ["remote"],
  proxied: ["conn", "remote", "protocol", "target", "address"],
  upgraded: ["conn", "remote", "status", "path"],
  refused: ["conn", "remote", "reason"],
  info: ["message"],
  warning: ["message"],
  error: ["code", "exitCode", "message"],
  trace: ["tag", "call"],
  wait: ["endpoint", "address", "ready", "elapsedMs", "attempts", "lastError"],
  port: ["host", "address", "port", "state", "latencyMs"],
  scanned: ["address", "ports", "open", "durationMs"],
  stats: ["sent", "received", "durationMs", "sentPerSecond", "receivedPerSecond"],
};

function checkJsonLines(text: string, where: string): string[] {
  const events: string[] = [];
  for (const line of text.split("\n").filter(Boolean)) {
    const obj = JSON.parse(line);
    assert(typeof obj.event === "string", `${where}: no event in ${line}`);
    assert(!Number.isNaN(Date.parse(obj.time)), `${where}: no time in ${line}`);
    const fields = SCHEMA[obj.event];
    assert(fields, `${where}: undocumented event ${obj.event}`);
    for (const f of fields) assert(f in obj, `${where}: ${obj.event} lacks ${f}: ${line}`);
    events.push(obj.event);
  }
  return events;
}

Deno.test("json: every line of every command's --json output parses and has the documented fields", async () => {
  const seen = new Set<string>();
  const note = (events: string[]) => events.forEach((e) => seen.add(e));
  // listen + connect, with a trace
  const server = spawnSockit(["listen", "127.0.0.1:0", "--json", "--trace", "--send", "x"]);
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "--json"]);
  note(checkJsonLines(client.stderr, "connect"));
  note(checkJsonLines((await server.result()).stderr, "listen"));
  // echo with a rejection
  const echo = spawnSockit(["echo", "127.0.0.1:0", "--json", "--stats", "--deny", "127.0.0.1"]);
  const echoPort = await echo.listeningPort();
  (await Deno.connect({ hostname: "127.0.0.1", port: echoPort })).close();
  await echo.waitForStderr(/"rejected"/);
  echo.kill("SIGTERM");
  note(checkJsonLines((await echo.result()).stderr, "echo"));
  // an error
  const refused = await runSockit(["connect", `127.0.0.1:${freePort()}`, "--json"]);
  assertEquals(refused.code, 1);
  note(checkJsonLines(refused.stderr, "connect refused"));
  // wait (results on stdout) and scan
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const w = await runSockit(["wait", `127.0.0.1:${l.addr.port}`, "--json"]);
  const s = await runSockit(["scan", "127.0.0.1", String(l.addr.port), "--json"]);
  l.close();
  note(checkJsonLines(w.text, "wait"));
  note(checkJsonLines(s.text + s.stderr, "scan"));
  // UDP: listening, peer, info
  const udp = spawnSockit(["listen", "udp://127.0.0.1:0", "--json"]);
  const udpPort = await udp.listeningPort();
  const sent = await runSockit([
    "connect",
    `udp://127.0.0.1:${udpPort}`,
    "--send",
    "hi",
    "--idle-timeout",
    "200ms",
    "--json",
    // Without --allow-ffi (a process's permission): the info event says refusals go unseen.
  ], { process: true });
  note(checkJsonLines(sent.stderr, "connect udp"));
  await udp.waitForStderr(/"peer"/);
  udp.kill("SIGTERM");
  note(checkJsonLines((await udp.result()).stderr, "listen udp"));
  for (
    const event of [
      "listening",
      "accepted",
      "connected",
      "closed",
      "rejected",
      "error",
      "trace",
      "wait",
      "port",
      "scanned",
      "peer",
      "info",
      "stats",
    ]
  ) {
    assert(seen.has(event), `no ${event} event was produced`);
  }
});

Deno.test("json: stdout stays payload-only for listen and connect", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "--json", "-v", "--trace"], {
    stdin: "payload down",
  });
  const port = await server.listeningPort();
  const client = await runSockit(["connect", `127.0.0.1:${port}`, "--json", "--trace"], {
    stdin: "payload up",
  });
  const done = await server.result();
  assertEquals([client.text, done.text], ["payload down", "payload up"]);
  assertEquals(decoder.decode(new TextEncoder().encode(client.text)).includes("{"), false);
});

Deno.test("scan: through libc and through Deno.connect, IPv4 and IPv6, the same listeners and nothing else; a stop leaves no socket", async () => {
  const { scan } = await import("../lib/tools/scan.ts");
  for (const hostname of ["127.0.0.1", "::1"]) {
    const [from, to] = quietRange(4000);
    const listeners: Deno.Listener[] = [];
    for (let port = from + 11; port <= to && listeners.length < 30; port += 131) {
      try {
        listeners.push(Deno.listen({ hostname, port }));
      } catch {
        // Taken by something else.
      }
    }
    const expected = listeners.map((l) => (l.addr as Deno.NetAddr).port);
    const range = Array.from({ length: to - from + 1 }, (_, i) => from + i);
    for (const libc of [true, false]) {
      const paths: string[] = [];
      const found = (await scan(hostname, range, { libc, onPath: (p) => paths.push(p) }))
        .map((r) => r.port);
      assertEquals(paths, [libc ? "libc" : "deno"]);
      for (const port of expected) {
        assert(found.includes(port), `${hostname} libc=${libc}: missed ${port}`);
      }
      for (const port of found.filter((p) => !expected.includes(p))) {
        const listening = await Deno.connect({ hostname, port }).then(
          (c) => (c.close(), true),
          () => false,
        );
        assert(listening, `${hostname} libc=${libc}: reported ${port}, which is not listening`);
      }
    }
    for (const l of listeners) l.close();
  }
  // Stopped mid-scan (probes in flight, a worker in poll()): rejects with the reason, and
  // every probe socket is closed.
  const before = await openSockets();
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error("stop")), 30);
  const everything = Array.from({ length: 65535 }, (_, i) => i + 1);
  let error: unknown;
  try {
    await scan("127.0.0.1", everything, { libc: true, timeout: 5000, signal: controller.signal });
  } catch (err) {
    error = err;
  }
  assertEquals((error as Error)?.message, "stop");
  await assertNoSocketsLeft(before, `probe sockets`);
});

Deno.test("scan and connect --source to a link-local address with its zone (fe80::1%IF): the scope id reaches the socket", async () => {
  const python = requireTool("python3");
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const sockit = sockitCommand(["--allow-net", "--allow-ffi"]).map(q).join(" ");
  // A veth pair in a namespace of this test's own; fe80::1 on one end, no DAD wait.
  const listener = [
    "import socket, time",
    "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)",
    "s.bind(('fe80::1', 4242, 0, socket.if_nametoindex('sk0')))",
    "s.listen()",
    "print('ready', flush=True)",
    "s.settimeout(20)",
    // The scan's probe sends nothing; the client's connection says hi.
    "while True:",
    "    c, a = s.accept()",
    "    data = c.recv(16)",
    "    if data:",
    "        print('from', a[0], a[3] == socket.if_nametoindex('sk0'), data.decode(), flush=True)",
    "        break",
  ].join("\n");
  const script = [
    "ip link add sk0 type veth peer name sk1 && ip link set sk0 up && ip link set sk1 up &&",
    "ip addr add fe80::1/64 dev sk0 nodad || exit 1",
    `${q(python)} -c ${q(listener)} > listener.out &`,
    "for i in $(seq 100); do grep -q ready listener.out 2>/dev/null && break; sleep 0.05; done",
    `${sockit} scan 'fe80::1%sk0' 4240-4244 > scan.out 2> scan.err; echo $? > scan.code`,
    `${sockit} connect 'tcp:[fe80::1%sk0]:4242' --source '[fe80::1%sk0]' --send hi ` +
    "--idle-timeout 300ms 2> connect.err; echo $? > connect.code",
    "wait",
  ].join("\n");
  const dir = await Deno.makeTempDir();
  try {
    const r = await runArgv(privateNamespace([], ["sh", "-c", `cd ${q(dir)} && ${script}`]));
    assertEquals(r.code, 0, `${r.stdout}${r.stderr}`);
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    // Before the scope id was encoded, both failed with "invalid argument".
    assertEquals((await read("scan.code")).trim(), "0", await read("scan.err"));
    assertEquals((await read("scan.out")).trim(), "4242");
    assertEquals((await read("connect.code")).trim(), "0", await read("connect.err"));
    assertMatch(await read("listener.out"), /^ready\nfrom fe80::1 True hi\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
