/**
 * What a command is: declared flags, a pure parse from arguments to
 * options, and `run(options, context)` returning an exit code — the shape
 * of cliffy and dax commands. Help is generated from the declaration, and
 * `--help` is answered before anything is validated. Only `main.ts` exits.
 *
 * @module
 */

import type { CommandContext } from "./context.ts";
import { textSinkOf } from "./context.ts";
import { toSockitError } from "../base/errors.ts";
import { flagName, FLAGS, OUTPUT_FLAGS } from "./flags.ts";
import type {
  FlagGroup,
  FlagName,
  FlagSpec,
  FlagUse,
  GlobalOptions,
  ParsedFlags,
} from "./flags.ts";
import { parseFlags } from "./flags.ts";
import { endpointGroups } from "./groups.ts";
import type { CommandEndpoint, GroupedEndpoint } from "./groups.ts";
import { Reporter } from "./report.ts";
import type { TextSink } from "./report.ts";

/** A section of help text (`ENDPOINT`, `PORTS`): a heading and its lines. */
export interface HelpSection {
  /** The heading. */
  title: string;
  /** The lines, each shown indented by two spaces. */
  lines: string[];
}

/** What a command's `parse` is given: the flags, and its endpoints with their groups' options. */
export interface ParsedCommand extends ParsedFlags {
  /**
   * The endpoints of {@linkcode Command.endpoints}, with what the groups'
   * flags made of them (`--tls`) and the options of the groups each one's
   * row takes.
   */
  endpoints: GroupedEndpoint[];
}

/** A command, declared. */
export interface Command<T> {
  /** Its name (`listen`). */
  name: string;
  /** One line for `sockit --help`. */
  summary: string;
  /** What follows `sockit NAME` in the usage line (`[options] ENDPOINT`). */
  usage: string;
  /** What it does: a paragraph or two. */
  description: string;
  /** Sections shown before the flags (the endpoint forms, port lists). */
  sections?: HelpSection[];
  /** The flags it takes, in groups; the output flags are added at the end. */
  flags: FlagGroup[];
  /** The output flags it takes (default: all of them, {@linkcode OUTPUT_FLAGS}). */
  output?: FlagName[];
  /** What some output flags mean for this command, where it differs (`--json` for `scan`). */
  outputHelp?: Partial<Record<FlagName, string>>;
  /** Command lines shown under `Examples`. */
  examples: string[];
  /**
   * The endpoints its positionals name, each with the part it plays: their
   * rows say which option groups the command line may use (a group's flag
   * that none of them takes is refused). Throws a `UsageError` for a bad
   * endpoint. No I/O.
   */
  endpoints?(positionals: string[]): CommandEndpoint[];
  /**
   * What its endpoints are relayed with: the terminal (default), itself (an
   * echo), another endpoint (a forwarder) — groups take their defaults from it.
   */
  partner?: "stdio" | "itself" | "endpoint";
  /**
   * It serves many clients at once: always (`true`), or when one of these
   * flags is given (`listen -k`) — such a command runs in a runtime set up
   * for fair service when it can (`process.ts`).
   */
  serves?: true | readonly FlagName[];
  /**
   * Turns the parsed arguments into options; throws a `UsageError` for bad
   * input. Values arrive parsed and checked as their declarations say
   * (types, defaults, conflicts, dependencies, option groups): what is left
   * here is the command's own rules across them. No I/O.
   */
  parse(parsed: ParsedCommand, rest?: string[]): T;
  /** Runs the command; resolves to its exit code. */
  run(options: T, ctx: CommandContext): Promise<number>;
  /**
   * The whole command's time limit in ms (`--timeout` of a server, ping or
   * traceroute), which `main` enforces: when it passes, the command's signal
   * aborts with a `TimeoutError`, the command stops as on a signal, and the
   * exit code is 124. Commands whose `--timeout` means something of their
   * own (connect, wait, scan) handle it themselves.
   */
  deadline?(options: T): number | undefined;
  /** Whether what follows `--` is the command's own (a command to run). */
  passThrough?: boolean;
  /** It writes nothing on stdout (`echo`, `forward`): no note that stdout may be closed. */
  noStdout?: boolean;
  /**
   * A command with a command line of its own (`sockit nc`, getopt style):
   * parses `argv` itself instead of the declared flags.
   */
  parseArgv?(argv: string[]): T;
}

/** Every flag use of a command, output flags included. */
export function flagUses(command: Command<unknown>): readonly FlagUse[] {
  return [...command.flags.flatMap((g) => g.flags), ...(command.output ?? OUTPUT_FLAGS)];
}

/**
 * Parses `argv` for `command` (flags, then its own `parse`).
 *
 * @example Usage
 * ```ts ignore
 * const options = parseCommand(connectCommand, ["127.0.0.1:80", "--timeout", "2s"]);
 * ```
 */
export function parseCommand<T>(command: Command<T>, argv: string[]): T {
  if (command.parseArgv) return command.parseArgv(argv);
  const split = command.passThrough ? argv.indexOf("--") : -1;
  const own = split === -1 ? argv : argv.slice(0, split);
  const rest = split === -1 ? undefined : argv.slice(split + 1);
  const flags = parseFlags(own, flagUses(command as Command<unknown>));
  const endpoints = endpointGroups(
    command.flags,
    flags,
    command.endpoints?.(flags.positionals) ?? [],
    command.partner ?? "stdio",
  );
  return command.parse({ ...flags, endpoints }, rest);
}

