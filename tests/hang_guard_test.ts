/**
 * The hang guard: no command outlives its `--timeout`, and the first
 * SIGTERM ends any command within 2 s — for every command and transport,
 * against a peer that goes silent at each stage of a session (before
 * accepting, after accepting, mid-TLS-handshake, mid-WebSocket-upgrade,
 * mid-proxy-handshake, mid-session). Each case runs twice, as a real process
 * with the start task's permissions: once with `--timeout 1s` (exit 124, or
 * the command's documented code), once ended by SIGTERM (exit 143) once the
 * peer has reached its stage. The bounds are bounds on a hang, not speed
 * targets.
 *
 * @module
 */

import { assert } from "./assert.ts";
import { localhostCertificate, spawnSockit, tempSocketDir } from "./helpers.ts";
import type { SockitRun } from "./helpers.ts";
import { requireRoot } from "./netns.ts";
import { SilentPeer } from "./silent_peers.ts";
import type { ClientStage, ServerStage } from "./silent_peers.ts";

/** The permissions of `deno task start` (and the binary). */
const START_PERMS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-ffi",
  "--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK",
];

/** The longest a first SIGTERM may take to end a command. */
const SIGNAL_BOUND_MS = 2000;
/** `--timeout 1s` plus the bound on ending, plus a process start under load. */
const TIMEOUT_BOUND_MS = 1000 + 2000 + 1500;

interface Ctx {
  /** A TLS certificate for localhost, and its key. */
  tls: { cert: string; key: string };
  /** A directory for Unix sockets. */
  dir: string;
  /** A socket path of this run's own (each run gets a new one). */
  path: string;
}

let runs = 0;

/** One cell: what sockit runs against which silent peer. */
interface Case {
  /** The cell's name: command, transport, stage. */
  name: string;
  /** A silent server sockit connects to (clients), if any. */
  server?: ServerStage;
  /** sockit's arguments; `peer` is the silent server's port or path. */
  args: (peer: string, ctx: Ctx) => string[];
  /** A silent client of sockit's listening port (servers), started once it listens. */
  client?: ClientStage;
  /** Text written to sockit's stdin at once (stdin stays open). */
  input?: string;
  /** The exit code `--timeout 1s` gives (default 124); null: the command has no --timeout. */
  timeoutCode?: number | null;
  /** Needs root (raw sockets). */
  root?: boolean;
}

async function startedRun(c: Case, ctx: Ctx, extra: string[]): Promise<{
  run: SockitRun;
  peers: SilentPeer[];
  startedAt: number;
}> {
  const peers: SilentPeer[] = [];
  let address = "";
  ctx = { ...ctx, path: `${ctx.dir}/run${++runs}.sock` };
  if (c.server) {
    const peer = await SilentPeer.server(c.server, { path: ctx.path, tls: ctx.tls });
    peers.push(peer);
    address = peer.address;
  }
  const startedAt = performance.now();
  const json = c.client ? ["--json"] : [];
  const run = spawnSockit([...c.args(address, ctx), ...json, ...extra], {
    process: true,
    perms: START_PERMS,
    stdin: "piped",
  });
  if (c.input) {
    const writer = run.stdin.getWriter();
    await writer.write(new TextEncoder().encode(c.input)).catch(() => {});
    writer.releaseLock();
  }
  if (c.client) {
    const port = await run.listeningPort();
    peers.push(await SilentPeer.client(c.client, port));
  }
  return { run, peers, startedAt };
}

async function endPeers(peers: SilentPeer[]): Promise<void> {
  for (const peer of peers) await peer[Symbol.asyncDispose]();
}

