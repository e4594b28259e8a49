/**
 * Proxies both ways: `--proxy` on the clients (through microsocks, dante,
 * tinyproxy and `sockit proxy`), and `sockit proxy` as a server (through
 * curl's SOCKS and HTTP clients), on loopback with real peers.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  freePort,
  randomBytes,
  requireTool,
  runSockit,
  sha256,
  spawnSockit,
  tempSocketDir,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A peer process, ended by its PID when the test is done. */
class Peer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  constructor(argv: string[], options: { cwd?: string } = {}) {
    this.child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: options.cwd,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  /** Waits until the peer accepts on `port` (10 s at most). */
  async listening(port: number): Promise<this> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return this;
      } catch {
        if (Date.now() > deadline) throw new Error(`peer never listened on ${port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.child.status;
  }
}

/** A directory with a 1 MB file, served by Python's http.server. */
async function webServer(): Promise<{ peer: Peer; port: number; hash: string; dir: string }> {
  const dir = tempSocketDir();
  const blob = randomBytes(1_000_000);
  await Deno.writeFile(`${dir}/blob.bin`, blob);
  const port = freePort();
  const peer = await new Peer(
    [requireTool("python3"), "-m", "http.server", String(port), "--bind", "127.0.0.1"],
    { cwd: dir },
  ).listening(port);
  return { peer, port, hash: sha256(blob), dir };
}

/** `sockit proxy` in this process, on a free port. */
async function sockitProxy(args: string[] = []) {
  const run = spawnSockit(["proxy", "127.0.0.1:0", "-v", ...args]);
  const port = await run.listeningPort();
  return { run, port };
}

async function stop(run: ReturnType<typeof spawnSockit>) {
  run.kill("SIGTERM");
  return await run.result();
}

/** curl's output (the body) and exit code. */
async function curl(args: string[]): Promise<{ code: number; body: Uint8Array }> {
  const out = await new Deno.Command(requireTool("curl"), {
    args: ["-s", "--max-time", "20", ...args],
    stdout: "piped",
    stderr: "null",
  }).output();
  return { code: out.code, body: out.stdout };
}

// ---- sockit proxy, through curl ------------------------------------------------------

Deno.test("proxy: curl through sockit proxy — SOCKS5, SOCKS5h, SOCKS4, SOCKS4a, HTTP GET and CONNECT", async () => {
  const web = await webServer();
  await using _web = web.peer;
  const { run, port } = await sockitProxy();
  try {
    const url = `http://127.0.0.1:${web.port}/blob.bin`;
    const named = `http://localhost:${web.port}/blob.bin`;
    for (
      const args of [
        ["--socks5", `127.0.0.1:${port}`, url],
        ["--socks5-hostname", `127.0.0.1:${port}`, named],
        ["--socks4", `127.0.0.1:${port}`, url],
        ["--socks4a", `127.0.0.1:${port}`, named],
        ["-x", `http://127.0.0.1:${port}`, url],
        ["-x", `http://127.0.0.1:${port}`, "--proxytunnel", url],
      ]
    ) {
      const got = await curl(args);
      assertEquals(got.code, 0, args.join(" "));
      assertEquals(sha256(got.body), web.hash, args.join(" "));
    }
  } finally {
    const r = await stop(run);
    for (const protocol of ["socks5", "socks4", "socks4a", "http", "http-connect"]) {
      assertMatch(
        r.stderr,
        new RegExp(`→ [\\w.]+:${web.port}( \\([\\d.:]+\\))? by ${protocol}\\n`),
      );
    }
    await Deno.remove(web.dir, { recursive: true });
  }
});

