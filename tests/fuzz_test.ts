/**
 * The command line fuzzed: a fixed-seed sample of generated command lines
 * (`tests/fuzz.ts`) run through sockit, in-process (or as processes against
 * `$SOCKIT`), each stopped with SIGTERM if it is still running. Every run
 * must keep the rules: a documented exit code, a usage error in at most two
 * lines, no stack trace, an end soon after SIGTERM. Then `sockit proxy`
 * fuzzed with mutated requests (`tests/fuzz_proxy.ts`). `deno task fuzz`
 * runs more of both (`FUZZ_RUNS`, `PROXY_FUZZ_RUNS`, `FUZZ_SEED`).
 */

import fc from "fast-check";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { commandLines, coverageGaps, DECLARED, fuzz, missingGenerators } from "./fuzz.ts";
import { COMMANDS } from "../lib/cli/main.ts";
import { TRANSPORTS } from "../lib/transports.ts";
import { fuzzProxy } from "./fuzz_proxy.ts";
import { customCommand, runSockit } from "./helpers.ts";

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
      ...TRANSPORTS,
      sctp: { ...TRANSPORTS.tcp, scheme: "sctp", address: "association" as "url" },
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
