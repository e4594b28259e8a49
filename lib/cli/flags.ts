/**
 * Every command-line flag, declared once: its type, its short form, the
 * placeholder of its value, its help text, and what its value means (a
 * typed `parse`, a `default`, the flags it conflicts with or depends on).
 * The flags of an option group are declared by the module that owns the
 * group (socket options, UDP, TLS, WebSocket, proxy) and gathered here.
 * Commands list the flags they take (by name, in groups); parsing, these
 * checks and help are generated from the declarations, so a flag a command
 * does not list is an unknown option for it, and the help cannot drift
 * from what is accepted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../base/errors.ts";
import { count, duration, limit, oneOf } from "../base/flag.ts";
import type { FlagSpec, FlagValuesOf } from "../base/flag.ts";
import { parseCidr } from "../net/cidr.ts";
import type { FlagUse as GroupFlagUse, OptionGroup } from "../net/option_group.ts";
import { SOCKET_SPECS } from "../net/socket_options.ts";
import { UDP_SPECS } from "../net/udp_options.ts";
import { Pattern } from "../engine/pattern.ts";
import { splitCommand } from "../tools/exec.ts";
import type { StatusSet } from "../tools/wait.ts";
import { PROXY_SPECS } from "../protocols/proxy_options.ts";
import { TLS_SPECS } from "../protocols/tls_options.ts";
import { WEBSOCKET_SPECS } from "../protocols/websocket_options.ts";

export type { FlagSpec } from "../base/flag.ts";

/** `--grace DUR`: 0 waits for the child's exit (no limit). */
function grace(text: string, name: string): number {
  return duration(text, name) || Infinity;
}

/** A pattern RE2 refused, as a usage error naming the option. */
export function patternError(name: string, text: string, err: unknown): UsageError {
  return new UsageError(
    `option --${name}: invalid regular expression ${JSON.stringify(text)}: ${
      (err as Error).message
    }`,
  );
}

/**
 * A regular expression option's value (RE2: compiled with
 * `compilePatterns`, before it is first used).
 *
 * @example Usage
 * ```ts
 * import { parsePattern } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parsePattern("^\\+PONG", "expect").source, "^\\+PONG");
 * assert.throws(() => parsePattern("(", "expect"), /invalid regular expression/);
 * ```
 */
export function parsePattern(text: string, name: string): Pattern {
  try {
    return new Pattern(text);
  } catch (err) {
    throw patternError(name, text, err);
  }
}

/** A duration that must be more than 0. */
function positive(text: string, name: string): number {
  const ms = duration(text, name);
  if (ms <= 0) throw new UsageError(`option --${name} must be more than 0`);
  return ms;
}

/** `--exec 'PROG ARGS'`: the child's argv (no shell). */
function execArgv(text: string, name: string): string[] {
  const argv = splitCommand(text);
  if (argv.length === 0) {
    throw new UsageError(`option --${name} needs a command, e.g. --${name} 'tr a-z A-Z'`);
  }
  return argv;
}

/** `--sh-exec 'CMD'`: the child's argv, through the shell. */
function shellArgv(text: string, name: string): string[] {
  if (text.trim() === "") throw new UsageError(`option --${name} needs a command`);
  return ["/bin/sh", "-c", text];
}

/** `--method NAME`: an HTTP method, upper case. */
function httpMethod(text: string, name: string): string {
  if (!/^[A-Za-z]+$/.test(text)) {
    throw new UsageError(
      `option --${name} needs a method like GET or HEAD, not ${JSON.stringify(text)}`,
    );
  }
  return text.toUpperCase();
}

/**
 * `--status 200,204` or `--status 2xx,3xx`: the statuses that count as ready.
 *
 * @example Usage
 * ```ts
 * import { statusList } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(statusList("2xx,304"), ["2xx", 304]);
 * assert.throws(() => statusList("2x"), /--status/);
 * ```
 */
export function statusList(text: string): StatusSet {
  return text.split(",").map((part) => {
    const p = part.trim().toLowerCase();
    if (/^[1-5]xx$/.test(p)) return p as `${1 | 2 | 3 | 4 | 5}xx`;
    if (/^[1-5]\d\d$/.test(p)) return Number(p);
    throw new UsageError(
      `option --status needs codes or classes like 200,204 or 2xx,3xx, not ${JSON.stringify(text)}`,
    );
  });
}