Deno.test("proxy: --auth — right credentials pass, wrong ones are refused and logged", async () => {
  const web = await webServer();
  await using _web = web.peer;
  const authFile = await Deno.makeTempFile();
  await Deno.writeTextFile(authFile, "# users\nbob:hunter2\n");
  const { run, port } = await sockitProxy(["--auth", "alice:s3:cret", "--auth-file", authFile]);
  try {
    const url = `http://127.0.0.1:${web.port}/blob.bin`;
    for (const user of ["alice:s3:cret", "bob:hunter2"]) {
      const socks = await curl(["--socks5-hostname", `${user}@127.0.0.1:${port}`, url]);
      assertEquals([socks.code, sha256(socks.body)], [0, web.hash], user);
    }
    const http = await curl(["-x", `http://alice:s3%3Acret@127.0.0.1:${port}`, url]);
    assertEquals([http.code, sha256(http.body)], [0, web.hash]);
    const wrongSocks = await curl(["--socks5-hostname", `alice:nope@127.0.0.1:${port}`, url]);
    assert(wrongSocks.code !== 0, "curl succeeded with a wrong SOCKS5 password");
    const wrongHttp = await curl(["-f", "-x", `http://alice:nope@127.0.0.1:${port}`, url]);
    assert(wrongHttp.code !== 0, "curl succeeded with a wrong HTTP password");
    const none = await curl(["-f", "-x", `http://127.0.0.1:${port}`, url]);
    assert(none.code !== 0, "curl succeeded without credentials");
    // SOCKS4 carries no password: refused when --auth is on.
    const socks4 = await curl(["--socks4", `127.0.0.1:${port}`, url]);
    assert(socks4.code !== 0, "SOCKS4 got through an --auth proxy");
  } finally {
    const r = await stop(run);
    assertMatch(r.stderr, /authentication failed for user "alice" \(SOCKS5\)/);
    assertMatch(r.stderr, /authentication failed for user "alice" \(HTTP Basic\)/);
    assertMatch(r.stderr, /authentication required: no Proxy-Authorization/);
    assertMatch(r.stderr, /authentication required: SOCKS4 carries no password/);
    assertMatch(r.stderr, /as "bob"/);
    await Deno.remove(authFile);
    await Deno.remove(web.dir, { recursive: true });
  }
});

Deno.test("proxy: --deny-target 127.0.0.0/8 refuses localhost by name, with each protocol's refusal", async () => {
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { run, port } = await sockitProxy(["--deny-target", "127.0.0.0/8"]);
  try {
    const to = `localhost:${target.addr.port}`;
    const cases: [string, RegExp][] = [
      ["socks5h", /connection not allowed by ruleset \(SOCKS5 reply 2\)/],
      ["socks4a", /request rejected or failed \(SOCKS4 reply 0x5b\)/],
      ["http", /HTTP\/1\.1 403 Forbidden/],
    ];
    for (const [scheme, why] of cases) {
      const r = await runSockit([
        "connect",
        to,
        "--proxy",
        `${scheme}://127.0.0.1:${port}`,
        "--send",
        "x",
      ]);
      assertEquals(r.code, 1, scheme);
      assertMatch(r.stderr, why);
    }
  } finally {
    target.close();
    const r = await stop(run);
    assertEquals(
      r.stderr.match(/refused [^\n]*denied by --deny-target 127\.0\.0\.0\/8/g)?.length,
      3,
    );
  }
});

Deno.test("proxy: a plain HTTP request is rewritten to origin form, hop-by-hop headers dropped", async () => {
  const origin = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = (async () => {
    using conn = await origin.accept();
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += decoder.decode(buf.subarray(0, n));
    }
    await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    return text;
  })();
  const { run, port } = await sockitProxy(["--auth", "u:p"]);
  try {
    const request = [
      `GET http://127.0.0.1:${origin.addr.port}/path?q=1 HTTP/1.1`,
      "Host: wrong.example",
      `Proxy-Authorization: Basic ${btoa("u:p")}`,
      "Proxy-Connection: keep-alive",
      "Connection: keep-alive, X-Secret",
      "X-Secret: drop me",
      "X-Keep: yes",
    ].join("\r\n") + "\r\n\r\n";
    const r = await runSockit(["connect", `127.0.0.1:${port}`, "--send", request]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.text, /^HTTP\/1\.1 200 OK[\s\S]*ok$/);
    const head = await seen;
    assertEquals(head.split("\r\n")[0], "GET /path?q=1 HTTP/1.1");
    assertMatch(head, new RegExp(`\r\nHost: 127\\.0\\.0\\.1:${origin.addr.port}\r\n`));
    assertMatch(head, /\r\nX-Keep: yes\r\n/);
    assertMatch(head, /\r\nConnection: close\r\n/);
    for (const gone of [/Proxy-/i, /X-Secret/, /keep-alive/i, /wrong\.example/]) {
      assert(!gone.test(head), `${gone} reached the origin:\n${head}`);
    }
  } finally {
    origin.close();
    await stop(run);
  }
});

Deno.test("proxy: a client that never finishes its request is closed after --request-timeout", async () => {
  const { run, port } = await sockitProxy(["--request-timeout", "300ms"]);
  try {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("CONNECT 127.0.0.1:1 HTTP/1.1\r\n"));
    const started = Date.now();
    const buf = new Uint8Array(64);
    const n = await conn.read(buf).catch(() => null);
    assertEquals(n, null);
    assert(Date.now() - started < 3000, "the slow client held its connection");
  } finally {
    const r = await stop(run);
    assertMatch(r.stderr, /no complete request within 300 ms/);
  }
});

