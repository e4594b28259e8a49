/**
 * What a command gets from its caller: payload input and output, a sink for
 * diagnostics, and a signal that stops it. `main.ts` passes the process's
 * stdin/stdout/stderr and signal handlers; tests pass buffers, so commands
 * run in-process.
 *
 * @module
 */

import type { Input, Output } from "../engine/stdio.ts";
import type { TextSink } from "./report.ts";

/** Something written to synchronously: a file, `Deno.stdout`, `Deno.stderr`. */
export interface SyncWriter {
  /** Writes some of `p`; returns how many bytes. */
  writeSync(p: Uint8Array): number;
}

/**
 * A {@linkcode TextSink} that writes each text whole and synchronously to
 * `writer` (so lines from different connections never interleave); write
 * errors are thrown to the caller.
 *
 * @example Usage
 * ```ts
 * import { textSinkOf } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * const got: number[] = [];
 * // A writer that takes at most 2 bytes a call.
 * const sink = textSinkOf({ writeSync: (p) => (got.push(...p.subarray(0, 2)), Math.min(2, p.length)) });
 * sink.write("hello");
 * assert.deepEqual(new TextDecoder().decode(new Uint8Array(got)), "hello");
 * ```
 */
export function textSinkOf(writer: SyncWriter): TextSink {
  const encoder = new TextEncoder();
  return {
    write(text: string) {
      const bytes = encoder.encode(text);
      for (let at = 0; at < bytes.length;) at += writer.writeSync(bytes.subarray(at));
    },
  };
}

/**
 * The chunks as one array of bytes.
 *
 * @example Usage
 * ```ts
 * import { concatBytes } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** The I/O and cancellation a command runs with. */
export interface CommandContext {
  /** Payload input (stdin). */
  stdin: Input;
  /** Payload output (stdout). */
  stdout: Output;
  /** Diagnostics (stderr). */
  stderr: TextSink;
  /** Aborted on SIGINT/SIGTERM; the reason carries the exit code. */
  signal: AbortSignal;
  /** Whether stdin is a terminal: then the peer closing ends a session at once. */
  stdinIsTerminal?: boolean;
  /** Whether stderr is a terminal (for `--color auto`). */
  stderrIsTerminal?: boolean;
  /** Whether `NO_COLOR` is set (`Deno.noColor`). */
  noColor?: boolean;
  /**
   * Whether stdout is `/dev/null` open read-write: a stdout closed at start
   * (`>&-`) looks so, and so does Python's `subprocess.DEVNULL` (a `-v` note).
   */
  stdoutMayBeClosed?: boolean;
  /** The terminal's width now, when stderr is one (for `--progress`). */
  stderrColumns?: () => number | undefined;
}

/** What {@linkcode memoryContext} collects. */
export interface MemoryContext extends CommandContext {
  /** Everything written to stdout so far. */
  stdoutBytes(): Uint8Array;
  /** Everything written to stdout so far, as text. */
  stdoutText(): string;
  /** Everything written to stderr so far. */
  stderrText(): string;
}

/**
 * A context with stdin from bytes and stdout/stderr into memory, for running
 * commands in-process.
 *
 * @example Usage
 * ```ts
 * import { memoryContext } from "./context.ts";
 * import assert from "node:assert/strict";
 *
 * const ctx = memoryContext({ stdin: "ping" });
 * const buf = new Uint8Array(8);
 * assert.deepEqual(await ctx.stdin.read(buf), 4);
 * await ctx.stdout.write(new TextEncoder().encode("pong"));
 * assert.deepEqual(ctx.stdoutText(), "pong");
 * ```
 */
export function memoryContext(
  options: { stdin?: Uint8Array | string; signal?: AbortSignal } = {},
): MemoryContext {
  const input = typeof options.stdin === "string"
    ? new TextEncoder().encode(options.stdin)
    : options.stdin ?? new Uint8Array();
  let offset = 0;
  let cancelled = false;
  const chunks: Uint8Array[] = [];
  let err = "";
  const stdoutBytes = () => concatBytes(chunks);
  return {
    stdin: {
      read(p: Uint8Array): Promise<number | null> {
        if (cancelled || offset >= input.length) return Promise.resolve(null);
        const n = Math.min(p.length, input.length - offset);
        p.set(input.subarray(offset, offset + n));
        offset += n;
        return Promise.resolve(n);
      },
      cancel(linger = 0) {
        // In memory, input never pauses: only an immediate cancel stops it.
        if (linger <= 0) cancelled = true;
      },
    },
    stdout: {
      write(p: Uint8Array): Promise<number> {
        chunks.push(p.slice());
        return Promise.resolve(p.length);
      },
      flush: () => Promise.resolve(),
    },
    stderr: { write: (text: string) => void (err += text) },
    signal: options.signal ?? new AbortController().signal,
    stdoutBytes,
    stdoutText: () => new TextDecoder().decode(stdoutBytes()),
    stderrText: () => err,
  };
}
