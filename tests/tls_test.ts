/**
 * TLS against real peers: openssl s_server / s_client both ways, Python's
 * ssl module, curl; verification failures each with their reason;
 * --insecure, --servername, ALPN; ephemeral certificates whose fingerprint
 * openssl sees; bad certificate files; forward terminating and originating TLS.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  decoder,
  encoder,
  freePort,
  NET,
  readAll,
  requireTool,
  runSockit,
  SockitProcess,
  spawnSockit,
  writeAll,
} from "./helpers.ts";
import { acceptTls, connectTls } from "../lib/protocols/node_tls.ts";
import { ephemeralCertificate } from "../lib/protocols/tls.ts";

const SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1";
const LEAF = [
  "-addext",
  "basicConstraints=critical,CA:FALSE",
  "-addext",
  "keyUsage=critical,digitalSignature",
  "-addext",
  "extendedKeyUsage=serverAuth",
];

/** Runs openssl; fails the test with its stderr when it fails. */
function openssl(args: string[], cwd: string): void {
  const out = new Deno.Command(requireTool("openssl"), {
    args,
    cwd,
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (!out.success) throw new Error(`openssl ${args.join(" ")}: ${decoder.decode(out.stderr)}`);
}

/** Test certificates, made once with openssl (commands as in the README). */
const certs = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-certs-" });
  const selfSigned = (name: string, subject: string, extra: string[]) =>
    openssl([
      "req",
      "-x509",
      "-new",
      "-key",
      "ec.key",
      "-out",
      name,
      "-days",
      "30",
      "-subj",
      subject,
      ...extra,
    ], dir);
  openssl(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.key"],
    dir,
  );
  openssl([
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    "other.key",
  ], dir);
  selfSigned("good.crt", "/CN=localhost", ["-addext", SAN, ...LEAF]);
  selfSigned("ca-true.crt", "/CN=localhost", ["-addext", SAN]);
  selfSigned("dns-only.crt", "/CN=localhost", ["-addext", "subjectAltName=DNS:localhost", ...LEAF]);
  selfSigned("other-name.crt", "/CN=other.example", [
    "-addext",
    "subjectAltName=DNS:other.example",
    ...LEAF,
  ]);
  // An expired one: openssl ca lets us set the dates.
  Deno.mkdirSync(`${dir}/db`);
  Deno.writeTextFileSync(`${dir}/db/index.txt`, "");
  Deno.writeTextFileSync(`${dir}/db/serial`, "1000\n");
  Deno.writeTextFileSync(
    `${dir}/ca.cnf`,
    `[ca]\ndefault_ca = d\n[d]\ndir = ./db\ndatabase = ./db/index.txt\nserial = ./db/serial\nnew_certs_dir = ./db\n` +
      `default_md = sha256\npolicy = p\ncopy_extensions = none\nunique_subject = no\n[p]\ncommonName = supplied\n` +
      `[ext]\n${SAN}\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n`,
  );
  openssl(["req", "-new", "-key", "ec.key", "-out", "ec.csr", "-subj", "/CN=localhost"], dir);
  openssl([
    "ca",
    "-batch",
    "-config",
    "ca.cnf",
    "-extensions",
    "ext",
    "-selfsign",
    "-keyfile",
    "ec.key",
    "-in",
    "ec.csr",
    "-out",
    "expired.crt",
    "-notext",
    "-startdate",
    "20200101000000Z",
    "-enddate",
    "20200201000000Z",
  ], dir);
  Deno.writeTextFileSync(`${dir}/not-pem.crt`, "this is not a certificate\n");
  return {
    dir,
    key: `${dir}/ec.key`,
    good: `${dir}/good.crt`,
    caTrue: `${dir}/ca-true.crt`,
    dnsOnly: `${dir}/dns-only.crt`,
    otherName: `${dir}/other-name.crt`,
    expired: `${dir}/expired.crt`,
    otherKey: `${dir}/other.key`,
    notPem: `${dir}/not-pem.crt`,
  };
})();

globalThis.addEventListener("unload", () => Deno.removeSync(certs.dir, { recursive: true }));

const READ = [...NET, `--allow-read=${certs.dir}`];

