/**
 * `sockit wait` for HTTP(S) URLs and files, against real servers (Python's
 * http.server with a handler that answers 503 then 200, a redirect, an
 * HTTPS server with a test certificate), and the fixes around it: lines on
 * stderr with `-- CMD`, `--timeout 0`, a SYN nobody acknowledges.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  freePort,
  localhostCertificate,
  requireTool,
  runSockit,
  tempSocketDir,
} from "./helpers.ts";
import { waitFor } from "../lib/wait.ts";

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
  const [result] = await waitFor([{ transport: "tcp", hostname: "db.invalid", port: 5432 }], {
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
