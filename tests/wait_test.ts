/**
 * `sockit wait` for HTTP(S) URLs and files, against real servers (Python's
 * http.server with a handler that answers 503 then 200, a redirect, an
 * HTTPS server with a test certificate), and the fixes around it: lines on
 * stderr with `-- CMD`, `--timeout 0`, a SYN nobody acknowledges.
 */

import { assert, assertEquals, assertMatch, assertNotMatch } from "./assert.ts";
import {
  freePort,
  localhostCertificate,
  requireTool,
  runSockit,
  SockitProcess,
  tempSocketDir,
} from "./helpers.ts";
import { waitFor } from "../lib/tools/wait.ts";

/**
 * A Python HTTP server on 127.0.0.1 (HTTPS with `cert`/`key`): `/flaky`
 * answers 503 twice then 200 "healthy"; `/moved` redirects to `/flaky`;
 * `/teapot` is 418; `/echo-method` answers 200 with the method and the
 * X-Probe header in its body; `/slow` never answers. It runs until killed.
 */
async function pythonHttp(tls?: { cert: string; key: string }) {
  const script = `
import http.server, socketserver, ssl, sys, time, threading
hits = {"flaky": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    def do_GET(self): self.route()
    def do_HEAD(self): self.route()
    def do_POST(self): self.route()
    def route(self):
        if self.path == "/flaky":
            hits["flaky"] += 1
            if hits["flaky"] <= 2: return self.reply(503, b"starting")
            return self.reply(200, b"healthy")
        if self.path == "/moved": return self.reply(302, b"", [("Location", "/flaky")])
        if self.path == "/teapot": return self.reply(418, b"short and stout")
        if self.path == "/echo-method":
            return self.reply(200, (self.command + " " + str(self.headers.get("X-Probe"))).encode())
        if self.path == "/slow":
            time.sleep(30)
        self.reply(404, b"no")
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
${
    tls
      ? `ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("${tls.cert}", "${tls.key}"); srv.socket = ctx.wrap_socket(srv.socket, server_side=True)`
      : ""
  }
print(srv.server_address[1], flush=True)
srv.serve_forever()
`;
  const child = new Deno.Command(requireTool("python3"), {
    args: ["-c", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  return {
    port,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel();
    },
  };
}

Deno.test("wait http://: 503 then 200 is ready; redirects are followed; the status is in the results", async () => {
  const server = await pythonHttp();
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const r = await runSockit(["wait", `${base}/moved`, "--interval", "50ms", "--timeout", "10s"]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.text, new RegExp(`^${base}/moved ready after .* \\(3 attempts\\)\\n$`));
    // Not ready in time: exit 124, the last status named.
    const teapot = await runSockit(["wait", `${base}/teapot`, "--timeout", "300ms", "--json"]);
    assertEquals(teapot.code, 124);
    assertMatch(teapot.stderr, /not ready: .*\/teapot \(answered 418 I'm a teapot\)/i);
    const line = JSON.parse(teapot.text.trim());
    assertEquals([line.ready, line.lastStatus.toLowerCase()], [false, "418 i'm a teapot"]);
    // --status accepts other classes; --method and --header are sent; --body must match.
    const accepted = await runSockit([
      "wait",
      `${base}/teapot`,
      "--status",
      "4xx",
      "--timeout",
      "2s",
    ]);
    assertEquals(accepted.code, 0, accepted.stderr);
    const probe = await runSockit([
      "wait",
      `${base}/echo-method`,
      "--method",
      "post",
      "-H",
      "X-Probe: yes",
      "--body",
      "^POST yes$",
      "--timeout",
      "2s",
    ]);
    assertEquals(probe.code, 0, probe.stderr);
    const wrongBody = await runSockit([
      "wait",
      `${base}/echo-method`,
      "--body",
      "nope",
      "--timeout",
      "300ms",
    ]);
    assertEquals(wrongBody.code, 124);
    assertMatch(wrongBody.stderr, /the body does not match \/nope\//);
    // A per-attempt limit: a request that hangs does not eat the whole timeout.
    const slow = await runSockit([
      "wait",
      `${base}/slow`,
      "--attempt-timeout",
      "200ms",
      "--timeout",
      "700ms",
      "--json",
    ]);
    assertEquals(slow.code, 124);
    const result = JSON.parse(slow.text.trim());
    assert(result.attempts >= 2, `several attempts: ${slow.text}`);
    assertMatch(result.lastError, /no answer within/);
  } finally {
    await server.stop();
  }
});

Deno.test("wait https://: verified with --cacert, refused without it; --insecure warns", async () => {
  const dir = tempSocketDir();
  const tls = localhostCertificate(dir);
  const server = await pythonHttp(tls);
  try {
    const url = `https://localhost:${server.port}/teapot`;
    const ok = await runSockit([
      "wait",
      url,
      "--cacert",
      tls.cert,
      "--status",
      "418",
      "--timeout",
      "5s",
    ]);
    assertEquals(ok.code, 0, ok.stderr);
    const unverified = await runSockit(["wait", url, "--status", "418", "--timeout", "500ms"]);
    assertEquals(unverified.code, 124);
    assertMatch(unverified.stderr, /unknown issuer/);
    const insecure = await runSockit([
      "wait",
      url,
      "--insecure",
      "--status",
      "418",
      "--timeout",
      "5s",
    ]);
    assertEquals(insecure.code, 0, insecure.stderr);
    assertMatch(insecure.stderr, /warning: --insecure/);
  } finally {
    await server.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("wait file:: ready when the file appears; --reverse when it is gone", async () => {
  const dir = tempSocketDir();
  const path = `${dir}/ready`;
  const later = setTimeout(() => Deno.writeTextFileSync(path, "up"), 300);
  const r = await runSockit(["wait", `file:${path}`, "--interval", "50ms", "--timeout", "5s"]);
  clearTimeout(later);
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.text, new RegExp(`^${path} ready after`));
  const gone = setTimeout(() => Deno.removeSync(path), 200);
  const rev = await runSockit(["wait", "--reverse", `file://${path}`, "--interval", "50ms"]);
  clearTimeout(gone);
  assertEquals(rev.code, 0, rev.stderr);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("wait: --timeout 0 is no limit, a tiny timeout is a limit, and -- CMD keeps stdout for the command", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const noLimit = await runSockit(["wait", `127.0.0.1:${listener.addr.port}`, "--timeout", "0"]);
  assertEquals(noLimit.code, 0, noLimit.stderr);
  const tiny = await runSockit(["wait", `127.0.0.1:${freePort()}`, "--timeout", "0.3ms"]);
  assertEquals(tiny.code, 124, tiny.stderr);
  // The command's stdout is its own: wait's line goes to stderr.
  const r = await runSockit(
    ["wait", `127.0.0.1:${listener.addr.port}`, "--", "sh", "-c", "echo from the command"],
    { process: true, perms: ["--allow-net", "--allow-run"] },
  );
  listener.close();
  assertEquals([r.code, r.text], [0, "from the command\n"]);
  assertMatch(r.stderr, /ready after/);
});

Deno.test("wait: a SYN nobody acknowledges is named as such, also in --json", async () => {
  // A listener whose accept queue is full drops new SYNs: the connect hangs.
  const python = new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
fill = []
for _ in range(3):
    c = socket.socket(); c.setblocking(False); c.connect_ex(s.getsockname()); fill.append(c)
time.sleep(0.2)
print(s.getsockname()[1], flush=True)
time.sleep(30)
`,
    ],
    stdout: "piped",
  }).spawn();
  const reader = python.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const r = await runSockit([
    "wait",
    `127.0.0.1:${port}`,
    "--timeout",
    "600ms",
    "--attempt-timeout",
    "250ms",
    "--json",
  ]);
  python.kill("SIGTERM");
  await python.status;
  await reader.cancel();
  assertEquals(r.code, 124);
  assertMatch(
    JSON.parse(r.text.trim()).lastError,
    /^no answer within \d+ ms \(SYN not acknowledged\)$/,
  );
  assertMatch(
    r.stderr,
    /not ready: 127\.0\.0\.1:\d+ \(no answer within \d+ ms \(SYN not acknowledged\)\)/,
  );
});

Deno.test("wait: an attempt cut before any answer could come never claims an unacknowledged SYN", async () => {
  const port = freePort();
  // Cut at 1 ms, by the attempt's limit or by the deadline, on a port that refuses: the
  // refusal is named when it came, else the time the attempt had — never a SYN.
  for (
    const limits of [
      ["--timeout", "1ms"],
      ["--timeout", "0.3ms"],
      ["--attempt-timeout", "1ms", "--timeout", "300ms"],
    ]
  ) {
    // A process, as users run it: its first connect takes long enough to be cut.
    const r = await runSockit(["wait", `127.0.0.1:${port}`, ...limits, "--json"], {
      process: true,
    });
    assertEquals(r.code, 124, r.stderr);
    const { lastError } = JSON.parse(r.text.trim());
    assertMatch(lastError, /^(connection refused|no answer within \d+ ms)$/, limits.join(" "));
  }
});

Deno.test("wait: an attempt cut while the name is being resolved says so, and ends on time", async () => {
  // A resolver that answers after 1.5 s (a silent DNS server): the attempt and the
  // deadline still end on time, and the words say what the attempt was waiting for.
  const late: Promise<void>[] = [];
  const lookup = () => {
    const { promise, resolve } = Promise.withResolvers<string[]>();
    late.push(
      new Promise<void>((done) => setTimeout(() => (resolve(["127.0.0.1"]), done()), 1500)),
    );
    return promise;
  };
  const started = performance.now();
  const [result] = await waitFor([{
    form: "host-port",
    scheme: "tcp",
    hostname: "db.invalid",
    port: 5432,
  }], {
    timeout: 400,
    attemptTimeout: 250,
    lookup,
  });
  const took = performance.now() - started;
  await Promise.all(late);
  assert(took < 1400, `waitFor ended after ${Math.round(took)} ms, with its 400 ms timeout`);
  assertEquals(result.ready, false);
  assertMatch(result.lastError ?? "", /^no answer within \d+ ms \(name not resolved\)$/);
});

/**
 * Four Python HTTP servers in one process, recording what reaches them: `a`
 * (http on 127.0.0.1), `b` (http on 127.0.0.2: another origin), `s` (https
 * on 127.0.0.1, certificate for localhost) and `u` (http over the Unix
 * socket `sock`). On each: `/ok` is 200; `/go?to=URL` redirects (302) to
 * URL; `/loop` redirects to itself. Each request is one JSON line: the
 * server, the path, and the Authorization, Cookie and X-Probe it carried.
 */
async function recordingServers(sock: string, tls: { cert: string; key: string }) {
  const script = `
import http.server, socketserver, ssl, json, sys, threading, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def address_string(self): return "peer"
    def do_GET(self):
        h = self.headers
        print(json.dumps({"server": self.server.name, "path": self.path,
            "authorization": h.get("Authorization"), "cookie": h.get("Cookie"),
            "probe": h.get("X-Probe")}), flush=True)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/go":
            to = urllib.parse.parse_qs(url.query)["to"][0]
            return self.reply(302, [("Location", to)])
        if url.path == "/loop": return self.reply(302, [("Location", "/loop")])
        self.reply(200 if url.path == "/ok" else 404)
    def reply(self, code, headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()
class T(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
class U(socketserver.ThreadingMixIn, socketserver.UnixStreamServer): daemon_threads = True
servers = {"a": T(("127.0.0.1", 0), H), "b": T(("127.0.0.2", 0), H), "s": T(("127.0.0.1", 0), H),
           "u": U(sys.argv[1], H)}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
servers["s"].socket = ctx.wrap_socket(servers["s"].socket, server_side=True)
for name, srv in servers.items():
    srv.name = name
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print(json.dumps({n: s.server_address[1] for n, s in servers.items() if n != "u"}), flush=True)
threading.Event().wait()
`;
  const child = new Deno.Command(requireTool("python3"), {
    args: ["-c", script, sock, tls.cert, tls.key],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("the Python servers ended");
      buffered += value;
    }
    const at = buffered.indexOf("\n");
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    return line;
  };
  const ports = JSON.parse(await nextLine()) as { a: number; b: number; s: number };
  type Hit = {
    server: string;
    path: string;
    authorization: string | null;
    cookie: string | null;
    probe: string | null;
  };
  const hits: Hit[] = [];
  const reading = (async () => {
    try {
      for (;;) hits.push(JSON.parse(await nextLine()));
    } catch {
      // The servers were stopped.
    }
  })();
  return {
    ports,
    /** The requests recorded since the last call (after a short settle). */
    async take(): Promise<Hit[]> {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return hits.splice(0);
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reading;
      await lines.cancel().catch(() => {});
    },
  };
}

Deno.test("wait: redirects keep -H headers on their origin, never downgrade https, never enter a Unix socket or another scheme, and stop at 10", async () => {
  const dir = tempSocketDir();
  const sock = `${dir}/docker.sock`;
  const tls = localhostCertificate(dir);
  const servers = await recordingServers(sock, tls);
  const { a, b, s } = servers.ports;
  const creds = [
    "-H",
    "Authorization: Bearer s3cret",
    "-H",
    "Cookie: session=s3cret",
    "-H",
    "X-Probe: s3cret",
  ];
  const go = (base: string, to: string) => `${base}/go?to=${encodeURIComponent(to)}`;
  const wait = (url: string, extra: string[] = []) =>
    runSockit(["wait", url, ...creds, "--timeout", "2s", "--json", ...extra], {
      perms: ["--allow-net", `--allow-read=${dir}`, `--allow-write=${dir}`],
    });
  const secret = (
    h: { authorization: string | null; cookie: string | null; probe: string | null },
  ) => [h.authorization, h.cookie, h.probe];
  try {
    // Same origin: the headers follow the redirect.
    const same = await wait(go(`http://127.0.0.1:${a}`, "/ok"));
    assertEquals(same.code, 0, same.stderr);
    const sameHits = await servers.take();
    assertEquals(sameHits.map((h) => h.server + h.path.replace(/\?.*/, "")), ["a/go", "a/ok"]);
    for (const h of sameHits) {
      assertEquals(secret(h), ["Bearer s3cret", "session=s3cret", "s3cret"]);
    }

    // On a Unix socket, a redirect stays on that socket, headers and all.
    const unix = await wait(go(`http+unix://${encodeURIComponent(sock)}`, "/ok"));
    assertEquals(unix.code, 0, unix.stderr);
    const unixHits = await servers.take();
    assertEquals(unixHits.map((h) => h.server + h.path.replace(/\?.*/, "")), ["u/go", "u/ok"]);
    assertEquals(secret(unixHits[1]), ["Bearer s3cret", "session=s3cret", "s3cret"]);

    // Another host: followed, without any of them.
    const other = await wait(go(`http://127.0.0.1:${a}`, `http://127.0.0.2:${b}/ok`));
    assertEquals(other.code, 0, other.stderr);
    const otherHits = await servers.take();
    assertEquals(otherHits.map((h) => h.server), ["a", "b"]);
    assertEquals(secret(otherHits[1]), [null, null, null]);

    // https:// to http://: not followed; the attempt says why (exit 124, not a usage error).
    const down = await wait(go(`https://localhost:${s}`, `http://127.0.0.2:${b}/ok`), [
      "--cacert",
      tls.cert,
      "--timeout",
      "800ms",
    ]);
    assertEquals(down.code, 124, down.stderr);
    assertMatch(
      JSON.parse(down.text.trim()).lastError,
      /not followed: .* leaves https:\/\/ for http:\/\//,
    );
    assert((await servers.take()).every((h) => h.server === "s"), "nothing reached b");

    // Into a Unix socket, or another scheme: not followed, in words, exit 124.
    for (
      const [to, words] of [
        [`http+unix://${encodeURIComponent(sock)}/ok`, /leads into a Unix socket/],
        ["ftp://127.0.0.1/ok", /is another scheme/],
        ["http://user:pw@127.0.0.2/ok", /credentials in the URL/],
      ] as const
    ) {
      const r = await wait(go(`http://127.0.0.1:${a}`, to), ["--timeout", "800ms"]);
      assertEquals(r.code, 124, `${to}: ${r.stderr}`);
      assertMatch(JSON.parse(r.text.trim()).lastError, words);
      assertNotMatch(r.stderr, /hint: try/);
      assert((await servers.take()).every((h) => h.server === "a"), `nothing but a for ${to}`);
    }

    // A loop: 10 redirects followed, then the attempt ends with the 302.
    // One attempt (the interval is past the timeout): 11 requests.
    const loop = await wait(`http://127.0.0.1:${a}/loop`, ["--timeout", "1s", "--interval", "5s"]);
    assertEquals(loop.code, 124, loop.stderr);
    assertMatch(JSON.parse(loop.text.trim()).lastError, /answered 302 Found after 10 redirects/);
    assertEquals((await servers.take()).length, 11);
  } finally {
    await servers.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

/** The peak VmRSS (KiB) of a running process, sampled every 50 ms until `done` settles. */
async function peakRss(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = 0;
  let finished = false;
  done.finally(() => finished = true);
  while (!finished) {
    try {
      const kib = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1]);
      if (kib > peak) peak = kib;
    } catch {
      break; // It has ended.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return peak;
}

Deno.test("wait http://: a server that sends endless headers, or a chunk of terabytes, costs an attempt, not memory", async () => {
  // /headers: a status line, then header lines without end; /chunked: a chunk that claims
  // 0xfffffffffff bytes, then data without end. Each as fast as Python sends.
  const script = `
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        request = c.recv(65536)
        if b" /headers " in request:
            c.sendall(b"HTTP/1.1 200 OK\\r\\n")
            n = 0
            while True:
                c.sendall(b"".join(b"X-H%d: %s\\r\\n" % (n + i, b"v" * 40) for i in range(20000)))
                n += 20000
        c.sendall(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nfffffffffff\\r\\n")
        block = b"a" * (1 << 20)
        while True: c.sendall(block)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
  const python = new Deno.Command(requireTool("python3"), {
    args: ["-c", script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = python.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  try {
    for (
      const [path, extra, words] of [
        [
          "/headers",
          [],
          /^the response's head \(status line and headers\) is longer than 100 KiB$/,
        ],
        [
          "/chunked",
          ["--body", "nope"],
          /^answered 200 OK, but the body does not match \/nope\/ \(in its first 1 MiB, as much as is read\)$/,
        ],
      ] as const
    ) {
      const run = new SockitProcess([
        "wait",
        `http://127.0.0.1:${port}${path}`,
        ...extra,
        "--timeout",
        "3s",
        "--json",
      ]);
      const finished = run.result();
      const peak = await peakRss(run.child.pid, finished);
      const r = await finished;
      assertEquals(r.code, 124, r.stderr);
      assertMatch(JSON.parse(r.text.trim()).lastError, words);
      // Deno itself takes some 60 MiB; before the bounds, 3 s of this took 200–600 MiB.
      assert(peak < 150 * 1024, `${path}: peak RSS ${Math.round(peak / 1024)} MiB`);
    }
  } finally {
    python.kill("SIGTERM");
    await python.status;
    await reader.cancel();
  }
});
