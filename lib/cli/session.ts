/**
 * A connection bridged to the command's payload (DESIGN §5a): stdin — or
 * `--send` text, or a `--send-file` — goes to the peer, the peer's bytes go
 * to stdout. End of input half-closes the socket and the reply keeps
 * flowing. The session ends when both directions have ended: the peer has
 * closed its side and everything it sent is on stdout, and all input has
 * been sent. A peer that half-closes first (`sockit listen </dev/null`) thus
 * still receives all of our input, as with OpenBSD nc. One exception: when
 * stdin is a terminal, the peer's close ends the session at once (as ncat
 * does), so an interactive client exits when the server hangs up. Shared by
 * `listen` and `connect`; the copying itself is the one relay.
 *
 * @module
 */

import {
  SignalInterrupt,
  SockitError,
  TimeoutError,
  toSockitError,
  UsageError,
} from "../errors.ts";
import { decodeEscapes } from "../escapes.ts";
import { formatDuration } from "../format.ts";
import { ExpectMatcher } from "../expect.ts";
import { Relay, RelayError } from "../relay.ts";
import type { Direction, Duplex } from "../relay.ts";
import type { Reporter } from "../report.ts";
import type { ByteReader, Input, Output } from "../stdio.ts";
import type { SocketStream } from "../stream.ts";
import type { FlagSpec, FlagValues } from "./args.ts";
import type { CommandContext } from "./context.ts";

/** What the session sends and how it ends. */
export interface SessionOptions {
  /** Send these bytes instead of stdin, then half-close. */
  send?: Uint8Array;
  /** Send this file instead of stdin, then half-close. */
  sendFile?: string;
  /** Succeed as soon as the received text matches. */
  expect?: RegExp;
  /** Shut down the write side at end of input (default true; `--no-half-close`). */
  halfClose?: boolean;
  /** Fail after this many ms without data either way. */
  idleTimeout?: number;
  /** An overall deadline (`connect --timeout`), counted from `startedAt`. */
  deadline?: { ms: number; startedAt: number; op: string; address: string };
  /** One connection of a server: report a failure as a warning. */
  warnOnly?: boolean;
}

/** The payload options shared by `listen` and `connect`. */
export const SEND_FLAGS: Record<string, FlagSpec> = {
  send: { type: "string" },
  "send-file": { type: "string" },
};

/**
 * `--send TEXT` (escapes decoded) or `--send-file PATH`, not both.
 *
 * @example Usage
 * ```ts
 * import { sendFlags } from "./session.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(sendFlags({ send: "hi\\n" }).send, new TextEncoder().encode("hi\n"));
 * ```
 */
export function sendFlags(values: FlagValues): Pick<SessionOptions, "send" | "sendFile"> {
  if (values.send !== undefined && values["send-file"] !== undefined) {
    throw new UsageError("options --send and --send-file exclude each other");
  }
  return {
    send: typeof values.send === "string" ? decodeEscapes(values.send) : undefined,
    sendFile: values["send-file"] as string | undefined,
  };
}

/** The bytes to send, with a way to stop reading them. */
interface PayloadSource extends ByteReader {
  /** Stop; with `linger` > 0 only once the input pauses (text and files never do). */
  cancel(linger?: number): void;
  close?(): void;
}

/**
 * After the peer has closed its side, sockit goes on sending as long as its
 * input keeps coming: a pause this long (or the end of input) ends the session.
 */
export const SESSION_LINGER = 200;

function bytesSource(bytes: Uint8Array): PayloadSource {
  let offset = 0;
  return {
    read(p) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - offset);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
    cancel(linger = 0) {
      if (linger <= 0) offset = bytes.length;
    },
  };
}

function fileSource(file: Deno.FsFile): PayloadSource {
  let reading = true;
  let closed = false;
  return {
    read: (p) => (reading ? file.read(p) : Promise.resolve(null)),
    cancel(linger = 0) {
      if (linger <= 0) reading = false;
    },
    close() {
      reading = false;
      if (!closed) {
        closed = true;
        file.close();
      }
    },
  };
}

/** The payload side of a session as one duplex: source in, `out` out. */
function payloadDuplex(source: PayloadSource, out: Output): Duplex {
  return {
    label: "stdio",
    read: (p) => source.read(p),
    write: (p) => out.write(p),
    closeWrite: () => out.flush(),
    cancelRead: (linger) => source.cancel(linger),
    close: () => {
      source.cancel();
      source.close?.();
    },
  };
}

/** The abort reason when `--expect` matched: the session ends successfully. */
class ExpectMatched extends Error {}

/**
 * Opens the payload a session sends: the file, the text, or stdin.
 * Throws a {@linkcode SockitError} when the file cannot be opened.
 */
