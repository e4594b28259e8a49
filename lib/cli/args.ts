/**
 * Command-line parsing shared by every subcommand: the global options
 * (DESIGN §3), `node:util` parseArgs with short, one-line usage errors, and
 * validators for endpoints, durations and counts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatEndpoint, parseEndpoint } from "../address.ts";
import type { Endpoint } from "../address.ts";
import { parseDuration } from "../duration.ts";
import { toSockitError, UsageError } from "../errors.ts";
import { parseCidr } from "../cidr.ts";
import type { AccessRules } from "../cidr.ts";
import { Reporter } from "../report.ts";
import type { TextSink } from "../report.ts";
import { type CommandContext, textSinkOf } from "./context.ts";

/** One option of a command, as `node:util` parseArgs describes it. */
export interface FlagSpec {
  /** `boolean` for switches, `string` for options with a value. */
  type: "boolean" | "string";
  /** One-character alias. */
  short?: string;
  /** Whether the option may be given more than once. */
  multiple?: boolean;
}

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
  /** `--progress`: a refreshing status line on a terminal. */
  progress: boolean;
  /** `--color auto|always|never`. */
  color: "auto" | "always" | "never";
  /** `-h`/`--help`: print the command's help. */
  help: boolean;
}

/** The global flags, merged into every command's flags. */
export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  verbose: { type: "boolean", short: "v" },
  quiet: { type: "boolean", short: "q" },
  json: { type: "boolean" },
  trace: { type: "boolean" },
  stats: { type: "boolean" },
  hex: { type: "boolean" },
  "hex-file": { type: "string" },
  progress: { type: "boolean" },
  color: { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** Parsed option values, by long name. */
export type FlagValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags {
  /** Option values by long name. */
  values: FlagValues;
  /** Arguments that are not options, in order. */
  positionals: string[];
  /** The global options. */
  globals: GlobalOptions;
}

function conciseMessage(error: { code?: string; message: string }): string {
  const option = /'(-[^' ]+)/.exec(error.message)?.[1];
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

/**
 * Parses `argv` with the command's flags plus the global ones. Options and
 * positionals may come in any order; `--` ends the options.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * const { values, positionals, globals } = parseFlags(["-v", "8888", "--send", "hi"], {
 *   send: { type: "string" },
 * });
 * assert.deepEqual([values.send, positionals, globals.verbose], ["hi", ["8888"], true]);
 * assert.throws(() => parseFlags(["--frob"], {}), /unknown option --frob/);
 * ```
 */
export function parseFlags(argv: string[], flags: Record<string, FlagSpec>): ParsedFlags {
  let parsed: { values: FlagValues; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...GLOBAL_FLAGS, ...flags },
      allowPositionals: true,
      strict: true,
    }) as { values: FlagValues; positionals: string[] };
  } catch (err) {
    throw new UsageError(conciseMessage(err as { code?: string; message: string }));
  }
  const { values } = parsed;
  const color = (values.color as string | undefined) ?? "auto";
  if (color !== "auto" && color !== "always" && color !== "never") {
    throw new UsageError(
      `option --color must be auto, always or never, not ${JSON.stringify(color)}`,
    );
  }
  if (values.verbose && values.quiet) {
    throw new UsageError("options -v and -q contradict each other");
  }
  return {
    values,
    positionals: parsed.positionals,
    globals: {
      verbose: values.verbose === true,
      quiet: values.quiet === true,
      json: values.json === true,
      trace: values.trace === true,
      stats: values.stats === true,
      hex: values.hex === true || typeof values["hex-file"] === "string",
      hexFile: values["hex-file"] as string | undefined,
      progress: values.progress === true,
      color,
      help: values.help === true,
    },
  };
}

/**
 * The reporter for a command: colour decided from `--color`, the terminal
 * and `NO_COLOR`.
 *
 * @example Usage
 * ```ts
 * import { makeReporter, parseFlags } from "./args.ts";
 * import { memoryContext } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * const { globals } = parseFlags(["--trace"], {});
 * assert(makeReporter(globals, memoryContext(), "connect").tracing);
 * ```
 */
export function makeReporter(
  globals: GlobalOptions,
  ctx: CommandContext,
  command: string,
): Reporter {
  const color = globals.color === "always" ||
    (globals.color === "auto" && ctx.stderrIsTerminal === true && !ctx.noColor);
  return new Reporter(ctx.stderr, {
    ...globals,
    color,
    command,
    hexSink: globals.hexFile === undefined ? undefined : openHexFile(globals.hexFile),
    // Only on a terminal: in a pipe or a file, a refreshing line is noise.
    progress: globals.progress && ctx.stderrIsTerminal === true,
    columns: ctx.stderrColumns,
  });
}

/** The help lines of the flags that show the traffic, shared by every relaying command. */
export const TRAFFIC_HELP =
  `  --stats            bytes each way, duration, rate of each connection (and totals)
  --hex              hex dump of every chunk each way on stderr (> sent, < received)
  --hex-file PATH    the hex dump into PATH instead (needs --allow-write)
  --progress         a refreshing status line, when stderr is a terminal`;

