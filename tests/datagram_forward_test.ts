/**
 * `forward udp://` against real peers: Python UDP clients and a Python UDP
 * server; a session per client, replies to the right client, sessions that
 * expire after their idle time.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { requireTool, runSockit, spawnSockit } from "./helpers.ts";

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
  const server = new Deno.Command(python, { args: ["-c", SERVER], stdout: "piped", stderr: "null" })
    .spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value!.trim());
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
    server.kill("SIGTERM");
    await reader.cancel().catch(() => {});
    await server.status;
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
