/**
 * Command lines for fuzzing, and the rules every run must keep. The lines
 * are made from the real flag declarations: valid commands with mutated
 * flags, endpoints, durations, CIDRs, port lists, escapes, patterns,
 * unicode, huge and empty strings, repeated and conflicting flags, `--`.
 * Whatever it is given, sockit must end with a documented exit code, say a
 * usage error in at most two lines, never print a stack trace, and stop
 * when told to. `tests/fuzz_test.ts` runs a sample in every test run;
 * `deno task fuzz` runs as many as asked.
 */

import fc from "fast-check";
import { flagUses } from "../lib/cli/command.ts";
import { flagName, FLAGS } from "../lib/cli/flags.ts";
import type { FlagName } from "../lib/cli/flags.ts";
import { COMMANDS } from "../lib/cli/main.ts";
import type { SockitResult } from "./helpers.ts";
import { requireTool, spawnSockit } from "./helpers.ts";

/** The exit codes the README documents. */
export const EXIT_CODES = new Set([0, 1, 2, 124, 126, 127, 130, 143]);

/** A threaded echo server on 127.0.0.1 that prints its port. */
const ECHO_PEER = `
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)
        except OSError:
            pass
socketserver.ThreadingTCPServer.daemon_threads = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
print(server.server_address[1], flush=True)
server.serve_forever()
`;

/** A directory for the files and sockets a fuzzed line may name. */
export function fuzzDir(): string {
  const dir = Deno.makeTempDirSync({ prefix: "sockit-fuzz-" });
  Deno.writeTextFileSync(`${dir}/small.txt`, "hello\n");
  return dir;
}

const wild = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.constantFrom("", " ", "-", "--", "\u0000", "é", "🦕", "a".repeat(5000), "%s%n", "$(id)"),
  fc.integer({ min: -100_000, max: 1_000_000 }).map(String),
);

/** Values by the placeholder the flag declares. */
function values(dir: string): Record<string, fc.Arbitrary<string>> {
  return {
    DUR: fc.constantFrom("0", "1", "50ms", "2s", "1m", "-1", "1e400", "10y", "0.0001", "ms", "NaN"),
    N: fc.constantFrom("0", "1", "3", "200", "-1", "1.5", "99999999999999999999", "x"),
    CIDR: fc.constantFrom(
      "127.0.0.0/8",
      "::1/128",
      "::ffff:0:0/96",
      "10.0.0.0/33",
      "300.1.1.1/8",
      "::/0",
      "1.2.3.4",
      "fe80::/10/1",
    ),
    PEM: fc.constantFrom(`${dir}/small.txt`, `${dir}/missing.pem`, dir, "/dev/null"),
    PATH: fc.constantFrom(`${dir}/small.txt`, `${dir}/missing`, `${dir}/out.hex`, dir),
    FILE: fc.constantFrom(`${dir}/out.txt`, `${dir}/missing/out.txt`, dir, "/dev/null"),
    REGEX: fc.constantFrom("^ok", "(", "(a+)+$", "a(?=b)", "\\1", "[z-a]", "é+", ".*"),
    TEXT: fc.constantFrom("hi", "\\r\\n", "\\x41", "\\xZZ", "\\q", "\\", "\\0\\e\\a"),
    "'CMD'": fc.constantFrom("cat", "true", "exit 3", "/no/such/prog", ""),
    "'PROG ARGS'": fc.constantFrom("cat", "true", "/no/such/prog", "", "'unbalanced"),
    WHEN: fc.constantFrom("auto", "always", "never", "sometimes"),
    LIST: fc.constantFrom("200", "2xx", "200,204", "2xx,3xx", "99", "abc", ""),
    METHOD: fc.constantFrom("GET", "HEAD", "get", "BAD METHOD", ""),
    "'K: V'": fc.constantFrom("X-A: b", "nocolon", ": empty", "A: \r\nB: c"),
    NAME: fc.constantFrom("localhost", "example.com", "", "*"),
    PROTO: fc.constantFrom("h2", "http/1.1", "", "x".repeat(300)),
  };
}

/** Endpoints that parse and lead nowhere harmful: `live` is an echo server's port. */
function goodEndpoints(dir: string, live: number): fc.Arbitrary<string> {
  return fc.constantFrom(
    "0",
    "127.0.0.1:0",
    "127.0.0.1:1",
    `127.0.0.1:${live}`,
    `localhost:${live}`,
    `tcp:127.0.0.1:${live}`,
    "[::1]:1",
    "udp://127.0.0.1:1",
    "udp://127.0.0.1:0",
    "tls://127.0.0.1:0",
    `tls://127.0.0.1:${live}`,
    `unix:${dir}/fuzz.sock`,
    `http://127.0.0.1:${live}/`,
    `file:${dir}/small.txt`,
  );
}

