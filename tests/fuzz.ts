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
import { flagUses, parseCommand } from "../lib/cli/command.ts";
import type { Command } from "../lib/cli/command.ts";
import { flagName, FLAGS } from "../lib/cli/flags.ts";
import type { FlagName, FlagSpec } from "../lib/cli/flags.ts";
import { COMMANDS } from "../lib/cli/main.ts";
import { ipv6Groups, isIPv4, isIPv6 } from "../lib/net/ip.ts";
import { DEFAULT_SCHEME, schemePrefix, SCHEMES } from "../lib/net/schemes.ts";
import type { AddressForm, SchemeDescriptor } from "../lib/net/schemes.ts";
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

/** What generated lines may point at: the fuzz directory, and the port of a live echo peer. */
export interface FuzzPlace {
  /** The fuzz directory (files, Unix sockets). */
  dir: string;
  /** A TCP echo peer on 127.0.0.1. */
  live: number;
}

const wild = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.constantFrom("", " ", "-", "--", "\u0000", "é", "🦕", "a".repeat(5000), "%s%n", "$(id)"),
  fc.integer({ min: -100_000, max: 1_000_000 }).map(String),
);

/** Hosts that stay on this machine, and spellings that are not hosts at all. */
const HOSTS = {
  good: ["127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]", "0.0.0.0"],
  broken: ["", "256.1.1.1", "[::1", "host name", "-1", "::1:80", "1.2", "..", "\u0000"],
};

/**
 * Good and broken examples of an endpoint for each address form of the
 * scheme table: `prefix` is the row's scheme as written (`tcp://`,
 * `unix:`). A transport with a new address form has none until one is
 * written here (the fuzz test says so).
 */
export const ADDRESS_FORMS: Record<
  AddressForm,
  (prefix: string, place: FuzzPlace) => { good: string[]; broken: string[] }
> = {
  "host-port": (p, { live }) => ({
    good: [
      `${p}127.0.0.1:0`,
      `${p}127.0.0.1:1`,
      `${p}127.0.0.1:${live}`,
      `${p}localhost:${live}`,
      `${p}[::1]:1`,
      `${p}127.0.0.1:http`,
      `${p.replace("://", ":")}127.0.0.1:${live}`,
    ],
    broken: [
      `${p}127.0.0.1:99999`,
      `${p}[::1`,
      p,
      `${p}::1:80`,
      `${p}host:port`,
      `${p}256.1.1.1:80`,
      `${p}[::1]:0x50`,
      `${p}127.0.0.1`,
    ],
  }),
  path: (p, { dir }) => ({
    good: [
      `${p}${dir}/fuzz.sock`,
      `${p}${dir}/fuzz.dgram`,
      `${p}@sockit-fuzz-${Deno.pid}`,
      `${p}//${dir}/fuzz.sock`,
      `${p}${dir}/missing/x.sock`,
      `${p}${dir}/small.txt`,
    ],
    broken: [p, `${p}//`, `${p}//x`, `${p}/${"x".repeat(200)}`, `${p}\u0000`],
  }),
  url: (p, { live }) => ({
    good: [
      `${p}127.0.0.1:${live}/`,
      `${p}127.0.0.1:0/`,
      `${p}[::1]:1/chat?x=1`,
      `${p}localhost:${live}`,
      `${p}127.0.0.1:1/a/b`,
      `${p}127.0.0.1:${live}?q`,
    ],
    broken: [
      p,
      `${p}127.0.0.1:1/a b`,
      `${p}[::1/`,
      `${p}:80/`,
      `${p.replace("://", ":")}127.0.0.1:1/`,
      `${p}127.0.0.1:99999/`,
    ],
  }),
  "host-protocol": (p) => ({
    // Protocols of no one's (not 6 or 17: a raw socket of those takes every TCP or UDP packet to
    // its address, the other lines' too).
    good: [`${p}127.0.0.1/253`, `${p}[::1]/253`, `${p}localhost/254`, `${p}127.0.0.2/252`],
    broken: [
      `${p}127.0.0.1`,
      `${p}127.0.0.1/0`,
      `${p}127.0.0.1/256`,
      `${p}/253`,
      `${p}127.0.0.1/tcp`,
      `${p.replace("://", ":")}127.0.0.1/253`,
    ],
  }),
};