/** `--size BYTES` of an echo request. */
function payloadSize(text: string, name: string): number {
  const n = count()(text, name);
  if (n > 65507) throw new UsageError(`option --${name}: at most 65507 bytes`);
  return n;
}

/** Every flag sockit has, by long name. */
export const FLAGS = {
  // Output: every command.
  verbose: {
    type: "boolean",
    short: "v",
    help: "events on stderr: listening, connections, closes",
    conflicts: ["quiet"],
  },
  quiet: { type: "boolean", short: "q", help: "no warnings or events" },
  json: { type: "boolean", help: "events (or results) as one JSON object per line" },
  trace: { type: "boolean", help: "socket calls on stderr, as the system calls they make" },
  color: {
    type: "string",
    value: "WHEN",
    help: "auto, always or never (NO_COLOR is honoured)",
    parse: oneOf("auto", "always", "never"),
    default: "auto",
  },
  help: { type: "boolean", short: "h", help: "this help" },
  // Seeing the traffic: relaying commands.
  stats: {
    type: "boolean",
    help: "bytes each way, duration, rate of each connection (and totals)",
  },
  hex: {
    type: "boolean",
    help: "hex dump of every chunk each way on stderr (> sent, < received)",
  },
  "hex-file": {
    type: "string",
    value: "PATH",
    help: "the hex dump into PATH instead (needs --allow-write)",
  },
  progress: { type: "boolean", help: "a refreshing status line, when stderr is a terminal" },
  output: {
    type: "string",
    short: "o",
    value: "FILE",
    help: "a plain transcript of the payload both ways into FILE, as it moves (ncat -o; needs " +
      "--allow-write)",
  },
  append: { type: "boolean", help: "with --output: add to FILE instead of replacing it" },
  // Payload.
  send: {
    type: "string",
    multiple: true,
    value: "TEXT",
    help:
      "send TEXT instead of stdin, then half-close (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH); " +
      "repeatable, in order with --expect and --send-file: a dialogue",
  },
  "send-file": {
    type: "string",
    multiple: true,
    value: "PATH",
    help: "send the file instead of stdin, then half-close (repeatable, in order)",
  },
  expect: {
    type: "string",
    multiple: true,
    value: "REGEX",
    help: "wait until the received text matches (JavaScript regular expression, ^ and $ match " +
      "at line ends) before the next --send; after the last one matches, exit 0. Exit 1 if the " +
      "peer closes first (naming the step), 124 at --timeout",
  },
  "send-only": {
    type: "boolean",
    help: "never read the socket: send the input, half-close, done (ncat --send-only)",
    conflicts: ["recv-only", "expect"],
  },
  crlf: {
    type: "boolean",
    help: "send the input's line ends (LF) as CRLF, for SMTP or HTTP by hand (nc -C)",
  },
  "recv-only": {
    type: "boolean",
    help: "never read stdin and send nothing: print what arrives until the peer closes (nc -d)",
    conflicts: ["send", "send-file"],
  },
  // Time.
  timeout: {
    type: "string",
    value: "DUR",
    help: "limit for connecting and for the whole session (exit 124)",
    parse: duration,
  },
  "idle-timeout": {
    type: "string",
    value: "DUR",
    help: "end after DUR without data either way (exit 124)",
    parse: limit,
  },
  "connect-timeout": {
    type: "string",
    value: "DUR",
    help: "give up connecting to TARGET after DUR (default 10s)",
    parse: limit,
  },
  retry: {
    type: "string",
    value: "N",
    help: "try N more times when connecting fails",
    parse: count(),
  },
  "retry-delay": {
    type: "string",
    value: "DUR",
    help: "pause between attempts (default 1s)",
    parse: duration,
  },
  interval: {
    type: "string",
    short: "i",
    value: "DUR",
    help: "try each target this often (default 250ms)",
    parse: duration,
  },
  "attempt-timeout": {
    type: "string",
    value: "DUR",
    help: "limit of one attempt, so that one that hangs cannot eat the timeout (default 5s)",
    parse: limit,
  },
  // HTTP (wait).
  status: {
    type: "string",
    value: "LIST",
    help: "statuses that count as ready: codes and classes, e.g. 200,204 or 2xx,3xx (default 2xx)",
    parse: statusList,
  },
  method: {
    type: "string",
    value: "METHOD",
    help: "the request method (default GET)",
    parse: httpMethod,
  },
  header: {
    type: "string",
    short: "H",
    multiple: true,
    value: "'K: V'",
    help: "send this request header (repeatable)",
  },
  body: {
    type: "string",
    value: "REGEX",
    help: "the response body must match too",
    parse: parsePattern,
  },
  // Sessions.
  "no-half-close": { type: "boolean", help: "keep the write side open after end of stdin" },
  "keep-open": {
    type: "boolean",
    short: "k",
    help:
      "keep accepting, clients at once: what each sends goes to stdout, stdin goes to every client",
  },
  exec: {
    type: "string",
    value: "'PROG ARGS'",
    help:
      "wire each connection to a new child (no shell); the child gets SOCKIT_REMOTE_ADDR/_PORT, " +
      "SOCKIT_LOCAL_ADDR/_PORT, SOCKIT_PROTO in its environment (needs --allow-run)",
    parse: execArgv,
    conflicts: ["sh-exec", "send", "send-file", "broker", "send-only", "recv-only"],
  },
  "sh-exec": {
    type: "string",
    value: "'CMD'",
    help: "the same through /bin/sh -c",
    parse: shellArgv,
    conflicts: ["send", "send-file", "broker", "send-only", "recv-only"],
  },
  grace: {
    type: "string",
    value: "DUR",
    help: "after a client's end of input, how long a silent --exec child may take before it is " +
      "ended, with a warning (default 1s; 0: until it exits) — socat's -t",
    parse: grace,
    default: 1000,
    depends: ["exec", "sh-exec"],
  },
  "stall-timeout": {
    type: "string",
    value: "DUR",
    help: "with --broker: a member with more than 256 KiB waiting for it for DUR (or 16 MiB at " +
      "once) is dropped; the others never wait for it (default 5s; 0: never dropped, and the " +
      "others wait)",
    parse: limit,
    default: 5000,
    depends: ["broker"],
  },
  broker: {
    type: "boolean",
    help:
      "relay between all connected clients (each client's bytes go to every other client); implies -k",
    conflicts: ["send", "send-file", "send-only", "recv-only"],
  },
  reverse: {
    type: "boolean",
    help: "wait until the endpoints refuse connections (a service stopped)",
  },
  concurrency: {
    type: "string",
    value: "N",
    help: "probes in flight at once (default 512 through libc with --allow-ffi, else 200)",
    parse: count({ min: 1 }),
  },
  // Servers.
  "max-conns": {
    type: "string",
    value: "N",
    help: "at most N clients at once; more are closed at once",
    parse: count({ min: 1 }),
  },
  allow: {
    type: "string",
    multiple: true,
    value: "CIDR",
    help: "accept only clients in these ranges (repeatable)",
    parse: parseCidr,
  },
  deny: {
    type: "string",
    multiple: true,
    value: "CIDR",
    help: "refuse clients in these ranges (repeatable)",
    parse: parseCidr,
  },
  // WebSocket.
  ...WEBSOCKET_SPECS,
  udp: {
    type: "boolean",
    short: "u",
    help: "a UDP scan: closed when ICMP refuses a probe, open|filtered when nothing does " +
      "(open when a reply comes); needs --allow-ffi",
  },
  // Socket options.
  ...SOCKET_SPECS,
  ...UDP_SPECS,
  // Proxies.
  ...PROXY_SPECS,
  // The proxy server.
  auth: {
    type: "string",
    multiple: true,
    value: "USER:PASS",
    help: "require this user and password (SOCKS5 username/password, HTTP Basic); repeatable",
  },
  "auth-file": {
    type: "string",
    value: "PATH",
    help:
      "users and passwords, one user:pass a line (# comments); a file without users is an error",
  },
  "allow-target": {
    type: "string",
    multiple: true,
    value: "RULE",
    help: "only these targets: CIDR, address, host name (*.example.com), each with :PORT or " +
      ":FROM-TO, or :PORTS alone; checked after resolving (repeatable)",
  },
  "deny-target": {
    type: "string",
    multiple: true,
    value: "RULE",
    help: "refuse these targets (same forms; repeatable); wins over --allow-target",
  },
  "request-timeout": {
    type: "string",
    value: "DUR",
    help: "close a client whose request is not complete after DUR (default 5s)",
    parse: positive,
  },
  // ICMP: ping and traceroute.
  count: {
    type: "string",
    short: "c",
    value: "N",
    help: "stop after N echo requests",
    parse: count({ min: 1 }),
  },
  deadline: {
    type: "string",
    short: "w",
    value: "DUR",
    help: "stop after DUR, whatever is outstanding",
    parse: limit,
  },
  "reply-timeout": {
    type: "string",
    short: "W",
    value: "DUR",
    help: "wait this long for replies after the last request (default 10s)",
    parse: duration,
    default: 10_000,
  },
  size: {
    type: "string",
    short: "s",
    value: "BYTES",
    help: "bytes of data in each request (default 56; 84 on the wire with the headers)",
    parse: payloadSize,
    default: 56,
  },
  socket: {
    type: "string",
    value: "KIND",
    help: "raw (root or CAP_NET_RAW), dgram (a ping group) or auto: raw, else dgram (default)",
    parse: oneOf("auto", "raw", "dgram"),
    default: "auto",
  },
  queries: {
    type: "string",
    short: "q",
    value: "N",
    help: "probes per hop (default 3)",
    parse: count({ min: 1, max: 10 }),
    default: 3,
  },
  numeric: {
    type: "boolean",
    short: "n",
    help: "print addresses as numbers (sockit always does; accepted for traceroute's users)",
  },
  "max-hops": {
    type: "string",
    short: "m",
    value: "N",
    help: "give up after N hops (default 30)",
    parse: count({ min: 1, max: 255 }),
    default: 30,
  },
  "probe-timeout": {
    type: "string",
    short: "w",
    value: "DUR",
    help: "wait this long for the answer to each probe (default 5s)",
    parse: positive,
    default: 5000,
  },
  port: {
    type: "string",
    short: "p",
    value: "PORT",
    help: "the first UDP destination port, +1 per probe (default 33434)",
    parse: count({ min: 1, max: 65535 }),
    default: 33434,
  },
  // Addresses.
  ipv4: {
    type: "boolean",
    short: "4",
    help: "IPv4 only: resolve names to IPv4; port-only binds 127.0.0.1",
    conflicts: ["ipv6"],
  },
  ipv6: {
    type: "boolean",
    short: "6",
    help: "IPv6 only: resolve names to IPv6; port-only binds ::1",
  },
  // TLS.
  ...TLS_SPECS,
} as const satisfies Record<string, FlagSpec>;

