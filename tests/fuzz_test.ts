/**
 * The fuzz suites. The command line: a fixed-seed sample of command lines
 * generated from the declarations (`tests/fuzz.ts`: every command, every
 * transport's endpoints, every flag's values — and a test that names any
 * of them without a generator) run through sockit, in-process (or as
 * processes against `$SOCKIT`), each stopped with SIGTERM if it is still
 * running. Every run must keep the rules: a documented exit code, a usage
 * error in at most two lines, no stack trace, an end soon after SIGTERM.
 * Then `sockit proxy` fuzzed with mutated requests (`tests/fuzz_proxy.ts`),
 * and WebSocket frames and upgrades against `echo ws://` and `forward
 * ws:// ws://` (`tests/fuzz_ws.ts`). Last, what the fuzz found, each as a
 * test of its own. `deno task fuzz` runs more of each (`FUZZ_RUNS`,
 * `PROXY_FUZZ_RUNS`, `WS_FUZZ_RUNS`, `FUZZ_SEED`).
 */

import fc from "fast-check";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { commandLines, coverageGaps, DECLARED, fuzz, missingGenerators } from "./fuzz.ts";
import { COMMANDS } from "../lib/cli/main.ts";
import { SCHEMES } from "../lib/net/schemes.ts";
import { fuzzProxy } from "./fuzz_proxy.ts";
import { customCommand, encoder, runSockit, spawnSockit } from "./helpers.ts";
import { exchange, frame, fuzzWebSocket, upgradeRequest } from "./fuzz_ws.ts";
import type { WireFrame, WsInput } from "./fuzz_ws.ts";

/** The seed of every sample here. */
const SEED = 20261202;

Deno.test("fuzz: every command, scheme and flag value has a generator, and the sample reaches each", () => {
  const place = { dir: "/nonexistent", live: 1 };
  assertEquals(missingGenerators(place), []);
  // A command, a flag value and a transport the fuzz has never heard of are named.
  const declared = {
    commands: {
      ...DECLARED.commands,
      frob: { ...COMMANDS.ping, name: "frob", usage: "[options] WIDGET [-- SPELL]" },
    },
    flags: { ...DECLARED.flags, frob: { type: "string" as const, value: "KNOB", help: "" } },
    transports: {
      ...SCHEMES,
      sctp: { ...SCHEMES.tcp, scheme: "sctp", address: "association" as "url" },
    },
  };
  assertEquals(missingGenerators(place, declared), [
    "command frob: usage word WIDGET",
    "command frob: usage word SPELL",
    "flag --frob: value KNOB",
    "scheme sctp: no examples of the association form",
  ]);
  // The test's own sample runs every command, names every scheme, gives every flag.
  const lines = fc.sample(commandLines(place.dir, place.live), { numRuns: 3000, seed: SEED });
  assertEquals(coverageGaps(lines), []);
});

Deno.test("fuzz: generated command lines end with a documented code, briefly, without a trace", async () => {
  const { runs, failures } = await fuzz(
    customCommand
      ? { runs: 150, seed: SEED, concurrency: 4, stopAfter: 400, endWithin: 5000 }
      : { runs: 3000, seed: SEED, concurrency: 8, stopAfter: 150, endWithin: 3000 },
  );
  assertEquals(failures.slice(0, 5), [], `${failures.length} of ${runs} runs broke a rule`);
});

Deno.test("fuzz: mutated SOCKS4/4a/5 and HTTP requests never crash sockit proxy, reach a denied target, stall it or leak", async () => {
  const { runs, failures, outcomes, probes } = await fuzzProxy({
    runs: 400,
    seed: SEED,
    concurrency: 16,
    batch: 50,
  });
  assertEquals(failures.slice(0, 5), [], `${failures.length} of ${runs} inputs broke a rule`);
  // The sample reaches both ends: tunnels opened and requests refused, and probes between batches.
  assert(
    (outcomes.proxied ?? 0) > probes && (outcomes.refused ?? 0) > runs / 2,
    JSON.stringify(outcomes),
  );
});

Deno.test("fuzz: WebSocket frames and upgrades never crash echo or forward, get the right Close, stall them or leak", async () => {
  const { runs, failures, outcomes, probes } = await fuzzWebSocket({
    runs: 300,
    seed: SEED,
    concurrency: 16,
    batch: 50,
  });
  assertEquals(failures.slice(0, 5), [], `${failures.length} of ${runs} inputs broke a rule`);
  // The sample reaches every end: each protocol error, the client's Close answered, sessions
  // still open, upgrades mutated; and well-formed clients between batches.
  const answered = Object.keys(outcomes).filter((k) => k.startsWith("answer")).length;
  for (const end of ["fail 1002", "fail 1007", "fail 1009", "open", "eof", "upgrade mutated"]) {
    assert((outcomes[end] ?? 0) > 0, `${end}: ${JSON.stringify(outcomes)}`);
  }
  assert(answered >= 3 && probes >= 12, JSON.stringify({ outcomes, probes }));
});

