/**
 * The library's connect(): names with several addresses are tried address
 * by address, against real listeners on one family only. The resolver is
 * injected (this machine's `localhost` may resolve to one family only);
 * the sockets are real.
 */

import { assert, assertEquals, assertMatch, assertRejects } from "./assert.ts";
import { connect, listen } from "../lib/net/open.ts";
import { systemLookup } from "../lib/net/resolve.ts";
import { SockitError, TimeoutError } from "../lib/base/errors.ts";
import { CHILD_ENV, decoder, freePort, readAll, requireTool, sockitCommand } from "./helpers.ts";

Deno.test("connect: tries each address until one accepts (server on IPv4 only)", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const lines: string[] = [];
  const stream = await connect({ form: "host-port", scheme: "tcp", hostname: "dual.test", port }, {
    lookup: () => Promise.resolve(["::1", "127.0.0.1"]),
    trace: (tag, call) => lines.push(`${tag} ${call}`),
  });
  const server = await listener.accept();
  assertEquals(stream.remoteAddress, `127.0.0.1:${port}`);
  assertMatch(
    lines.join("\n"),
    /socket\(AF_INET6, SOCK_STREAM\)\n.*connect\(\[::1\]:\d+\) = -1 ECONNREFUSED/,
  );
  assertMatch(lines.join("\n"), /connect\(127\.0\.0\.1:\d+\) = 0/);
  server.close();
  stream.close();
  listener.close();
});

Deno.test("connect: tries each address until one accepts (server on IPv6 only)", async () => {
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  const failed: string[] = [];
  const stream = await connect({
    form: "host-port",
    scheme: "tcp",
    hostname: "dual.test",
    port: listener.addr.port,
  }, {
    lookup: () => Promise.resolve(["127.0.0.1", "::1"]),
    onAttemptFailed: (address) => failed.push(address),
  });
  const server = await listener.accept();
  assertEquals(stream.remoteAddress, `[::1]:${listener.addr.port}`);
  assertEquals(failed, [`127.0.0.1:${listener.addr.port}`]);
  server.close();
  stream.close();
  listener.close();
});

Deno.test("connect: when every address refuses, the error names them all", async () => {
  const port = freePort();
  const err = await assertRejects(
    () =>
      connect({ form: "host-port", scheme: "tcp", hostname: "dual.test", port }, {
        lookup: () => Promise.resolve(["127.0.0.1", "::1"]),
      }),
    SockitError,
  );
  assertEquals(err.message, `connect dual.test:${port}: connection refused (tried 127.0.0.1, ::1)`);
  assertEquals(err.exitCode, 1);
});

Deno.test("connect: -4/-6 reach the resolver", async () => {
  const families: Array<4 | 6 | undefined> = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stream = await connect({
    form: "host-port",
    scheme: "tcp",
    hostname: "x.test",
    port: listener.addr.port,
  }, {
    family: 4,
    lookup: (_host, family) => {
      families.push(family);
      return Promise.resolve(["127.0.0.1"]);
    },
  });
  (await listener.accept()).close();
  stream.close();
  listener.close();
  assertEquals(families, [4]);
});

Deno.test("connect: the system resolver knows localhost", async () => {
  const addresses = await systemLookup("localhost");
  assert(addresses.includes("127.0.0.1") || addresses.includes("::1"), String(addresses));
});

Deno.test("connect: timeout over retries is a TimeoutError (124)", async () => {
  const port = freePort();
  const err = await assertRejects(
    () =>
      connect({ form: "host-port", scheme: "tcp", hostname: "127.0.0.1", port }, {
        retry: 1000,
        retryDelay: 20,
        timeout: 150,
      }),
    TimeoutError,
  );
  assertEquals(err.exitCode, 124);
});

Deno.test("connect: cancelling with a signal rejects with its reason", async () => {
  const port = freePort();
  const controller = new AbortController();
  const pending = connect({ form: "host-port", scheme: "tcp", hostname: "127.0.0.1", port }, {
    retry: 1000,
    retryDelay: 20,
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(new Error("user stop")), 60);
  await assertRejects(() => pending, Error, "user stop");
});

Deno.test("listen: port 0 reports the real port; -6 binds ::1", async () => {
  const v4 = await listen({ form: "host-port", scheme: "tcp", port: 0 });
  assertMatch(v4.address, /^127\.0\.0\.1:[1-9]\d*$/);
  const v6 = await listen({ form: "host-port", scheme: "tcp", port: 0 }, { family: 6 });
  assertMatch(v6.address, /^\[::1\]:[1-9]\d*$/);
  v4.close();
  v6.close();
});

Deno.test("connect: with --allow-ffi a stdin pipe is enlarged to 1 MiB (fewer, larger reads); the bytes are the same", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = listener.accept().then(async (conn) => {
    const data = await readAll(conn);
    conn.close();
    return data;
  });
  // The writer at the other end of the pipe reports the pipe's size once sockit has started.
  const writer = `
import fcntl, sys, time
time.sleep(0.8)
sys.stderr.write("pipe %d\\n" % fcntl.fcntl(1, 1032))
sys.stdout.buffer.write(b"x" * 3000000)
`;
  const sockit = sockitCommand(["--allow-net", "--allow-ffi"]).map((a) => `'${a}'`).join(" ");
  const out = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `'${
        requireTool("python3")
      }' -c '${writer}' | ${sockit} connect 127.0.0.1:${listener.addr.port}`,
    ],
    stderr: "piped",
    env: CHILD_ENV,
  }).output();
  listener.close();
  assertEquals(out.code, 0, decoder.decode(out.stderr));
  assertMatch(decoder.decode(out.stderr), /^pipe 1048576$/m);
  assertEquals((await received).length, 3000000);
});
