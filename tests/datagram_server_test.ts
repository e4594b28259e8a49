/**
 * Datagram servers — `forward`, `echo`, `listen -k`, `listen --exec` on
 * `udp://` — against real peers (Python UDP clients and a Python UDP
 * server): a session per sender through the one accept loop, replies to the
 * right client, sessions that expire after their idle time; and the
 * datagram listener itself (`lib/net/datagram_listener.ts`), as a library.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { requireTool, runSockit, spawnSockit } from "./helpers.ts";
import { bindDatagram } from "../lib/net/datagram.ts";
import { DatagramListener, PEER_QUEUE } from "../lib/net/datagram_listener.ts";

const decoder = new TextDecoder();

/** A Python UDP server answering "re:" + each datagram; prints its port. */
const SERVER = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(b"re:" + data, addr)
`;

/** The Python UDP server ("re:" + each datagram) as a peer: its port, and a stop by its PID. */
async function replyServer(): Promise<{ port: number } & AsyncDisposable> {
  const server = new Deno.Command(requireTool("python3"), {
    args: ["-c", SERVER],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  return {
    port,
    async [Symbol.asyncDispose]() {
      server.kill("SIGTERM");
      await server.status;
      await reader.cancel().catch(() => {});
    },
  };
}

/** 20 clients × 5 exchanges through the forwarder; prints how many replies were right. */
const CLIENTS = `
import socket, sys
port = int(sys.argv[1])
good = 0
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
for s in socks:
    s.settimeout(3)
for round in range(5):
    for i, s in enumerate(socks):
        s.sendto(f"c{i}-r{round}".encode(), ("127.0.0.1", port))
    for i, s in enumerate(socks):
        data, _ = s.recvfrom(65536)
        if data == f"re:c{i}-r{round}".encode():
            good += 1
print(good, flush=True)
`;

Deno.test("forward udp://: 20 clients × 5 exchanges answered to the right client; sessions expire when idle", async () => {
  const python = requireTool("python3");
  await using server = await replyServer();
  const port = server.port;
  const forward = spawnSockit([
    "forward",
    "udp://127.0.0.1:0",
    `udp://127.0.0.1:${port}`,
    "-v",
    "--idle-timeout",
    "500ms",
  ]);
  try {
    const listening = await forward.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
    const out = await new Deno.Command(python, {
      args: ["-c", CLIENTS, listening[1]],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(decoder.decode(out.stdout).trim(), "100", decoder.decode(out.stderr));
    // Every session ends after 500 ms of quiet, with its figures.
    await forward.waitForCount(
      /closed udp:\/\/127\.0\.0\.1:\d+ \(sent \d+ B, received \d+ B, [^;]*; idle for 500 ms\)/,
      20,
      10_000,
    );
    assertEquals(forward.stderr.match(/datagrams from 127\.0\.0\.1:\d+ →/g)?.length, 20);
  } finally {
    forward.kill("SIGTERM");
    await forward.result();
  }
});

