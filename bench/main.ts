/**
 * `deno task bench [--size BYTES] [--runs N]`: speed compared with nc (and
 * socat when installed) in the same run, as ratios. Loopback only; every
 * run is bounded and stops by itself.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchThroughput } from "./throughput.ts";
import { table } from "./util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: String(2 ** 30) },
    runs: { type: "string", default: "7" },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);

const encoder = new TextEncoder();
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(text + "\n"));

print(
  `sockit benchmarks on ${Deno.build.target}, ${navigator.hardwareConcurrency} cores, median of ${runs} runs\n`,
);
print(
  `Throughput: ${size / 2 ** 20} MiB from a client's stdin to a server's stdout over 127.0.0.1`,
);
print(table(await benchThroughput({ size, runs })));