/** The name of a flag. */
export type FlagName = keyof typeof FLAGS;

/** A flag a command takes, with its own help text where its meaning differs there. */
export type FlagUse = FlagName | readonly [FlagName, string];

/** Flags in a group of a command's help (`Options`, `TLS`, `Output`). */
export interface FlagGroup {
  /** The heading. */
  readonly title: string;
  /** The flags, in the order shown. */
  readonly flags: readonly FlagUse[];
  /**
   * The option groups whose flags these are: such a flag is taken only
   * when an endpoint of the command line takes one of these groups (its
   * row lists it), and the group's options are parsed for that endpoint.
   */
  readonly groups?: readonly OptionGroup[];
}

/**
 * A section of help that shows option groups: the title, and the flags of
 * each part in order — a group (its own flags) or flags written out (with
 * the help they have in this command).
 *
 * @example Usage
 * ```ts
 * import { groupSection } from "./flags.ts";
 * import { MULTICAST_GROUP } from "../net/udp_options.ts";
 * import assert from "node:assert/strict";
 *
 * const section = groupSection(MULTICAST_GROUP);
 * assert.deepEqual([section.title, section.flags.length], ["UDP multicast", 3]);
 * ```
 */
export function groupSection(
  ...parts: Array<
    OptionGroup | {
      title?: string;
      flags: readonly GroupFlagUse[];
      groups?: readonly OptionGroup[];
    }
  >
): FlagGroup {
  const flags: FlagUse[] = [];
  const groups: OptionGroup[] = [];
  let title: string | undefined;
  for (const part of parts) {
    for (const use of part.flags) {
      const name = typeof use === "string" ? use : use[0];
      // A group names its flags as text: each must be declared.
      if (!Object.hasOwn(FLAGS, name)) throw new TypeError(`undeclared flag --${name}`);
      flags.push(use as FlagUse);
    }
    groups.push(...("name" in part ? [part] : part.groups ?? []));
    title ??= part.title;
  }
  return { title: title ?? "Options", flags, groups };
}