/** Targets only `wait` takes (not transports): URLs and files. */
function waitForms({ dir, live }: FuzzPlace): { good: string[]; broken: string[] } {
  return {
    good: [
      `http://127.0.0.1:${live}/`,
      `https://127.0.0.1:${live}/health`,
      "http://127.0.0.1:1/",
      `http+unix://${encodeURIComponent(`${dir}/fuzz.sock`)}/up`,
      `file:${dir}/small.txt`,
      `file:${dir}/missing`,
    ],
    broken: ["http://", "https://[::1/", "file:", "http+unix://%2Fno%2Fsock/x", "http://a b/"],
  };
}

/** Good and broken endpoints of every transport (and of wait's other targets), by scheme. */
export function endpointExamples(
  place: FuzzPlace,
  transports: Readonly<Record<string, SchemeDescriptor>> = SCHEMES,
): Record<string, { good: string[]; broken: string[] }> {
  const out: Record<string, { good: string[]; broken: string[] }> = {};
  for (const row of Object.values(transports)) {
    const form = ADDRESS_FORMS[row.address] as typeof ADDRESS_FORMS[AddressForm] | undefined;
    const examples = form?.(schemePrefix(row), place);
    if (!examples) continue;
    if (row.scheme === DEFAULT_SCHEME) {
      // The scheme left out: a port alone, host:port.
      examples.good.push("0", `${place.live}`, "127.0.0.1:0", `localhost:${place.live}`);
      examples.broken.push("x://y", "ftp://h:21", "tcp:", "99999", "localhost:");
    }
    out[row.scheme] = examples;
  }
  out["wait"] = waitForms(place);
  return out;
}

