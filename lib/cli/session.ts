/**
 * A peer bridged to the command's payload — stdin (or the `--send` text,
 * or a `--send-file`) to the peer, the peer's bytes to stdout — through the
 * transfer engine. Shared by `listen` and `connect`, for streams and
 * datagrams; how the session ends is the caller's policy (see "Sessions,
 * half-close, and how they end" in the README).
 *
 * @module
 */

import { openPayload } from "../payload.ts";
import type { Input } from "../stdio.ts";
import { SERVER_BUFFER, transfer } from "../transfer.ts";
import type { Peer, TransferOptions } from "../transfer.ts";
import type { CommandContext } from "./context.ts";
import type { Reporter } from "./report.ts";

/**
 * After the peer has closed its side, sockit goes on sending as long as its
 * input keeps coming: a pause this long (or the end of input) ends the session.
 */
export const SESSION_LINGER = 200;

/** What a session sends and how it ends. */
export interface SessionOptions
  extends Pick<TransferOptions, "expect" | "idleTimeout" | "endOnEof" | "linger" | "halfClose"> {
  /** Stops the session (signals, and the command's deadline); default the context's signal. */
  signal?: AbortSignal;
  /** Send these bytes instead of stdin, then end. */
  send?: Uint8Array;
  /** Send this file instead of stdin, then end. */
  sendFile?: string;
  /** Read this instead of stdin (a `listen -k` client's share of stdin). */
  input?: Input;
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
 * Gets stdin and stdout ready while the socket is being set up, so that a
 * transfer starts at full speed (their worker threads take a while to start).
 *
 * @example Usage
 * ```ts
 * import { prepareStdio } from "./session.ts";
 * import { memoryContext } from "./context.ts";
 *
 * prepareStdio({ send: new Uint8Array(1) }, memoryContext());
 * ```
 */
export function prepareStdio(options: SessionOptions, ctx: CommandContext): void {
  if (options.send === undefined && options.sendFile === undefined) ctx.stdin.prepare?.();
  ctx.stdout.prepare?.();
}

/**
 * Bridges `peer` with the command's payload until the session ends;
 * returns the exit code. A failure is reported as the command's error (or,
 * with `warnOnly`, as a warning).
 *
 * @example Usage
 * ```ts ignore
 * const code = await runSession(conn, ctx, reporter, { endOnEof: "a", linger: SESSION_LINGER });
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
  let payload;
  try {
    payload = await openPayload({
      send: options.send,
      sendFile: options.sendFile,
      input: options.input ?? ctx.stdin,
      output: ctx.stdout,
      maxRecord: options.maxRecord,
    });
  } catch (err) {
    peer.close();
    return report(err);
  }
  const code = await transfer(peer, payload, {
    signal: options.signal ?? ctx.signal,
    expect: options.expect,
    idleTimeout: options.idleTimeout,
    endOnEof: options.endOnEof,
    linger: options.linger,
    halfClose: options.halfClose,
    bufferSize: options.warnOnly ? SERVER_BUFFER : undefined,
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