/** The output flags every command takes. */
export const OUTPUT_FLAGS: FlagName[] = ["verbose", "quiet", "json", "trace", "color", "help"];

/** The limits every server takes (the idle timeout, whose meaning varies, is listed by each). */
export const SERVER_FLAGS: FlagUse[] = ["max-conns", "allow", "deny"];

/** `--timeout` where it limits the whole command (servers, ping, traceroute). */
export const LIFETIME_FLAG: FlagUse = [
  "timeout",
  "stop after DUR: close what is open, end every session, exit 124 (default: no limit)",
];

/** The flags that show the traffic, for every command that relays. */
export const TRAFFIC_FLAGS: FlagUse[] = [
  "stats",
  "hex",
  "hex-file",
  "output",
  "append",
  "progress",
];

/** The name of a flag use. */
export function flagName(use: FlagUse): FlagName {
  return typeof use === "string" ? use : use[0];
}

/**
 * Parsed option values, by long name: each as its declaration's `parse`
 * makes it (a duration in ms, a count as a number), or its `default`.
 */
export type FlagValues = FlagValuesOf<typeof FLAGS>;

/** Options every command accepts. */
export interface GlobalOptions {
  /** `-v`: connection events on stderr. */
  verbose: boolean;
  /** `-q`: no warnings or events. */
  quiet: boolean;
  /** `--json`: events as JSON lines. */
  json: boolean;
  /** `--trace`: socket operations as system calls. */
  trace: boolean;
  /** `--stats`: bytes, duration and rate per connection, totals for servers. */
  stats: boolean;
  /** `--hex`: a hex dump of the traffic on stderr. */
  hex: boolean;
  /** `--hex-file PATH`: the hex dump goes to this file instead (implies `--hex`). */
  hexFile?: string;
  /** `-o/--output FILE`: a transcript of the payload. */
  output?: string;
  /** `--append`: add to the transcript. */
  append?: boolean;
  /** `--progress`: a refreshing status line on a terminal. */
  progress: boolean;
  /** `--color auto|always|never`. */
  color: "auto" | "always" | "never";
}

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags {
  /** Option values by long name: parsed, defaults filled in. */
  values: FlagValues;
  /** The flags given on the command line (not those that have their default). */
  given: ReadonlySet<FlagName>;
  /** The options with values, in the order given, as written (`--send`/`--expect` dialogues). */
  sequence: Array<{ name: string; value: string }>;
  /** Arguments that are not options, in order. */
  positionals: string[];
  /** The global options. */
  globals: GlobalOptions;
}