// ---- --proxy through third-party proxies -----------------------------------------------

/** A sockit echo server in this process. */
async function echoServer() {
  const run = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  return { run, port: await run.listeningPort() };
}

/**
 * One line through the proxy to an echo server and back. The write side
 * stays open until the echo came: microsocks and tinyproxy close both ways
 * when the client half-closes (they do not pass half-close on).
 */
async function throughProxy(proxyUrl: string, port: number, host = "localhost") {
  const line = `hello via ${proxyUrl}\n`;
  return await runSockit([
    "connect",
    `${host}:${port}`,
    "--proxy",
    proxyUrl,
    "-v",
    "--no-half-close",
    "--send",
    line,
    "--expect",
    "hello via .*\\n",
    "--timeout",
    "10s",
  ]);
}

Deno.test("--proxy: through microsocks, with and without authentication", async () => {
  const echo = await echoServer();
  const plainPort = freePort();
  const authPort = freePort();
  const microsocks = requireTool("microsocks");
  await using _a = await new Peer([microsocks, "-i", "127.0.0.1", "-p", String(plainPort)])
    .listening(plainPort);
  await using _b = await new Peer([
    microsocks,
    "-i",
    "127.0.0.1",
    "-p",
    String(authPort),
    "-u",
    "alice",
    "-P",
    "s3cret",
  ]).listening(authPort);
  try {
    for (
      const url of [
        `socks5://127.0.0.1:${plainPort}`,
        `socks5h://127.0.0.1:${plainPort}`,
        `socks5h://alice:s3cret@127.0.0.1:${authPort}`,
      ]
    ) {
      const r = await throughProxy(url, echo.port);
      assertEquals([r.code, r.text], [0, `hello via ${url}\n`], r.stderr);
      assertMatch(r.stderr, /through the proxy socks5h?:\/\//);
    }
    const wrong = await throughProxy(`socks5h://alice:nope@127.0.0.1:${authPort}`, echo.port);
    assertEquals(wrong.code, 1);
    assertMatch(wrong.stderr, /authentication failed: the proxy refused user "alice"/);
    const none = await throughProxy(`socks5h://127.0.0.1:${authPort}`, echo.port);
    assertEquals(none.code, 1);
    assertMatch(none.stderr, /authentication failed: the proxy wants credentials/);
    // microsocks does not speak SOCKS4: it hangs up, and that is said.
    const socks4 = await throughProxy(`socks4://127.0.0.1:${plainPort}`, echo.port, "127.0.0.1");
    assertEquals(socks4.code, 1);
    assertMatch(socks4.stderr, /the proxy closed the connection during the socks4 handshake/);
  } finally {
    await stop(echo.run);
  }
});

Deno.test("--proxy: through dante (SOCKS4, SOCKS5, SOCKS5h)", async () => {
  const danted = requireTool("danted");
  const echo = await echoServer();
  const port = freePort();
  const dir = tempSocketDir();
  await Deno.writeTextFile(
    `${dir}/danted.conf`,
    [
      "logoutput: stderr",
      `internal: 127.0.0.1 port = ${port}`,
      "external: 127.0.0.1",
      "clientmethod: none",
      "socksmethod: none",
      "user.privileged: root",
      "user.unprivileged: nobody",
      "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
      "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }",
    ].join("\n") + "\n",
  );
  await using _dante = await new Peer([
    danted,
    "-f",
    `${dir}/danted.conf`,
    "-N",
    "1",
    "-p",
    `${dir}/pid`,
  ]).listening(port);
  try {
    // dante resolves names for SOCKS5 (socks5h) but refuses SOCKS4a's (it answers 0x5b).
    for (const scheme of ["socks4", "socks5", "socks5h"]) {
      const url = `${scheme}://127.0.0.1:${port}`;
      const r = await throughProxy(url, echo.port, scheme === "socks4" ? "127.0.0.1" : "localhost");
      assertEquals([r.code, r.text], [0, `hello via ${url}\n`], r.stderr);
    }
  } finally {
    await stop(echo.run);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--proxy: through tinyproxy (HTTP CONNECT) and through sockit proxy (every scheme)", async () => {
  const echo = await echoServer();
  const port = freePort();
  const conf = await Deno.makeTempFile();
  await Deno.writeTextFile(
    conf,
    `Port ${port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Critical\nMaxClients 50\n`,
  );
  await using _tiny = await new Peer([requireTool("tinyproxy"), "-d", "-c", conf]).listening(port);
  const mine = await sockitProxy();
  try {
    const tiny = await throughProxy(`http://127.0.0.1:${port}`, echo.port);
    assertEquals([tiny.code, tiny.text], [0, `hello via http://127.0.0.1:${port}\n`], tiny.stderr);
    const refused = await throughProxy(`http://127.0.0.1:${port}`, freePort(), "127.0.0.1");
    assertEquals(refused.code, 1);
    assertMatch(refused.stderr, /the proxy could not connect: HTTP\/1\.\d 5\d\d/);
    for (const scheme of ["socks5", "socks5h", "socks4", "socks4a", "http"]) {
      const url = `${scheme}://127.0.0.1:${mine.port}`;
      const r = await throughProxy(url, echo.port);
      assertEquals([r.code, r.text], [0, `hello via ${url}\n`], `${scheme}: ${r.stderr}`);
    }
  } finally {
    await stop(mine.run);
    await stop(echo.run);
    await Deno.remove(conf);
  }
});

Deno.test("--proxy: ssh ProxyCommand style — 64 MiB each way with half-close, sha256-checked", async () => {
  const echo = await echoServer();
  const mine = await sockitProxy();
  try {
    const data = randomBytes(64 * 2 ** 20);
    const r = await runSockit(
      ["connect", `localhost:${echo.port}`, "--proxy", `socks5h://127.0.0.1:${mine.port}`],
      { stdin: data, process: true, perms: ["--allow-net"] },
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.length, data.length);
    assertEquals(sha256(r.stdout), sha256(data));
  } finally {
    const p = await stop(mine.run);
    assertMatch(p.stderr, /closed [^\n]*sent 64(\.0)? MiB, received 64(\.0)? MiB/);
    await stop(echo.run);
  }
});

Deno.test("--proxy: errors in words — proxy down, target refused, mid-handshake close, slow greeting (124)", async () => {
  // Proxy down.
  const down = await runSockit([
    "connect",
    "127.0.0.1:9",
    "--proxy",
    `socks5://127.0.0.1:${freePort()}`,
    "--send",
    "x",
  ]);
  assertEquals(down.code, 1);
  assertMatch(
    down.stderr,
    /connect 127\.0\.0\.1:9 through socks5:\/\/127\.0\.0\.1:\d+: the proxy: connection refused/,
  );
  // The target refuses, through the proxy.
  const mine = await sockitProxy();
  try {
    const refused = await runSockit([
      "connect",
      `127.0.0.1:${freePort()}`,
      "--proxy",
      `socks5://127.0.0.1:${mine.port}`,
      "--send",
      "x",
    ]);
    assertEquals(refused.code, 1);
    assertMatch(
      refused.stderr,
      /the proxy could not connect: connection refused \(SOCKS5 reply 5\)/,
    );
  } finally {
    await stop(mine.run);
  }
  // A proxy that reads the greeting and hangs up; one that never answers.
  const fake = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let mode: "close" | "silent" = "close";
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of fake) {
      if (mode === "close") {
        await conn.read(new Uint8Array(16));
        conn.close();
      } else held.push(conn);
    }
  })();
  try {
    const closed = await runSockit([
      "connect",
      "127.0.0.1:9",
      "--proxy",
      `socks5://127.0.0.1:${fake.addr.port}`,
      "--send",
      "x",
    ]);
    assertEquals(closed.code, 1);
    assertMatch(closed.stderr, /the proxy closed the connection during the socks5 handshake/);
    mode = "silent";
    const started = Date.now();
    const slow = await runSockit([
      "connect",
      "127.0.0.1:9",
      "--proxy",
      `http://127.0.0.1:${fake.addr.port}`,
      "--timeout",
      "400ms",
      "--send",
      "x",
    ]);
    assertEquals(slow.code, 124, slow.stderr);
    assertMatch(slow.stderr, /timed out after 400 ms/);
    assert(Date.now() - started < 5000);
  } finally {
    fake.close();
    await serving.catch(() => {});
    for (const c of held) c.close();
  }
  // Usage errors.
  for (
    const [args, why] of [
      [["connect", "udp://127.0.0.1:53", "--proxy", "socks5://p:1"], /--proxy tunnels TCP streams/],
      [["connect", "127.0.0.1:1", "--proxy", "ftp://p:1"], /unknown proxy scheme "ftp"/],
      [["connect", "127.0.0.1:1", "--proxy", "https://p:1"], /https:\/\/\) is not supported/],
    ] as const
  ) {
    const r = await runSockit([...args]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, why);
  }
});

