/**
 * Socket options and the smaller socat-level features: `--reuseport`,
 * `--nodelay`, `--keepalive` (checked under strace), abstract Unix sockets
 * (against socat's ABSTRACT-*), and `-o/--output` transcripts.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  freePort,
  requireTool,
  runSockit,
  sockitCommand,
  spawnSockit,
  tempSocketDir,
} from "./helpers.ts";
import { straced } from "./netns.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("--reuseport: two sockit servers share one port, and both serve", async () => {
  const port = freePort();
  const a = spawnSockit(["echo", `127.0.0.1:${port}`, "--reuseport", "-v"], {
    process: true,
    perms: ["--allow-net"],
  });
  await a.listeningPort();
  const b = spawnSockit(["echo", `127.0.0.1:${port}`, "--reuseport", "-v"], {
    process: true,
    perms: ["--allow-net"],
  });
  await b.listeningPort();
  try {
    for (let i = 0; i < 24; i++) {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode("x"));
      await conn.read(new Uint8Array(1));
    }
  } finally {
    a.kill("SIGTERM");
    b.kill("SIGTERM");
  }
  const [ra, rb] = [await a.result(), await b.result()];
  const served = [ra, rb].map((r) => r.stderr.match(/connection from/g)?.length ?? 0);
  assertEquals(served[0] + served[1], 24);
  assert(served[0] > 0 && served[1] > 0, `one server took them all: ${served}`);
  // Without --reuseport the second bind is refused, as before.
  const c = spawnSockit(["echo", `127.0.0.1:${port}`, "-v"], {
    process: true,
    perms: ["--allow-net"],
  });
  const first = await c.listeningPort();
  const refused = await runSockit(["echo", `127.0.0.1:${first}`]);
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /address already in use/);
  c.kill("SIGTERM");
  await c.result();
});

Deno.test("--nodelay, --keepalive, --ttl, --reuseport: the setsockopt calls strace sees, and --trace names", async () => {
  const strace = requireTool("strace");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    const conn = await listener.accept();
    conn.close();
  })();
  const log = await Deno.makeTempFile();
  try {
    const { kernel, ...r } = await straced("setsockopt", [
      ...sockitCommand(["--allow-net", "--allow-ffi"]),
      "connect",
      `127.0.0.1:${listener.addr.port}`,
      "--nodelay",
      "--keepalive",
      "--ttl",
      "7",
      "--trace",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(kernel, /setsockopt\(\d+, SOL_TCP, TCP_NODELAY, \[1\], 4\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_SOCKET, SO_KEEPALIVE, \[1\], 4\) = 0/);
    assertMatch(r.stderr, /setsockopt\(TCP_NODELAY, 1\) = 0/);
    assertMatch(r.stderr, /setsockopt\(SO_KEEPALIVE, 1\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_IP, IP_TTL, \[7\], 4\) = 0/);
    assertMatch(r.stderr, /setsockopt\(IP_TTL, 7\) = 0/);
    // A listener with --reuseport.
    const port = freePort();
    const server = new Deno.Command(strace, {
      args: [
        "-f",
        "-o",
        log,
        "-e",
        "trace=setsockopt",
        ...sockitCommand(["--allow-net"]),
        "listen",
        `127.0.0.1:${port}`,
        "--reuseport",
        "--send",
        "x",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch {
        if (Date.now() > deadline) throw new Error("the listener never came up");
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    await server.status;
    assertMatch(
      await Deno.readTextFile(log),
      /setsockopt\(\d+, SOL_SOCKET, SO_REUSEPORT, \[1\], 4\) = 0/,
    );
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Deno.remove(log);
  }
});

Deno.test("abstract Unix sockets: unix:@name with socat ABSTRACT-CONNECT / ABSTRACT-LISTEN, no file", async () => {
  const socat = requireTool("socat");
  const name = `sockit-test-${Deno.pid}-${Date.now()}`;
  const server = spawnSockit(["listen", `unix:@${name}`, "-v", "--send", "from sockit\\n"]);
  await server.waitForStderr(/listening on unix:@/);
  const out = await new Deno.Command(socat, {
    args: ["-", `ABSTRACT-CONNECT:${name}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = out.stdin.getWriter();
  await w.write(encoder.encode("from socat\n"));
  await w.close();
  const got = await out.output();
  const r = await server.result();
  assertEquals([r.code, r.text], [0, "from socat\n"], r.stderr);
  assertEquals(decoder.decode(got.stdout), "from sockit\n");
  // The other way: socat listens, sockit connects.
  const name2 = `${name}-2`;
  const listener = new Deno.Command(socat, {
    args: [`ABSTRACT-LISTEN:${name2}`, "SYSTEM:echo from-socat"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let client;
  for (let i = 0; i < 50; i++) {
    client = await runSockit(["connect", `unix:@${name2}`], { stdin: "null" });
    if (client.code === 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assertEquals([client!.code, client!.text], [0, "from-socat\n"], client!.stderr);
  await listener.status;
  // An abstract socket leaves nothing in the file system.
  for (const dir of [".", "/tmp"]) {
    for (const entry of Deno.readDirSync(dir)) assert(!entry.name.includes(name), entry.name);
  }
});

Deno.test("-o/--output: a transcript of the payload both ways; --append adds", async () => {
  const dir = tempSocketDir();
  const file = `${dir}/transcript.bin`;
  try {
    for (const round of [1, 2]) {
      const server = spawnSockit(["listen", "127.0.0.1:0", "-v", "--send", `reply ${round}\\n`]);
      const port = await server.listeningPort();
      const r = await runSockit(
        ["connect", `127.0.0.1:${port}`, "-o", file, ...(round === 2 ? ["--append"] : [])],
        { stdin: encoder.encode(`request ${round}\n`) },
      );
      assertEquals(r.code, 0, r.stderr);
      await server.result();
    }
    const text = await Deno.readTextFile(file);
    // Each session's bytes in the order they moved: the request, then the reply (or the other way).
    for (const round of [1, 2]) {
      assert(text.includes(`request ${round}\n`) && text.includes(`reply ${round}\n`), text);
    }
    assertEquals(text.length, "request 1\nreply 1\nrequest 2\nreply 2\n".length);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--ttl and --keepalive=IDLE on a server apply to each accepted connection (--trace)", async () => {
  const server = spawnSockit([
    "echo",
    "127.0.0.1:0",
    "--ttl",
    "5",
    "--keepalive=45",
    "--trace",
    "-v",
  ]);
  const port = await server.listeningPort();
  try {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("x"));
    await conn.read(new Uint8Array(1));
    await server.waitForStderr(/setsockopt\(IP_TTL, 5\) = 0/);
    await server.waitForStderr(/setsockopt\(TCP_KEEPIDLE, 45\) = 0/);
  } finally {
    server.kill("SIGTERM");
    await server.result();
  }
});

Deno.test("libc socket options without --allow-ffi: a server says so at start (126); nothing is left open", async () => {
  for (const option of [["--ttl", "5"], ["--keepalive=60"]]) {
    const r = await runSockit(["listen", "127.0.0.1:0", ...option], {
      process: true,
      perms: ["--allow-net"],
    });
    assertEquals(r.code, 126, r.stderr);
    assertMatch(r.stderr, /go through libc, which needs --allow-ffi/);
  }
  // A client: the connection it made is closed, exit 126.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept().then(async (conn) => {
    const n = await conn.read(new Uint8Array(8)).catch(() => null);
    conn.close();
    return n;
  });
  const r = await runSockit(["connect", `127.0.0.1:${listener.addr.port}`, "--keepalive=60"], {
    process: true,
    perms: ["--allow-net"],
  });
  assertEquals(r.code, 126, r.stderr);
  assertEquals(await accepted, null);
  listener.close();
});

Deno.test("--reuseport on udp://: two sockit receivers bind one port (SO_REUSEPORT, through libc) and both hear clients", async () => {
  const port = freePort();
  const start = () =>
    spawnSockit(["listen", `udp://127.0.0.1:${port}`, "--reuseport", "--trace", "-v"], {
      process: true,
      perms: ["--allow-net", "--allow-ffi"],
    });
  const a = start();
  await a.listeningPort();
  const b = start();
  await b.listeningPort();
  try {
    // Senders on many source ports: the kernel spreads them over both sockets.
    for (let i = 0; i < 32; i++) {
      const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      try {
        await client.send(encoder.encode(`d${i}\n`), {
          transport: "udp",
          hostname: "127.0.0.1",
          port,
        });
      } finally {
        client.close();
      }
    }
    // Both have heard at least one before they are stopped.
    await a.waitForStderr(/recvfrom\(\d+\) = \d+/);
    await b.waitForStderr(/recvfrom\(\d+\) = \d+/);
  } finally {
    a.kill("SIGTERM");
    b.kill("SIGTERM");
  }
  const [ra, rb] = [await a.result(), await b.result()];
  for (const r of [ra, rb]) {
    assertMatch(r.stderr, /setsockopt\(SO_REUSEPORT, 1\) = 0/);
    assertMatch(r.stderr, /bind\(127\.0\.0\.1:\d+\) = 0/);
  }
  const heard = [ra, rb].flatMap((r) => r.text.split("\n").filter(Boolean));
  assert(heard.length <= 32 && heard.length >= 2, heard.join(","));
  // Without --allow-ffi it says what it needs, in one line (exit 126).
  const denied = await runSockit(["listen", "udp://127.0.0.1:0", "--reuseport"], {
    process: true,
    perms: ["--allow-net"],
  });
  assertEquals(denied.code, 126, denied.stderr);
  assertMatch(denied.stderr, /--reuseport on udp:\/\/ goes through libc, which needs --allow-ffi/);
});
