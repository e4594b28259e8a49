/**
 * The command line fuzzed: a fixed-seed sample of generated command lines
 * (`tests/fuzz.ts`) run through sockit, in-process (or as processes against
 * `$SOCKIT`), each stopped with SIGTERM if it is still running. Every run
 * must keep the rules: a documented exit code, a usage error in at most two
 * lines, no stack trace, an end soon after SIGTERM. Then `sockit proxy`
 * fuzzed with mutated requests (`tests/fuzz_proxy.ts`). `deno task fuzz`
 * runs more of both (`FUZZ_RUNS`, `PROXY_FUZZ_RUNS`, `FUZZ_SEED`).
 */

import { assert, assertEquals } from "./assert.ts";
import { fuzz } from "./fuzz.ts";
import { fuzzProxy } from "./fuzz_proxy.ts";
import { customCommand } from "./helpers.ts";

Deno.test("fuzz: generated command lines end with a documented code, briefly, without a trace", async () => {
  const { runs, failures } = await fuzz(
    customCommand
      ? { runs: 150, seed: 20261202, concurrency: 4, stopAfter: 400, endWithin: 5000 }
      : { runs: 3000, seed: 20261202, concurrency: 8, stopAfter: 150, endWithin: 3000 },
  );
  assertEquals(failures.slice(0, 5), [], `${failures.length} of ${runs} runs broke a rule`);
});

Deno.test("fuzz: mutated SOCKS4/4a/5 and HTTP requests never crash sockit proxy, reach a denied target, stall it or leak", async () => {
  const { runs, failures, outcomes, probes } = await fuzzProxy({
    runs: 400,
    seed: 20261202,
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
