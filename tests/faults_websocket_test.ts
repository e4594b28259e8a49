/**
 * The fault matrix for WebSocket sessions: a Close from either side at
 * every moment of a session — before any data, in the middle of a
 * fragmented message, while the other side is sending bulk, crossing the
 * other side's own Close — with a code of each class (1000, 1001, none
 * (1005), 1008, 1011, 4001, and 1006: the TCP connection closed or reset
 * without a Close), and Closes no peer may send (a reason too long or not
 * UTF-8, the codes 999, 1004, 1005, 1006, 1015, 5000). The peer is a
 * Python process that sends exact frames (tests/ws_peers.ts); sockit is
 * `connect ws://` (the client), `listen ws://` (one session) and `echo
 * ws://` (a server whose other clients must not notice). What is checked:
 * the exit code (0 for 1000, 1001 and 1005; 1 otherwise), one line on
 * stderr naming the code or the fault, the Close sockit sends back (the
 * peer's code; 1002 for a protocol error, 1007 for a reason that is not
 * UTF-8), no socket left behind, and for echo the next client served.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { assertNoSocketsLeft, encoder, openSockets, runSockit, spawnSockit } from "./helpers.ts";
import { ScriptedWsPeer } from "./ws_peers.ts";
import type { WsStep } from "./ws_peers.ts";

/** What sockit must do when a peer follows a script. */
interface CloseCase {
  /** The moment and the Close, in words. */
  name: string;
  /** The peer's script. */
  steps: WsStep[];
  /** sockit's input: none (end at once, Close 1000 with --close-delay 0), or held open. */
  input?: "none" | "open" | Uint8Array;
  /** More sockit arguments. */
  extra?: string[];
  /** sockit's exit code. */
  code: number;
  /** The one line on stderr (none when undefined). */
  line?: RegExp;
  /** The Close code the peer receives from sockit (null: an empty Close; "none": no Close). */
  answer: number | null | "none";
  /** sockit's input may all be sent before the peer acts (then nothing was lost). */
  racesInput?: boolean;
}

/** The codes of each class a peer may send, and what sockit makes of them. */
const CODES: Array<{ code: number | "none"; exit: number }> = [
  { code: 1000, exit: 0 },
  { code: 1001, exit: 0 },
  { code: "none", exit: 0 },
  { code: 1008, exit: 1 },
  { code: 1011, exit: 1 },
  { code: 4001, exit: 1 },
];

/** Closes no peer may send: sockit answers 1002 (1007 for a reason that is not UTF-8). */
const INVALID: Array<{ step: WsStep; answer: number; why: RegExp }> = [
  { step: "close:1000:long", answer: 1002, why: /oversized control frame/ },
  { step: "close:1000:bad", answer: 1007, why: /Close reason that is not UTF-8/ },
  ...[999, 1004, 1005, 1006, 1015, 5000].map((code) => ({
    step: `close:${code}`,
    answer: 1002,
    why: new RegExp(`invalid close code ${code}`),
  })),
];

