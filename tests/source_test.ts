/**
 * `--source ADDR[:PORT]` (nc's `-s`/`-p`): the address a client connects
 * from, as real servers see it — a Python TCP and UDP server, a sockit TLS
 * server, socat's Unix datagram receiver — and the `bind` call strace sees.
 * Half-close both ways: a server that ends its side first still receives
 * everything sent after.
 * Scans from a source address; the usage errors.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { freePort, requireTool, runSockit, sockitCommand, spawnSockit } from "./helpers.ts";
import { straced } from "./netns.ts";

const decoder = new TextDecoder();

/**
 * A Python server that prints its port, then one line per TCP client
 * ("tcp HOST PORT") or UDP datagram ("udp HOST PORT"), answering each.
 */
const PEERS = `
import socket, sys, threading
proto = sys.argv[1]
if proto == "tcp":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(64)
    print(s.getsockname()[1], flush=True)
    while True:
        c, a = s.accept()
        print("tcp", a[0], a[1], flush=True)
        try:
            c.sendall(b"seen " + a[0].encode() + b"\\n")
        except OSError:
            pass
        c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1], flush=True)
    while True:
        d, a = s.recvfrom(65536)
        print("udp", a[0], a[1], flush=True)
        s.sendto(b"seen " + a[0].encode() + b"\\n", a)
`;

/** The Python peer server: its port, the lines it printed so far, and a stop. */
async function peers(proto: "tcp" | "udp") {
  const child = new Deno.Command(requireTool("python3"), {
    args: ["-c", PEERS, proto],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) text += (await reader.read()).value ?? "";
  const port = Number(text.split("\n")[0]);
  let seen = text.slice(text.indexOf("\n") + 1);
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      seen += value;
    }
  })();
  return {
    port,
    /** Waits (up to 5 s) until the server has printed a line matching `pattern`. */
    async saw(pattern: RegExp) {
      for (let i = 0; i < 250 && !pattern.test(seen); i++) {
        await new Promise((res) => setTimeout(res, 20));
      }
      assertMatch(seen, pattern);
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await pump.catch(() => {});
    },
  };
}

Deno.test("--source: TCP and UDP servers see the chosen address and port; TLS goes through it", async () => {
  const tcp = await peers("tcp");
  const udp = await peers("udp");
  try {
    const port = freePort("127.0.0.2");
    const a = await runSockit(["connect", `127.0.0.1:${tcp.port}`, "--source", "127.0.0.2"]);
    assertEquals([a.code, a.text], [0, "seen 127.0.0.2\n"], a.stderr);
    const b = await runSockit([
      "connect",
      `127.0.0.1:${tcp.port}`,
      "--source",
      `127.0.0.2:${port}`,
    ]);
    assertEquals([b.code, b.text], [0, "seen 127.0.0.2\n"], b.stderr);
    await tcp.saw(new RegExp(`^tcp 127\\.0\\.0\\.2 ${port}$`, "m"));
    const u = await runSockit([
      "connect",
      `udp://127.0.0.1:${udp.port}`,
      "--source",
      "127.0.0.3",
      "--send",
      "hi",
      "--idle-timeout",
      "300ms",
    ]);
    assertEquals([u.code, u.text], [0, "seen 127.0.0.3\n"], u.stderr);
    // nc's -s and -p.
    const ncPort = freePort("127.0.0.4");
    const n = await runSockit([
      "nc",
      "-s",
      "127.0.0.4",
      "-p",
      String(ncPort),
      "127.0.0.1",
      String(tcp.port),
    ], {
      stdin: "",
    });
    assertEquals([n.code, n.text], [0, "seen 127.0.0.4\n"], n.stderr);
    await tcp.saw(new RegExp(`^tcp 127\\.0\\.0\\.4 ${ncPort}$`, "m"));
  } finally {
    await tcp.stop();
    await udp.stop();
  }
  // TLS from a source address: the server names the client's address.
  const server = spawnSockit(["listen", "tls://127.0.0.1:0", "-v", "--send", "secret"]);
  const tlsPort = await server.listeningPort();
  const c = await runSockit([
    "connect",
    `tls://127.0.0.1:${tlsPort}`,
    "--insecure",
    "--source",
    "127.0.0.5",
    "--recv-only",
  ]);
  assertEquals([c.code, c.text], [0, "secret"], c.stderr);
  const s = await server.result();
  assertMatch(s.stderr, /connection from 127\.0\.0\.5:\d+/);
});