Deno.test("forward udp://: --max-conns caps the sessions; a stream target is a usage error", async () => {
  const usage = await runSockit(["forward", "udp://127.0.0.1:0", "127.0.0.1:80"]);
  assertEquals(usage.code, 2);
  assertMatch(
    usage.stderr,
    /tcp:\/\/ is not supported by forward \(supported: udp:\/\/, ip:\/\/, unixgram:\)/,
  );
  // A target that takes datagrams and never answers.
  const target = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const targetPort = (target.addr as Deno.NetAddr).port;
  const forward = spawnSockit([
    "forward",
    "udp://127.0.0.1:0",
    `udp://127.0.0.1:${targetPort}`,
    "-v",
    "--max-conns",
    "1",
  ]);
  try {
    const port = Number((await forward.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    const a = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const b = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await a.send(new Uint8Array([1]), { transport: "udp", hostname: "127.0.0.1", port });
    await forward.waitForStderr(/datagrams from/);
    await b.send(new Uint8Array([2]), { transport: "udp", hostname: "127.0.0.1", port });
    await forward.waitForStderr(/--max-conns 1 sessions reached/);
    a.close();
    b.close();
  } finally {
    forward.kill("SIGTERM");
    await forward.result();
    target.close();
  }
});

Deno.test("listen -k udp://: every peer is heard, and each stdin line reaches every peer", async () => {
  const listen = spawnSockit(["listen", "-k", "udp://127.0.0.1:0", "-v"], { stdin: "piped" });
  const port = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const a = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const b = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  try {
    await a.send(new TextEncoder().encode("from a\n"), to);
    await b.send(new TextEncoder().encode("from b\n"), to);
    await listen.waitForCount(/datagrams from 127\.0\.0\.1:\d+/, 2);
    const writer = listen.stdin.getWriter();
    await writer.write(new TextEncoder().encode("to all\n"));
    const [gotA] = await a.receive(new Uint8Array(100));
    const [gotB] = await b.receive(new Uint8Array(100));
    assertEquals([decoder.decode(gotA), decoder.decode(gotB)], ["to all\n", "to all\n"]);
    await writer.close().catch(() => {});
  } finally {
    listen.kill("SIGTERM");
    const r = await listen.result();
    assertEquals(r.text, "from a\nfrom b\n");
    a.close();
    b.close();
  }
});

/** Two UDP peers, three exchanges each; prints each reply as "NAME REPLY". */
const TWO_PEERS = `
import socket, sys
port = int(sys.argv[1])
socks = {}
for name in ("A", "B"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.bind(("127.0.0.1", 0))
    socks[name] = s
for i in range(3):
    for name, s in socks.items():
        s.sendto(f"{name}{i}\\n".encode(), ("127.0.0.1", port))
    for name, s in socks.items():
        data, _ = s.recvfrom(65536)
        print(name, data.decode().strip(), flush=True)
`;

Deno.test("listen -k udp:// --sh-exec: a child per peer, its output back to that peer only", async () => {
  const python = requireTool("python3");
  const listen = spawnSockit([
    "listen",
    "-k",
    "udp://127.0.0.1:0",
    "--sh-exec",
    'n=0; while read l; do n=$((n+1)); echo "$SOCKIT_PROTO $SOCKIT_REMOTE_PORT #$n $l"; done',
    "--idle-timeout",
    "500ms",
    "-v",
  ]);
  const port = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", TWO_PEERS, String(port)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const lines = decoder.decode(out.stdout).trim().split("\n");
    assertEquals(lines.length, 6, lines.join("\n"));
    // Each peer's child counts that peer's lines only, and knows the peer's port.
    const ports = new Map<string, string>();
    for (const line of lines) {
      const m = /^([AB]) udp (\d+) #(\d) ([AB])(\d)$/.exec(line);
      assert(m, line);
      assertEquals([m[4], Number(m[3])], [m[1], Number(m[5]) + 1], line);
      assertEquals(ports.get(m[1]) ?? m[2], m[2]);
      ports.set(m[1], m[2]);
    }
    assert(ports.get("A") !== ports.get("B"));
    // Both sessions end after their idle time, each child ended with it.
    await listen.waitForCount(/closed udp:\/\/127\.0\.0\.1:\d+ .*idle for 500 ms/, 2);
  } finally {
    listen.kill("SIGTERM");
    const r = await listen.result();
    assertEquals(r.code, 143, r.stderr);
    assertEquals(r.text, "");
  }
});

Deno.test("listen udp:// --exec without -k: the first peer only, then exit 0 when its child is done", async () => {
  const listen = spawnSockit([
    "listen",
    "udp://127.0.0.1:0",
    "--sh-exec",
    'read l; echo "re $l"',
    "-v",
  ]);
  const port = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await sock.send(new TextEncoder().encode("one\n"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port,
    });
    const [got] = await sock.receive(new Uint8Array(100));
    assertEquals(decoder.decode(got), "re one\n");
    const r = await listen.result();
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stderr, /closed udp:\/\/127\.0\.0\.1:\d+ .*exec \/bin\/sh: closed its output/);
  } finally {
    sock.close();
  }
});