/** Runs one cell with `--timeout 1s`; returns a failure text or undefined. */
async function timeoutCell(c: Case, ctx: Ctx): Promise<string | undefined> {
  const { run, peers, startedAt } = await startedRun(c, ctx, ["--timeout", "1s"]);
  try {
    const guard = setTimeout(() => run.kill("SIGKILL"), 15_000);
    const result = await run.result();
    clearTimeout(guard);
    const took = performance.now() - startedAt;
    const want = c.timeoutCode ?? 124;
    if (result.code !== want || took > TIMEOUT_BOUND_MS) {
      return `${c.name} --timeout 1s: exit ${result.code} after ${Math.round(took)} ms ` +
        `(want ${want} within ${TIMEOUT_BOUND_MS} ms); stderr: ${result.stderr.trim().slice(-300)}`;
    }
  } finally {
    await endPeers(peers);
  }
}

/** Runs one cell ended by SIGTERM once the peer reached its stage. */
async function signalCell(c: Case, ctx: Ctx): Promise<string | undefined> {
  const { run, peers } = await startedRun(c, ctx, []);
  try {
    const stage = peers.at(-1);
    if (stage) await stage.held().catch(() => {});
    else await new Promise((resolve) => setTimeout(resolve, 700));
    // The command is where the peer left it; it must not have ended on its own.
    const killedAt = performance.now();
    run.kill("SIGTERM");
    const guard = setTimeout(() => run.kill("SIGKILL"), 15_000);
    const result = await run.result();
    clearTimeout(guard);
    const took = performance.now() - killedAt;
    if (result.code !== 143 || took > SIGNAL_BOUND_MS) {
      return `${c.name} SIGTERM: exit ${result.code} after ${Math.round(took)} ms ` +
        `(want 143 within ${SIGNAL_BOUND_MS} ms); stderr: ${result.stderr.trim().slice(-300)}`;
    }
  } finally {
    await endPeers(peers);
  }
}

/** Runs every cell of `cases` both ways, a few at a time; fails listing every cell that hung. */
async function guard(cases: Case[]): Promise<void> {
  if (cases.some((c) => c.root)) requireRoot();
  const dir = tempSocketDir();
  const ctx: Ctx = { tls: localhostCertificate(dir), dir, path: "" };
  const cells: Array<() => Promise<string | undefined>> = [];
  for (const c of cases) {
    if (c.timeoutCode !== null) cells.push(() => timeoutCell(c, ctx));
    cells.push(() => signalCell(c, ctx));
  }
  const failures: string[] = [];
  const queue = [...cells];
  const workers = Array.from({ length: 6 }, async () => {
    for (let cell = queue.shift(); cell; cell = queue.shift()) {
      const failure = await cell().catch((err) => `${err}`);
      if (failure) failures.push(failure);
    }
  });
  await Promise.all(workers);
  Deno.removeSync(dir, { recursive: true });
  assert(
    failures.length === 0,
    `${failures.length} of ${cells.length} cells:\n${failures.join("\n")}`,
  );
}

const cacert = (ctx: Ctx) => ["--cacert", ctx.tls.cert];
const serverTls = (ctx: Ctx) => ["--cert", ctx.tls.cert, "--key", ctx.tls.key];

