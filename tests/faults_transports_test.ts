/**
 * The fault matrix, a row for each transport: tls, ws, wss, unix, udp,
 * unixgram, ip (root), the proxy server and a `--proxy` client. In each row
 * a peer resets in the middle of the stream (SO_LINGER 0, or a close with
 * unread input on a Unix socket), goes silent once the session is up, or
 * closes (or resets) in the middle of the handshake — the TLS handshake,
 * the WebSocket upgrade, the SOCKS5 or HTTP CONNECT negotiation. Datagram
 * rows have no stream to reset: there the peer answers once and is gone.
 * sockit must end with the documented code and say why in one line (a
 * client, and `listen`'s one session: 1 for a reset or a broken handshake,
 * 124 at `--idle-timeout`), leave no socket behind, and a server must go on
 * serving the others — also with `--max-conns 1`, where a peer that holds
 * its slot would shut everyone out. The peers are Python processes
 * (tests/fault_peers.ts). A peer silent at each stage against `--timeout`
 * and SIGTERM is the hang guard's (tests/hang_guard_test.ts); the Close of
 * a WebSocket at each moment is tests/faults_websocket_test.ts.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertNoSocketsLeft,
  encoder,
  localhostCertificate,
  openSockets,
  runSockit,
  spawnSockit,
  tempSocketDir,
} from "./helpers.ts";
import type { SockitResult } from "./helpers.ts";
import { FaultPeer } from "./fault_peers.ts";
import type { FaultMode, Layers } from "./fault_peers.ts";
import { requireRoot } from "./netns.ts";

const IDLE = "300ms";
/** How sockit writes it. */
const IDLE_WORDS = "300 ms";
/** How long a session that must end at the idle timeout may take (the load of a test run included). */
const IDLE_BOUND_MS = 300 + 2500;

/** The lines of stderr that say something went wrong (not -v's listening/connection/TLS lines). */
function faultLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) =>
    l &&
    !/listening on|connection from|WebSocket with|TLS with|TLS ephemeral|^sockit: closed |--insecure: the server's certificate is not verified/
      .test(l)
  );
}