/** A flag of `name` as a command line would have it: spelled long or short, `=`, value or not. */
function flagWords(
  name: FlagName,
  byValue: Record<string, fc.Arbitrary<string>>,
  wildness: number,
): fc.Arbitrary<string[]> {
  const spec = FLAGS[name] as { type: string; short?: string; value?: string };
  const spelled: fc.Arbitrary<string> = spec.short
    ? fc.constantFrom(`--${name}`, `-${spec.short}`)
    : fc.constant(`--${name}`);
  if (spec.type === "boolean") {
    return wildness > 0
      ? fc.oneof({ weight: 9, arbitrary: spelled.map((s) => [s]) }, {
        weight: 1,
        arbitrary: fc.constant<string[]>([`--${name}=yes`]),
      })
      : spelled.map((s) => [s]);
  }
  const good = byValue[spec.value ?? ""] ?? wild;
  const value = wildness > 0 ? fc.oneof({ weight: 4, arbitrary: good }, wild) : good;
  return wildness > 0
    ? fc.oneof(
      { weight: 6, arbitrary: fc.tuple(spelled, value).map(([s, v]) => [s, v]) },
      { weight: 2, arbitrary: value.map((v) => [`--${name}=${v}`]) },
      { weight: 1, arbitrary: spelled.map((s) => [s]) }, // the value missing
    )
    : fc.tuple(spelled, value).map(([s, v]) => [s, v]);
}

/** A command line a user could have meant: one command, its own flags, endpoints that parse. */
function plausibleLines(dir: string, live: number): fc.Arbitrary<string[]> {
  const byValue = values(dir);
  const names = Object.keys(COMMANDS).filter((n) => n !== "nc");
  return fc.constantFrom(...names).chain((name) => {
    const own = flagUses(COMMANDS[name]).map(flagName).filter((f) => f !== "help");
    const endpointCount = name === "forward" ? 2 : 1;
    const positional = name === "scan"
      ? fc.tuple(
        fc.constantFrom("127.0.0.1", "localhost", "::1"),
        fc.constantFrom("1-3", `${live}`, "22,80"),
      )
        .map(([h, p]) => [h, p])
      : fc.array(goodEndpoints(dir, live), { minLength: endpointCount, maxLength: endpointCount });
    const flags = fc.array(
      fc.constantFrom(...own).chain((f) => flagWords(f, byValue, 0)),
      { maxLength: 4 },
    );
    return fc.tuple(positional, flags).map(([p, f]) => [name, ...p, ...f.flat()]);
  });
}

/** Endpoints: valid ones that lead nowhere harmful, and broken ones. */
function endpoints(dir: string): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(
      "0",
      "127.0.0.1:0",
      "127.0.0.1:1",
      "[::1]:1",
      "localhost:1",
      "udp://127.0.0.1:1",
      "udp://127.0.0.1:0",
      "tls://127.0.0.1:1",
      "tls://127.0.0.1:0",
      `unix:${dir}/fuzz.sock`,
      "tcp:127.0.0.1:1",
      "127.0.0.1:http",
      "http://127.0.0.1:1/health",
      `file:${dir}/small.txt`,
    ),
    fc.constantFrom(
      "127.0.0.1:99999",
      "[::1",
      "tcp:",
      "x://y",
      "unix:",
      "::1:80",
      "host:port",
      "256.1.1.1:80",
      "udp://[::1]:0x50",
      "http+unix://%2Fno%2Fsock/x",
    ),
    fc.integer({ min: -5, max: 70_000 }).map(String),
    wild,
  );
}

/**
 * One fuzzed command line: mostly lines a user could have meant (their
 * flags, with good and bad values), the rest anything at all. `live` is the
 * port of an echo server the lines may talk to.
 */
export function commandLines(dir: string, live: number): fc.Arbitrary<string[]> {
  return fc.oneof(
    { weight: 3, arbitrary: plausibleLines(dir, live) },
    { weight: 2, arbitrary: wildLines(dir) },
  );
}

/** Anything at all: any command, any flags, mutated values and endpoints. */
function wildLines(dir: string): fc.Arbitrary<string[]> {
  const byValue = values(dir);
  const names = Object.keys(FLAGS) as Array<keyof typeof FLAGS>;
  const flag = fc.constantFrom(...names).chain((name) => flagWords(name, byValue, 1));
  const command = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.constantFrom("listen", "connect", "echo", "forward", "wait", "scan"),
    },
    { weight: 1, arbitrary: fc.constantFrom("nc", "help", "lsiten", "--version", "-h", "") },
  );
  const ncFlags: fc.Arbitrary<string[]> = fc
    .constantFrom("-l", "-k", "-u", "-z", "-v", "-N", "-d", "-C", "-4", "-6", "-n")
    .map((f) => [f]);
  const ncValued: fc.Arbitrary<string[]> = fc.oneof(
    fc.tuple(fc.constantFrom("-p", "-w", "-q", "-s", "-X", "-t"), wild).map(([f, v]) => [f, v]),
    fc.constant<string[]>(["-U", `${dir}/nc.sock`]),
  );
  const portList = fc.constantFrom("22", "1-3", "80,443", "5-1", "0", "70000", "a-b", "1,,2");
  return fc.tuple(
    command,
    fc.array(endpoints(dir), { maxLength: 3 }),
    fc.array(fc.oneof(flag, ncFlags, ncValued), { maxLength: 6 }) as fc.Arbitrary<string[][]>,
    fc.option(portList),
    fc.boolean(),
  ).chain(([cmd, eps, flags, ports, dashes]) => {
    const words = [...eps, ...(ports ? [ports] : []), ...flags.flat()];
    return fc.shuffledSubarray(words, { minLength: words.length, maxLength: words.length })
      .map((shuffled) => {
        const line = cmd === "" ? shuffled : [cmd, ...shuffled];
        // Sometimes a `--` and what may follow it (wait's command, or stray words).
        return dashes ? [...line, "--", "true"] : line;
      });
  });
}