/** The peer closes, at each moment, with each code. */
function peerCloses(): CloseCase[] {
  const cases: CloseCase[] = [];
  const moments: Array<{ name: string; before: WsStep[]; input?: CloseCase["input"] }> = [
    { name: "before any data", before: [] },
    { name: "between fragments of a message", before: ["frag:ab", "cont:cd"] },
    // sockit sends 8 MiB while the peer closes: it stops sending and answers.
    { name: "while sockit sends bulk", before: ["sleep:0.1"], input: new Uint8Array(8 << 20) },
  ];
  for (const moment of moments) {
    for (const { code, exit } of CODES) {
      const step = code === "none" ? "close:none" : `close:${code}:bye`;
      const closed = String.raw`^sockit: websocket \S+: closed by peer: ${code} bye$`;
      const undelivered = String
        .raw`^sockit: write \S+: broken pipe .*; [\d.]+ [KM]iB of input not delivered$`;
      cases.push({
        name: `peer's Close ${code === "none" ? "without a code" : code} ${moment.name}`,
        steps: [...moment.before, step, "wait:close"],
        input: moment.input ?? "open",
        extra: moment.input ? ["--binary"] : [],
        // Input it could not send any more is reported, whatever the code: nothing is lost silently.
        code: moment.input ? 1 : exit,
        racesInput: moment.input !== undefined,
        line: moment.input
          ? new RegExp(`${closed}|${undelivered}`)
          : exit
          ? new RegExp(closed)
          : undefined,
        answer: code === "none" ? null : code,
      });
    }
    for (const abrupt of ["fin", "rst"]) {
      cases.push({
        name: `peer's TCP ${
          abrupt === "fin" ? "close" : "reset"
        } without a Close (1006) ${moment.name}`,
        steps: [...moment.before, abrupt],
        input: moment.input ?? "open",
        extra: moment.input ? ["--binary"] : [],
        code: 1,
        line: abrupt === "fin"
          ? /^sockit: websocket \S+: connection dropped: no Close frame \(1006\)$/
          : /^sockit: (read|write) \S+: (connection reset by peer|broken pipe).*$/,
        answer: "none",
      });
    }
  }
  for (const bad of INVALID) {
    cases.push({
      name: `peer's invalid Close (${bad.step}) between fragments`,
      steps: ["frag:ab", bad.step, "wait:close"],
      input: "open",
      code: 1,
      line: new RegExp(
        `^sockit: websocket \\S+: the peer sent an? .*${bad.why.source}.*\\(closed with ${bad.answer}\\)$`,
      ),
      answer: bad.answer,
    });
  }
  // Both at once: sockit's Close 1000 (its input ended) crosses the peer's.
  for (const { code, exit } of [{ code: 1000, exit: 0 }, { code: 4001, exit: 1 }]) {
    cases.push({
      name: `crossing Closes: sockit's 1000 and the peer's ${code}`,
      steps: [`close:${code}`, "wait:close"],
      input: "none",
      extra: ["--close-delay", "0"],
      code: exit,
      line: exit ? new RegExp(`^sockit: websocket \\S+: closed by peer: ${code}$`) : undefined,
      answer: 1000,
    });
  }
  return cases;
}

/** sockit closes (its input ends, Close 1000 at once), at each moment of the peer's. */
function sockitCloses(): CloseCase[] {
  return [
    { name: "before any data", steps: ["wait:close", "close:1000"] },
    { name: "while the peer is between fragments", steps: ["frag:ab", "wait:close", "close:1000"] },
    { name: "while the peer sends bulk", steps: ["bulk:8000000", "wait:close", "close:1000"] },
    { name: "and the peer answers 1001", steps: ["wait:close", "close:1001"], code: 0 },
    { name: "and the peer answers 4001", steps: ["wait:close", "close:4001"], code: 1 },
    { name: "and the peer drops the connection", steps: ["wait:close", "fin"], code: 0 },
  ].map((c) => ({
    name: `sockit's Close ${c.name}`,
    steps: c.steps,
    input: "none" as const,
    extra: ["--close-delay", "0", "--binary"],
    code: c.code ?? 0,
    line: c.code ? /^sockit: websocket \S+: closed by peer: 4001$/ : undefined,
    answer: 1000,
  }));
}