/** Asserts exit `code` and exactly one fault line matching `line`. */
function assertOneLine(r: SockitResult, code: number, line: RegExp, what: string): void {
  assertEquals(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
  const lines = faultLines(r.stderr);
  assertEquals(lines.length, 1, `${what}: ${JSON.stringify(lines)}`);
  assertMatch(lines[0], line, what);
}

/** A stream transport as a client reaches it, and the peer that plays its server. */
interface ClientRow {
  name: string;
  layers: Layers;
  /** A Unix socket (no handshake). */
  unix?: boolean;
  /** sockit's arguments to reach the peer at `address`. */
  args: (address: string, cert: string) => string[];
  /** What a close in the middle of the handshake is called. */
  handshakeClose?: RegExp;
}

const CLIENT_ROWS: ClientRow[] = [
  {
    name: "tls",
    layers: "tls",
    args: (a, cert) => [`tls://localhost:${a}`, "--cacert", cert],
    handshakeClose: /the peer closed the connection during the TLS handshake$/,
  },
  {
    // --insecure is TLS through node:tls (a destroyed handshake's late error was thrown, uncaught).
    name: "tls --insecure",
    layers: "tls",
    args: (a) => [`tls://127.0.0.1:${a}`, "--insecure"],
    handshakeClose: /the peer closed the connection during the TLS handshake$/,
  },
  {
    name: "ws",
    layers: "ws",
    args: (a) => [`ws://127.0.0.1:${a}/`],
    handshakeClose: /closed during the WebSocket upgrade$/,
  },
  {
    name: "wss",
    layers: "tls,ws",
    args: (a, cert) => [`wss://localhost:${a}/`, "--cacert", cert],
    handshakeClose: /closed during the WebSocket upgrade$/,
  },
  { name: "unix", layers: "", unix: true, args: (a) => [`unix:${a}`] },
  {
    name: "--proxy socks5",
    layers: "socks5",
    args: (a) => ["127.0.0.1:9", "--proxy", `socks5://127.0.0.1:${a}`],
    handshakeClose:
      /through socks5:\/\/\S+: the proxy closed the connection during the socks5 handshake$/,
  },
  {
    name: "--proxy http",
    layers: "http",
    args: (a) => ["127.0.0.1:9", "--proxy", `http://127.0.0.1:${a}`],
    handshakeClose:
      /through http:\/\/\S+: the proxy closed the connection during the http handshake$/,
  },
];

Deno.test("transport faults: connect over tls, ws, wss, unix and through a SOCKS5 or HTTP proxy — the server resets mid-stream, goes silent, closes or resets in the handshake", async () => {
  const dir = tempSocketDir();
  const tls = localhostCertificate(dir);
  let n = 0;
  try {
    for (const row of CLIENT_ROWS) {
      const modes: FaultMode[] = row.unix
        ? ["reset", "silent"]
        : ["reset", "silent", "handshake-close", "handshake-reset"];
      for (const mode of modes) {
        const what = `connect ${row.name}, ${mode}`;
        const before = await openSockets();
        await using peer = await FaultPeer.server(mode, row.layers, {
          where: row.unix ? `${dir}/peer${n++}.sock` : "",
          tls,
        });
        const silent = mode === "silent";
        const started = performance.now();
        const r = await runSockit(
          [
            "connect",
            ...row.args(peer.address, tls.cert),
            ...(silent ? ["--idle-timeout", IDLE] : []),
          ],
          // A reset needs something unread on the peer's side (that is what a Unix socket resets on).
          { stdin: silent ? "piped" : encoder.encode("unread\n") },
        );
        if (mode === "reset") {
          assertOneLine(r, 1, /^sockit: read \S+: connection reset by peer$/, what);
          assertEquals(r.text, row.layers.includes("ws") ? "partial\n" : "partial", what);
        } else if (silent) {
          assertOneLine(
            r,
            124,
            new RegExp(`^sockit: idle timeout \\S+: no data for ${IDLE_WORDS}$`),
            what,
          );
          assert(performance.now() - started < IDLE_BOUND_MS, `${what}: took too long`);
        } else if (mode === "handshake-close") {
          assertOneLine(r, 1, row.handshakeClose!, what);
        } else {
          assertOneLine(r, 1, /: connection reset by peer$/, what);
        }
        await assertNoSocketsLeft(before, `sockets after ${what}`);
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("transport faults: connect over udp, unixgram and ip:// — a peer that answers once and is gone, one that never answers", async () => {
  requireRoot();
  const dir = tempSocketDir();
  try {
    const rows: Array<{
      name: string;
      layers: "udp" | "unixgram" | "ip";
      where?: string;
      endpoint: (address: string) => string;
      gone?: RegExp;
    }> = [
      {
        name: "udp",
        layers: "udp",
        endpoint: (a) => `udp://127.0.0.1:${a}`,
        gone: /^sockit: connect udp:\/\/127\.0\.0\.1:\d+: connection refused$/,
      },
      {
        name: "unixgram",
        layers: "unixgram",
        where: `${dir}/dgram.sock`,
        endpoint: (a) => `unixgram:${a}`,
        gone:
          /^sockit: send unixgram:\S+: no such file or directory; \d+ B of input not delivered$/,
      },
      // A raw socket hears of no peer that is gone (the kernel reports nothing to it): the session
      // ends as any datagram session does, once the input has ended and the replies paused.
      { name: "ip", layers: "ip", endpoint: () => "ip://127.0.0.2/253" },
    ];
    for (const row of rows) {
      for (const mode of ["once", "silent"] as const) {
        const what = `connect ${row.name}, ${
          mode === "once" ? "a peer gone after one answer" : "a peer that never answers"
        }`;
        const before = await openSockets();
        await using peer = await FaultPeer.server(mode, row.layers, { where: row.where });
        const run = spawnSockit(["connect", row.endpoint(peer.address), "--idle-timeout", IDLE], {
          stdin: "piped",
        });
        const input = run.stdin.getWriter();
        await input.write(encoder.encode("ping\n"));
        if (mode === "once") {
          await peer.waitFor("gone");
          await new Promise((resolve) => setTimeout(resolve, 100));
          await input.write(encoder.encode("again\n")).catch(() => {});
        } else await peer.waitFor("served");
        const started = performance.now();
        await input.close().catch(() => {});
        const r = await run.result();
        if (mode === "once" && row.gone) {
          assertOneLine(r, 1, row.gone, what);
        } else {
          // The input ended: replies are awaited for the idle time, then exit 0 (the README's rule).
          assertEquals([r.code, faultLines(r.stderr)], [0, []], `${what}: ${r.stderr}`);
          assert(performance.now() - started < IDLE_BOUND_MS, `${what}: took too long`);
        }
        assertEquals(r.text, mode === "once" ? "pong" : "", what);
        await assertNoSocketsLeft(before, `sockets after ${what}`);
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A stream server row: its endpoint, and how a well-formed client checks it is served. */
interface ServerRow {
  name: string;
  layers: Layers;
  endpoint: string;
  unix?: boolean;
  /** A well-formed client's arguments (it sends "ok" and must get "ok" back). */
  client: (address: string) => string[];
  /** What echo says of a client closing (or resetting) in the middle of its handshake. */
  handshake?: RegExp;
}

function serverRows(dir: string): ServerRow[] {
  return [
    {
      name: "tls",
      layers: "tls",
      endpoint: "tls://127.0.0.1:0",
      client: (a) => [`tls://127.0.0.1:${a}`, "--insecure", "-q"],
      handshake: /TLS handshake failed: .*the peer closed the connection during the TLS handshake$/,
    },
    {
      name: "ws",
      layers: "ws",
      endpoint: "ws://127.0.0.1:0/",
      client: (a) => [`ws://127.0.0.1:${a}/`, "--binary"],
      handshake:
        /WebSocket upgrade failed: (closed during the WebSocket upgrade|Connection reset by peer.*)$/,
    },
    {
      name: "wss",
      layers: "tls,ws",
      endpoint: "wss://127.0.0.1:0/",
      client: (a) => [`wss://127.0.0.1:${a}/`, "--insecure", "-q", "--binary"],
      handshake:
        /WebSocket upgrade failed: (closed during the WebSocket upgrade|Connection reset by peer.*)$/,
    },
    {
      name: "unix",
      layers: "",
      endpoint: `unix:${dir}/echo.sock`,
      unix: true,
      client: () => [`unix:${dir}/echo.sock`],
    },
  ];
}

Deno.test("transport faults: echo over tls, ws, wss, unix with --max-conns 1 — a client resets mid-stream, closes or resets in the handshake, goes silent; the next is served at once", async () => {
  const dir = tempSocketDir();
  try {
    for (const row of serverRows(dir)) {
      const modes: FaultMode[] = row.unix
        ? ["echo-reset", "silent"]
        : ["echo-reset", "handshake-close", "handshake-reset", "silent"];
      for (const mode of modes) {
        const what = `echo ${row.name}, a client's ${mode}`;
        const before = await openSockets();
        // One slot, and a handshake limit far above the bound below: a client that kept its slot
        // after it failed would keep the next one out.
        const echo = spawnSockit([
          "echo",
          row.endpoint,
          "-v",
          "--max-conns",
          "1",
          "--idle-timeout",
          IDLE,
          ...(row.unix ? [] : ["--handshake-timeout", "20s"]),
        ]);
        const address = row.unix ? `${dir}/echo.sock` : String(await echo.listeningPort());
        if (row.unix) await echo.waitForStderr(/listening on/);
        try {
          await using client = await FaultPeer.client(mode, row.layers, address);
          await client.waitFor(
            { "echo-reset": "reset", silent: "served" }[mode as string] ?? "faulted",
          );
          if (mode === "silent") {
            // The silent one holds the slot until the idle timeout; then it is closed.
            await client.waitFor("ended");
          }
          const started = performance.now();
          const fine = await runSockit(["connect", ...row.client(address), "--send", "ok"]);
          assertEquals([fine.code, fine.text], [0, "ok"], `${what}: ${fine.stderr}`);
          assert(performance.now() - started < 3000, `${what}: the next client waited`);
        } finally {
          echo.kill("SIGTERM");
        }
        const r = await echo.result();
        assertEquals(r.code, 143, `${what}: ${r.stderr}`);
        const lines = faultLines(r.stderr).filter((l) => !/interrupted by SIGTERM/.test(l));
        assertEquals(lines.length, 1, `${what}: ${JSON.stringify(lines)}`);
        const said = mode === "echo-reset"
          ? /warning: (read \S+: connection reset by peer)$/
          : mode === "silent"
          ? new RegExp(`warning: idle timeout \\S+: no data for ${IDLE_WORDS}$`)
          : row.handshake!;
        assertMatch(lines[0], said, what);
        await assertNoSocketsLeft(before, `sockets after ${what}`);
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("transport faults: listen (one session) over tls, ws, wss, unix — a client reset is exit 1 in one line, a silent one is 124 at --idle-timeout", async () => {
  const dir = tempSocketDir();
  try {
    for (const row of serverRows(dir)) {
      for (const mode of ["echo-reset", "silent"] as const) {
        const what = `listen ${row.name}, a client's ${mode}`;
        const before = await openSockets();
        // --send: something the client leaves unread, so its close is a reset on a Unix socket too.
        const listen = spawnSockit(
          ["listen", row.endpoint, "-v", "--idle-timeout", IDLE, "--no-half-close"],
          { stdin: mode === "silent" ? "piped" : encoder.encode("hello\n") },
        );
        const address = row.unix ? `${dir}/echo.sock` : String(await listen.listeningPort());
        if (row.unix) await listen.waitForStderr(/listening on/);
        await using _client = await FaultPeer.client(mode, row.layers, address);
        const started = performance.now();
        const r = await listen.result();
        if (mode === "echo-reset") {
          assertOneLine(r, 1, /^sockit: read \S+: connection reset by peer$/, what);
        } else {
          assertOneLine(
            r,
            124,
            new RegExp(`^sockit: idle timeout \\S+: no data for ${IDLE_WORDS}$`),
            what,
          );
          assert(performance.now() - started < IDLE_BOUND_MS, `${what}: took too long`);
        }
        await assertNoSocketsLeft(before, `sockets after ${what}`);
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("transport faults: echo over udp, unixgram and ip:// — a client gone before its answer; the next is served", async () => {
  requireRoot();
  const dir = tempSocketDir();
  try {
    const rows = [
      { name: "udp", layers: "udp" as const, endpoint: "udp://127.0.0.1:0" },
      { name: "unixgram", layers: "unixgram" as const, endpoint: `unixgram:${dir}/echo.dgram` },
      { name: "ip", layers: "ip" as const, endpoint: "ip://127.0.0.2/253" },
    ];
    for (const row of rows) {
      const what = `echo ${row.name}, a client gone`;
      const before = await openSockets();
      const echo = spawnSockit(["echo", row.endpoint, "-v"]);
      let target = row.endpoint;
      let where = "127.0.0.2";
      if (row.layers === "udp") {
        const port = await echo.listeningPort();
        target = `udp://127.0.0.1:${port}`;
        where = String(port);
      } else {
        await echo.waitForStderr(/listening on/);
        if (row.layers === "unixgram") where = `${dir}/echo.dgram`;
      }
      try {
        for (let i = 0; i < 3; i++) {
          await using gone = await FaultPeer.client("gone", row.layers, where);
          await gone.waitFor("gone");
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        const fine = await runSockit(["connect", target, "--send", "ok", "--idle-timeout", IDLE]);
        assertEquals([fine.code, fine.text], [0, "ok"], `${what}: ${fine.stderr}`);
      } finally {
        echo.kill("SIGTERM");
      }
      const r = await echo.result();
      assertEquals(r.code, 143, `${what}: ${r.stderr}`);
      assert(!/Uncaught|^\s+at /m.test(r.stderr), `${what}: ${r.stderr}`);
      await assertNoSocketsLeft(before, `sockets after ${what}`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("transport faults: sockit proxy — a client resets mid-tunnel or in the SOCKS5 negotiation, a target resets mid-stream, a silent tunnel ends at --idle-timeout; the others are served", async () => {
  const before = await openSockets();
  const echo = spawnSockit(["echo", "127.0.0.1:0", "-v"]);
  const echoPort = await echo.listeningPort();
  const proxy = spawnSockit([
    "proxy",
    "127.0.0.1:0",
    "-v",
    "--idle-timeout",
    IDLE,
    "--max-conns",
    "2",
  ]);
  const proxyPort = String(await proxy.listeningPort());
  const through = ["--proxy", `socks5://127.0.0.1:${proxyPort}`];
  const served = async (what: string) => {
    const fine = await runSockit(["connect", `127.0.0.1:${echoPort}`, ...through, "--send", "ok"]);
    assertEquals([fine.code, fine.text], [0, "ok"], `${what}: ${fine.stderr}`);
  };
  try {
    for (const mode of ["echo-reset", "handshake-close", "handshake-reset"] as const) {
      await using client = await FaultPeer.client(mode, "socks5", proxyPort, echoPort);
      await client.waitFor(mode === "echo-reset" ? "reset" : "faulted");
      await served(`after a client's ${mode}`);
    }
    // A silent tunnel holds one of the two slots until the idle timeout; the other serves.
    {
      await using client = await FaultPeer.client("silent", "socks5", proxyPort, echoPort);
      await client.waitFor("served");
      await served("while a tunnel is silent");
      await client.waitFor("ended");
    }
    // The target resets mid-stream: the client gets what came first, and the tunnel ends (the
    // proxy passes the end on as a close, as forward does; it says why in its own log, below).
    {
      await using target = await FaultPeer.server("reset", "");
      const r = await runSockit(["connect", `127.0.0.1:${target.address}`, ...through], {
        stdin: encoder.encode("unread\n"),
      });
      assertEquals([r.code, r.text, faultLines(r.stderr)], [0, "partial", []], r.stderr);
      await served("after a target's reset");
    }
  } finally {
    proxy.kill("SIGTERM");
    echo.kill("SIGTERM");
  }
  const r = await proxy.result();
  await echo.result();
  assertEquals(r.code, 143, r.stderr);
  assert(!/Uncaught|^\s+at /m.test(r.stderr), r.stderr);
  assertMatch(r.stderr, /read 127\.0\.0\.1:\d+: connection reset by peer/);
  assertMatch(r.stderr, new RegExp(`idle timeout \\S+: no data for ${IDLE_WORDS}`));
  await assertNoSocketsLeft(before, "sockets after the proxy cases");
});
