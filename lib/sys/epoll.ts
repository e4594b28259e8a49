/**
 * The one way sockit waits on a descriptor: one epoll(7) set for every libc
 * socket of the process (connected UDP, raw and ICMP, `unixgram:`,
 * `--source` TCP). A socket that is not ready registers a one-shot wait,
 * and a single `epoll_wait` on a helper thread serves them all. A poll per
 * waiting socket would hold one of Deno's blocking threads each, and a few
 * dozen idle sockets would then delay every other FFI call (measured: 100
 * idle `forward --source` connections made a new one's echo take 1 s).
 *
 * The set exists while someone waits: the first wait opens it (with an
 * eventfd to wake the waiting thread), and when the last wait is over or
 * forgotten the thread returns and the set is closed. A socket that closes
 * takes its descriptor out first ({@linkcode forget}) and awaits what that
 * returns: the helper thread is then off any wait that included it — and
 * gone, when it was the last — so nothing of it outlives the socket.
 *
 * @module
 */

import { acquireLibc, lastErrno, releaseLibc } from "./libc.ts";
import type { Libc } from "./libc.ts";
import { C } from "./constants.ts";
import { errnoError } from "../base/errors.ts";

/** Readiness to wait for: input (or end of input, or an error). */
export const READABLE: number = C.EPOLLIN;
/** Room to write (or a connect finished). */
export const WRITABLE: number = C.EPOLLOUT;

/** `struct epoll_event` is packed (12 bytes) on x86-64, 16 bytes elsewhere. */
const EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const MAX_EVENTS = 64;
/** The eventfd's tag in the set (no socket has this descriptor). */
const WAKE = -1;

interface Waiter {
  resolve: (ready: boolean) => void;
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
/** Those who forgot a descriptor: resolved once the thread is past the wait that had it. */
let forgotten: Array<() => void> = [];

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
  epfd = c.epoll_create1(C.EPOLL_CLOEXEC);
  wakefd = epfd < 0 ? -1 : c.eventfd(0, C.EFD_NONBLOCK | C.EFD_CLOEXEC);
  if (epfd < 0 || wakefd < 0) {
    const err = errnoError(lastErrno(c));
    close();
    throw err;
  }
  c.epoll_ctl(epfd, C.EPOLL_CTL_ADD, wakefd, event(READABLE, WAKE));
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
  const op = entry.registered ? C.EPOLL_CTL_MOD : C.EPOLL_CTL_ADD;
  if (c!.epoll_ctl(epfd, op, fd, event(mask | C.EPOLLRDHUP | C.EPOLLONESHOT, fd)) < 0) {
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

/** Resolves those who forgot a descriptor: the thread is not in a wait that had it. */
function settle(): void {
  const done = forgotten;
  forgotten = [];
  for (const resolve of done) resolve();
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
    // The wait about to start has none of the forgotten descriptors.
    settle();
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
      const failed = (events & (C.EPOLLERR | C.EPOLLHUP)) !== 0;
      for (const [wanted, waiter] of [...entry.waiters]) {
        const ready = wanted === READABLE
          ? (events & (READABLE | C.EPOLLRDHUP)) !== 0
          : (events & WRITABLE) !== 0;
        if (ready || failed) {
          entry.waiters.delete(wanted);
          waiter.resolve(true);
        }
      }
      arm(fd, entry);
    }
  }
  running = undefined;
  close();
  settle();
}

function wake(): void {
  if (c && wakefd >= 0) c.write(wakefd, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
}

/** Options of {@linkcode waitFor}. */
export interface WaitOptions {
  /** Stops waiting: the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Stops waiting after this many ms: the promise resolves to `false`. */
  timeout?: number;
}

/**
 * Resolves to `true` when `fd` is ready for `events` ({@linkcode READABLE}
 * or {@linkcode WRITABLE}), or has failed or hung up (the next call on it
 * then says how); to `false` after `options.timeout` ms. Rejects with
 * `Interrupted` when {@linkcode forget} is called for `fd` meanwhile, and
 * with `signal.reason` when it aborts. One wait per descriptor and
 * direction: a new one takes the place of the previous (which rejects with
 * `Busy`).
 *
 * @example Usage
 * ```ts ignore
 * if (!await waitFor(fd, READABLE, { timeout: 100 })) console.log("nothing yet");
 * ```
 */
export function waitFor(fd: number, events: number, options: WaitOptions = {}): Promise<boolean> {
  const { signal, timeout } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  open();
  let entry = entries.get(fd);
  if (!entry) entries.set(fd, entry = { waiters: new Map(), registered: false });
  const { promise, resolve, reject } = Promise.withResolvers<boolean>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finish = () => {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  };
  const done: Waiter = {
    resolve: (ready) => {
      finish();
      resolve(ready);
    },
    reject: (err) => {
      finish();
      reject(err);
    },
  };
  /** Ends this wait early: out of the entry, and the thread told to look again. */
  const leave = () => {
    if (entry!.waiters.get(events) === done) entry!.waiters.delete(events);
    wake();
  };
  const onAbort = () => {
    leave();
    done.reject(signal!.reason);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  if (timeout !== undefined) {
    timer = setTimeout(() => {
      leave();
      done.resolve(false);
    }, Math.max(0, timeout));
  }
  entry.waiters.get(events)?.reject(new Deno.errors.Busy("another wait took its place"));
  entry.waiters.set(events, done);
  arm(fd, entry);
  running ??= loop();
  return promise;
}

/**
 * Takes `fd` out of the set before it is closed: its waits reject with
 * `Interrupted`, and the helper thread is woken. Resolves once the thread
 * is past any wait that had `fd` (and has returned, when nothing else
 * waits): what a socket's `closed` awaits.
 *
 * @example Usage
 * ```ts ignore
 * const out = forget(fd);
 * c.close(fd);
 * await out;
 * ```
 */
export function forget(fd: number): Promise<void> {
  const entry = entries.get(fd);
  if (!entry) return Promise.resolve();
  entries.delete(fd);
  if (entry.registered && c) c.epoll_ctl(epfd, C.EPOLL_CTL_DEL, fd, event(0, fd));
  for (const w of entry.waiters.values()) {
    w.reject(new Deno.errors.Interrupted("operation canceled"));
  }
  if (!running) return Promise.resolve();
  const { promise, resolve } = Promise.withResolvers<void>();
  forgotten.push(resolve);
  wake();
  return promise;
}