/** Good values and bad ones of each placeholder: a flag's value name, or a word of a usage line. */
export function placeholderValues(place: FuzzPlace): Record<string, fc.Arbitrary<string>> {
  const { dir, live } = place;
  const examples = Object.values(endpointExamples(place));
  // Usage words get good values (wild lines add broken endpoints and anything at all).
  const endpoint = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...examples.flatMap((e) => e.good)) },
    { weight: 1, arbitrary: fc.constantFrom(...examples.flatMap((e) => e.broken)) },
  );
  const host = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...HOSTS.good) },
    { weight: 1, arbitrary: fc.constantFrom(...HOSTS.broken) },
  );
  const ports = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("1-3", `${live}`, "22,80", "1", `1,${live}`) },
    { weight: 1, arbitrary: fc.constantFrom("5-1", "0", "70000", "a-b", "1,,2") },
  );
  const duration = fc.constantFrom(
    "0",
    "1",
    "50ms",
    "2s",
    "1m",
    "-1",
    "1e400",
    "10y",
    "0.0001",
    "ms",
    "NaN",
  );
  const proxyUrl = fc.constantFrom(
    "socks5://127.0.0.1:1",
    `socks5h://u:p@127.0.0.1:${live}`,
    `socks4://127.0.0.1:${live}`,
    "socks4a://[::1]:1",
    `http://127.0.0.1:${live}`,
    "http://u:p@localhost:1",
    "https://127.0.0.1:1",
    "ftp://127.0.0.1:1",
    "socks5://",
    "127.0.0.1:1080",
    "http://[::1",
    "socks5://u:@127.0.0.1:1",
    "http://127.0.0.1:99999",
    "null",
    "https://origin.test",
  );
  return {
    // The values of flags (FlagSpec.value).
    DUR: duration,
    N: fc.constantFrom("0", "1", "3", "200", "-1", "1.5", "99999999999999999999", "x"),
    BYTES: fc.constantFrom("0", "1", "125", "1000", "65536", "64MiB", "1k", "-1", "1e9", "x"),
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
    RULE: fc.constantFrom(
      "127.0.0.1",
      "127.0.0.0/8:80",
      `localhost:1-${live}`,
      "*.example.com",
      ":80",
      "[::1]:1",
      "300.1.1.1",
      ":0-",
      "*.",
      "",
      "::1/129:1",
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
    "'K: V'": fc.constantFrom("X-A: b", "nocolon", ": empty", "A: \r\nB: c", "Host: x"),
    NAME: fc.constantFrom("localhost", "example.com", "", "*", "chat.v1", "a,b", "é"),
    PROTO: fc.constantFrom("h2", "http/1.1", "", "x".repeat(300)),
    URL: proxyUrl,
    "IDLE[,INTERVAL,COUNT]": fc.constantFrom("1s", "1s,1s,3", "0", "1,2", "x,y,z", "1,1,1,1", ""),
    "on|off": fc.constantFrom("on", "off", "yes", ""),
    "ADDR[:PORT]": fc.constantFrom(
      "127.0.0.1",
      "127.0.0.1:0",
      ":0",
      "[::1]:0",
      "::1",
      "127.0.0.2",
      `:${live}`,
      "1.2.3.4",
      ":70000",
      "x",
      `${dir}/src.dgram`,
    ),
    "GROUP[@IFADDR]": fc.constantFrom(
      "239.1.2.3@127.0.0.1",
      "239.0.0.1@127.0.0.1",
      "ff02::1@1",
      "1.2.3.4@127.0.0.1",
      "239.1.2.3@",
      "239.1.2.3@x",
      "x",
    ),
    "USER:PASS": fc.constantFrom("u:p", "u:", ":p", "nocolon", "u:p:q", "é:🦕", ""),
    KIND: fc.constantFrom("raw", "dgram", "auto", "x", ""),
    PORT: fc.constantFrom("33434", "0", "65535", "70000", "x", "-1"),
    // The words of usage lines (Command.usage).
    ENDPOINT: endpoint,
    LISTEN: endpoint,
    TARGET: endpoint,
    HOST: host,
    PORTS: ports,
    // (Nothing that exits 2 of its own, which would look like a usage error of sockit's, and
    // nothing that writes: the command's output is the test run's.)
    CMD: fc.constantFrom("true", "false", "/no/such/prog", ""),
    ARGS: fc.constantFrom("-n", "exit 3", "x", "--", ""),
    // nc's usage line, in its own words.
    host: fc.oneof(host, fc.constant(`${dir}/nc.sock`)),
    port: ports,
    secs: fc.constantFrom("0", "1", "-1", "0.1", "x"),
    proto: fc.constantFrom("4", "5", "connect", "6", ""),
    "addr[:port]": fc.constantFrom("127.0.0.1", `127.0.0.1:${live}`, "[::1]:1", "localhost:", "x"),
  };
}

/** One word of a command's usage line. */
export interface UsageWord {
  /** The placeholder (`ENDPOINT`, `host`). */
  word: string;
  /** In brackets. */
  optional: boolean;
  /** May repeat (`TARGET…`). */
  repeat: boolean;
}

/** A command's usage line taken apart: what a generated line gives it. */
export interface Usage {
  /** Positionals, in order. */
  positionals: UsageWord[];
  /** What may follow `--` (`[-- CMD ARGS…]`). */
  after: UsageWord[];
  /** getopt-style switches the line names (`[-46Cd]`, nc's). */
  switches: string[];
  /** getopt-style options with a value (`[-p port]`): flag and placeholder. */
  valued: Array<{ flag: string; word: string }>;
}

/** A usage line's words: a bracketed group (brackets may nest: `[-x addr[:port]]`) is one. */
function usageTokens(line: string): string[] {
  const tokens: string[] = [];
  let depth = 0;
  let token = "";
  for (const c of line) {
    if (c === " " && depth === 0) {
      if (token) tokens.push(token);
      token = "";
      continue;
    }
    if (c === "[") depth++;
    if (c === "]") depth--;
    token += c;
  }
  if (token) tokens.push(token);
  return tokens;
}