/** Opens (truncates) the `--hex-file`; the dump is appended to it as it comes. */
function openHexFile(path: string): TextSink {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { write: true, create: true, truncate: true });
  } catch (err) {
    throw toSockitError(err, "open", path);
  }
  const sink = textSinkOf(file);
  return {
    write(text: string) {
      try {
        sink.write(text);
      } catch (err) {
        throw toSockitError(err, "write", path);
      }
    },
  };
}

/**
 * Exactly one endpoint among the positionals.
 *
 * @example Usage
 * ```ts
 * import { oneEndpoint } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(oneEndpoint(["8888"]), { transport: "tcp", port: 8888 });
 * assert.throws(() => oneEndpoint([]), /missing endpoint/);
 * ```
 */
export function oneEndpoint(positionals: string[]): Endpoint {
  if (positionals.length === 0) throw new UsageError("missing endpoint (e.g. 127.0.0.1:8888)");
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  return parseEndpoint(positionals[0]);
}

/**
 * A duration option in ms, or `undefined` when absent. For limits
 * (`noLimitAtZero`), `0` also means no limit.
 *
 * @example Usage
 * ```ts
 * import { durationFlag } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(durationFlag({ timeout: "2s" }, "timeout"), 2000);
 * assert.deepEqual(durationFlag({}, "timeout"), undefined);
 * ```
 */
export function durationFlag(
  values: FlagValues,
  name: string,
  noLimitAtZero = false,
): number | undefined {
  const text = values[name];
  if (typeof text !== "string") return undefined;
  try {
    const ms = parseDuration(text);
    return noLimitAtZero && ms === 0 ? undefined : ms;
  } catch (err) {
    throw new UsageError(`option --${name}: ${(err as Error).message}`);
  }
}

/**
 * A non-negative integer option, or `undefined` when absent.
 *
 * @example Usage
 * ```ts
 * import { countFlag } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(countFlag({ retry: "3" }, "retry"), 3);
 * assert.throws(() => countFlag({ retry: "-1" }, "retry"), /--retry/);
 * ```
 */
export function countFlag(values: FlagValues, name: string): number | undefined {
  const text = values[name];
  if (typeof text !== "string") return undefined;
  if (!/^\d+$/.test(text) || Number(text) > 1e9) {
    throw new UsageError(`option --${name} needs a whole number, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/**
 * `-4` / `-6`, as in nc.
 *
 * @example Usage
 * ```ts
 * import { familyFlag } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(familyFlag({ ipv6: true }, { transport: "tcp", port: 80 }), 6);
 * assert.deepEqual(familyFlag({}, { transport: "tcp", port: 80 }), undefined);
 * ```
 */
export function familyFlag(values: FlagValues, endpoint: Endpoint): 4 | 6 | undefined {
  if (values.ipv4 && values.ipv6) throw new UsageError("options -4 and -6 contradict each other");
  const family = values.ipv4 ? 4 : values.ipv6 ? 6 : undefined;
  if (family && endpoint.transport === "unix") {
    throw new UsageError(`options -${family} and ${formatEndpoint(endpoint)} do not mix`);
  }
  return family;
}

/** The `-4` and `-6` flags. */
export const FAMILY_FLAGS: Record<string, FlagSpec> = {
  ipv4: { type: "boolean", short: "4" },
  ipv6: { type: "boolean", short: "6" },
};

/** The limits every server takes: `--max-conns`, `--allow`, `--deny`, `--idle-timeout`. */
export const SERVER_FLAGS: Record<string, FlagSpec> = {
  "max-conns": { type: "string" },
  allow: { type: "string", multiple: true },
  deny: { type: "string", multiple: true },
  "idle-timeout": { type: "string" },
};

/** Parsed server limits. */
export interface ServerLimits {
  /** At most this many connections at once. */
  maxConns?: number;
  /** `--allow` / `--deny` ranges. */
  access: AccessRules;
  /** Per-connection idle timeout in ms. */
  idleTimeout?: number;
}

/**
 * Reads {@linkcode SERVER_FLAGS}.
 *
 * @example Usage
 * ```ts
 * import { serverLimits } from "./args.ts";
 * import assert from "node:assert/strict";
 *
 * const limits = serverLimits({ "max-conns": "2", allow: ["127.0.0.0/8"] });
 * assert.deepEqual([limits.maxConns, limits.access.allow.length], [2, 1]);
 * ```
 */
export function serverLimits(values: FlagValues): ServerLimits {
  const list = (name: string) => ((values[name] as string[] | undefined) ?? []).map(parseCidr);
  const maxConns = countFlag(values, "max-conns");
  if (maxConns === 0) throw new UsageError("option --max-conns needs at least 1");
  return {
    maxConns,
    access: { allow: list("allow"), deny: list("deny") },
    idleTimeout: durationFlag(values, "idle-timeout", true),
  };
}