Deno.test("--source: bytes both ways intact through the libc socket (8 MiB each way)", async () => {
  const size = 8 << 20;
  const down = crypto.getRandomValues(new Uint8Array(65536));
  const file = await Deno.makeTempFile();
  try {
    const big = new Uint8Array(size);
    for (let at = 0; at < size; at += down.length) big.set(down, at);
    await Deno.writeFile(file, big);
    const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send-file", file]);
    const port = await server.listeningPort();
    const client = await runSockit(["connect", `127.0.0.1:${port}`, "--source", "127.0.0.6"], {
      stdin: big,
    });
    const s = await server.result();
    assertEquals(client.code, 0, client.stderr);
    assertEquals([client.stdout.length, s.stdout.length], [size, size]);
    assert(client.stdout.every((b, i) => b === big[i]), "download differs");
    assert(s.stdout.every((b, i) => b === big[i]), "upload differs");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("--source: a server that ends its side first still gets everything sent after", async () => {
  const server = new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.shutdown(socket.SHUT_WR)
n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
print(n, flush=True)
`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) text += (await reader.read()).value ?? "";
  const port = Number(text.trim());
  const size = 4 << 20;
  const r = await runSockit(["connect", `127.0.0.1:${port}`, "--source", "127.0.0.2"], {
    stdin: new Uint8Array(size),
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  await server.status;
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Number(text.trim().split("\n")[1]), size);
});

Deno.test("--source: the bind strace sees, and --trace names", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => (await listener.accept()).close())();
  try {
    const port = freePort("127.0.0.7");
    const { kernel, ...r } = await straced("bind,connect", [
      ...sockitCommand(["--allow-net", "--allow-ffi"]),
      "connect",
      `127.0.0.1:${listener.addr.port}`,
      "--source",
      `127.0.0.7:${port}`,
      "--trace",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(
      kernel,
      new RegExp(
        `bind\\(\\d+, \\{sa_family=AF_INET, sin_port=htons\\(${port}\\), sin_addr=inet_addr\\("127\\.0\\.0\\.7"\\)\\}`,
      ),
    );
    assertMatch(r.stderr, new RegExp(`bind\\(127\\.0\\.0\\.7:${port}\\) = 0`));
  } finally {
    listener.close();
    await accepting.catch(() => {});
  }
});

Deno.test("--source unixgram:PATH: socat sees the client's path; the file is gone after", async () => {
  const socat = requireTool("socat");
  const dir = await Deno.makeTempDir();
  const server = `${dir}/log.sock`;
  const mine = `${dir}/me.sock`;
  const peer = new Deno.Command(socat, {
    args: ["-T", "5", `UNIX-RECVFROM:${server}`, "SYSTEM:cat; echo from=$SOCAT_PEERADDR >&2"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    for (let i = 0; i < 100 && !(await Deno.stat(server).catch(() => null)); i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    const r = await runSockit([
      "connect",
      `unixgram:${server}`,
      "--source",
      `unixgram:${mine}`,
      "--send",
      "hey",
      "--idle-timeout",
      "500ms",
    ]);
    assertEquals([r.code, r.text], [0, "hey"], r.stderr);
    const said = decoder.decode((await peer.output()).stderr);
    assertMatch(said, new RegExp(`from=${mine.replaceAll(".", "\\.")}`));
    assertEquals(await Deno.stat(mine).catch(() => "gone"), "gone");
  } finally {
    try {
      peer.kill("SIGTERM");
    } catch {
      // Exited.
    }
    await peer.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scan --source: probes come from the address, TCP and UDP", async () => {
  const tcp = await peers("tcp");
  const udp = await peers("udp");
  try {
    const t = await runSockit(["scan", "127.0.0.1", String(tcp.port), "--source", "127.0.0.8"]);
    assertEquals([t.code, t.text], [0, `${tcp.port}\n`], t.stderr);
    await tcp.saw(/^tcp 127\.0\.0\.8 \d+$/m);
    const u = await runSockit([
      "scan",
      "-u",
      "127.0.0.1",
      String(udp.port),
      "--source",
      "127.0.0.9",
    ]);
    assertEquals([u.code, u.text], [0, `${udp.port}\n`], u.stderr);
    await udp.saw(/^udp 127\.0\.0\.9 \d+$/m);
  } finally {
    await tcp.stop();
    await udp.stop();
  }
});

Deno.test("--source: mistakes are usage errors in one line", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["connect", "127.0.0.1:9", "--source", "example.com"], /--source needs an IP address/],
    [
      ["connect", "unix:/tmp/x.sock", "--source", "127.0.0.1"],
      /option --source is for tcp:\/\/, tls:\/\/, ws:\/\/, wss:\/\/, udp:\/\/ or unixgram: endpoints/,
    ],
    [["connect", "[::1]:9", "--source", "127.0.0.1"], /is IPv4, the target .* IPv6/],
    [["connect", "localhost:9", "-6", "--source", "127.0.0.1"], /is IPv4, but -6 was given/],
    [["connect", "127.0.0.1:9", "--source", "127.0.0.1:70000"], /out of range/],
    [["connect", "unixgram:/tmp/x", "--source", "127.0.0.1"], /unixgram:PATH/],
    [["scan", "127.0.0.1", "80", "--source", "127.0.0.1:4000"], /takes an address, not a port/],
    [["nc", "-z", "-p", "4000", "127.0.0.1", "80"], /takes no source port/],
    [["listen", "8080", "--source", "127.0.0.1"], /unknown option --source/],
  ];
  for (const [args, message] of cases) {
    const r = await runSockit(args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assertMatch(lines[0], message);
    assert(lines.length <= 2, r.stderr);
  }
  // A source address this host does not have: said in words, exit 1.
  const r = await runSockit(["connect", "127.0.0.1:9", "--source", "192.0.2.1"]);
  assertEquals(r.code, 1);
  assertMatch(
    r.stderr,
    /^sockit: bind 192\.0\.2\.1:0: cannot assign requested address\n.*hint: --source: give an address of this host/,
  );
  // Binding first goes through libc: without --allow-ffi, exit 126 naming the flag.
  const denied = await runSockit(["connect", "127.0.0.1:9", "--source", "127.0.0.2"], {
    process: true,
    perms: ["--allow-net"],
  });
  assertEquals(denied.code, 126, denied.stderr);
  assertMatch(denied.stderr, /--source binds before it connects, through libc: grant --allow-ffi/);
});

/** Opens N idle connections to a port, then times 20 echo round trips through it; prints ms. */
const IDLE_THEN_ECHO = `
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.5)
t = time.time()
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
    s.close()
print(round((time.time() - t) * 1000))
for s in idle:
    s.close()
`;

Deno.test("--source: 400 idle connections through forward hold up no one (one epoll set, no thread each)", async () => {
  const echo = spawnSockit(["echo", "127.0.0.1:0", "-v"], { process: true });
  const target = await echo.listeningPort();
  const forward = spawnSockit([
    "forward",
    "127.0.0.1:0",
    `127.0.0.1:${target}`,
    "--source",
    "127.0.0.2",
    "-v",
  ]);
  const port = await forward.listeningPort();
  try {
    const out = await new Deno.Command(requireTool("python3"), {
      args: ["-c", IDLE_THEN_ECHO, String(port), "400"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, decoder.decode(out.stderr));
    // A poll thread per idle connection made each of these wait seconds (9 s with 700 idle);
    // the bound is 100 times what they take now.
    const ms = Number(decoder.decode(out.stdout).trim());
    assert(ms < 10_000, `20 round trips took ${ms} ms beside 400 idle connections`);
  } finally {
    forward.kill("SIGTERM");
    echo.kill("SIGTERM");
    await forward.result();
    await echo.result();
  }
});