/** What one run broke, or `undefined` when it kept every rule. */
export function violation(args: string[], r: SockitResult, stopped: boolean): string | undefined {
  const line = JSON.stringify(args);
  if (!EXIT_CODES.has(r.code)) return `${line}: exit ${r.code} is not a documented code`;
  if (/^\s+at .*:\d+:\d+\)?$/m.test(r.stderr) || /Uncaught|error: Uncaught/.test(r.stderr)) {
    return `${line}: a stack trace on stderr:\n${r.stderr}`;
  }
  if (r.code === 2) {
    const lines = r.stderr.trimEnd().split("\n");
    if (lines.length > 2) return `${line}: a usage error in ${lines.length} lines:\n${r.stderr}`;
    const json = lines.length === 1 && /^\{"event":"error",.*"exitCode":2/.test(lines[0]);
    if (!json && !lines[0].startsWith("sockit: ")) {
      return `${line}: a usage error neither 'sockit: …' nor a JSON error event:\n${r.stderr}`;
    }
  }
  if (stopped && ![130, 143, 0, 1, 2, 124, 126, 127].includes(r.code)) {
    return `${line}: stopped with SIGTERM, exit ${r.code}`;
  }
  return undefined;
}

/** Options of {@linkcode fuzz}. */
export interface FuzzOptions {
  /** How many command lines. */
  runs: number;
  /** The generator's seed (the same seed, the same lines). */
  seed: number;
  /** Runs at once. */
  concurrency: number;
  /** A run still going after this many ms gets SIGTERM. */
  stopAfter: number;
  /** A run must end this long after SIGTERM, in ms. */
  endWithin: number;
}

/** Runs fuzzed command lines; resolves to the violations found (none: every rule kept). */
export async function fuzz(
  options: FuzzOptions,
): Promise<{ runs: number; failures: string[]; codes: Record<number, number>; stopped: number }> {
  const dir = fuzzDir();
  // A peer for the lines that connect somewhere, outside this process: Deno's own
  // listener could be caught closing as it accepts (a socket the sanitizers count).
  const peer = new Deno.Command(requireTool("python3"), {
    args: ["-c", ECHO_PEER],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = peer.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const lines = fc.sample(commandLines(dir, port), {
    numRuns: options.runs,
    seed: options.seed,
  });
  const failures: string[] = [];
  const codes: Record<number, number> = {};
  let stoppedRuns = 0;
  let next = 0;
  const worker = async () => {
    while (next < lines.length) {
      const args = lines[next++];
      const run = spawnSockit(args, { stdin: "null" });
      let stopped = false;
      const stop = setTimeout(() => {
        stopped = true;
        run.kill("SIGTERM");
      }, options.stopAfter);
      let late: ReturnType<typeof setTimeout> | undefined;
      const result = await Promise.race([
        run.result(),
        new Promise<undefined>((resolve) => {
          late = setTimeout(() => resolve(undefined), options.stopAfter + options.endWithin);
        }),
      ]);
      clearTimeout(stop);
      clearTimeout(late);
      if (!result) {
        failures.push(
          `${JSON.stringify(args)}: still running ${options.endWithin} ms after SIGTERM`,
        );
        await run.result(); // it must end some time; the sanitizers check what it leaves
        continue;
      }
      codes[result.code] = (codes[result.code] ?? 0) + 1;
      if (stopped) stoppedRuns++;
      const broke = violation(args, result, stopped);
      if (broke) failures.push(broke);
    }
  };
  // Flags that write files (`-o`, `--hex-file`) get wild names too: they land
  // in the fuzz directory, never in the working tree.
  const cwd = Deno.cwd();
  Deno.chdir(dir);
  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  } finally {
    Deno.chdir(cwd);
  }
  peer.kill("SIGTERM");
  await peer.status;
  await reader.cancel();
  Deno.removeSync(dir, { recursive: true });
  return { runs: lines.length, failures, codes, stopped: stoppedRuns };
}