/** Clients: connect, wait and scan, against a server silent at each stage. */
export const CLIENT_CASES: Case[] = [
  {
    name: "connect tcp, never accepted",
    server: "no-accept",
    args: (p) => ["connect", `127.0.0.1:${p}`],
  },
  {
    name: "connect tcp, accepted, silent",
    server: "accept",
    args: (p) => ["connect", `127.0.0.1:${p}`],
  },
  {
    name: "connect tcp, mid-session",
    server: "read",
    input: "hello\n",
    args: (p) => ["connect", `127.0.0.1:${p}`],
  },
  {
    name: "connect tls, mid-handshake",
    server: "read",
    args: (p, ctx) => ["connect", `tls://127.0.0.1:${p}`, ...cacert(ctx)],
  },
  {
    name: "connect tls --insecure, mid-handshake",
    server: "read",
    args: (p) => ["connect", `tls://127.0.0.1:${p}`, "--insecure"],
  },
  {
    name: "connect tls, mid-session",
    server: "tls",
    input: "hello\n",
    args: (p, ctx) => ["connect", `tls://127.0.0.1:${p}`, ...cacert(ctx)],
  },
  {
    name: "connect udp, mid-session",
    server: "udp",
    input: "hello\n",
    args: (p) => ["connect", `udp://127.0.0.1:${p}`],
  },
  {
    name: "connect unix, mid-session",
    server: "unix",
    input: "hello\n",
    args: (p) => ["connect", `unix:${p}`],
  },
  {
    name: "connect unixgram, mid-session",
    server: "unixgram",
    input: "hello\n",
    args: (p) => ["connect", `unixgram:${p}`],
  },
  {
    name: "connect ws, mid-upgrade",
    server: "ws-upgrade",
    args: (p) => ["connect", `ws://127.0.0.1:${p}/`],
  },
  {
    name: "connect ws, mid-session",
    server: "ws",
    input: "hello\n",
    args: (p) => ["connect", `ws://127.0.0.1:${p}/`],
  },
  {
    name: "connect wss, mid-handshake",
    server: "read",
    args: (p, ctx) => ["connect", `wss://127.0.0.1:${p}/`, ...cacert(ctx)],
  },
  {
    name: "connect wss, mid-upgrade",
    server: "wss-upgrade",
    args: (p, ctx) => ["connect", `wss://127.0.0.1:${p}/`, ...cacert(ctx)],
  },
  {
    name: "connect wss, mid-session",
    server: "wss",
    input: "hello\n",
    args: (p, ctx) => ["connect", `wss://127.0.0.1:${p}/`, ...cacert(ctx)],
  },
  {
    name: "connect --proxy socks5, before the greeting's answer",
    server: "accept",
    args: (p) => ["connect", "127.0.0.1:9", "--proxy", `socks5://127.0.0.1:${p}`],
  },
  {
    name: "connect --proxy socks5, mid-proxy-handshake",
    server: "socks5",
    args: (p) => ["connect", "127.0.0.1:9", "--proxy", `socks5://127.0.0.1:${p}`],
  },
  {
    name: "connect --proxy http, mid-proxy-handshake",
    server: "http-proxy",
    args: (p) => ["connect", "127.0.0.1:9", "--proxy", `http://127.0.0.1:${p}`],
  },
  {
    name: "connect tls --proxy socks5, mid-proxy-handshake",
    server: "socks5",
    args: (p, ctx) => [
      "connect",
      "tls://127.0.0.1:9",
      "--proxy",
      `socks5://127.0.0.1:${p}`,
      ...cacert(ctx),
    ],
  },
  {
    name: "connect ip, mid-session",
    root: true,
    input: "hello\n",
    args: () => ["connect", "ip://127.0.0.1/253"],
  },
  {
    name: "wait https, mid-handshake",
    server: "read",
    args: (p, ctx) => ["wait", `https://127.0.0.1:${p}/`, ...cacert(ctx)],
  },
  {
    name: "wait http, no answer",
    server: "read",
    args: (p) => ["wait", `http://127.0.0.1:${p}/`],
  },
  {
    name: "wait --proxy socks5, mid-proxy-handshake",
    server: "socks5",
    args: (p) => ["wait", "127.0.0.1:9", "--proxy", `socks5://127.0.0.1:${p}`],
  },
  {
    name: "scan --proxy socks5, mid-proxy-handshake",
    server: "socks5",
    // scan's --timeout is each probe's: the probe ends, the port is not open (exit 1).
    timeoutCode: 1,
    args: (p) => ["scan", "127.0.0.1", "9", "--proxy", `socks5://127.0.0.1:${p}`],
  },
];

