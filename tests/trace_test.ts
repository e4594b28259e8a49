/**
 * `--trace` against the truth: the command runs under
 * `strace -f -e trace=network` and the system calls it really makes must be
 * the seed's sequence — socket(AF_INET, SOCK_STREAM…), bind(…htons(8888)…
 * 127.0.0.1…), listen(…), accept4(…), a send of "hello!" — in the order
 * that `--trace` printed them.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  CHILD_ENV,
  NET,
  readAll,
  requireTool,
  runSockit,
  sockitCommand,
  spawnSockit,
  unixPerms,
} from "./helpers.ts";
import { seedPort } from "../tools/seed_port.ts";

/** Starts sockit with `args` under `strace -f -e trace=network`. */
function straced(
  args: string[],
  perms = NET,
): { child: Deno.ChildProcess; calls: () => string[] } {
  const log = Deno.makeTempFileSync({ prefix: "sockit-strace-" });
  const [cmd, ...prefix] = sockitCommand(perms);
  const child = new Deno.Command(requireTool("strace"), {
    args: ["-f", "-e", "trace=network", "-o", log, cmd, ...prefix, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: CHILD_ENV,
  }).spawn();
  const calls = () => {
    const lines = Deno.readTextFileSync(log).split("\n");
    Deno.removeSync(log);
    return lines;
  };
  return { child, calls };
}

/** Positions of the calls in `lines` matching each pattern, in order; fails if one is missing. */
function positions(lines: string[], patterns: RegExp[], what: string): number[] {
  return patterns.map((pattern) => {
    const at = lines.findIndex((line) => pattern.test(line));
    assert(at !== -1, `${what}: no line matches ${pattern}:\n${lines.join("\n")}`);
    return at;
  });
}

function assertIncreasing(values: number[], what: string): void {
  for (let i = 1; i < values.length; i++) {
    assert(values[i - 1] < values[i], `${what}: calls out of order at ${i}: ${values}`);
  }
}

Deno.test("trace: the server's real system calls are the seed's sequence, as --trace says", async () => {
  const port = seedPort();
  const { child, calls: kernelCalls } = straced([
    "listen",
    `127.0.0.1:${port}`,
    "--send",
    "hello!",
    "--trace",
  ]);
  const stderrText = new Response(child.stderr).text();
  const stdoutText = new Response(child.stdout).text();
  // Connect once the listener is up (strace slows start-up down).
  let conn: Deno.Conn | undefined;
  for (let i = 0; i < 200 && !conn; i++) {
    conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => undefined);
    if (!conn) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert(conn, "the traced server never listened");
  const received = new TextDecoder().decode(await readAll(conn));
  conn.close();
  const status = await child.status;
  const traced = (await stderrText).split("\n");
  await stdoutText;
  assertEquals([status.code, received], [0, "hello!"]);

  // What the kernel saw.
  const calls = kernelCalls();
  const socketLine = calls.find((l) =>
    /socket\(AF_INET, SOCK_STREAM[^)]*\) = \d+/.test(l) &&
    calls.some((b) =>
      b.includes(`bind(${/= (\d+)$/.exec(l)?.[1]},`) && b.includes(`htons(${port})`)
    )
  );
  assert(socketLine, `no socket(AF_INET, SOCK_STREAM) that was bound to ${port}`);
  const fd = /= (\d+)$/.exec(socketLine)![1];
  const kernel = positions(calls, [
    new RegExp(`socket\\(AF_INET, SOCK_STREAM.*= ${fd}$`),
    new RegExp(`setsockopt\\(${fd}, SOL_SOCKET, SO_REUSEADDR, \\[1\\]`),
    new RegExp(
      `bind\\(${fd}, \\{sa_family=AF_INET, sin_port=htons\\(${port}\\), sin_addr=inet_addr\\("127\\.0\\.0\\.1"\\)\\}`,
    ),
    new RegExp(`listen\\(${fd}, 511\\)`),
    new RegExp(`accept4\\(${fd}, .*= \\d+$`),
    /sendto\(\d+, "hello!", 6, MSG_NOSIGNAL/,
    /shutdown\(\d+, SHUT_WR\)/,
  ], "strace");
  assertIncreasing(kernel, "strace");
  // The accepted fd is the one that sent hello!.
  const acceptLine = calls[kernel[4]];
  const connFd = /= (\d+)$/.exec(acceptLine)![1];
  assertMatch(calls[kernel[5]], new RegExp(`sendto\\(${connFd}, "hello!"`));

  // What --trace printed, in the same order.
  const printed = positions(traced, [
    /\[L\d+\] socket\(AF_INET, SOCK_STREAM\)$/,
    /\[L\d+\] setsockopt\(SO_REUSEADDR, 1\)$/,
    new RegExp(`\\[L\\d+\\] bind\\(127\\.0\\.0\\.1:${port}\\) = 0$`),
    /\[L\d+\] listen\(backlog=511\) = 0$/,
    /\[L\d+\] accept\(\) = 127\.0\.0\.1:\d+ \[#\d+\]$/,
    /\[#\d+\] write\(6\) = 6$/,
    /\[#\d+\] shutdown\(SHUT_WR\)$/,
  ], "--trace");
  assertIncreasing(printed, "--trace");
});

Deno.test("trace: the client's real calls match its --trace: socket, connect, then read of hello!", async () => {
  const server = spawnSockit(["listen", "127.0.0.1:0", "--send", "hello!", "-v"]);
  const port = await server.listeningPort();
  const { child, calls: kernelCalls } = straced(["connect", `127.0.0.1:${port}`, "--trace"]);
  const out = await child.output();
  await server.result();
  const traced = new TextDecoder().decode(out.stderr).split("\n");
  assertEquals([out.code, new TextDecoder().decode(out.stdout)], [0, "hello!"]);
  const calls = kernelCalls();
  const kernel = positions(calls, [
    /socket\(AF_INET, SOCK_STREAM/,
    new RegExp(
      `connect\\(\\d+, \\{sa_family=AF_INET, sin_port=htons\\(${port}\\), sin_addr=inet_addr\\("127\\.0\\.0\\.1"\\)`,
    ),
    /recvfrom\(\d+, "hello!", 4096,/,
  ], "strace");
  assertIncreasing(kernel, "strace");
  const printed = positions(traced, [
    /\[#\d+\] socket\(AF_INET, SOCK_STREAM\)$/,
    new RegExp(`\\[#\\d+\\] connect\\(127\\.0\\.0\\.1:${port}\\) = 0$`),
    /\[#\d+\] read\(4096\) = 6$/,
  ], "--trace");
  assertIncreasing(printed, "--trace");
  // Without --trace, nothing of it is printed.
  const quiet = spawnSockit(["listen", "127.0.0.1:0", "--send", "x", "-v"]);
  const p2 = await quiet.listeningPort();
  const plain = await runSockit(["connect", `127.0.0.1:${p2}`]);
  await quiet.result();
  assertEquals(plain.stderr, "");
});

Deno.test("trace: a Unix listener's bind and listen backlog match the kernel's", async () => {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "sockit-" });
  const path = `${dir}/traced.sock`;
  const { child, calls: kernelCalls } = straced(
    ["listen", `unix:${path}`, "--send", "x", "--trace"],
    unixPerms(path),
  );
  const stderrText = new Response(child.stderr).text();
  const stdoutText = new Response(child.stdout).text();
  let conn: Deno.Conn | undefined;
  for (let i = 0; i < 200 && !conn; i++) {
    conn = await Deno.connect({ transport: "unix", path }).catch(() => undefined);
    if (!conn) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert(conn, "the traced server never listened");
  await readAll(conn);
  conn.close();
  assertEquals((await child.status).code, 0);
  await stdoutText;
  const traced = (await stderrText).split("\n");
  const calls = kernelCalls();
  const bind = calls.find((l) => l.includes(`bind(`) && l.includes(`sun_path="${path}"`));
  assert(bind, `no bind of ${path}`);
  const fd = /bind\((\d+),/.exec(bind)![1];
  // strace may split a call between threads ("listen(5, 1024 <unfinished ...>").
  const kernelBacklog = new RegExp(`listen\\(${fd}, (\\d+)`).exec(calls.join("\n"))?.[1];
  const tracedBacklog = traced.map((l) => /listen\(backlog=(\d+)\)/.exec(l)?.[1]).find(Boolean);
  assertEquals(tracedBacklog, kernelBacklog);
  assert(traced.some((l) => l.endsWith(`bind(unix:${path}) = 0`)), traced.join("\n"));
  Deno.removeSync(dir, { recursive: true });
});
