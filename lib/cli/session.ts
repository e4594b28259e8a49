/**
 * A peer bridged to the command's payload — stdin (or a `--send`/`--expect`
 * dialogue) to the peer, the peer's bytes to stdout — through the transfer
 * engine. Shared by `listen` and `connect`, for streams and datagrams. How a
 * session ends is written here once ({@linkcode endRule}); the README's
 * "Sessions, half-close, and how they end" is its table.
 *
 * @module
 */

import { Dialogue } from "../engine/dialogue.ts";
import type { Step } from "../engine/dialogue.ts";
import { openPayload } from "../engine/payload.ts";
import type { Input } from "../engine/stdio.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import type { Peer, TransferOptions } from "../engine/transfer.ts";
import type { CommandContext } from "./context.ts";
import type { Reporter } from "./report.ts";
import { compilePatterns } from "./values.ts";

/**
 * After its client has left, `listen` still sends input that keeps coming:
 * a pause this long (or the end of input) ends the session, so a file or a
 * fast pipe on stdin is sent whole and an idle one does not hold it.
 */
export const SESSION_LINGER = 200;

/** Which command's rules a stream session follows. */
export type SessionRole = "connect" | "listen";

/** What a session sends and how it ends. */
export interface SessionOptions extends Pick<TransferOptions, "idleTimeout" | "halfClose"> {
  /** Stops the session (signals, and the command's deadline); default the context's signal. */
  signal?: AbortSignal;
  /** The send/expect dialogue (`--send`, `--send-file`, `--expect`), in order. */
  steps?: Step[];
  /** Never read the socket (`--send-only`). */
  sendOnly?: boolean;
  /** Never read stdin, send nothing (`--recv-only`). */
  recvOnly?: boolean;
  /** Input LF as CRLF (`--crlf`). */
  crlf?: boolean;
  /** After the input ends, end once the peer has been quiet this long (nc's `-q SECS`). */
  quitAfterInput?: number;
  /** Read this instead of stdin (a `listen -k` client's share of stdin). */
  input?: Input;
  /** How the session ends: a stream's rules by command; absent for datagram sessions. */
  role?: SessionRole;
  /** Datagram sessions: end when this side reaches end of input, after a pause of `linger` ms. */
  endOnEof?: "a" | "b";
  /** With `endOnEof`: the pause that ends it. */
  linger?: number;
  /** The peer takes datagrams of at most this many bytes. */
  maxRecord?: number;
  /** The peer's name in the `closed` event (a function: its name when the session ends). */
  closedName?: string | (() => string);
  /** When a failed `--expect` gave up (see `TransferOptions.noMatch`). */
  noMatch?: string;
  /** One connection of a server: a failure is a warning, not the command's error. */
  warnOnly?: boolean;
}

/**
 * How a stream session ends when the peer ends first, by what is sent —
 * `terminal` when it is typed at a terminal (stdin is one and the session
 * sends stdin; `--send`/`--send-file` are never a terminal):
 *
 * - `connect`, input not a terminal: it does not end there — input keeps
 *   flowing to a peer that only half-closed, until the input ends or a
 *   write fails (an error naming what was not delivered), as `nc -N` does;
 * - `connect` from a terminal, and with `--recv-only`: at once;
 * - `listen`: when its client leaves (as `nc -l`), once the input pauses for
 *   {@linkcode SESSION_LINGER} ms — at once from a terminal.
 *
 * `--send-only` never reads the socket, so the end of input ends it. A peer
 * whose end is a full close (`Peer.endIsClose`: a WebSocket's Close) ends
 * any session at once, in {@linkcode runSession}.
 *
 * @example Usage
 * ```ts
 * import { endRule } from "./session.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(endRule("connect", false, {}), {});
 * assert.deepEqual(endRule("connect", true, {}), { endOnEof: "a", linger: 0 });
 * assert.deepEqual(endRule("listen", false, {}), { endOnEof: "a", linger: 200 });
 * ```
 */
