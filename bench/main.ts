/**
 * `deno task bench [throughput] [echo] [scan] [flags] [--size BYTES] [--runs N] [--echo-warmup S]
 * [--echo-seconds S] [--echo-rounds N] [--scan-rounds N] [--soak-seconds S] [--soak-short N]`: speed compared with nc (and socat
 * when installed) in the same run, as ratios; echo round trips compared with Node.js and ncat;
 * a full port scan compared with nc -z (and nmap), and how soon `wait` notices a listener;
 * a soak of echo and forward (1,000 clients, then 10,000 short connections: errors, drift);
 * start-up (`--version`, `--help`, a one-byte connect) against `deno run` of an empty file;
 * a ping flood against iputils `ping -f` (root); `sockit proxy` against microsocks and tinyproxy;
 * `sockit echo ws://` against a node `ws` echo server.
 * Sections named on the command line run (default: all). Loopback only; every run is bounded
 * and stops by itself.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchEcho, echoDefaults } from "./echo.ts";
import { benchFlags } from "./flags.ts";
import { benchScan } from "./scan.ts";
import { benchSoak, soakDefaults } from "./soak.ts";
import { benchPing } from "./ping.ts";
import { benchProxy } from "./proxy.ts";
import { benchWs } from "./ws.ts";
import { benchStartup } from "./startup.ts";
import { benchForward, benchThroughput, benchUnix } from "./throughput.ts";
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
    "scan-rounds": { type: "string", default: "5" },
    "soak-seconds": { type: "string", default: String(soakDefaults.seconds) },
    "soak-short": { type: "string", default: String(soakDefaults.short) },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);
const sections = [
  "throughput",
  "unix",
  "forward",
  "echo",
  "scan",
  "flags",
  "soak",
  "startup",
  "ping",
  "proxy",
  "ws",
];
// `start` is the name the npm issue used for the start-up section.
const chosen = new Set(
  (positionals.length ? positionals : sections).map((s) => s === "start" ? "startup" : s),
);
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
if (chosen.has("unix")) {
  if (chosen.size > 1) print("");
  print(
    `Unix socket: ${size / 2 ** 20} MiB from a client's stdin to a server's stdout, ` +
      `median of ${runs} runs interleaved, range and CPU (both ends)`,
  );
  print(table(await benchUnix({ size, runs })));
}
if (chosen.has("forward")) {
  if (chosen.size > 1) print("");
  print(
    `Forward: ${size / 2 ** 20} MiB nc -N → forwarder → nc -l (or nc -lU), ` +
      `median of ${runs} runs interleaved, range; CPU of the forwarder alone`,
  );
  print(table(await benchForward({ size, runs })));
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
if (chosen.has("scan")) {
  if (chosen.size > 1) print("");
  const rounds = Number(values["scan-rounds"]);
  print(`Scan: 127.0.0.1 ports 1-65535, median of ${rounds} rounds; wait: 10 listeners appearing`);
  print(table(await benchScan({ rounds, waits: 10 })));
}
if (chosen.has("flags")) {
  if (chosen.size > 1) print("");
  // 2 GiB: /usr/bin/time counts CPU in 10 ms steps, so 2% must be well above 10 ms.
  const flagSize = 2 * 2 ** 30;
  const flagRuns = Math.max(runs, 11);
  print(
    `Flags: ${flagSize / 2 ** 20} MiB with and without --stats, median of ${flagRuns} runs ` +
      `interleaved (CPU: both ends, user+sys); --hex at 16, 64 and 256 MiB`,
  );
  print(table(await benchFlags({ size: flagSize, runs: flagRuns })));
}
if (chosen.has("soak")) {
  if (chosen.size > 1) print("");
  const soak = {
    ...soakDefaults,
    seconds: Number(values["soak-seconds"]),
    short: Number(values["soak-short"]),
  };
  print(
    `Soak: ${soak.conns} clients doing 64-byte round trips for ${soak.seconds} s, then ` +
      `${soak.short} short connections (${soak.parallel} at a time), through sockit echo and ` +
      `sockit forward (to a sockit echo); the server's RSS and open descriptors from /proc`,
  );
  print(table(await benchSoak(soak)));
}
if (chosen.has("startup")) {
  if (chosen.size > 1) print("");
  const startupRuns = Math.max(runs, 21);
  print(
    `Start-up: exec to exit, ${startupRuns} runs interleaved, median and range; ` +
      `CPU user+sys from /usr/bin/time`,
  );
  print(table(await benchStartup({ runs: startupRuns })));
}
if (chosen.has("ping")) {
  if (chosen.size > 1) print("");
  const pingRuns = Math.max(runs, 7);
  print(
    `Ping: a flood of 1000 over 127.0.0.1 (root), time per ping with start-up taken out ` +
      `((T(1000) − T(1)) / 999), median of ${pingRuns} runs interleaved; CPU of the 1000`,
  );
  print(table(await benchPing({ count: 1000, runs: pingRuns })));
}
if (chosen.has("proxy")) {
  if (chosen.size > 1) print("");
  print(
    `Proxy: ${size / 2 ** 20} MiB nc -X 5 → SOCKS5 proxy → nc -l, and 1000 short CONNECT tunnels ` +
      `(32 at a time, one byte each way); ${Math.max(3, Math.min(runs, 5))} runs interleaved`,
  );
  print(table(await benchProxy({ size, runs: Math.max(3, Math.min(runs, 5)), tunnels: 1000 })));
}
if (chosen.has("ws")) {
  if (chosen.size > 1) print("");
  const wsRuns = Math.max(3, Math.min(runs, 5));
  print(
    `WebSocket: one Node ws client against each echo server — 64-byte ping-pong for 2 s, then ` +
      `256 MiB in 64 KiB binary messages echoed back; ${wsRuns} runs interleaved`,
  );
  print(table(await benchWs({ runs: wsRuns, seconds: 2, size: 256 * 2 ** 20 })));
}