/**
 * Whether `argv` makes `command` serve many clients at once (its
 * declaration's {@linkcode Command.serves}); a line it cannot read does not.
 *
 * @example Usage
 * ```ts ignore
 * servesMany(listenCommand, ["-k", "8080"]); // true
 * ```
 */
export function servesMany(command: Command<unknown>, argv: string[]): boolean {
  const serves = command.serves;
  if (serves === undefined || serves === true) return serves === true;
  try {
    const { given } = parseFlags(argv, flagUses(command));
    return serves.some((name) => given.has(name));
  } catch {
    return false;
  }
}

const WIDTH = 80;
const COLUMN = 21;

/** Wraps `text` to lines of at most `width` characters, each prefixed with `indent`. */
function wrap(text: string, indent: string, width = WIDTH): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines;
}

/** The help lines of one flag. */
function flagLines(use: FlagUse): string[] {
  const { term, help } = flagTerm(use);
  const left = `  ${term}`;
  const body = wrap(help, " ".repeat(COLUMN));
  if (left.length < COLUMN - 1) {
    return [left.padEnd(COLUMN) + body[0].trimStart(), ...body.slice(1)];
  }
  return [left, ...body];
}

/**
 * The help text of a command, generated from its declaration.
 *
 * @example Usage
 * ```ts ignore
 * console.log(helpText(connectCommand));
 * ```
 */
export function helpText(command: Command<unknown>): string {
  const out: string[] = [`Usage: sockit ${command.name} ${command.usage}`, ""];
  for (const paragraph of command.description.trim().split(/\n\s*\n/)) {
    out.push(...wrap(paragraph, ""), "");
  }
  for (const section of command.sections ?? []) {
    out.push(section.title, ...section.lines.map((l) => `  ${l}`), "");
  }
  for (const group of helpGroups(command)) {
    out.push(group.title, ...group.flags.flatMap(flagLines), "");
  }
  if (takesDurations(command)) out.push(`${DURATIONS}`, "");
  out.push("Examples", ...command.examples.map((e) => `  ${e}`), "");
  return out.join("\n");
}

/** The line every help page with a duration flag ends with. */
export const DURATIONS = "Durations: 250ms, 2s, 1m; a bare number is seconds.";

/**
 * The flag groups a command's help shows, in order, its output flags last
 * (with what they mean for this command where that differs); empty groups
 * left out. The help page, `docs/COMMANDS.md` and the man page all read it.
 */
export function helpGroups(command: Command<unknown>): FlagGroup[] {
  const output: FlagUse[] = (command.output ?? OUTPUT_FLAGS).map((use) => {
    const own = command.outputHelp?.[flagName(use)];
    return own ? [flagName(use), own] : use;
  });
  return [...command.flags, { title: "Output", flags: output }].filter((g) => g.flags.length > 0);
}

/** Whether a command takes a duration (its help then says how they are written). */
export function takesDurations(command: Command<unknown>): boolean {
  return flagUses(command).some((use) => (FLAGS[flagName(use)] as FlagSpec).value === "DUR");
}

/** A flag as help writes it, and its help text: `-t, --timeout DUR`, `--keepalive[=IDLE]`. */
export function flagTerm(use: FlagUse): { term: string; help: string } {
  const name = flagName(use);
  const spec: FlagSpec = FLAGS[name];
  const help = typeof use === "string" ? spec.help : use[1];
  const value = spec.value ? (spec.optional ? `[=${spec.value}]` : ` ${spec.value}`) : "";
  return { term: `${spec.short ? `-${spec.short}, ` : ""}--${name}${value}`, help };
}

/**
 * The reporter for a command: colour decided from `--color`, the terminal
 * and `NO_COLOR`; the `--hex-file` opened.
 *
 * @example Usage
 * ```ts
 * import { makeReporter } from "./command.ts";
 * import { parseFlags } from "./flags.ts";
 * import { memoryContext } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * const { globals } = parseFlags(["--trace"], ["trace"]);
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
  const hexSink = globals.hexFile === undefined ? undefined : openHexFile(globals.hexFile);
  let transcript: Deno.FsFile | undefined;
  try {
    transcript = globals.output === undefined
      ? undefined
      : openTranscript(globals.output, globals.append === true);
  } catch (err) {
    // The hex file is open already: nobody else will close it.
    hexSink?.close?.();
    throw err;
  }
  return new Reporter(ctx.stderr, {
    ...globals,
    color,
    command,
    hexSink,
    transcript,
    // Only on a terminal: in a pipe or a file, a refreshing line is noise.
    progress: globals.progress && ctx.stderrIsTerminal === true,
    columns: ctx.stderrColumns,
  });
}

/** Opens the `--output` file (truncated, or appended to); the payload is written as it moves. */
function openTranscript(path: string, append: boolean): Deno.FsFile {
  try {
    return Deno.openSync(path, { write: true, create: true, truncate: !append, append });
  } catch (err) {
    throw toSockitError(err, "open", path);
  }
}

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
    close: () => file.close(),
  };
}