export function endRule(
  role: SessionRole,
  terminal: boolean,
  options: Pick<SessionOptions, "sendOnly" | "recvOnly">,
): Pick<TransferOptions, "endOnEof" | "linger"> {
  if (options.sendOnly) return {};
  if (options.recvOnly || terminal) return { endOnEof: "a", linger: 0 };
  return role === "listen" ? { endOnEof: "a", linger: SESSION_LINGER } : {};
}

/**
 * Gets stdin and stdout ready while the socket is being set up, so that a
 * transfer starts at full speed (their worker threads take a while to start).
 *
 * @example Usage
 * ```ts
 * import { prepareStdio } from "./session.ts";
 * import { memoryContext } from "./context.ts";
 *
 * prepareStdio({ steps: [{ send: new Uint8Array(1) }] }, memoryContext());
 * ```
 */
export function prepareStdio(options: SessionOptions, ctx: CommandContext): void {
  const sends = options.steps?.some((s) => !("expect" in s));
  if (!sends && !options.recvOnly) ctx.stdin.prepare?.();
  ctx.stdout.prepare?.();
}

/** A peer that is never read (`--send-only`): its input ends at once. */
function unread(peer: Peer): Peer {
  return new Proxy(peer, {
    get(target, key) {
      if (key === "read") return () => Promise.resolve(null);
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * Bridges `peer` with the command's payload until the session ends;
 * returns the exit code. A failure is reported as the command's error (or,
 * with `warnOnly`, as a warning).
 *
 * @example Usage
 * ```ts ignore
 * const code = await runSession(conn, ctx, reporter, { role: "connect" });
 * ```
 */
export async function runSession(
  peer: Peer,
  ctx: CommandContext,
  reporter: Reporter,
  options: SessionOptions,
): Promise<number> {
  const report = (err: unknown) =>
    options.warnOnly ? reporter.warnFailure(err) : reporter.fail(err);
  // Each session runs its own copy of the dialogue (a server runs one per client).
  if (options.steps) {
    await compilePatterns("expect", options.steps.flatMap((s) => "expect" in s ? [s.expect] : []));
  }
  const dialogue = options.steps ? new Dialogue(options.steps) : undefined;
  let payload;
  try {
    payload = await openPayload({
      dialogue,
      recvOnly: options.recvOnly,
      crlf: options.crlf,
      input: options.input ?? ctx.stdin,
      output: ctx.stdout,
      maxRecord: options.maxRecord,
    });
  } catch (err) {
    peer.close();
    return report(err);
  }
  const ending = options.quitAfterInput !== undefined
    ? { endOnEof: "b" as const, linger: options.quitAfterInput }
    : options.role && peer.endIsClose && !options.sendOnly
    // A WebSocket's Close ends both directions: input still to come has nowhere to go.
    ? { endOnEof: "a" as const, linger: 0 }
    : options.role
    // The payload's source decides, not stdin: a --send-file run from a terminal sends a file.
    ? endRule(options.role, ctx.stdinIsTerminal === true && payload.fromInput, options)
    : { endOnEof: options.endOnEof, linger: options.linger };
  const code = await transfer(options.sendOnly ? unread(peer) : peer, payload, {
    signal: options.signal ?? ctx.signal,
    dialogue,
    idleTimeout: options.idleTimeout,
    ...ending,
    // --recv-only sends nothing, and so never says that it is done sending.
    halfClose: options.recvOnly ? [true, false] : options.halfClose,
    bufferSize: options.warnOnly ? SERVER_BUFFER : undefined,
    // One session (not one of listen -k's many): the kernel may move the bytes.
    splice: !options.warnOnly,
    sendTotal: payload.sendTotal,
    closedName: options.closedName,
    noMatch: options.noMatch,
    events: reporter,
    report,
  });
  try {
    await ctx.stdout.flush();
  } catch {
    // stdout is gone (e.g. its reader exited): nothing more can be delivered.
  }
  return code;
}