Deno.test("--proxy: bytes the proxy sends right after its reply belong to the session", async () => {
  // Debian bug 969314: ncat lost a server's banner that came in the same segment as the reply.
  const fake = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of fake) {
      const buf = new Uint8Array(1024);
      let text = "";
      while (!text.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += decoder.decode(buf.subarray(0, n));
      }
      await conn.write(
        encoder.encode("HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-banner\r\n"),
      );
      await conn.closeWrite();
      while (await conn.read(buf) !== null) { /* drain */ }
      conn.close();
    }
  })();
  try {
    const r = await runSockit([
      "connect",
      "example.invalid:22",
      "--proxy",
      `http://127.0.0.1:${fake.addr.port}`,
    ], { stdin: "null" });
    assertEquals([r.code, r.text], [0, "SSH-2.0-banner\r\n"], r.stderr);
  } finally {
    fake.close();
    await serving.catch(() => {});
  }
});

Deno.test("--proxy: scan, wait, forward and nc -x go through the proxy", async () => {
  const echo = await echoServer();
  const mine = await sockitProxy();
  const proxyUrl = `socks5h://127.0.0.1:${mine.port}`;
  try {
    const closed = freePort();
    const scan = await runSockit([
      "scan",
      "localhost",
      `${echo.port},${closed}`,
      "--proxy",
      proxyUrl,
    ]);
    assertEquals([scan.code, scan.text], [0, `${echo.port}\n`], scan.stderr);
    const wait = await runSockit([
      "wait",
      `localhost:${echo.port}`,
      "--proxy",
      proxyUrl,
      "--timeout",
      "5s",
    ]);
    assertEquals(wait.code, 0, wait.stderr);
    const nc = await runSockit([
      "nc",
      "-N",
      "-x",
      `127.0.0.1:${mine.port}`,
      "localhost",
      String(echo.port),
    ], {
      stdin: encoder.encode("via nc -x\n"),
    });
    assertEquals([nc.code, nc.text], [0, "via nc -x\n"], nc.stderr);
    const ncConnect = await runSockit(
      ["nc", "-N", "-X", "connect", "-x", `127.0.0.1:${mine.port}`, "localhost", String(echo.port)],
      { stdin: encoder.encode("via nc -X connect\n") },
    );
    assertEquals([ncConnect.code, ncConnect.text], [0, "via nc -X connect\n"], ncConnect.stderr);
    const forward = spawnSockit([
      "forward",
      "127.0.0.1:0",
      `localhost:${echo.port}`,
      "--proxy",
      proxyUrl,
      "-v",
    ]);
    const forwardPort = await forward.listeningPort();
    const through = await runSockit(["connect", `127.0.0.1:${forwardPort}`], {
      stdin: encoder.encode("via forward\n"),
    });
    assertEquals([through.code, through.text], [0, "via forward\n"], through.stderr);
    const f = await stop(forward);
    assertMatch(f.stderr, /through the proxy socks5h:\/\//);
  } finally {
    const p = await stop(mine.run);
    // scan (2 tunnels, one refused), wait, nc ×2, forward: each went through the proxy.
    assert((p.stderr.match(/ by socks5\b| by http-connect\b/g)?.length ?? 0) >= 5, p.stderr);
    await stop(echo.run);
  }
});

Deno.test("--proxy: --trace shows the handshake; -v names the proxy; the password never shows", async () => {
  const echo = await echoServer();
  const mine = await sockitProxy(["--auth", "alice:s3cret"]);
  try {
    const r = await runSockit(
      [
        "connect",
        `localhost:${echo.port}`,
        "--proxy",
        `socks5h://alice:s3cret@127.0.0.1:${mine.port}`,
        "-v",
        "--trace",
      ],
      { stdin: encoder.encode("x") },
    );
    assertEquals(r.code, 0, r.stderr);
    assertMatch(
      r.stderr,
      /socks5 greeting \(no authentication, username\/password\) = username\/password/,
    );
    assertMatch(r.stderr, /socks5 username\/password \(user "alice"\) = ok/);
    assertMatch(r.stderr, new RegExp(`socks5 CONNECT localhost:${echo.port} = succeeded`));
    assertMatch(r.stderr, /through the proxy socks5h:\/\/alice:\*\*\*@127\.0\.0\.1:\d+/);
    assert(!r.stderr.includes("s3cret"), "the password was printed");
  } finally {
    await stop(mine.run);
    await stop(echo.run);
  }
});
