/**
 * `sockit nc` against OpenBSD nc: the same scripts run with `nc` and with
 * `sockit nc`, and what the peers and the user see is compared — stdout,
 * exit codes, what a server received, `-z` results and their `-v` lines.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import {
  assertUsageError,
  decoder,
  encoder,
  freePort,
  readAll,
  requireTool,
  runSockit,
  spawnSockit,
  writeAll,
} from "./helpers.ts";
import { PythonServer, READ_TO_EOF_THEN_REPLY } from "./peers.ts";

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `nc ARGS` (the real one) with `stdin`. */
async function realNc(args: string[], stdin = ""): Promise<Outcome> {
  const child = new Deno.Command(requireTool("nc"), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(stdin)).catch(() => {});
  await writer.close().catch(() => {});
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs `sockit nc ARGS` with `stdin`. */
async function sockitNc(args: string[], stdin = ""): Promise<Outcome> {
  const r = await runSockit(["nc", ...args], { stdin });
  return { code: r.code, stdout: r.text, stderr: r.stderr };
}

const both = [["nc", realNc], ["sockit nc", sockitNc]] as const;

Deno.test("nc: a client with -N against a server that reads to EOF, then replies", async () => {
  for (const [name, run] of both) {
    const peer = new PythonServer(READ_TO_EOF_THEN_REPLY);
    const r = await run(["-N", "127.0.0.1", String(await peer.port())], "request");
    await peer.done();
    assertEquals([r.code, r.stdout], [0, "got 7: REQUEST"], name);
  }
});

Deno.test("nc: without -N the write side stays open; a server that answers and closes is heard", async () => {
  const body = `
conn.settimeout(0.5)
try:
    data = conn.recv(100)
    more = conn.recv(100) if data else b""
    conn.sendall(b"saw eof" if more == b"" else b"more")
except socket.timeout:
    conn.sendall(b"still open")
conn.close()
`;
  for (const [name, run] of both) {
    const peer = new PythonServer(body);
    const r = await run(["127.0.0.1", String(await peer.port())], "x");
    await peer.done();
    assertEquals([r.code, r.stdout], [0, "still open"], name);
  }
});

Deno.test("nc: -l receives what a client sends, and -l -p PORT is the same", async () => {
  for (const [name, run] of both) {
    for (const form of [(p: number) => ["-l", String(p)], (p: number) => ["-l", "-p", String(p)]]) {
      const port = freePort();
      const listening = run(form(port));
      let conn: Deno.Conn | undefined;
      for (let i = 0; i < 100 && !conn; i++) {
        conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
        if (!conn) await new Promise((resolve) => setTimeout(resolve, 30));
      }
      await writeAll(conn!, encoder.encode("upload"));
      conn!.close();
      const r = await listening;
      assertEquals([r.code, r.stdout], [0, "upload"], `${name} ${form(port).join(" ")}`);
    }
  }
});

Deno.test("nc: -z tells open from closed by exit status; -zv says each port", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = listener.addr.port;
  const closed = freePort();
  for (const [name, run] of both) {
    const r1 = await run(["-z", "127.0.0.1", String(open)]);
    const r2 = await run(["-z", "127.0.0.1", String(closed)]);
    const r3 = await run(["-zv", "127.0.0.1", String(closed), String(open)]);
    assertEquals([r1.code, r1.stdout, r2.code, r2.stdout, r3.code], [0, "", 1, "", 0], name);
    assertMatch(
      r3.stderr,
      new RegExp(`Connection to 127\\.0\\.0\\.1 ${open} port \\[tcp/[^\\]]*\\] succeeded!`),
      name,
    );
    assertMatch(
      r3.stderr,
      new RegExp(`connect to 127\\.0\\.0\\.1 port ${closed} \\(tcp\\) failed`),
      name,
    );
  }
  listener.close();
});

Deno.test("nc: -u sends a datagram and prints the reply; -C sends CRLF; -d sends nothing", async () => {
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const udpPort = (udp.addr as Deno.NetAddr).port;
  const echoing = (async () => {
    for (let i = 0; i < 2; i++) {
      const [data, from] = await udp.receive();
      await udp.send(data, from);
    }
  })();
  for (const [name, run] of both) {
    const r = await run(["-u", "-w1", "127.0.0.1", String(udpPort)], "ping\n");
    assertEquals(r.stdout, "ping\n", name);
  }
  await echoing;
  udp.close();
  const crlf = `
data = b""
while True:
    chunk = conn.recv(100)
    if not chunk: break
    data += chunk
conn.sendall(repr(data).encode())
conn.close()
`;
  for (const [name, run] of both) {
    const peer = new PythonServer(crlf);
    const r = await run(["-C", "-N", "127.0.0.1", String(await peer.port())], "EHLO x\nQUIT\n");
    await peer.done();
    assertEquals(r.stdout, "b'EHLO x\\r\\nQUIT\\r\\n'", name);
    const quiet = new PythonServer(`conn.sendall(b"hello")\nconn.close()`);
    const d = await run(["-d", "127.0.0.1", String(await quiet.port())], "never sent");
    await quiet.done();
    assertEquals([d.code, d.stdout], [0, "hello"], `${name} -d`);
  }
});

Deno.test("nc: -k keeps accepting; what sockit does not do is refused by name", async () => {
  const server = spawnSockit(["nc", "-lk", "127.0.0.1", "0", "-v"]);
  const port = await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/).then((m) =>
    Number(m[1])
  );
  for (const word of ["one", "two"]) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, encoder.encode(word));
    await conn.closeWrite();
    await readAll(conn);
    conn.close();
  }
  await server.waitForCount(/closed 127/, 2);
  server.kill("SIGTERM");
  const done = await server.result();
  assertEquals([done.code, done.text], [143, "onetwo"]);
  assertUsageError(
    await runSockit(["nc", "-t", "h", "23"]),
    /nc option -t is not supported by sockit nc/,
  );
  assertUsageError(
    await runSockit(["nc", "-X", "7", "-x", "p:1080", "h", "22"]),
    /nc -X "7": expected 4, 5 or connect/,
  );
  assertUsageError(await runSockit(["nc", "-X", "5", "h", "22"]), /-X and -P need -x/);
  assertUsageError(await runSockit(["nc", "-l", "-x", "p", "22"]), /a proxy is for TCP clients/);
  assertUsageError(await runSockit(["nc", "-k", "h", "1"]), /-k needs -l/);
});