/** Servers: listen, echo, forward and proxy, with a client (or a target) silent at each stage. */
export const SERVER_CASES: Case[] = [
  { name: "listen tcp, before accepting", args: () => ["listen", "0"] },
  {
    name: "listen tcp, mid-session",
    client: "connect",
    args: () => ["listen", "0"],
  },
  {
    name: "listen tls, mid-handshake",
    client: "tls-hello",
    args: (_, ctx) => ["listen", "tls://127.0.0.1:0", ...serverTls(ctx)],
  },
  {
    name: "listen ws, mid-upgrade",
    client: "ws-upgrade",
    args: () => ["listen", "ws://127.0.0.1:0/"],
  },
  {
    name: "listen ws, mid-session",
    client: "ws",
    args: () => ["listen", "ws://127.0.0.1:0/"],
  },
  {
    name: "listen udp, mid-session",
    client: "udp",
    args: () => ["listen", "udp://127.0.0.1:0"],
  },
  {
    name: "listen unix, before accepting",
    args: (_, ctx) => ["listen", `unix:${ctx.path}`],
  },
  {
    name: "listen unixgram, before any datagram",
    args: (_, ctx) => ["listen", `unixgram:${ctx.path}`],
  },
  {
    name: "listen ip, before any datagram",
    root: true,
    args: () => ["listen", "ip://127.0.0.1/253"],
  },
  {
    name: "echo tcp -k, mid-session",
    client: "connect",
    args: () => ["echo", "0"],
  },
  {
    name: "echo tls, mid-handshake",
    client: "tls-hello",
    args: (_, ctx) => ["echo", "tls://127.0.0.1:0", ...serverTls(ctx)],
  },
  {
    name: "echo wss, mid-handshake",
    client: "tls-hello",
    args: (_, ctx) => ["echo", "wss://127.0.0.1:0/", ...serverTls(ctx)],
  },
  {
    name: "echo ws, mid-upgrade",
    client: "ws-upgrade",
    args: () => ["echo", "ws://127.0.0.1:0/"],
  },
  {
    name: "echo udp, mid-session",
    client: "udp",
    args: () => ["echo", "udp://127.0.0.1:0"],
  },
  {
    name: "forward to a tcp target, mid-session",
    server: "read",
    client: "connect",
    args: (p) => ["forward", "0", `127.0.0.1:${p}`],
  },
  {
    name: "forward to a tls target, mid-handshake",
    server: "read",
    client: "connect",
    args: (p, ctx) => ["forward", "0", `tls://127.0.0.1:${p}`, ...cacert(ctx)],
  },
  {
    name: "forward to a ws target, mid-upgrade",
    server: "ws-upgrade",
    client: "connect",
    args: (p) => ["forward", "0", `ws://127.0.0.1:${p}/`],
  },
  {
    name: "forward through --proxy socks5, mid-proxy-handshake",
    server: "socks5",
    client: "connect",
    args: (p) => ["forward", "0", "127.0.0.1:9", "--proxy", `socks5://127.0.0.1:${p}`],
  },
  {
    name: "forward udp to a silent target",
    server: "udp",
    client: "udp",
    args: (p) => ["forward", "udp://127.0.0.1:0", `udp://127.0.0.1:${p}`],
  },
  {
    name: "proxy, before the request",
    client: "connect",
    args: () => ["proxy", "127.0.0.1:0"],
  },
  {
    name: "proxy, mid-proxy-handshake",
    client: "socks5",
    args: () => ["proxy", "127.0.0.1:0"],
  },
];

/** The tools: ping and traceroute wait on ICMP that may never come. */
export const TOOL_CASES: Case[] = [
  { name: "ping, no count", root: true, args: () => ["ping", "127.0.0.1"] },
  {
    // The probe's port has a socket that takes it: no port unreachable comes back.
    name: "traceroute to a host that stays silent",
    root: true,
    server: "udp",
    args: (p) => ["traceroute", "-q", "1", "-m", "1", "-w", "30s", "-p", p, "127.0.0.1"],
  },
];

Deno.test("hang guard: clients (connect, wait, scan) against a peer silent at each stage", async () => {
  await guard(CLIENT_CASES);
});

Deno.test("hang guard: servers (listen, echo, forward, proxy) with a client or target silent at each stage", async () => {
  await guard(SERVER_CASES);
});

Deno.test("hang guard: ping and traceroute end on the first SIGTERM", async () => {
  await guard(TOOL_CASES);
});