function conciseMessage(error: { code?: string; message: string }): string {
  // node names an option `'-k, --keep-open'`: say the long name, as the user may have typed it.
  const quoted = /'(-[^']+)'/.exec(error.message)?.[1] ?? "";
  const option = /--[\w-]+/.exec(quoted)?.[0] ?? /^-[^\s,]+/.exec(quoted)?.[0] ??
    /'(-[^' ]+)/.exec(error.message)?.[1];
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${option ?? error.message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(error.message)) return `option ${option} needs a value`;
      if (/does not take an argument/.test(error.message)) {
        return `option ${option} does not take a value`;
      }
      if (/ambiguous/.test(error.message)) {
        return `option ${option} needs a value (write ${option}=-… for a value starting with "-")`;
      }
      return error.message.split(". ")[0];
    default:
      return error.message.split(". ")[0];
  }
}

/** The declaration of a flag. */
function specOf(name: string): FlagSpec | undefined {
  return Object.hasOwn(FLAGS, name) ? FLAGS[name as FlagName] as FlagSpec : undefined;
}

/** A flag as messages name it: its short form when it has one (`-4`), else `--name`. */
function spelled(name: string): string {
  const short = specOf(name)?.short;
  return short ? `-${short}` : `--${name}`;
}

/**
 * Refuses flags given together that the declarations say conflict, and a
 * flag given without any of those it depends on. `order` is the command's
 * order of its flags (messages name them in it).
 */
