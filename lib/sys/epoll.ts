/**
 * One epoll(7) set for every libc stream socket of the process
 * (`tcp_libc.ts`): a socket that is not ready registers a one-shot wait,
 * and a single `epoll_wait` on a helper thread serves them all. A poll per
 * waiting socket would hold one of Deno's blocking threads each, and a few
 * dozen idle connections would then delay every other FFI call (measured:
 * 100 idle `forward --source` connections made a new one's echo take 1 s).
 *
 * The set exists while someone waits: the first wait opens it (with an
 * eventfd to wake the waiting thread), and when the last wait is over or
 * forgotten the thread returns and the set is closed.
 *
 * @module
 */

import { acquireLibc, lastErrno, releaseLibc } from "./libc.ts";
import type { Libc } from "./libc.ts";
import { errnoError } from "../base/errors.ts";

/** Readiness to wait for. */
export const READABLE = 0x1; // EPOLLIN
/** Room to write (or a connect finished). */
export const WRITABLE = 0x4; // EPOLLOUT

const EPOLLERR = 0x8;
const EPOLLHUP = 0x10;
const EPOLLRDHUP = 0x2000;
const EPOLLONESHOT = 1 << 30;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
/** `struct epoll_event` is packed (12 bytes) on x86-64, 16 bytes elsewhere. */
const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const MAX_EVENTS = 64;
/** The eventfd's tag in the set (no socket has this descriptor). */
const WAKE = -1;

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Entry {
  waiters: Map<number, Waiter>;
  registered: boolean;
}

let c: Libc | undefined;
let epfd = -1;
let wakefd = -1;
let running: Promise<void> | undefined;
const entries = new Map<number, Entry>();

function event(events: number, fd: number): Uint8Array {
  const buf = new Uint8Array(EVENT_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, events >>> 0, true);
  view.setBigInt64(4, BigInt(fd), true);
  return buf;
}

function open(): Libc {
  if (c) return c;
  c = acquireLibc();
  epfd = c.epoll_create1(CLOEXEC);
  wakefd = epfd < 0 ? -1 : c.eventfd(0, EFD_NONBLOCK | CLOEXEC);
  if (epfd < 0 || wakefd < 0) {
    const err = errnoError(lastErrno(c));
    close();
    throw err;
  }
  c.epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, event(READABLE, WAKE));
  return c;
}

function close(): void {
  if (!c) return;
  if (wakefd >= 0) c.close(wakefd);
  if (epfd >= 0) c.close(epfd);
  epfd = wakefd = -1;
  c = undefined;
  // A new set knows none of them.
  for (const entry of entries.values()) entry.registered = false;
  releaseLibc();
}

/** Arms `fd` for what its waiters still wait for (one shot). */
function arm(fd: number, entry: Entry): void {
  let mask = 0;
  for (const events of entry.waiters.keys()) mask |= events;
  if (mask === 0) return;
  const op = entry.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (c!.epoll_ctl(epfd, op, fd, event(mask | EPOLLRDHUP | EPOLLONESHOT, fd)) < 0) {
    const err = errnoError(lastErrno(c!));
    for (const w of entry.waiters.values()) w.reject(err);
    entry.waiters.clear();
    return;
  }
  entry.registered = true;
}

function pending(): boolean {
  for (const entry of entries.values()) if (entry.waiters.size) return true;
  return false;
}

async function loop(): Promise<void> {
  const buf = new Uint8Array(EVENT_SIZE * MAX_EVENTS);
  const view = new DataView(buf.buffer);
  const drain = new Uint8Array(8);
  for (;;) {
    if (!pending()) {
      // Those just woken may wait again at once (read, EAGAIN, wait): let them first.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (!pending()) break;
    }
    const n = await c!.epoll_wait(epfd, buf, MAX_EVENTS, -1);
    for (let i = 0; i < n; i++) {
      const events = view.getUint32(i * EVENT_SIZE, true);
      const fd = Number(view.getBigInt64(i * EVENT_SIZE + 4, true));
      if (fd === WAKE) {
        c!.read(wakefd, drain, 8n);
        continue;
      }
      const entry = entries.get(fd);
      if (!entry) continue;
      const failed = (events & (EPOLLERR | EPOLLHUP)) !== 0;
      for (const [wanted, waiter] of [...entry.waiters]) {
        const ready = wanted === READABLE
          ? (events & (READABLE | EPOLLRDHUP)) !== 0
          : (events & WRITABLE) !== 0;
        if (ready || failed) {
          entry.waiters.delete(wanted);
          waiter.resolve();
        }
      }
      arm(fd, entry);
    }
  }
  running = undefined;
  close();
}

function wake(): void {
  if (c && wakefd >= 0) c.write(wakefd, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
}

/**
 * Resolves when `fd` is ready for `events` ({@linkcode READABLE} or
 * {@linkcode WRITABLE}), or has failed or hung up (the next call on it then
 * says how). Rejects with `Interrupted` when {@linkcode forget} is called
 * for `fd` meanwhile, and with `signal.reason` when it aborts.
 *
 * @example Usage
 * ```ts ignore
 * await waitFor(fd, READABLE);
 * ```
 */
export function waitFor(fd: number, events: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  open();
  let entry = entries.get(fd);
  if (!entry) entries.set(fd, entry = { waiters: new Map(), registered: false });
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const onAbort = () => {
    if (entry!.waiters.get(events)?.reject === done.reject) entry!.waiters.delete(events);
    done.reject(signal!.reason);
    wake();
  };
  const done: Waiter = {
    resolve: () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    },
    reject: (err) => {
      signal?.removeEventListener("abort", onAbort);
      reject(err);
    },
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  entry.waiters.get(events)?.reject(new Deno.errors.Busy("another wait took its place"));
  entry.waiters.set(events, done);
  arm(fd, entry);
  running ??= loop();
  return promise;
}

/**
 * Takes `fd` out of the set before it is closed: its waits reject with
 * `Interrupted`, and the helper thread is woken (so that it returns when
 * nothing else waits).
 *
 * @example Usage
 * ```ts ignore
 * forget(fd);
 * c.close(fd);
 * ```
 */
export function forget(fd: number): void {
  const entry = entries.get(fd);
  if (!entry) return;
  entries.delete(fd);
  if (entry.registered && c) c.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, event(0, fd));
  for (const w of entry.waiters.values()) {
    w.reject(new Deno.errors.Interrupted("operation canceled"));
  }
  wake();
}

/**
 * Resolves once the helper thread has returned (nothing waits any more):
 * what a test awaits before its resource checks.
 *
 * @example Usage
 * ```ts
 * import { idle } from "./epoll.ts";
 *
 * await idle(); // nothing waits here: at once
 * ```
 */
export function idle(): Promise<void> {
  return running ?? Promise.resolve();
}
