/**
 * The deeper fuzz run: `deno task fuzz` runs `FUZZ_RUNS` generated command
 * lines (default 20,000) from `FUZZ_SEED` (default: the time), prints the
 * exit codes seen and every rule broken, and exits 1 if any was.
 *
 * @module
 */

import { fuzz } from "../tests/fuzz.ts";

const runs = Number(Deno.env.get("FUZZ_RUNS") ?? 20_000);
const seed = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 2 ** 31);
const started = performance.now();
const result = await fuzz({ runs, seed, concurrency: 8, stopAfter: 150, endWithin: 3000 });
const seconds = ((performance.now() - started) / 1000).toFixed(1);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
out(`fuzz: ${result.runs} command lines, seed ${seed}, ${seconds} s`);
out(`exit codes: ${JSON.stringify(result.codes)}; stopped by SIGTERM: ${result.stopped}`);
for (const failure of result.failures) out(`BROKEN ${failure}`);
out(
  result.failures.length ? `${result.failures.length} broke a rule` : "every run kept every rule",
);
Deno.exit(result.failures.length ? 1 : 0);