function checkRelations(given: ReadonlySet<string>, order: readonly string[]): void {
  for (const name of order) {
    if (!given.has(name)) continue;
    const spec = specOf(name)!;
    const other = spec.conflicts?.find((c) => given.has(c) && order.includes(c));
    if (other) {
      // Two switches contradict each other; alternatives exclude each other.
      const switches = spec.type === "boolean" && specOf(other)!.type === "boolean";
      throw new UsageError(
        `options ${spelled(name)} and ${spelled(other)} ${
          switches ? "contradict" : "exclude"
        } each other`,
      );
    }
    const needs = spec.depends?.filter((d) => order.includes(d)) ?? [];
    if (needs.length && !needs.some((d) => given.has(d))) {
      const mutual = needs.length === 1 && specOf(needs[0])!.depends?.includes(name);
      if (mutual) {
        const pair = [name, needs[0]].sort((a, b) => order.indexOf(a) - order.indexOf(b));
        throw new UsageError(`options ${pair.map(spelled).join(" and ")} go together`);
      }
      throw new UsageError(`option ${spelled(name)} is for ${needs.map(spelled).join(" and ")}`);
    }
  }
}

/**
 * Parses `argv` with the flags named in `uses`. Options and positionals may
 * come in any order; `--` ends the options. Each value is parsed as its
 * declaration says, flags not given get their declared default, and
 * conflicts and dependencies are checked. Throws a {@linkcode UsageError}
 * for an unknown option (one the command does not take), a bad value, or
 * flags that do not go together.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * const { values, positionals, globals } = parseFlags(["-v", "8888", "--timeout", "2s"], ["timeout", "verbose"]);
 * assert.deepEqual([values.timeout, positionals, globals.verbose], [2000, ["8888"], true]);
 * assert.throws(() => parseFlags(["--hex"], ["verbose"]), /unknown option --hex/);
 * assert.throws(() => parseFlags(["-4", "-6"], ["ipv4", "ipv6"]), /options -4 and -6 contradict each other/);
 * ```
 */
export function parseFlags(argv: string[], uses: readonly FlagUse[]): ParsedFlags {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean }
  > = {};
  const optionalValues: Record<string, string> = {};
  const order = uses.map(flagName);
  const end = argv.indexOf("--");
  argv = argv.map((arg, i) => {
    const eq = arg.indexOf("=");
    if (!arg.startsWith("--") || eq < 0 || (end >= 0 && i > end)) return arg;
    const name = arg.slice(2, eq);
    if (!specOf(name)?.optional || !order.includes(name as FlagName)) return arg;
    optionalValues[name] = arg.slice(eq + 1);
    return `--${name}`;
  });
  for (const name of order) {
    const spec: FlagSpec = FLAGS[name];
    options[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
    };
  }
  let parsed: {
    values: Record<string, string | boolean | (string | boolean)[] | undefined>;
    positionals: string[];
    tokens: Array<{ kind: string; name?: string; value?: string }>;
  };
  try {
    parsed = parseArgs({
      args: argv,
      options,
      allowPositionals: true,
      strict: true,
      tokens: true,
    }) as typeof parsed;
  } catch (err) {
    throw new UsageError(conciseMessage(err as { code?: string; message: string }));
  }
  const raw = { ...parsed.values, ...optionalValues };
  const given = new Set(
    order.filter((name) => raw[name] !== undefined),
  ) as ReadonlySet<FlagName>;
  checkRelations(given, order);
  const values: Record<string, unknown> = {};
  for (const name of order) {
    const spec: FlagSpec = FLAGS[name];
    const value = raw[name];
    if (value === undefined) {
      if (spec.default !== undefined) values[name] = spec.default;
      continue;
    }
    // A switch's `true` is its value; text is parsed as declared.
    const one = (v: string | boolean) =>
      typeof v === "string" && spec.parse ? spec.parse(v, name) : v;
    values[name] = Array.isArray(value) ? value.map(one) : one(value);
  }
  const v = values as FlagValues;
  return {
    values: v,
    given,
    sequence: parsed.tokens.flatMap((t) =>
      t.kind === "option" && t.name !== undefined && t.value !== undefined
        ? [{ name: t.name, value: t.value }]
        : []
    ),
    positionals: parsed.positionals,
    globals: {
      verbose: v.verbose === true,
      quiet: v.quiet === true,
      json: v.json === true,
      trace: v.trace === true,
      stats: v.stats === true,
      hex: v.hex === true || v["hex-file"] !== undefined,
      hexFile: v["hex-file"],
      output: v.output,
      append: v.append === true,
      progress: v.progress === true,
      color: v.color ?? "auto",
    },
  };
}