Deno.test("--allow/--deny hold for UDP sessions: forward and listen --exec drop refused peers", async () => {
  await using server = await replyServer();
  const target = server.port;
  const forward = spawnSockit([
    "forward",
    "udp://127.0.0.1:0",
    `udp://127.0.0.1:${target}`,
    "--deny",
    "127.0.0.2",
    "-v",
  ]);
  const port = Number((await forward.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  const good = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const bad = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.2", port: 0 });
  try {
    await bad.send(new TextEncoder().encode("let me in"), to);
    await forward.waitForStderr(/rejected udp:\/\/127\.0\.0\.2:\d+: denied by --deny 127\.0\.0\.2/);
    await good.send(new TextEncoder().encode("hello"), to);
    const [reply] = await good.receive(new Uint8Array(100));
    assertEquals(decoder.decode(reply), "re:hello");
    // The refused peer got nothing (and made no session).
    const none = await Promise.race([
      bad.receive(new Uint8Array(100)).then(() => "answered", () => "closed"),
      new Promise<string>((res) => setTimeout(() => res("nothing"), 300)),
    ]);
    assertEquals(none, "nothing");
  } finally {
    forward.kill("SIGTERM");
    const r = await forward.result();
    assertEquals(r.stderr.match(/datagrams from/g)?.length, 1, r.stderr);
    good.close();
    bad.close();
  }
  // listen --exec: a peer outside --allow starts no child.
  const listen = spawnSockit([
    "listen",
    "-k",
    "udp://127.0.0.1:0",
    "--sh-exec",
    "cat",
    "--allow",
    "127.0.0.1",
    "-v",
  ]);
  const at = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const outsider = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.3", port: 0 });
  try {
    await outsider.send(new TextEncoder().encode("run me\n"), { ...to, port: at });
    await listen.waitForStderr(/rejected udp:\/\/127\.0\.0\.3:\d+: not in any --allow range/);
  } finally {
    outsider.close();
    listen.kill("SIGTERM");
    const r = await listen.result();
    assert(!/datagrams from/.test(r.stderr), r.stderr);
  }
});

Deno.test("forward unixgram:PATH udp://TARGET: a Unix datagram client's requests reach UDP, replies come back", async () => {
  await using server = await replyServer();
  const target = server.port;
  const dir = await Deno.makeTempDir();
  const forward = spawnSockit([
    "forward",
    `unixgram:${dir}/in.sock`,
    `udp://127.0.0.1:${target}`,
    "-v",
  ]);
  try {
    await forward.waitForStderr(/listening on unixgram:/);
    const r = await runSockit([
      "connect",
      `unixgram:${dir}/in.sock`,
      "--send",
      "ask",
      "--idle-timeout",
      "500ms",
    ]);
    assertEquals([r.code, r.text], [0, "re:ask"], r.stderr);
  } finally {
    forward.kill("SIGTERM");
    const f = await forward.result();
    assertMatch(f.stderr, /datagrams from \/\S+\/client\.sock → udp:\/\/127\.0\.0\.1:\d+/);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listen -k udp:// --exec: a child that reads nothing holds up no one; SIGTERM ends a chatty child at once", async () => {
  const listen = spawnSockit([
    "listen",
    "-k",
    "udp://127.0.0.1:0",
    "--sh-exec",
    'read l; case $l in slow*) exec sleep 30;; chatty*) while :; do echo tick; sleep 0.05; done;; *) echo "re $l";; esac',
    "-v",
  ]);
  const port = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  const slow = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const chatty = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const quick = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    // 840 KB to a child asleep, paced so that the kernel drops none: more than its pipe and
    // sockit's queue for it hold.
    await slow.send(new TextEncoder().encode("slow\n"), to);
    const big = new Uint8Array(1400).fill(120);
    for (let i = 0; i < 600; i++) {
      await slow.send(big, to);
      if (i % 20 === 19) await new Promise((res) => setTimeout(res, 2));
    }
    await listen.waitForStderr(/not reading its input: datagrams dropped/);
    await chatty.send(new TextEncoder().encode("chatty\n"), to);
    const [tick] = await chatty.receive(new Uint8Array(100));
    assertEquals(decoder.decode(tick), "tick\n");
    // Another peer is served all the same.
    await quick.send(new TextEncoder().encode("hi\n"), to);
    const [reply] = await quick.receive(new Uint8Array(100));
    assertEquals(decoder.decode(reply), "re hi\n");
  } finally {
    const stopped = performance.now();
    listen.kill("SIGTERM");
    const r = await listen.result();
    assertEquals(r.code, 143, r.stderr);
    const took = performance.now() - stopped;
    assert(took < 3000, `SIGTERM took ${Math.round(took)} ms to end the server`);
    assertEquals(r.stderr.match(/datagrams dropped/g)?.length, 1, r.stderr);
    slow.close();
    chatty.close();
    quick.close();
  }
});

/**
 * 200 clients, each from its own 127.0.N.M address (any 127/8 address is
 * loopback's), ask once and keep their sockets; then one more client asks,
 * and the first one asks again. Prints JSON: how many of the 200 were
 * answered within 5 s, and how long the newcomer and the second question
 * waited (null: no answer within 5 s).
 */
const SOURCE_FLOOD = `
import json, select, socket, sys, time
port = int(sys.argv[1]); n = int(sys.argv[2])
def ask(s, text):
    s.settimeout(5)
    start = time.monotonic()
    s.sendto(text, ("127.0.0.1", port))
    try:
        while s.recv(100) != b"re:" + text:
            pass
        return time.monotonic() - start
    except socket.timeout:
        return None
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.%d.%d" % (1 + i // 250, 1 + i % 250), 0))
    s.sendto(b"x", ("127.0.0.1", port))
    socks.append(s)
pending = set(socks)
deadline = time.monotonic() + 5
while pending and time.monotonic() < deadline:
    ready, _, _ = select.select(list(pending), [], [], 0.1)
    for s in ready:
        s.recv(100)
        pending.discard(s)
newcomer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
newcomer.bind(("127.0.9.9", 0))
print(json.dumps({
    "answered": n - len(pending),
    "newcomer": ask(newcomer, b"new"),
    "again": ask(socks[0], b"again"),
}), flush=True)
`;

Deno.test("forward udp:// with the start task's permissions: 200 client addresses do not starve the next one", async () => {
  await using server = await replyServer();
  // deno task start's flags: --allow-ffi (upstream sockets connected through libc) and the
  // tokio variable (the server runs in the fair worker).
  const forward = spawnSockit(
    ["forward", "udp://127.0.0.1:0", `udp://127.0.0.1:${server.port}`, "-v", "--max-conns", "1000"],
    {
      process: true,
      perms: [
        "--allow-net",
        "--allow-read",
        "--allow-write",
        "--allow-run",
        "--allow-ffi",
        "--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK",
      ],
    },
  );
  try {
    const port = Number((await forward.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    const out = await new Deno.Command(requireTool("python3"), {
      args: ["-c", SOURCE_FLOOD, String(port), "200"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const got = JSON.parse(decoder.decode(out.stdout) || "{}");
    // Each session's upstream socket used to wait in a poll() of its own on one of Deno's
    // few blocking threads: ~130 of 200 answered, a newcomer waited 4 s, an old one 3 s.
    assertEquals(got.answered, 200, `${decoder.decode(out.stderr)}${JSON.stringify(got)}`);
    assert(got.newcomer !== null && got.newcomer < 2, `the newcomer waited ${got.newcomer} s`);
    assert(got.again !== null && got.again < 2, `the second question waited ${got.again} s`);
  } finally {
    forward.kill("SIGTERM");
    assertEquals((await forward.result()).code, 143);
  }
});

Deno.test("echo udp://: each sender is a session of its own — --idle-timeout ends it quietly, --max-conns caps them", async () => {
  const echo = spawnSockit([
    "echo",
    "udp://127.0.0.1:0",
    "-v",
    "--idle-timeout",
    "300ms",
    "--max-conns",
    "1",
  ]);
  const port = Number((await echo.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  const a = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const b = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await a.send(new TextEncoder().encode("one"), to);
    assertEquals(decoder.decode((await a.receive())[0]), "one");
    // The one session is taken: a second sender is dropped, said once.
    await b.send(new TextEncoder().encode("two"), to);
    await echo.waitForStderr(/warning: --max-conns 1 sessions reached: dropped a datagram/);
    // a's session ends after 300 ms of quiet (not a failure), which frees the slot for b.
    const aPort = (a.addr as Deno.NetAddr).port;
    await echo.waitForStderr(
      new RegExp(
        `closed udp://127\\.0\\.0\\.1:${aPort} \\(sent 3 B, received 3 B, [^;]*; idle for 300 ms\\)`,
      ),
    );
    await b.send(new TextEncoder().encode("three"), to);
    assertEquals(decoder.decode((await b.receive())[0]), "three");
  } finally {
    echo.kill("SIGTERM");
    const r = await echo.result();
    assertEquals(r.code, 143, r.stderr);
    assertEquals(r.stderr.match(/datagrams from 127\.0\.0\.1:\d+/g)?.length, 2, r.stderr);
    assert(!/no datagram for|idle timeout/.test(r.stderr), r.stderr);
    a.close();
    b.close();
  }
});

Deno.test("listen -k udp://: a sender's session ends after --idle-timeout; the server and the others go on; --max-conns caps them", async () => {
  const listen = spawnSockit([
    "listen",
    "-k",
    "udp://127.0.0.1:0",
    "-v",
    "--idle-timeout",
    "300ms",
    "--hex",
    "--max-conns",
    "1",
  ]);
  const port = Number((await listen.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  const a = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const b = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await a.send(new TextEncoder().encode("from a\n"), to);
    await listen.waitForStderr(/datagrams from 127\.0\.0\.1:\d+/);
    // One session at once: b is dropped while a's lasts.
    await b.send(new TextEncoder().encode("too soon\n"), to);
    await listen.waitForStderr(/warning: --max-conns 1 sessions reached: dropped a datagram/);
    await listen.waitForStderr(
      /closed udp:\/\/127\.0\.0\.1:\d+ \(sent 0 B, received 7 B, [^;]*; idle for 300 ms\)/,
    );
    // The server did not end with the session (it used to exit 124 here).
    await b.send(new TextEncoder().encode("from b\n"), to);
    // Written to stdout (the dump of a chunk comes after it is written).
    const bPort = (b.addr as Deno.NetAddr).port;
    await listen.waitForStderr(new RegExp(`< #\\d+ udp://127\\.0\\.0\\.1:${bPort} 7 bytes`));
  } finally {
    listen.kill("SIGTERM");
    const r = await listen.result();
    assertEquals([r.code, r.text], [143, "from a\nfrom b\n"], r.stderr);
    a.close();
    b.close();
  }
});

/** A datagram listener on 127.0.0.1 with its warnings gathered, and a way to send to it. */
function datagramListener(): {
  listener: DatagramListener;
  warnings: string[];
  send(from: Deno.DatagramConn, text: string): Promise<number>;
} {
  const warnings: string[] = [];
  const listener = new DatagramListener(bindDatagram("127.0.0.1", 0), {
    scheme: "udp",
    prefix: "udp://",
    onWarning: (text) => warnings.push(text),
  });
  const port = Number(listener.address.split(":")[1]);
  return {
    listener,
    warnings,
    send: (from, text) =>
      from.send(new TextEncoder().encode(text), { transport: "udp", hostname: "127.0.0.1", port }),
  };
}

/** A UDP socket on 127.0.0.1 that `using` closes. */
const udpSocket = (): Deno.DatagramConn & Disposable => {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  return Object.assign(conn, { [Symbol.dispose]: () => conn.close() });
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("datagram listener: a peer per sender, each reading its own datagrams; the socket closes with the last peer", async () => {
  const { listener, send } = datagramListener();
  using a = udpSocket();
  using b = udpSocket();
  await send(a, "a1");
  await send(b, "b1");
  await send(a, "a2");
  const pa = await listener.accept();
  const pb = await listener.accept();
  const buf = new Uint8Array(65536);
  const read = async (peer: typeof pa) => decoder.decode(buf.subarray(0, (await peer.read(buf))!));
  assertEquals([await read(pa), await read(pa), await read(pb)], ["a1", "a2", "b1"]);
  assertEquals(pa.remoteAddress, `udp://127.0.0.1:${(a.addr as Deno.NetAddr).port}`);
  // A closed listener accepts no one more, but its open peers go on.
  listener.close();
  await send(b, "b2");
  assertEquals(await read(pb), "b2");
  await pb.write(new TextEncoder().encode("to b"));
  assertEquals(decoder.decode((await b.receive())[0]), "to b");
  pa.close();
  pb.close();
  // The socket went with the last peer.
  await listener.released;
});

Deno.test("datagram listener: while full, new senders are dropped with one warning; a refused sender's run is dropped", async () => {
  const { listener, warnings, send } = datagramListener();
  using a = udpSocket();
  using b = udpSocket();
  using c = udpSocket();
  await send(a, "a");
  const pa = await listener.accept();
  listener.full("--max-conns 1");
  await send(b, "b1");
  await send(b, "b2");
  await sleep(100);
  assertEquals(warnings, ["--max-conns 1 sessions reached: dropped a datagram from a new client"]);
  listener.full(undefined);
  // Refused at once: the rest of c's run of datagrams makes no new peer.
  await send(c, "c1");
  const pc = await listener.accept();
  listener.refused(pc);
  pc.close();
  await send(c, "c2");
  await send(b, "b3");
  const pb = await listener.accept();
  const buf = new Uint8Array(65536);
  assertEquals(decoder.decode(buf.subarray(0, (await pb.read(buf))!)), "b3");
  for (const peer of [pa, pb]) peer.close();
  listener.close();
  await listener.released;
  // The count of the drops comes when the window closes (here: with the listener).
  assertEquals(warnings.length, 2, warnings.join("\n"));
  assertMatch(warnings[1], /\(1 more time\)$/);
});

Deno.test("datagram listener: a peer that is not read holds at most PEER_QUEUE bytes, then drops with one warning", async () => {
  const { listener, warnings, send } = datagramListener();
  using a = udpSocket();
  const chunk = "x".repeat(8000);
  await send(a, chunk);
  const peer = await listener.accept();
  // Paced so that the kernel drops none: the peer's queue is what overflows.
  const count = Math.ceil(PEER_QUEUE / 8000) + 10;
  for (let i = 0; i < count; i++) {
    await send(a, chunk);
    if (i % 8 === 7) await sleep(2);
  }
  await sleep(100);
  assertEquals(warnings.length, 1, warnings.join("\n"));
  assertMatch(warnings[0], /^127\.0\.0\.1:\d+: datagrams dropped: 256 KiB wait to be relayed$/);
  const buf = new Uint8Array(65536);
  let read = 0;
  peer.cancelRead();
  while ((await peer.read(buf)) !== null) read++;
  assert(read > 20 && read < count, `${read} of ${count + 1} datagrams read`);
  peer.close();
  listener.close();
  await listener.released;
});

Deno.test("datagram listener: a peer ends itself when idle (its reason in endInfo); a following peer does not, and answers the latest sender", async () => {
  const { listener, send } = datagramListener();
  using a = udpSocket();
  using b = udpSocket();
  await send(a, "a");
  const peer = await listener.accept();
  assertEquals(peer.idle(100), true);
  const buf = new Uint8Array(65536);
  assertEquals(await peer.read(buf), 1);
  assertEquals(await peer.read(buf), null);
  assertEquals(peer.endInfo(), { reason: "idle for 100 ms" });
  peer.close();
  listener.close();
  await listener.released;

  const seen: string[] = [];
  const follows = new DatagramListener(bindDatagram("127.0.0.1", 0), {
    scheme: "udp",
    prefix: "udp://",
    follow: {
      greeting: () => Promise.resolve([new TextEncoder().encode("hello")]),
      onPeer: (info) => seen.push(info.label!),
    },
  });
  const port = Number(follows.address.split(":")[1]);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  await a.send(new TextEncoder().encode("first"), to);
  const one = await follows.accept();
  // A server of one session: the listener stops accepting, the one peer follows.
  follows.close();
  assertEquals(one.idle(100), false);
  assertEquals(await one.read(buf), 5);
  await b.send(new TextEncoder().encode("second"), to);
  assertEquals(await one.read(buf), 6);
  // The newcomer was greeted, and is who the peer answers now.
  assertEquals(decoder.decode((await b.receive())[0]), "hello");
  await one.write(new TextEncoder().encode("to the latest"));
  assertEquals(decoder.decode((await b.receive())[0]), "to the latest");
  assertEquals(seen, [`127.0.0.1:${(b.addr as Deno.NetAddr).port}`]);
  assertEquals(
    one.sessions().map((s) => [s.received, s.sent]),
    [[5, 0], [6, 5 + 13]],
  );
  one.close();
  await follows.released;
});
