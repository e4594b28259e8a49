/**
 * Help for a command line that went wrong: a near miss gets a suggestion
 * (`lsiten` → `did you mean listen?`, `--timout` → `--timeout`), and the
 * habits of netcat get their sockit spelling (`connect 127.0.0.1 80`,
 * `-l -p 8080`, `-z`, `-u`, `-w 3`, `-N`, `-q 1`). Each becomes the one
 * line of a usage error.
 *
 * @module
 */

/** How many edits apart two words are (Damerau–Levenshtein, adjacent swaps count one). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The closest of `candidates` to `word`, when it is close enough to be a
 * typing mistake (at most a third of its letters, and at most 2 edits).
 *
 * @example Usage
 * ```ts
 * import { nearest } from "./suggest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nearest("lsiten", ["listen", "connect"]), "listen");
 * assert.equal(nearest("frobnicate", ["listen", "connect"]), undefined);
 * ```
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.min(2, Math.ceil(word.length / 3)) ? best : undefined;
}

/** netcat's options, as sockit says them. */
const NC_HABITS: Record<string, string> = {
  "-l": "to listen, say `sockit listen PORT` (or `sockit nc -l …`)",
  "-p": "the port goes into the endpoint: `sockit listen 8080`, `sockit connect host:8080`",
  "-z": "for a port scan, say `sockit scan HOST PORTS` (or `sockit nc -z …`)",
  "-u": "for UDP, write the endpoint as udp://host:port",
  "-w": "nc's -w SECS is --timeout SECS here",
  "-N": "sockit shuts down its write side at the end of input by default (nc's -N)",
  "-U": "for a Unix socket, write the endpoint as unix:/path",
  "-k": "-k keeps a listener open: `sockit listen -k PORT`",
  "-e": "to run a program per connection, say `sockit listen PORT --exec 'PROG ARGS'`",
  "-c": "to run a shell command per connection, say `sockit listen PORT --sh-exec 'CMD'`",
};

/** The sockit spelling of an nc option in `argv`, if there is one. */
function ncHabit(option: string, command: string): string | undefined {
  const short = option.slice(0, 2);
  if (short === "-k" && command === "listen") return undefined;
  return NC_HABITS[short];
}

/**
 * A clearer message for a usage error of `command` with `argv`, or
 * `undefined` to keep the one given.
 *
 * @example Usage
 * ```ts
 * import { explainUsage } from "./suggest.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(
 *   explainUsage('unexpected argument "80"', "connect", ["127.0.0.1", "80"], ["timeout"])!,
 *   /write the endpoint as 127\.0\.0\.1:80/,
 * );
 * assert.match(explainUsage("unknown option --timout", "connect", ["--timout"], ["timeout"])!, /did you mean --timeout\?/);
 * ```
 */
export function explainUsage(
  message: string,
  command: string,
  argv: readonly string[],
  longFlags: readonly string[],
): string | undefined {
  const unknown = /^unknown option (-{1,2}[^\s=]+)/.exec(message)?.[1];
  if (unknown) {
    const habit = ncHabit(unknown, command);
    if (habit) return `unknown option ${unknown}: ${habit}`;
    if (unknown.startsWith("--")) {
      const near = nearest(unknown.slice(2), longFlags);
      if (near) return `unknown option ${unknown}: did you mean --${near}?`;
    }
    return undefined;
  }
  // nc's `HOST PORT` as two arguments.
  const positionals = argv.filter((a) => !a.startsWith("-"));
  const port = positionals.findIndex((a, i) => i > 0 && /^\d{1,5}$/.test(a));
  if (/^unexpected argument/.test(message) && port > 0) {
    const host = positionals[port - 1];
    const endpoint = host.includes(":")
      ? `[${host}]:${positionals[port]}`
      : `${host}:${positionals[port]}`;
    return `${message}: write the endpoint as ${endpoint} (or use \`sockit nc\`)`;
  }
  // nc's -q SECS, read here as --quiet and an argument.
  const q = argv.findIndex((a, i) => a === "-q" && /^\d+$/.test(argv[i + 1] ?? ""));
  if (q !== -1 && /^unexpected argument/.test(message)) {
    return `${message}: -q is --quiet here; nc's -q SECS is roughly --idle-timeout SECS (or use \`sockit nc -q\`)`;
  }
  return undefined;
}
