/**
 * Error types and exit codes (the README's exit status table). Every failure sockit reports is one
 * of these, so the CLI maps an error to its exit code in one place.
 *
 * @module
 */

import { getSystemErrorMap } from "node:util";

/** Exit codes of the `sockit` command, as in the README's exit status table. */
export const ExitCode = {
  /** Success. */
  Ok: 0,
  /** Network or runtime failure. */
  Failure: 1,
  /** Usage error: unknown option, bad endpoint, bad duration, missing argument. */
  Usage: 2,
  /** A timeout expired (`--timeout`, `--idle-timeout`, `wait`), as with timeout(1). */
  Timeout: 124,
  /** Deno denied a permission. */
  PermissionDenied: 126,
  /** Interrupted by SIGINT after a clean shutdown. */
  Interrupted: 130,
  /** Terminated by SIGTERM after a clean shutdown. */
  Terminated: 143,
} as const;

/**
 * A mistake in the user's input: exit code 2, reported as one line plus a hint.
 *
 * @example Usage
 * ```ts
 * import { UsageError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new UsageError('unknown option "--frob"');
 * assert.deepEqual(err.exitCode, 2);
 * ```
 */
export class UsageError extends Error {
  /** Always {@linkcode ExitCode.Usage}. */
  readonly exitCode: number = ExitCode.Usage;
  /** Creates a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Options of {@linkcode SockitError}. */
export interface SockitErrorOptions {
  /** The operation that failed: `connect`, `listen`, `read`, `write`, … */
  op: string;
  /** The address involved, already formatted (`127.0.0.1:8888`, `unix:/tmp/s`). */
  address?: string;
  /** Exit code; defaults to {@linkcode ExitCode.Failure}. */
  exitCode?: number;
  /** A second line that helps the user act on the error. */
  hint?: string;
  /** A short machine-readable code (`ECONNREFUSED`, `ETIMEDOUT`, …). */
  code?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A failure with an operation, an address and a reason, reported as
 * `sockit: connect 127.0.0.1:8888: connection refused`.
 *
 * @example Usage
 * ```ts
 * import { SockitError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new SockitError("connection refused", { op: "connect", address: "127.0.0.1:8888" });
 * assert.deepEqual(err.message, "connect 127.0.0.1:8888: connection refused");
 * assert.deepEqual(err.exitCode, 1);
 * ```
 */
export class SockitError extends Error {
  /** The operation that failed. */
  readonly op: string;
  /** The address involved, if any. */
  readonly address?: string;
  /** The reason alone, without operation and address. */
  readonly reason: string;
  /** The exit code the CLI returns for this error. */
  readonly exitCode: number;
  /** An optional second line with advice. */
  readonly hint?: string;
  /** A short machine-readable code. */
  readonly code: string;

