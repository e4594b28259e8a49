/**
 * `deno task bench [throughput] [echo] [--size BYTES] [--runs N] [--echo-warmup S]
 * [--echo-seconds S] [--echo-rounds N]`: speed compared with nc (and socat when installed) in
 * the same run, as ratios, and echo round trips compared with Node.js and
 * ncat. Sections named on the command line run (default: all). Loopback
 * only; every run is bounded and stops by itself.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchEcho, echoDefaults } from "./echo.ts";
import { benchThroughput } from "./throughput.ts";
import { table } from "./util.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    size: { type: "string", default: String(2 ** 30) },
    runs: { type: "string", default: "7" },
    "echo-warmup": { type: "string", default: String(echoDefaults.warmup) },
    "echo-seconds": { type: "string", default: String(echoDefaults.measure) },
    "echo-rounds": { type: "string", default: String(echoDefaults.rounds) },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);
const sections = ["throughput", "echo"];
const chosen = new Set(positionals.length ? positionals : sections);
const unknown = [...chosen].filter((s) => !sections.includes(s));
if (unknown.length) {
  throw new Error(`unknown section ${unknown.join(", ")} (sections: ${sections.join(", ")})`);
}

const encoder = new TextEncoder();
const print = (text: string) => Deno.stdout.writeSync(encoder.encode(text + "\n"));

print(`sockit benchmarks on ${Deno.build.target}, ${navigator.hardwareConcurrency} cores\n`);
if (chosen.has("throughput")) {
  const mib = size / 2 ** 20;
  print(
    `Throughput: ${mib} MiB from a client's stdin to a server's stdout over 127.0.0.1, ` +
      `median of ${runs} runs`,
  );
  print(table(await benchThroughput({ size, runs })));
}
if (chosen.has("echo")) {
  const echo = {
    ...echoDefaults,
    warmup: Number(values["echo-warmup"]),
    measure: Number(values["echo-seconds"]),
    rounds: Number(values["echo-rounds"]),
  };
  if (chosen.size > 1) print("");
  print(
    `Echo: closed-loop round trips of ${echo.size}-byte messages over 127.0.0.1, ` +
      `${echo.warmup} s warmup + ${echo.measure} s measured, median of ${echo.rounds} rounds; ` +
      `server RSS of its process tree ` +
      `(peak, and after ${echo.idle} s with ${echo.conns} idle connections)`,
  );
  print(table(await benchEcho(echo)));
}