/**
 * The usage line of a command, taken apart: `[options] LISTEN TARGET`,
 * `[options] TARGET… [-- CMD ARGS…]`, nc's `[-46Cd] [-p port] [host] [port]`.
 */
export function usageOf(command: Command<unknown>): Usage {
  const usage: Usage = { positionals: [], after: [], switches: [], valued: [] };
  const wordOf = (text: string, optional: boolean): UsageWord => ({
    word: text.replace(/…$/, ""),
    optional,
    repeat: text.endsWith("…"),
  });
  for (const token of usageTokens(command.usage)) {
    if (token === "[options]") continue;
    const inner = token.startsWith("[") ? token.slice(1, -1) : token;
    const optional = token.startsWith("[");
    const parts = inner.split(" ");
    if (parts[0] === "--") usage.after.push(...parts.slice(1).map((w) => wordOf(w, true)));
    else if (/^-\w+$/.test(parts[0]) && parts.length === 1) {
      usage.switches.push(...[...parts[0].slice(1)].map((c) => `-${c}`));
    } else if (/^-\w$/.test(parts[0]) && parts.length === 2) {
      usage.valued.push({ flag: parts[0], word: parts[1] });
    } else usage.positionals.push(wordOf(inner, optional));
  }
  return usage;
}

/** Words a command line may end with so that a raw-socket command cannot run long. */
const BOUNDS: Record<string, string[]> = {
  ping: ["-c", "1", "-w", "1"],
  traceroute: ["-m", "2", "-q", "1", "-w", "0.2"],
};

/** What the fuzz is generated from: the commands, the flags and the scheme table. */
export interface Declarations {
  /** Commands by name (`COMMANDS`). */
  commands: Record<string, Command<unknown>>;
  /** Flags by long name (`FLAGS`). */
  flags: Record<string, FlagSpec>;
  /** The scheme table (`SCHEMES`). */
  transports: Readonly<Record<string, SchemeDescriptor>>;
}

/** sockit's own declarations. */
export const DECLARED: Declarations = { commands: COMMANDS, flags: FLAGS, transports: SCHEMES };

/**
 * Whatever the fuzz has no generator for, in words: a command's usage
 * word, a flag's value name, a transport's address form. Empty when every
 * command, flag and scheme of `declared` is covered.
 */
export function missingGenerators(place: FuzzPlace, declared: Declarations = DECLARED): string[] {
  const values = placeholderValues(place);
  const missing: string[] = [];
  for (const [name, command] of Object.entries(declared.commands)) {
    const usage = usageOf(command);
    const words = [...usage.positionals, ...usage.after].map((w) => w.word);
    words.push(...usage.valued.map((v) => v.word));
    for (const word of words) {
      if (!values[word]) missing.push(`command ${name}: usage word ${word}`);
    }
  }
  for (const [name, spec] of Object.entries(declared.flags)) {
    if (spec.value && !values[spec.value]) missing.push(`flag --${name}: value ${spec.value}`);
  }
  const examples = endpointExamples(place, declared.transports);
  for (const row of Object.values(declared.transports)) {
    const e = examples[row.scheme];
    if (!e?.good.length || !e.broken.length) {
      missing.push(`scheme ${row.scheme}: no examples of the ${row.address} form`);
    }
  }
  return missing;
}

/**
 * What a sample of fuzzed lines never reaches: a command never run, a
 * scheme never named, a flag never given (long or short, in a line of a
 * command that takes it). Empty when the sample reaches everything.
 */
