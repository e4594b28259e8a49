/**
 * The C library through FFI, for the socket calls Deno has no API for. The
 * one table of the functions sockit calls ({@linkcode SYMBOLS}: the main
 * thread's `dlopen` and every worker's take theirs from it), one `dlopen`
 * shared by the main thread's users and closed by the last of them, and
 * `errno` read right after the call that set it. Linux only, and only with
 * `--allow-ffi`: {@linkcode ffiAvailable} says whether it can be used.
 *
 * @module
 */

import { errnoError } from "../base/errors.ts";

/**
 * Every libc function sockit calls, with its FFI signature. A symbol marked
 * `nonblocking` runs on a helper thread and returns a promise (its errno is
 * lost there); the others are synchronous. Workers get the entries they
 * name interpolated (`worker.ts`).
 */
export const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "isize",
  },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // fcntl(fd, cmd, arg): the third argument is ignored by F_GETFL and F_GETPIPE_SZ.
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  splice: {
    parameters: ["i32", "pointer", "i32", "pointer", "usize", "u32"],
    result: "isize",
  },
  // Blocking: for workers, which may block their own thread.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // On a helper thread: the one wait of every libc socket (epoll.ts).
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The name of a libc function in {@linkcode SYMBOLS}. */
export type SymbolName = keyof typeof SYMBOLS;

/** The libc functions sockit calls. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let users = 0;

/**
 * Whether libc can be used here: Linux, with `--allow-ffi` granted.
 *
 * @example Usage
 * ```ts
 * import { ffiAvailable } from "./libc.ts";
 *
 * console.assert(typeof ffiAvailable() === "boolean");
 * ```
 */
export function ffiAvailable(): boolean {
  return Deno.build.os === "linux" &&
    Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

/**
 * The C library, opened by its first user and closed when the last one
 * calls {@linkcode releaseLibc}, so that nothing stays loaded after the
 * sockets that needed it are gone.
 *
 * @example Usage
 * ```ts ignore
 * const c = acquireLibc();
 * const fd = c.socket(C.AF_INET, C.SOCK_DGRAM, 0);
 * c.close(fd);
 * releaseLibc();
 * ```
 */
export function acquireLibc(): Libc {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  users++;
  return library.symbols;
}

/** One user of {@linkcode acquireLibc} is done with it. */
export function releaseLibc(): void {
  if (--users > 0 || !library) return;
  library.close();
  library = undefined;
}

/**
 * Runs `work` with libc at hand (acquired before, released after), or
 * gives `fallback` where libc may not be used.
 *
 * @example Usage
 * ```ts
 * import { withLibc } from "./libc.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeof withLibc((c) => c.getsockname !== undefined, false), "boolean");
 * ```
 */
export function withLibc<T>(work: (c: Libc) => T, fallback: T): T {
  if (!ffiAvailable()) return fallback;
  const c = acquireLibc();
  try {
    return work(c);
  } finally {
    releaseLibc();
  }
}

/**
 * The error of the call that just failed (`errno`), as the Deno error it
 * corresponds to, with the number as `errno`. Read it at once: the next
 * call may change it.
 *
 * @example Usage
 * ```ts ignore
 * if (c.connect(fd, sa, sa.length) < 0) throw lastError(c);
 * ```
 */
export function lastError(c: Libc): Error & { errno: number } {
  const errno = lastErrno(c);
  return Object.assign(errnoError(errno), { errno });
}

/** The error number of the call that just failed. */
export function lastErrno(c: Libc): number {
  const ptr = c.__errno_location();
  return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
}