/** A TLS echo server (sockit) with `cert`; resolves to it and its port. */
async function tlsEcho(cert: string, extra: string[] = []) {
  const server = spawnSockit([
    "echo",
    "tls://127.0.0.1:0",
    "-v",
    "--cert",
    cert,
    "--key",
    certs.key,
    ...extra,
  ], {
    perms: READ,
  });
  return { server, port: await server.listeningPort() };
}

async function stop(server: ReturnType<typeof spawnSockit>) {
  server.kill("SIGTERM");
  return await server.result();
}

Deno.test("tls: sockit connect ↔ openssl s_server, verified as localhost while dialling 127.0.0.1", async () => {
  // s_server cannot report a port of its own choosing: take one that is free now.
  const port = freePort();
  const server = new Deno.Command(requireTool("openssl"), {
    args: [
      "s_server",
      "-quiet",
      "-accept",
      `127.0.0.1:${port}`,
      "-naccept",
      "1",
      "-cert",
      certs.dnsOnly,
      "-key",
      certs.key,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const serverOut = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const client = spawnSockit(
    [
      "connect",
      `tls://127.0.0.1:${port}`,
      "--cacert",
      certs.dnsOnly,
      "--servername",
      "localhost",
      "-v",
      "--retry",
      "50",
      "--retry-delay",
      "100ms",
    ],
    { perms: READ, stdin: "piped" },
  );
  await client.waitForStderr(/TLS with 127\.0\.0\.1:\d+/);
  const cw = client.stdin.getWriter();
  await cw.write(encoder.encode("ping from sockit\n"));
  let got = "";
  while (!got.includes("ping from sockit")) got += (await serverOut.read()).value ?? "";
  const sw = server.stdin.getWriter();
  await sw.write(encoder.encode("pong from openssl\n"));
  // Give the reply a moment, then end the server without close_notify: sockit takes it as EOF.
  await new Promise((resolve) => setTimeout(resolve, 300));
  server.kill("SIGTERM");
  await sw.close().catch(() => {});
  serverOut.releaseLock();
  await server.stdout.cancel().catch(() => {});
  await server.status;
  await cw.close().catch(() => {});
  const r = await client.result();
  assertEquals([r.code, r.text], [0, "pong from openssl\n"]);
  assertMatch(r.stderr, /certificate CN=localhost, SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
  assertMatch(r.stderr, /closed without TLS close_notify/);
});

Deno.test("tls: openssl s_client ↔ sockit listen with --cert/--key", async () => {
  const server = spawnSockit(
    [
      "listen",
      "tls://127.0.0.1:0",
      "-v",
      "--cert",
      certs.good,
      "--key",
      certs.key,
      // The dump on stderr shows when openssl's line has arrived; then sockit answers
      // (answering at once would race openssl's line with sockit's close_notify).
      "--hex",
    ],
    { perms: READ, stdin: "piped" },
  );
  const port = await server.listeningPort();
  const client = new Deno.Command(requireTool("openssl"), {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      certs.good,
      "-servername",
      "localhost",
      "-verify_return_error",
      "-quiet",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = client.stdin.getWriter();
  await w.write(encoder.encode("hello from openssl\n"));
  await server.waitForStderr(/< #\d+ 127\.0\.0\.1:\d+ 19 bytes/);
  const answer = server.stdin.getWriter();
  await answer.write(encoder.encode("hello from sockit\n"));
  await answer.close();
  const done = await server.waitForStderr(/closed|sent/).then(() => true).catch(() => false);
  await w.close();
  const out = await client.output();
  const r = await server.result();
  assert(done);
  assertEquals(out.code, 0, decoder.decode(out.stderr));
  assertEquals(decoder.decode(out.stdout), "hello from sockit\n");
  assertEquals([r.code, r.text], [0, "hello from openssl\n"]);
});

Deno.test("tls: verification failures exit 1 with the reason", async () => {
  const cases: Array<[string, string[], RegExp]> = [
    [certs.good, [], /unknown issuer/],
    [
      certs.otherName,
      ["--cacert", certs.otherName],
      /name mismatch: not valid for 127\.0\.0\.1 \(valid for other\.example\)/,
    ],
    [
      certs.caTrue,
      ["--cacert", certs.caTrue],
      /is a CA certificate \(CA:TRUE\); rustls accepts a self-signed server certificate only with CA:FALSE/,
    ],
    [certs.expired, ["--cacert", certs.expired], /the certificate expired \(2020-02-01/],
  ];
  for (const [cert, flags, reason] of cases) {
    const { server } = await tlsEcho(cert);
    const port = await server.listeningPort();
    const r = await runSockit(["connect", `tls://127.0.0.1:${port}`, ...flags, "--send", "x"], {
      perms: READ,
    });
    await stop(server);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, reason);
    assertEquals(r.text, "", "nothing is received over an unverified connection");
  }
});

Deno.test("tls: --insecure connects anyway and says so once; --servername picks the name to verify", async () => {
  const { server, port } = await tlsEcho(certs.dnsOnly);
  const insecure = await runSockit([
    "connect",
    `tls://127.0.0.1:${port}`,
    "--insecure",
    "--send",
    "echo me",
  ], { perms: READ });
  assertEquals([insecure.code, insecure.text], [0, "echo me"]);
  assertEquals(
    insecure.stderr.match(/--insecure: the server's certificate is not verified/g)?.length,
    1,
  );
  // The certificate names only DNS:localhost: dialling 127.0.0.1 fails unless told the name.
  const byAddress = await runSockit([
    "connect",
    `tls://127.0.0.1:${port}`,
    "--cacert",
    certs.dnsOnly,
    "--send",
    "x",
  ], {
    perms: READ,
  });
  assertEquals(byAddress.code, 1);
  assertMatch(byAddress.stderr, /name mismatch/);
  const byName = await runSockit(
    [
      "connect",
      `127.0.0.1:${port}`,
      "--tls",
      "--cacert",
      certs.dnsOnly,
      "--servername",
      "localhost",
      "--send",
      "named",
    ],
    { perms: READ },
  );
  assertEquals([byName.code, byName.text], [0, "named"]);
  await stop(server);
});

Deno.test("tls: ALPN is negotiated and shown with -v", async () => {
  const { server, port } = await tlsEcho(certs.good, ["--alpn", "h2", "--alpn", "http/1.1"]);
  const r = await runSockit(
    [
      "connect",
      `tls://127.0.0.1:${port}`,
      "--cacert",
      certs.good,
      "--alpn",
      "http/1.1",
      "-v",
      "--send",
      "a",
    ],
    { perms: READ },
  );
  const s = await stop(server);
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /TLS with 127\.0\.0\.1:\d+: ALPN http\/1\.1/);
  assertMatch(s.stderr, /TLS with 127\.0\.0\.1:\d+: (.*, )?ALPN http\/1\.1/);
});

Deno.test("tls: a request over TLS, half-closed with close_notify, gets the whole reply (Python ssl)", async () => {
  const dir = certs.dir;
  const script = `
import socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain("${dir}/good.crt", "${dir}/ec.key")
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1); srv.settimeout(30)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(None)
tls = ctx.wrap_socket(conn, server_side=True)
data = b""
while True:
    chunk = tls.recv(65536)
    if not chunk:
        break
    data += chunk
tls.sendall(b"got " + str(len(data)).encode() + b" bytes: " + data.upper())
tls.unwrap()
tls.close()
`;
  const py = new Deno.Command(requireTool("python3"), { args: ["-c", script], stdout: "piped" })
    .spawn();
  const reader = py.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const r = await runSockit(["connect", `tls://127.0.0.1:${port}`, "--cacert", certs.good], {
    perms: READ,
    stdin: "tls request",
  });
  while (!(await reader.read()).done) { /* drain */ }
  assertEquals((await py.status).code, 0);
  assertEquals([r.code, r.text], [0, "got 11 bytes: TLS REQUEST"]);
});

Deno.test("tls: an ephemeral certificate's fingerprint is the one openssl s_client sees", async () => {
  const server = spawnSockit(["echo", "tls://127.0.0.1:0", "-v"], { perms: NET });
  const port = await server.listeningPort();
  const printed =
    (await server.waitForStderr(/ephemeral self-signed certificate CN=localhost .*SHA-256 (\S+)/))[
      1
    ];
  const s = await new Deno.Command(requireTool("openssl"), {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", "-showcerts"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(
    decoder.decode(s.stdout),
  )?.[0];
  assert(pem, "s_client showed a certificate");
  const fp = new Deno.Command(requireTool("openssl"), {
    args: ["x509", "-noout", "-fingerprint", "-sha256"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = fp.stdin.getWriter();
  await w.write(encoder.encode(pem));
  await w.close();
  const seen = /Fingerprint=(\S+)/.exec(decoder.decode((await fp.output()).stdout))?.[1];
  await stop(server);
  assertEquals(seen, printed);
  // It verifies as a CA:FALSE certificate for localhost when trusted.
  const text = new Deno.Command(requireTool("openssl"), {
    args: ["x509", "-noout", "-text"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const tw = text.stdin.getWriter();
  await tw.write(encoder.encode(pem));
  await tw.close();
  const details = decoder.decode((await text.output()).stdout);
  assertMatch(details, /CA:FALSE/);
  assertMatch(details, /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
});

Deno.test("tls: bad certificate or key files are one-line errors naming the file", async () => {
  const cases: Array<[string[], RegExp]> = [
    [
      ["--cert", `${certs.dir}/missing.crt`, "--key", certs.key],
      /open .*missing\.crt: no such file or directory/,
    ],
    [
      ["--cert", certs.notPem, "--key", certs.key],
      /load certificate .*not-pem\.crt: no certificate in it/,
    ],
    [
      ["--cert", certs.good, "--key", certs.good],
      /load private key .*good\.crt: no private key in it/,
    ],
    [
      ["--cert", certs.good, "--key", certs.otherKey],
      /load key .*other\.key: the key does not match the certificate/,
    ],
  ];
  for (const [flags, pattern] of cases) {
    const r = await runSockit(["listen", "tls://127.0.0.1:0", ...flags], { perms: READ });
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr.split("\n")[0], pattern);
    assert(r.stderr.trim().split("\n").length <= 2, r.stderr);
  }
  const usage = await runSockit(
    ["listen", "127.0.0.1:0", "--cert", certs.good, "--key", certs.key],
    { perms: READ },
  );
  assertEquals(usage.code, 2);
  assertMatch(usage.stderr, /option --cert is for tls:\/\/ or wss:\/\/ endpoints, or --tls/);
  const unix = await runSockit(["connect", "unix:/tmp/x.sock", "--tls"]);
  assertEquals(unix.code, 2);
  assertMatch(unix.stderr, /TLS over a Unix socket is not supported/);
});

Deno.test("tls: forward terminates TLS for curl --cacert, and originates TLS to a TLS server", async () => {
  const www = Deno.makeTempDirSync({ prefix: "sockit-www-" });
  Deno.writeTextFileSync(`${www}/index.html`, "secret page\n");
  const port = freePort();
  const http = new Deno.Command(requireTool("python3"), {
    args: ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", www],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const terminate = spawnSockit(
    [
      "forward",
      "tls://127.0.0.1:0",
      `127.0.0.1:${port}`,
      "--cert",
      certs.good,
      "--key",
      certs.key,
      "-v",
    ],
    { perms: READ },
  );
  const front = await terminate.listeningPort();
  let body = "";
  for (let i = 0; i < 50 && !body; i++) {
    const out = await new Deno.Command(requireTool("curl"), {
      args: ["-sf", "--cacert", certs.good, `https://localhost:${front}/index.html`],
      stdout: "piped",
    }).output();
    body = decoder.decode(out.stdout);
    if (!body) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assertEquals(body, "secret page\n");
  await stop(terminate);
  http.kill("SIGTERM");
  await http.status;
  Deno.removeSync(www, { recursive: true });

  // Origination: plain in front, TLS behind (a sockit TLS echo server).
  const { server, port: tlsPort } = await tlsEcho(certs.dnsOnly);
  const originate = spawnSockit(
    [
      "forward",
      "127.0.0.1:0",
      `tls://127.0.0.1:${tlsPort}`,
      "--cacert",
      certs.dnsOnly,
      "--servername",
      "localhost",
      "-v",
    ],
    { perms: READ },
  );
  const plain = await originate.listeningPort();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: plain });
  await writeAll(conn, encoder.encode("through TLS and back"));
  await conn.closeWrite();
  assertEquals(decoder.decode(await readAll(conn)), "through TLS and back");
  conn.close();
  const o = await stop(originate);
  assertMatch(o.stderr, /TLS with 127\.0\.0\.1:\d+: no ALPN, certificate CN=localhost/);
  await stop(server);
});

// ---- mutual TLS --------------------------------------------------------------------

/** A CA, a server certificate for localhost and a client certificate, both signed by it. */
const mutual = (() => {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-mtls-" });
  const key = (name: string) =>
    openssl(
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name],
      dir,
    );
  key("ca.key");
  key("server.key");
  key("client.key");
  openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=sockit test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ], dir);
  const sign = (name: string, subject: string, ext: string) => {
    openssl(["req", "-new", "-key", `${name}.key`, "-out", `${name}.csr`, "-subj", subject], dir);
    Deno.writeTextFileSync(`${dir}/${name}.ext`, ext);
    openssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    ], dir);
  };
  sign(
    "server",
    "/CN=localhost",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  sign("client", "/CN=sockit client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  // A client certificate from nobody the server trusts.
  key("impostor.key");
  openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    "impostor.key",
    "-out",
    "impostor.crt",
    "-days",
    "2",
    "-subj",
    "/CN=impostor",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
  ], dir);
  return {
    dir,
    ca: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    impostorCert: `${dir}/impostor.crt`,
    impostorKey: `${dir}/impostor.key`,
  };
})();

globalThis.addEventListener("unload", () => Deno.removeSync(mutual.dir, { recursive: true }));

/**
 * openssl s_server that demands a client certificate signed by the test CA,
 * for one connection; what it received comes back from `done()`. It is not
 * probed (that would be its one connection): clients retry until it is up.
 */
function demandingServer(greeting: string) {
  const port = freePort();
  const child = new Deno.Command(requireTool("openssl"), {
    args: [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      mutual.serverCert,
      "-key",
      mutual.serverKey,
      "-CAfile",
      mutual.ca,
      "-Verify",
      "1",
      "-verify_return_error",
      "-naccept",
      "1",
      "-quiet",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  writer.write(encoder.encode(greeting)).catch(() => {});
  return {
    port,
    async done(): Promise<string> {
      await writer.close().catch(() => {});
      // After its one connection it exits by itself, having printed what it received.
      const timer = setTimeout(() => {
        try {
          child.kill();
        } catch {
          // It exited.
        }
      }, 3000);
      const out = await child.output();
      clearTimeout(timer);
      return decoder.decode(out.stdout);
    },
  };
}

const RETRY = ["--retry", "40", "--retry-delay", "50ms"];

Deno.test("tls: mutual TLS client — without --cert the server's demand is said in words; with it, data flows", async () => {
  const strict = demandingServer("hello from openssl\n");
  const without = await runSockit([
    "connect",
    `tls://localhost:${strict.port}`,
    ...RETRY,
    "--cacert",
    mutual.ca,
    "--send",
    "hello",
  ], { perms: READ });
  await strict.done();
  assertEquals(without.code, 1);
  assertMatch(without.stderr, /the server requires a client certificate \(--cert\/--key\)/);

  const server = demandingServer("hello from openssl\n");
  const client = await runSockit([
    "connect",
    `tls://localhost:${server.port}`,
    ...RETRY,
    "--cacert",
    mutual.ca,
    "--cert",
    mutual.clientCert,
    "--key",
    mutual.clientKey,
    "--send",
    "hello from sockit\n",
    "--expect",
    "hello from openssl",
  ], { perms: READ });
  const received = await server.done();
  assertEquals(client.code, 0, client.stderr);
  assertMatch(received, /hello from sockit/);
});

Deno.test("tls: mutual TLS server (--client-ca) — a client with a certificate is served; one without, or with another CA's, is refused", async () => {
  const server = spawnSockit([
    "echo",
    "tls://127.0.0.1:0",
    "-v",
    "--cert",
    mutual.serverCert,
    "--key",
    mutual.serverKey,
    "--client-ca",
    mutual.ca,
  ], { perms: READ });
  const port = await server.listeningPort();
  const sClient = (extra: string[]) =>
    new Deno.Command(requireTool("openssl"), {
      args: [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-CAfile",
        mutual.ca,
        "-servername",
        "localhost",
        "-quiet",
        "-no_ign_eof",
        ...extra,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  const good = sClient(["-cert", mutual.clientCert, "-key", mutual.clientKey]);
  const gw = good.stdin.getWriter();
  await gw.write(encoder.encode("echo me\n"));
  await server.waitForStderr(/TLS with 127\.0\.0\.1:\d+: .*certificate CN=sockit client/);
  // The echo comes back before the client leaves.
  const reader = good.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let echoed = "";
  while (!echoed.includes("echo me")) {
    const { value, done } = await reader.read();
    if (done) break;
    echoed += value;
  }
  await gw.close();
  await reader.cancel();
  await good.status;
  await good.stderr.cancel();
  assertMatch(echoed, /echo me/);
  const bad = sClient([]);
  const bw = bad.stdin.getWriter();
  await bw.write(encoder.encode("nope\n")).catch(() => {});
  await bw.close().catch(() => {});
  const badOut = await bad.output();
  assertEquals(decoder.decode(badOut.stdout), "");
  await server.waitForStderr(
    /warning: 127\.0\.0\.1:\d+: TLS handshake failed: the client sent no certificate/,
  );
  // A certificate, but not from the CA the server trusts: refused as well.
  const impostor = sClient(["-cert", mutual.impostorCert, "-key", mutual.impostorKey]);
  const iw = impostor.stdin.getWriter();
  await iw.write(encoder.encode("let me in\n")).catch(() => {});
  await iw.close().catch(() => {});
  const impostorOut = await impostor.output();
  assertEquals(decoder.decode(impostorOut.stdout), "");
  await server.waitForStderr(
    /warning: 127\.0\.0\.1:\d+: TLS handshake failed: the client's certificate is not signed by a --client-ca CA/,
  );
  server.kill("SIGTERM");
  assertEquals((await server.result()).code, 143);
});

Deno.test("tls: node:tls ends — a reader that falls behind still gets every byte and the end", async () => {
  // Deno's node:tls loses the end of a stream that arrives while the socket
  // is paused; sockit's flow control must never get there (4 MiB against a
  // 1 MiB inbox, the reader asleep while the writer finishes and closes).
  const { cert, key } = await ephemeralCertificate();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const size = 4 << 20;
  for (const slow of ["client", "server"] as const) {
    const accepted = listener.accept().then((raw) => acceptTls(raw, { cert, key }));
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const client = await connectTls(raw, { insecure: true });
    const server = await accepted;
    const [writer, reader] = slow === "client" ? [server, client] : [client, server];
    const writing = (async () => {
      await writeAll(writer.conn, new Uint8Array(size).fill(7));
      await writer.conn.closeWrite();
    })();
    await new Promise((resolve) => setTimeout(resolve, 600));
    const got = await readAll(reader.conn);
    await writing;
    assertEquals(got.length, size, `${slow} reading slowly`);
    client.conn.close();
    server.conn.close();
  }
  listener.close();
});

Deno.test("tls: a send is delivered even when the reply it expects is already there (--send then --expect)", async () => {
  // The reply sits read in node:tls's inbox before the session starts, so the
  // expect matches in the same turn that the send is read: the send must
  // still be written before the session closes.
  const { cert, key } = await ephemeralCertificate();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  for (let i = 0; i < 10; i++) {
    const serving = listener.accept().then(async (raw) => {
      const { conn } = await acceptTls(raw, { cert, key });
      await writeAll(conn, encoder.encode("ready\n"));
      const got = decoder.decode(await readAll(conn));
      conn.close();
      return got;
    });
    const r = await runSockit([
      "connect",
      `tls://127.0.0.1:${listener.addr.port}`,
      "--insecure",
      "--send",
      "x\\n",
      "--expect",
      "^ready",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(await serving, "x\n", `round ${i}`);
  }
  listener.close();
});

/**
 * A TCP server that accepts every connection and never says a word: a TLS
 * client's ClientHello goes unanswered. `accepted(n)` waits for the nth
 * connection; it runs until `stop()`.
 */
async function silentPeer() {
  const child = new Deno.Command(requireTool("python3"), {
    args: [
      "-c",
      `
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
while True:
    c, _ = s.accept(); held.append(c); print("accepted", flush=True)
`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let ended = false;
  const more = async () => {
    const { value, done } = await lines.read();
    if (done) ended = true;
    text += value ?? "";
  };
  while (!text.includes("\n") && !ended) await more();
  const port = Number(text.split("\n")[0]);
  return {
    port,
    async accepted(count: number) {
      while ((text.match(/accepted/g)?.length ?? 0) < count && !ended) await more();
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await lines.cancel();
    },
  };
}

/** The run's result, or a failure (and the run ended) when it is still going after `ms`. */
async function within(run: ReturnType<typeof spawnSockit>, ms: number, what: string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const result = await Promise.race([run.result(), late]);
  clearTimeout(timer);
  if (result !== "late") return result;
  run.kill(run instanceof SockitProcess ? "SIGKILL" : "SIGTERM");
  throw new Error(`${what}: still running after ${ms} ms; stderr:\n${run.stderr}`);
}

Deno.test("tls: a server that never answers the ClientHello — connect tls://, wss://, wait https:// and forward end at their timeouts", async () => {
  const peer = await silentPeer();
  try {
    const target = `127.0.0.1:${peer.port}`;
    // --timeout and --connect-timeout bound the handshake: exit 124, the time named.
    for (
      const args of [
        ["connect", `tls://${target}`, "--timeout", "500ms"],
        ["connect", `tls://${target}`, "--connect-timeout", "500ms"],
        ["connect", `wss://${target}/`, "--timeout", "500ms"],
        ["connect", `tls://${target}`, "--insecure", "--timeout", "500ms"],
      ]
    ) {
      const r = await within(spawnSockit(args, { stdin: "piped" }), 10_000, args.join(" "));
      assertEquals(r.code, 124, `${args.join(" ")}: ${r.stderr}`);
      assertMatch(r.stderr, /timed out after 500 ms/);
    }
    // wait: each attempt is cut at --attempt-timeout, the whole at --timeout.
    const wait = await within(
      spawnSockit([
        "wait",
        `https://${target}/`,
        "--attempt-timeout",
        "250ms",
        "--timeout",
        "1s",
        "--json",
      ]),
      10_000,
      "wait https://",
    );
    assertEquals(wait.code, 124, wait.stderr);
    const result = JSON.parse(wait.text.trim());
    assert(result.attempts >= 2, `several attempts: ${wait.text}`);
    assertMatch(result.lastError, /^no answer within/);
    // forward: each client is closed at --connect-timeout, with a warning.
    const forward = spawnSockit([
      "forward",
      "127.0.0.1:0",
      `tls://${target}`,
      "--connect-timeout",
      "500ms",
      "-v",
    ]);
    const front = await forward.listeningPort();
    const clients = await Promise.all(
      [1, 2, 3].map(() => Deno.connect({ hostname: "127.0.0.1", port: front })),
    );
    const guard = setTimeout(() => clients.forEach((c) => c.close()), 10_000);
    const ends = await Promise.all(clients.map((c) => c.read(new Uint8Array(16)).catch(() => -1)));
    clearTimeout(guard);
    clients.forEach((c) => c.close());
    assertEquals(ends, [null, null, null], "each client closed by forward");
    // One warning line, then the others as a count (the coalescer).
    await forward.waitForStderr(
      /forward to 127\.0\.0\.1:\d+ failed: timed out after 500 ms[^\n]*\n(?:.*\n)*.*failed: timed out after 500 ms; client closed \(2 more times\)/,
    );
    forward.kill("SIGTERM");
    assertEquals((await within(forward, 10_000, "forward")).code, 143);
  } finally {
    await peer.stop();
  }
});

Deno.test("tls: the first SIGTERM ends a TLS client stuck in its handshake (processes: connect tls://, connect wss://, wait https://)", async () => {
  const peer = await silentPeer();
  try {
    const target = `127.0.0.1:${peer.port}`;
    const runs = [
      ["connect", `tls://${target}`],
      ["connect", `wss://${target}/`],
      ["wait", `https://${target}/`, "--timeout", "0", "--attempt-timeout", "1m"],
    ];
    for (const [i, args] of runs.entries()) {
      const run = spawnSockit(args, { process: true, stdin: "piped" });
      await peer.accepted(i + 1);
      // The ClientHello is on its way; the handshake waits for an answer.
      await new Promise((resolve) => setTimeout(resolve, 200));
      run.kill("SIGTERM");
      const r = await within(run, 5_000, `SIGTERM to ${args.join(" ")}`);
      assertEquals(r.code, 143, `${args.join(" ")}: ${r.stderr}`);
    }
  } finally {
    await peer.stop();
  }
});