export function coverageGaps(lines: string[][]): string[] {
  const gaps: string[] = [];
  for (const name of Object.keys(COMMANDS)) {
    if (!lines.some((l) => l[0] === name)) gaps.push(`command ${name}`);
  }
  for (const row of Object.values(SCHEMES as Readonly<Record<string, SchemeDescriptor>>)) {
    const spelled = (w: string) => w.toLowerCase().startsWith(`${row.scheme}:`);
    if (!lines.some((l) => l.some(spelled))) gaps.push(`scheme ${row.scheme}`);
  }
  for (const [name, spec] of Object.entries(FLAGS) as Array<[string, FlagSpec]>) {
    const given = lines.some((l) =>
      COMMANDS[l[0]] && flagUses(COMMANDS[l[0]]).some((u) => flagName(u) === name) &&
      l.some((w) =>
        w === `--${name}` || w.startsWith(`--${name}=`) || (spec.short && w === `-${spec.short}`)
      )
    );
    if (!given) gaps.push(`flag --${name}`);
  }
  return gaps;
}

/** A flag of `name` as a command line would have it: spelled long or short, `=`, value or not. */
function flagWords(
  name: FlagName,
  byValue: Record<string, fc.Arbitrary<string>>,
  wildness: number,
): fc.Arbitrary<string[]> {
  const spec: FlagSpec = FLAGS[name];
  const spelled: fc.Arbitrary<string> = spec.short
    ? fc.constantFrom(`--${name}`, `-${spec.short}`)
    : fc.constant(`--${name}`);
  const good = byValue[spec.value ?? ""] ?? wild;
  const value = wildness > 0 ? fc.oneof({ weight: 4, arbitrary: good }, wild) : good;
  if (spec.type === "boolean") {
    // A switch; one that takes `=VALUE` (`--keepalive=1s,1s,3`) gets one half the time.
    const valued = spec.optional
      ? value.map((v) => [`--${name}=${v}`])
      : fc.constant<string[]>([`--${name}=yes`]);
    return spec.optional || wildness > 0
      ? fc.oneof(
        { weight: spec.optional ? 5 : 9, arbitrary: spelled.map((s) => [s]) },
        { weight: spec.optional ? 5 : 1, arbitrary: valued },
      )
      : spelled.map((s) => [s]);
  }
  return wildness > 0
    ? fc.oneof(
      { weight: 6, arbitrary: fc.tuple(spelled, value).map(([s, v]) => [s, v]) },
      { weight: 2, arbitrary: value.map((v) => [`--${name}=${v}`]) },
      { weight: 1, arbitrary: spelled.map((s) => [s]) }, // the value missing
    )
    : fc.tuple(spelled, value).map(([s, v]) => [s, v]);
}

/** Positionals for a usage line: each word's values, optional ones sometimes, repeated ones 1–3. */
function positionalWords(
  words: UsageWord[],
  byValue: Record<string, fc.Arbitrary<string>>,
): fc.Arbitrary<string[]> {
  return fc.tuple(
    ...words.map((w) => {
      const present = fc.array(byValue[w.word] ?? wild, {
        minLength: 1,
        maxLength: w.repeat ? 3 : 1,
      });
      return w.optional
        ? fc.oneof({ weight: 3, arbitrary: present }, {
          weight: 1,
          arbitrary: fc.constant<string[]>([]),
        })
        : present;
    }),
  ).map((parts) => parts.flat());
}

/** A command line a user could have meant: one command, its own flags, words of its usage line. */
export function plausibleLines(place: FuzzPlace): fc.Arbitrary<string[]> {
  const byValue = placeholderValues(place);
  return fc.constantFrom(...Object.keys(COMMANDS)).chain((name) => {
    const command = COMMANDS[name];
    const usage = usageOf(command);
    const own = flagUses(command).map(flagName).filter((f) => f !== "help");
    const flags = own.length
      ? fc.array(fc.constantFrom(...own).chain((f) => flagWords(f, byValue, 0)), { maxLength: 4 })
      : fc.constant<string[][]>([]);
    // Usage lines of their own (nc's): switches and valued options from the line.
    const getopt = fc.array(
      fc.oneof(
        ...(usage.switches.length ? [fc.constantFrom(...usage.switches).map((s) => [s])] : []),
        ...usage.valued.map(({ flag, word }) => byValue[word].map((v) => [flag, v])),
        fc.constant<string[]>([]),
      ),
      { maxLength: 3 },
    );
    const after = usage.after.length
      ? fc.option(positionalWords(usage.after, byValue).map((w) => ["--", ...w]), {
        freq: 4,
        nil: [] as string[],
      })
      : fc.constant<string[]>([]);
    // Mostly positionals the command takes as they are (endpoints of the schemes it serves).
    const words = positionalWords(usage.positionals, byValue);
    const taken = words.filter((p) => {
      try {
        parseCommand(command, p);
        return true;
      } catch {
        return false;
      }
    });
    const positionals = fc.oneof({ weight: 4, arbitrary: taken }, { weight: 1, arbitrary: words });
    return fc.tuple(positionals, flags, getopt, after).map((
      [p, f, g, a],
    ) => [name, ...g.flat(), ...p, ...f.flat(), ...(BOUNDS[name] ?? []), ...a]);
  });
}