  /** Creates an error from a reason and where it happened. */
  constructor(reason: string, options: SockitErrorOptions) {
    super(
      [options.op, options.address].filter(Boolean).join(" ") + ": " + reason,
      { cause: options.cause },
    );
    this.name = "SockitError";
    this.op = options.op;
    this.address = options.address;
    this.reason = reason;
    this.exitCode = options.exitCode ?? ExitCode.Failure;
    this.hint = options.hint;
    this.code = options.code ?? "EFAIL";
  }
}

/**
 * A timer of sockit's own expired (`--timeout`, `--idle-timeout`): exit 124.
 *
 * @example Usage
 * ```ts
 * import { TimeoutError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = new TimeoutError("no data for 2s", { op: "idle", address: "127.0.0.1:80" });
 * assert.deepEqual(err.exitCode, 124);
 * ```
 */
export class TimeoutError extends SockitError {
  /** Creates a timeout error; the exit code is always 124. */
  constructor(reason: string, options: Omit<SockitErrorOptions, "exitCode" | "code">) {
    super(reason, { ...options, exitCode: ExitCode.Timeout, code: "ETIMEDOUT" });
    this.name = "TimeoutError";
  }
}

/**
 * The process received a signal; commands stop cleanly and exit 130 or 143.
 *
 * @example Usage
 * ```ts
 * import { SignalInterrupt } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(new SignalInterrupt("SIGTERM").exitCode, 143);
 * ```
 */
export class SignalInterrupt extends Error {
  /** 130 for SIGINT, 143 for SIGTERM. */
  readonly exitCode: number;
  /** Creates the abort reason for a received signal. */
  constructor(readonly signal: "SIGINT" | "SIGTERM") {
    super(`interrupted by ${signal}`);
    this.name = "SignalInterrupt";
    this.exitCode = signal === "SIGINT" ? ExitCode.Interrupted : ExitCode.Terminated;
  }
}

interface ErrnoLike {
  name?: string;
  message?: string;
  code?: string;
}

const REASONS: Record<string, [reason: string, code: string]> = {
  ConnectionRefused: ["connection refused", "ECONNREFUSED"],
  ConnectionReset: ["connection reset by peer", "ECONNRESET"],
  ConnectionAborted: ["connection aborted", "ECONNABORTED"],
  NotConnected: ["not connected", "ENOTCONN"],
  AddrInUse: ["address already in use", "EADDRINUSE"],
  AddrNotAvailable: ["cannot assign requested address", "EADDRNOTAVAIL"],
  BrokenPipe: ["broken pipe (the peer closed the connection)", "EPIPE"],
  TimedOut: ["timed out", "ETIMEDOUT"],
  NotFound: ["no such file or directory", "ENOENT"],
  PermissionDenied: ["permission denied", "EACCES"],
  AlreadyExists: ["file exists", "EEXIST"],
  NetworkUnreachable: ["network is unreachable", "ENETUNREACH"],
  HostUnreachable: ["host is unreachable", "EHOSTUNREACH"],
  Interrupted: ["interrupted", "EINTR"],
  BadResource: ["connection closed", "EBADF"],
  InvalidData: ["invalid data", "EINVAL"],
  IsADirectory: ["is a directory", "EISDIR"],
};

const HINTS: Record<string, string> = {
  EADDRINUSE:
    "another socket is bound to this address; pick another port, or port 0 for a free one",
  EADDRNOTAVAIL: "this machine has no such address; listen on 127.0.0.1, ::1 or 0.0.0.0",
};

/**
 * Strips Deno's " (os error N)" and what it appends after it (`: open
 * '/path'`, the op and path that sockit names itself), and lower-cases the
 * first letter.
 */
function plainReason(message: string): string {
  const text = message.replace(/\s*\(os error \d+\).*$/s, "").trim();
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** The flag named in a Deno permission error, e.g. `--allow-net`. */
function permissionFlag(message: string): string | undefined {
  return /run again with the (--allow-[a-z-]+) flag/.exec(message)?.[1];
}

/**
 * Turns anything thrown by Deno or by sockit into a {@linkcode SockitError}
 * that names the operation and address, with the documented exit code.
 *
 * @example Usage
 * ```ts
 * import { toSockitError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const err = toSockitError(new Deno.errors.ConnectionRefused("Connection refused (os error 111)"), "connect", "127.0.0.1:1");
 * assert.deepEqual(err.message, "connect 127.0.0.1:1: connection refused");
 * ```
 */
export function toSockitError(error: unknown, op: string, address?: string): SockitError {
  if (error instanceof SockitError) return error;
  const e = (error ?? {}) as ErrnoLike;
  const name = e.name ?? "";
  const message = e.message ?? String(error);
  if (name === "NotCapable" || (e.code === "EPERM" && /getaddrinfo/.test(message))) {
    const flag = permissionFlag(message) ?? "--allow-net";
    const what = /Requires (\w+ access to "[^"]*")/.exec(message)?.[1] ??
      `net access to "${address ?? ""}"`;
    return new SockitError(`permission denied: requires ${what}`, {
      op,
      address,
      exitCode: ExitCode.PermissionDenied,
      code: "EPERM",
      hint: `run deno with ${flag}${flagScope(flag, what)} (see "Permissions" in the README)`,
      cause: error,
    });
  }
  if (
    /failed to lookup address|Name or service not known|ENOTFOUND|EAI_NONAME|EAI_AGAIN|No address associated/i
      .test(message) || e.code === "ENOTFOUND" || e.code === "EAI_AGAIN"
  ) {
    return new SockitError("name not found", {
      op,
      address,
      code: "ENOTFOUND",
      hint: "check the host name, or give an IP address",
      cause: error,
    });
  }
  const known = REASONS[name];
  if (known) {
    return new SockitError(known[0], {
      op,
      address,
      code: known[1],
      hint: HINTS[known[1]],
      cause: error,
    });
  }
  if (name === "TypeError" && /SUN_LEN/.test(message)) {
    return new SockitError("unix socket path too long", { op, address, code: "EINVAL" });
  }
  return new SockitError(plainReason(message), { op, address, code: e.code, cause: error });
}

function flagScope(flag: string, what: string): string {
  const target = /"([^"]*)"/.exec(what)?.[1];
  if (!target) return "";
  return flag === "--allow-net" || flag === "--allow-read" || flag === "--allow-write" ||
      flag === "--allow-run"
    ? ` (or ${flag}=${target})`
    : "";
}

/**
 * The exit code for anything a command may throw.
 *
 * @example Usage
 * ```ts
 * import { exitCodeOf, UsageError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(exitCodeOf(new UsageError("bad")), 2);
 * assert.deepEqual(exitCodeOf(new Error("boom")), 1);
 * ```
 */
export function exitCodeOf(error: unknown): number {
  const code = (error as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === "number" ? code : ExitCode.Failure;
}

/**
 * Rebuilds an error that crossed a thread boundary as `{name, message}`
 * (from a worker) as the Deno error class of that name, so that
 * {@linkcode toSockitError} maps it like the original.
 *
 * @example Usage
 * ```ts
 * import { rebuildError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(rebuildError("BrokenPipe", "Broken pipe (os error 32)") instanceof Deno.errors.BrokenPipe);
 * assert.equal(rebuildError("Nonsense", "x").constructor, Error);
 * ```
 */
export function rebuildError(name: string | undefined, message: string | undefined): Error {
  const Ctor = (Deno.errors as unknown as Record<string, ErrorConstructor | undefined>)[name ?? ""];
  return new (Ctor ?? Error)(message ?? "failed");
}

/** The Deno error class for an errno name, where Deno has one. */
const DENO_ERROR_OF: Record<string, string> = {
  ECONNREFUSED: "ConnectionRefused",
  ECONNRESET: "ConnectionReset",
  ECONNABORTED: "ConnectionAborted",
  ENOTCONN: "NotConnected",
  EADDRINUSE: "AddrInUse",
  EADDRNOTAVAIL: "AddrNotAvailable",
  EPIPE: "BrokenPipe",
  ETIMEDOUT: "TimedOut",
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  ENETUNREACH: "NetworkUnreachable",
  EHOSTUNREACH: "HostUnreachable",
  EINTR: "Interrupted",
  EAGAIN: "WouldBlock",
};

/**
 * An OS error number (as libc's `errno` gives it to FFI code) as the error
 * Deno itself would throw for it, so that one mapping turns every failure
 * into words. Unknown numbers keep their name as `code` (`EMSGSIZE`).
 *
 * @example Usage
 * ```ts
 * import { errnoError, toSockitError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(errnoError(111) instanceof Deno.errors.ConnectionRefused);
 * assert.equal(toSockitError(errnoError(90), "send").code, "EMSGSIZE");
 * ```
 */
export function errnoError(errno: number): Error {
  const [name, description] = getSystemErrorMap().get(-errno) ?? [`errno ${errno}`, "error"];
  const message = `${description} (os error ${errno})`;
  const denoName = DENO_ERROR_OF[name];
  if (denoName) return rebuildError(denoName, message);
  return Object.assign(new Error(message), { code: name });
}