async function openSource(
  options: SessionOptions & { source?: Input },
  ctx: CommandContext,
): Promise<PayloadSource> {
  if (options.send) return bytesSource(options.send);
  if (options.sendFile !== undefined) {
    try {
      return fileSource(await Deno.open(options.sendFile, { read: true }));
    } catch (err) {
      throw toSockitError(err, "open", options.sendFile);
    }
  }
  return options.source ?? ctx.stdin;
}

/**
 * Gets stdin and stdout ready while the socket is being set up, so that a
 * transfer starts at full speed (their worker threads take a while to start).
 *
 * @example Usage
 * ```ts ignore
 * prepareStdio({ send: undefined }, ctx);
 * ```
 */
export function prepareStdio(options: SessionOptions, ctx: CommandContext): void {
  if (!options.send && options.sendFile === undefined) ctx.stdin.prepare?.();
  ctx.stdout.prepare?.();
}

/**
 * Checks that the `--send-file` can be opened, before any socket is opened.
 *
 * @example Usage
 * ```ts ignore
 * await checkSendFile({ sendFile: "/etc/hostname" });
 * ```
 */
export async function checkSendFile(options: SessionOptions): Promise<void> {
  if (options.sendFile === undefined) return;
  try {
    const info = await Deno.stat(options.sendFile);
    if (info.isDirectory) {
      throw new SockitError("is a directory", { op: "open", address: options.sendFile });
    }
  } catch (err) {
    throw toSockitError(err, "open", options.sendFile);
  }
}

/** How a bridge runs and ends. */
export interface BridgeOptions {
  /** Stops the bridge (signals); its reason's exit code is returned. */
  signal: AbortSignal;
  /** Succeed as soon as the received text matches. */
  expect?: RegExp;
  /** Fail after this many ms without data either way. */
  idleTimeout?: number;
  /** End the session when this side reaches end of input (`RelayOptions.endOnEof`). */
  endOnEof?: "a" | "b";
  /** With `endOnEof`: the pause in the other side's input that ends it. */
  linger?: number;
  /** Pass end of input on as half-close, per direction `[conn→other, other→conn]`. */
  halfClose?: [boolean, boolean];
  /** An overall deadline (`connect --timeout`), counted from `startedAt`. */
  deadline?: { ms: number; startedAt: number; op: string; address: string };
  /** Names the other side in error messages (`stdin`/`stdout` by default). */
  otherName?: { read: string; write: string };
  /**
   * Report a failure as a warning (one of many connections of a server) rather
   * than as the command's error.
   */
  warnOnly?: boolean;
  /** First read buffer size (`RelayOptions.bufferSize`); servers use a small one. */
  bufferSize?: number;
  /** The size of what is sent, when known (`--send-file`), for the `--progress` ETA. */
  sendTotal?: number;
}

/** The first read buffer of a server's connections: small, so that idle ones cost little. */
export const SERVER_BUFFER = 1024;

/**
 * Relays `conn` with `other` until the session ends, reports the `closed`
 * event, and returns the exit code: 0, the failure's code (reported), 124
 * for a timeout, 130/143 when stopped by a signal.
 *
 * @example Usage
 * ```ts ignore
 * const code = await bridge(conn, conn, reporter, { signal, halfClose: [true, false] }); // echo
 * ```
 */
