/**
 * The deeper fuzz run: `deno task fuzz` runs `FUZZ_RUNS` generated command
 * lines (default 20,000), `PROXY_FUZZ_RUNS` mutated proxy requests against
 * `sockit proxy` (default 5,000) and `WS_FUZZ_RUNS` WebSocket inputs
 * against `echo ws://` and `forward ws:// ws://` (default 3,000) from
 * `FUZZ_SEED` (default: the time), prints the exit codes and outcomes seen
 * and every rule broken, and exits 1 if any was.
 *
 * @module
 */

import { fuzz } from "../tests/fuzz.ts";
import { fuzzProxy } from "../tests/fuzz_proxy.ts";
import { fuzzWebSocket } from "../tests/fuzz_ws.ts";

const runs = Number(Deno.env.get("FUZZ_RUNS") ?? 20_000);
const seed = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 2 ** 31);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
const started = performance.now();
const result = await fuzz({
  runs,
  seed,
  concurrency: 8,
  stopAfter: 150,
  endWithin: 3000,
  // A hang is said as it is found (the run goes on without it).
  onHang: (args) => out(`HANG ${JSON.stringify(args)}`),
});
const seconds = ((performance.now() - started) / 1000).toFixed(1);
out(`fuzz: ${result.runs} command lines, seed ${seed}, ${seconds} s`);
out(`exit codes: ${JSON.stringify(result.codes)}; stopped by SIGTERM: ${result.stopped}`);
for (const failure of result.failures) out(`BROKEN ${failure}`);
out(
  result.failures.length ? `${result.failures.length} broke a rule` : "every run kept every rule",
);
const proxyRuns = Number(Deno.env.get("PROXY_FUZZ_RUNS") ?? 5_000);
const proxyStarted = performance.now();
const proxy = await fuzzProxy({ runs: proxyRuns, seed, concurrency: 16, batch: 50 });
const proxySeconds = ((performance.now() - proxyStarted) / 1000).toFixed(1);
out(`proxy fuzz: ${proxy.runs} requests, seed ${seed}, ${proxySeconds} s`);
out(`outcomes: ${JSON.stringify(proxy.outcomes)}; well-formed probes: ${proxy.probes}`);
for (const failure of proxy.failures) out(`BROKEN ${failure}`);
out(
  proxy.failures.length ? `${proxy.failures.length} broke a rule` : "every request kept every rule",
);
const wsRuns = Number(Deno.env.get("WS_FUZZ_RUNS") ?? 3_000);
const wsStarted = performance.now();
const ws = await fuzzWebSocket({ runs: wsRuns, seed, concurrency: 16, batch: 50 });
const wsSeconds = ((performance.now() - wsStarted) / 1000).toFixed(1);
out(`WebSocket fuzz: ${ws.runs} inputs, seed ${seed}, ${wsSeconds} s`);
out(
  `due to end: ${JSON.stringify(ws.outcomes)}; well-formed probes: ${ws.probes}; ` +
    `most resident memory: ${(ws.maxRss / 1024).toFixed(0)} MiB`,
);
for (const failure of ws.failures) out(`BROKEN ${failure}`);
out(ws.failures.length ? `${ws.failures.length} broke a rule` : "every input kept every rule");
Deno.exit(result.failures.length || proxy.failures.length || ws.failures.length ? 1 : 0);