/** Runs one case with sockit as `connect ws://` (peer: server) or `listen ws://` (peer: client). */
async function runCase(c: CloseCase, role: "connect" | "listen"): Promise<void> {
  const before = await openSockets();
  const stdin = c.input === "none" || c.input === undefined
    ? "null"
    : c.input === "open"
    ? "piped"
    : c.input;
  let peer: ScriptedWsPeer;
  let result;
  if (role === "connect") {
    peer = await ScriptedWsPeer.server(c.steps);
    result = await runSockit(["connect", `ws://127.0.0.1:${peer.port}/`, ...(c.extra ?? [])], {
      stdin,
    });
  } else {
    const listen = spawnSockit(["listen", "ws://127.0.0.1:0/", "-v", ...(c.extra ?? [])], {
      stdin,
    });
    const port = await listen.listeningPort();
    peer = await ScriptedWsPeer.client(port, c.steps);
    result = await listen.result();
  }
  await using _ = peer;
  await peer.done();
  const what = `${role}: ${c.name}`;
  // All of the input may be out before the peer's Close comes: then a clean code is a clean end.
  const clean = c.answer === null || c.answer === 1000 || c.answer === 1001;
  const codes = c.racesInput && clean ? [c.code, 0] : [c.code];
  assert(codes.includes(result.code), `${what}: exit ${result.code}\n${result.stderr}`);
  // listen -v also says where it listened and whom it served: the one line is the one that is not.
  const lines = result.stderr.split("\n").filter((l) =>
    l && !/listening on|connection from|WebSocket with|closed 127/.test(l)
  );
  if (c.line && !(c.racesInput && result.code === 0)) {
    assertEquals(lines.length, 1, `${what}: ${result.stderr}`);
    assertMatch(lines[0], c.line, what);
  } else assertEquals(lines, [], what);
  const answer = peer.closeCode();
  assertEquals(answer === undefined ? "none" : answer, c.answer, `${what}: the peer got ${answer}`);
  await assertNoSocketsLeft(before, `sockets after ${what}`);
}

Deno.test("ws faults: connect ws:// — the server's Close at each moment with each code, and sockit's own", async () => {
  for (const c of [...peerCloses(), ...sockitCloses()]) await runCase(c, "connect");
});

Deno.test("ws faults: listen ws:// — the client's Close at each moment with each code, and sockit's own", async () => {
  for (const c of [...peerCloses(), ...sockitCloses()]) await runCase(c, "listen");
});

Deno.test("ws faults: echo ws:// — a client's Close of each kind at each moment; the others are served", async () => {
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"]);
  const port = await echo.listeningPort();
  const before = await openSockets();
  // A client that stays through everything: its messages come back before and after.
  const stayer = new WebSocket(`ws://127.0.0.1:${port}/`);
  const messages: string[] = [];
  const opened = new Promise((resolve) => stayer.onopen = resolve);
  let wake = () => {};
  stayer.onmessage = (e) => {
    messages.push(String(e.data));
    wake();
  };
  const echoed = async (text: string) => {
    const got = new Promise<void>((resolve) => wake = resolve);
    stayer.send(text);
    await got;
  };
  await opened;
  await echoed("first");
  let n = 0;
  try {
    const scripts: Array<{ steps: WsStep[]; answer: number | null | "none" }> = [];
    for (const { code } of CODES) {
      const close = code === "none" ? "close:none" : `close:${code}:bye`;
      const answer = code === "none" ? null : code;
      scripts.push({ steps: [close, "wait:close"], answer });
      scripts.push({ steps: ["frag:ab", "cont:cd", close, "wait:close"], answer });
      scripts.push({ steps: ["bulk:4000000", close, "wait:close"], answer });
    }
    scripts.push({ steps: ["text:x", "fin"], answer: "none" });
    scripts.push({ steps: ["frag:ab", "rst"], answer: "none" });
    scripts.push({ steps: ["bulk:4000000", "sleep:0.05", "rst"], answer: "none" });
    for (const bad of INVALID) {
      scripts.push({ steps: ["frag:ab", bad.step, "wait:close"], answer: bad.answer });
    }
    for (const s of scripts) {
      await using client = await ScriptedWsPeer.client(port, s.steps);
      await client.done();
      const got = client.closeCode();
      assertEquals(got === undefined ? "none" : got, s.answer, JSON.stringify(s.steps));
      // And a well-formed client is served at once.
      const fine = await runSockit(["connect", `ws://127.0.0.1:${port}/`], {
        stdin: encoder.encode(`next ${n}\n`),
      });
      assertEquals([fine.code, fine.text], [0, `next ${n++}\n`], fine.stderr);
    }
    await echoed("last");
    assertEquals(messages, ["first", "last"]);
  } finally {
    const closed = new Promise((resolve) => stayer.onclose = resolve);
    stayer.close(1000);
    await closed;
    echo.kill("SIGTERM");
  }
  const r = await echo.result();
  assertEquals(r.code, 143, r.stderr);
  assert(!/Uncaught|^\s+at /m.test(r.stderr), r.stderr);
  await assertNoSocketsLeft(before, "sockets after the echo cases");
});