/** Endpoints: valid ones that lead nowhere harmful, broken ones, anything. */
function endpoints(place: FuzzPlace): fc.Arbitrary<string> {
  const examples = Object.values(endpointExamples(place));
  return fc.oneof(
    fc.constantFrom(...examples.flatMap((e) => e.good)),
    fc.constantFrom(...examples.flatMap((e) => e.broken)),
    fc.integer({ min: -5, max: 70_000 }).map(String),
    wild,
  );
}

/**
 * One fuzzed command line: mostly lines a user could have meant (their
 * flags, with good and bad values), the rest anything at all — never one
 * that would send a packet beyond loopback. `live` is the port of an echo
 * server the lines may talk to.
 */
export function commandLines(dir: string, live: number): fc.Arbitrary<string[]> {
  const place = { dir, live };
  return fc.oneof(
    { weight: 3, arbitrary: plausibleLines(place) },
    { weight: 2, arbitrary: wildLines(place) },
  ).filter((args) => beyondLoopback(args) === undefined && !loops(args));
}

/**
 * Whether a line forwards an endpoint to itself: every datagram (or
 * connection) it relays comes back to it, for ever — a storm that would
 * take the machine from the other lines, not a finding.
 */
function loops(args: string[]): boolean {
  if (args[0] !== "forward") return false;
  const endpoints = args.slice(1).filter((w) => !w.startsWith("-"));
  return endpoints.length >= 2 && new Set(endpoints).size < endpoints.length;
}

/** Anything at all: any command, any flags, mutated values and endpoints. */
function wildLines(place: FuzzPlace): fc.Arbitrary<string[]> {
  const byValue = placeholderValues(place);
  const names = Object.keys(FLAGS) as FlagName[];
  const flag = fc.constantFrom(...names).chain((name) => flagWords(name, byValue, 1));
  const command = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...Object.keys(COMMANDS)) },
    { weight: 1, arbitrary: fc.constantFrom("help", "lsiten", "--version", "-h", "") },
  );
  // The getopt-style options of usage lines of their own (nc's), with wild values too.
  const usages = Object.values(COMMANDS).map(usageOf);
  const switches = usages.flatMap((u) => u.switches);
  const valued = usages.flatMap((u) => u.valued);
  const getopt: fc.Arbitrary<string[]>[] = [];
  if (switches.length) getopt.push(fc.constantFrom(...switches).map((s) => [s]));
  for (const { flag, word } of valued) {
    getopt.push(fc.tuple(fc.oneof(byValue[word], wild), fc.constant(flag)).map(([v, f]) => [f, v]));
  }
  return fc.tuple(
    command,
    fc.array(endpoints(place), { maxLength: 3 }),
    fc.array(fc.oneof(flag, ...getopt), { maxLength: 6 }) as fc.Arbitrary<string[][]>,
    fc.option(byValue.PORTS),
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

/** Whether a host (as a parsed command holds it) is this machine. */
function isLocalHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost" || bare === "") return true;
  if (isIPv4(bare)) return bare.startsWith("127.") || bare === "0.0.0.0";
  if (isIPv6(bare)) {
    const groups = ipv6Groups(bare);
    const v4 = groups.slice(0, 5).every((g) => g === 0) && (groups[5] === 0xffff || groups[5] === 0)
      ? `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`
      : undefined;
    return groups.slice(0, 7).every((g) => g === 0) && groups[7] <= 1 ||
      (v4 !== undefined && (v4.startsWith("127.") || v4 === "0.0.0.0"));
  }
  return false;
}