Deno.test("fuzz finding: --hex-file opened, then -o fails to open: the hex file is closed, exit 1", async () => {
  // The command-line fuzz found it in-process: the sanitizer saw the hex file left open.
  const dir = Deno.makeTempDirSync({ prefix: "sockit-fuzz-" });
  try {
    const r = await runSockit([
      "connect",
      "127.0.0.1:1",
      "--hex-file",
      `${dir}/hex.txt`,
      "-o",
      dir,
    ], { stdin: "null" });
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /^sockit: open .*: is a directory\n$/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("fuzz finding: wait -4 with an IPv6 target among others is a usage error before any target is tried", async () => {
  // It was found when that target's turn came: the others had been tried, and their result
  // lines followed the usage error (4 lines, exit 2).
  for (const target of ["ws://[::1]:1/", "http://[::1]:1/", "[::1]:1"]) {
    const r = await runSockit(["wait", "unix:@sockit-fuzz-nothing", target, "-4", "--", "true"], {
      stdin: "null",
    });
    assertEquals(r.code, 2, r.stderr);
    assertEquals(
      r.stderr,
      "sockit: [::1]:1: an IPv6 address, but -4 was given\nsockit: hint: try 'sockit wait --help'\n",
    );
  }
});

Deno.test("fuzz finding: echo and listen udp:// with --multicast-ttl/--multicast-loop and no --multicast-join: a usage error before a socket is made", async () => {
  // It was found once the socket was made and bound: with --trace, 5 lines.
  for (const command of ["echo", "listen"]) {
    const r = await runSockit([command, "udp://127.0.0.1:0", "--trace", "--multicast-loop=on"], {
      stdin: "null",
    });
    assertEquals(r.code, 2, r.stderr);
    assertEquals(
      r.stderr,
      "sockit: options --multicast-ttl and --multicast-loop on a server's socket come with " +
        `--multicast-join\nsockit: hint: try 'sockit ${command} --help'\n`,
    );
  }
});

Deno.test("ws fuzz findings: reserved control opcodes, a Close behind a half-relayed frame, a Close lost as the relay ended", async () => {
  const key = btoa("sockit-findings!");
  const input = (target: 0 | 1, frames: WireFrame[], writes = 1): WsInput => ({
    target,
    upgrade: encoder.encode(upgradeRequest(key)),
    key,
    frames,
    glued: false,
    writes,
    halfClose: false,
  });
  const bytes = (n: number, b = 0x61) => new Uint8Array(n).fill(b);
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v"], { process: true });
  const port = await echo.listeningPort();
  const forward = spawnSockit(["forward", "ws://127.0.0.1:0/", `ws://127.0.0.1:${port}/`, "-v"], {
    process: true,
  });
  const ports = [port, await forward.listeningPort()];
  const broken: string[] = [];
  try {
    const cases: Array<[string, WsInput]> = [
      // 0xB–0xF were taken for a Close: 0xB with 03e8 ended the session as a clean Close 1000.
      ["opcode 0xB to echo", input(0, [frame(11, new Uint8Array([0x03, 0xe8]))])],
      ["opcode 0xF to forward", input(1, [frame(15, new Uint8Array(0))])],
      // forward: the client's Close came while the echo of its message was half relayed back; the
      // rest was refused and the Close never sent.
      ["Close behind a half-relayed frame", input(1, [frame(1, bytes(39)), frame(8, bytes(0))], 2)],
      // forward: the 1002 waited for its turn behind a relayed frame; the relay closed first.
      [
        "1002 behind relayed frames",
        input(1, [
          frame(2, bytes(1066, 1), false),
          frame(0, bytes(1066, 2)),
          frame(1, bytes(10)),
          frame(1, bytes(3), false),
          frame(9, bytes(1)),
          { ...frame(6, bytes(4), false), masked: false },
          frame(0, bytes(4)),
        ], 3),
      ],
    ];
    for (const [name, c] of cases) {
      for (let i = 0; i < 10; i++) {
        const broke = await exchange(ports[c.target], c);
        if (broke) {
          broken.push(`${name}: ${broke}`);
          break;
        }
      }
    }
  } finally {
    for (const run of [forward, echo]) run.kill("SIGTERM");
    await forward.result();
    await echo.result();
  }
  assertEquals(broken, []);
});