export async function bridge(
  conn: SocketStream,
  other: Duplex,
  reporter: Reporter,
  options: BridgeOptions,
): Promise<number> {
  // A controller of its own only when something may end the session early.
  const stop = options.expect || options.deadline ? new AbortController() : undefined;
  const matcher = options.expect ? new ExpectMatcher(options.expect) : undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = options.deadline;
  if (deadline) {
    const remaining = deadline.ms - (performance.now() - deadline.startedAt);
    timer = setTimeout(() => {
      stop?.abort(
        new TimeoutError(`timed out after ${formatDuration(deadline.ms)}`, {
          op: deadline.op,
          address: deadline.address,
        }),
      );
    }, Math.max(0, remaining));
  }
  const echoing = other === conn;
  const tap = reporter.hexTap(conn.id, conn.remoteAddress);
  // Relayed into itself (echo), each chunk received is also the chunk sent back.
  const hex = tap && echoing
    ? (_direction: Direction, chunk: Uint8Array) => {
      tap.onChunk(0, chunk);
      tap.onChunk(1, chunk);
    }
    : tap?.onChunk;
  const expect = matcher
    ? (direction: Direction, chunk: Uint8Array) => {
      if (direction === 0 && matcher.push(chunk)) stop?.abort(new ExpectMatched());
    }
    : undefined;
  const relay = new Relay(conn, other, {
    signal: stop ? AbortSignal.any([options.signal, stop.signal]) : options.signal,
    idleTimeout: options.idleTimeout,
    bufferSize: options.bufferSize,
    endOnEof: options.endOnEof,
    linger: options.linger,
    halfClose: options.halfClose,
    // Taps only when asked for: the plain relay calls nothing per chunk.
    onChunk: hex && expect
      ? (direction, chunk) => {
        hex(direction, chunk);
        expect(direction, chunk);
      }
      : hex ?? expect,
  });
  let code = 0;
  let reason: string | undefined;
  // --progress counts [received, sent]: relay.bytes is [conn→other, other→conn].
  // Relayed into itself (echo), the one direction is both received and sent.
  const moved = (): [number, number] => echoing ? [relay.bytes[0], relay.bytes[0]] : relay.bytes;
  const counted = {
    get bytes(): [number, number] {
      return moved();
    },
  };
  reporter.track(counted, options.sendTotal);
  try {
    await relay.run();
    if (matcher) {
      code = reporter.fail(
        new SockitError(`no match for ${matcher} before the peer closed`, {
          op: "expect",
          address: conn.remoteAddress,
          code: "ENOMATCH",
        }),
      );
    }
  } catch (err) {
    if (err instanceof ExpectMatched) code = 0;
    else if (err instanceof SignalInterrupt) {
      code = err.exitCode;
      reason = err.message;
    } else if (err instanceof RelayError) {
      reason = `${err.op} failed`;
      code = relayFailure(
        err,
        conn,
        options.warnOnly ? warner(reporter) : reporter,
        options.otherName,
      );
    } else {
      reason = (err as Error)?.message;
      code = (options.warnOnly ? warner(reporter) : reporter).fail(err);
    }
  } finally {
    clearTimeout(timer);
    reporter.untrack(counted);
  }
  for (const side of [conn, other]) {
    if ((side as Partial<SocketStream>).uncleanClose) {
      reporter.info(
        `${side.label} closed without TLS close_notify (taken as the end of its stream)`,
      );
    }
  }
  const [received, sent] = moved();
  reporter.closed(conn.id, conn.remoteAddress, {
    sent,
    received,
    durationMs: Math.round(relay.elapsed),
    ...(reason ? { reason } : {}),
  });
  return code;
}

/**
 * Bridges `conn` with the command's payload — stdin (or `source`, or the
 * `--send` text or file) in, stdout out — and returns the exit code.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runSession(conn, ctx, reporter, { send: new TextEncoder().encode("hello!") });
 * ```
 */
export async function runSession(
  conn: SocketStream,
  ctx: CommandContext,
  reporter: Reporter,
  options: SessionOptions & { source?: Input },
): Promise<number> {
  let source: PayloadSource;
  try {
    source = await openSource(options, ctx);
  } catch (err) {
    conn.close();
    return reporter.fail(err);
  }
  const sendTotal = options.send?.length ??
    (options.sendFile !== undefined ? (await Deno.stat(options.sendFile)).size : undefined);
  const code = await bridge(conn, payloadDuplex(source, ctx.stdout), reporter, {
    sendTotal,
    signal: ctx.signal,
    expect: options.expect,
    idleTimeout: options.idleTimeout,
    endOnEof: "a",
    linger: SESSION_LINGER,
    halfClose: [true, options.halfClose ?? true],
    deadline: options.deadline,
    warnOnly: options.warnOnly,
    bufferSize: options.warnOnly ? SERVER_BUFFER : undefined,
  });
  try {
    await ctx.stdout.flush();
  } catch {
    // stdout is gone (e.g. its reader exited): nothing more can be delivered.
  }
  return code;
}

/** A reporter whose `fail()` prints a warning instead of an error. */
function warner(reporter: Reporter): Pick<Reporter, "fail"> {
  return {
    fail(error: unknown, op?: string, address?: string): number {
      const err = toSockitError(error, op ?? "sockit", address);
      reporter.warn(err.message);
      return err.exitCode;
    },
  };
}

/** Reports a failed relay operation and returns its exit code. */
function relayFailure(
  err: RelayError,
  conn: SocketStream,
  reporter: Pick<Reporter, "fail">,
  otherName = { read: "stdin", write: "stdout" },
): number {
  if (err.side === "b") {
    // The other side: stdin/stdout (or the --send-file), a child, a hub.
    if (err.op !== "read" && err.cause instanceof Deno.errors.BrokenPipe) {
      // The reader of stdout went away (`sockit connect … | head -1`): stop quietly.
      return 0;
    }
    const op = err.op === "read" ? "read" : "write";
    return reporter.fail(
      toSockitError(err.cause, op, op === "read" ? otherName.read : otherName.write),
    );
  }
  const op = err.op === "closeWrite" ? "shutdown" : err.op;
  return reporter.fail(toSockitError(err.cause, op, conn.remoteAddress));
}