/**
 * What in a command line could send a packet beyond this machine, or
 * `undefined`: the line is parsed as sockit would (no I/O), and every host
 * it would reach — an endpoint's, a URL's, a proxy's, ping's — must be
 * loopback, and a multicast group must be joined on loopback. Lines that
 * do not parse are usage errors: they reach nothing.
 */
export function beyondLoopback(args: string[]): string | undefined {
  const command = COMMANDS[args[0]];
  if (!command) return undefined;
  let options: unknown;
  try {
    options = parseCommand(command, args.slice(1));
  } catch {
    return undefined;
  }
  const seen: string[] = [];
  const walk = (value: unknown, key: string): void => {
    if (typeof value === "string") {
      if (key === "host" || key === "hostname") {
        if (!isLocalHost(value)) seen.push(`${key} ${value}`);
      } else if (key === "url" || key === "text") {
        let url: URL | undefined;
        try {
          url = new URL(value);
        } catch {
          // Not a URL.
        }
        if (url && url.protocol !== "http+unix:" && url.hostname && !isLocalHost(url.hostname)) {
          seen.push(`${key} ${value}`);
        }
      }
      return;
    }
    if (typeof value !== "object" || value === null || value instanceof RegExp) return;
    // A source address is only bound; a group is joined on the interface named.
    if (key === "source") return;
    if ("group" in value && !("iface" in value)) seen.push(`group ${value.group} on any interface`);
    for (const [k, v] of Object.entries(value)) walk(v, Array.isArray(value) ? key : k);
  };
  walk(options, "");
  return seen.length ? `${JSON.stringify(args)} reaches ${seen.join(", ")}` : undefined;
}

/** The flags that name a file sockit writes. */
const WRITES = new Set(["--output", "-o", "--hex-file"]);

/**
 * `args` with every file sockit would write (`-o`, `--hex-file`, wild names
 * too) moved into `dir`: the fuzz never writes into the working tree, and
 * never changes the process's directory (other test modules run beside it).
 */
export function confined(args: string[], dir: string): string[] {
  const inside = (path: string) => (path.startsWith("/") ? path : `${dir}/${path}`);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return [...out, ...args.slice(i)];
    const eq = arg.indexOf("=");
    if (WRITES.has(arg) && i + 1 < args.length) {
      out.push(arg, inside(args[++i]));
    } else if (eq > 0 && WRITES.has(arg.slice(0, eq))) {
      out.push(`${arg.slice(0, eq)}=${inside(arg.slice(eq + 1))}`);
    } else if (/^-o[^-]/.test(arg)) {
      out.push(`-o${inside(arg.slice(2))}`);
    } else out.push(arg);
  }
  return out;
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
  /** Told at once of a run still going `endWithin` after SIGTERM (a hang found). */
  onHang?: (args: string[]) => void;
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
      const run = spawnSockit(confined(args, dir), { stdin: "null" });
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
        options.onHang?.(args);
        // It may end late (the sanitizers then check what it leaves), or never: then it is left
        // running, and the fuzz goes on without it.
        let gaveUp: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          run.result(),
          new Promise((resolve) => gaveUp = setTimeout(resolve, 10_000)),
        ]);
        clearTimeout(gaveUp);
        continue;
      }
      codes[result.code] = (codes[result.code] ?? 0) + 1;
      if (stopped) stoppedRuns++;
      const broke = violation(args, result, stopped);
      if (broke) failures.push(broke);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  peer.kill("SIGTERM");
  await peer.status;
  await reader.cancel();
  Deno.removeSync(dir, { recursive: true });
  return { runs: lines.length, failures, codes, stopped: stoppedRuns };
}
