/**
 * `splice(2)` in a worker: one direction of a relay moved by the kernel,
 * from one fd to another through a pipe of the worker's own (zero-copy:
 * the bytes never enter user space). The relay (`engine/relay.ts`) starts
 * one when both sides of a direction offer an fd; this module owns the
 * worker and the shared words it is steered and counted by.
 *
 * @module
 */

import type { Constants } from "./constants.ts";
import { spawnWorker, type SymbolTable, workerSource } from "./worker.ts";

/** The libc functions the splice worker calls. */
const SPLICE_SYMBOLS = ["splice", "pipe2", "poll", "fcntl", "close", "__errno_location"] as const;

/**
 * The body of a splice worker: moves bytes from fd `from` to fd `to` with
 * `splice(2)` through a pipe of its own, until end of input, an error, or
 * the main thread says stop. Both fds are used non-blocking
 * (`SPLICE_F_NONBLOCK`, `poll()` in 50 ms slices), so a stop is seen
 * promptly. Self-contained: its source text is the worker script, and it
 * gets the constants and its libc entries as arguments.
 */
function spliceWorker(
  C: Constants,
  symbols: SymbolTable<typeof SPLICE_SYMBOLS[number]>,
): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown): void;
    close(): void;
  };
  scope.onmessage = (event: MessageEvent) => {
    const { from, to, ctrl, counts } = event.data as {
      from: number;
      to: number;
      ctrl: Int32Array; // [0]: 0 run, 1 end at the next pause longer than ctrl[1] ms, 2 stop
      counts: BigInt64Array; // [0]: bytes delivered, [1]: splice calls
    };
    const lib = Deno.dlopen("libc.so.6", symbols);
    const c = lib.symbols;
    const errno = () => {
      const ptr = c.__errno_location();
      return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
    };
    const FLAGS = C.SPLICE_F_MOVE | C.SPLICE_F_NONBLOCK;
    const CHUNK = 1 << 20;
    const pfd = new Uint8Array(8);
    const pv = new DataView(pfd.buffer);
    /** Waits up to `ms` for `fd` to be ready for `events`; true when it is (or hung up). */
    const ready = (fd: number, events: number, ms: number) => {
      pv.setInt32(0, fd, true);
      pv.setInt16(4, events, true);
      pv.setInt16(6, 0, true);
      return c.poll(pfd, 1n, ms) > 0;
    };
    const fds = new Int32Array(2);
    let end: { end: string; op?: string; errno?: number } = { end: "eof" };
    if (c.pipe2(new Uint8Array(fds.buffer), C.O_CLOEXEC) !== 0) {
      end = { end: "error", op: "read", errno: errno() };
    } else {
      const [pr, pw] = fds;
      c.fcntl(pw, C.F_SETPIPE_SZ, CHUNK); // a smaller pipe only means smaller moves
      let inPipe = 0;
      let pausedSince = 0;
      outer: for (;;) {
        if (inPipe === 0) {
          if (Atomics.load(ctrl, 0) === 2) {
            end = { end: "stopped" };
            break;
          }
          const n = Number(c.splice(from, null, pw, null, BigInt(CHUNK), FLAGS));
          if (n > 0) {
            inPipe = n;
            pausedSince = 0;
            Atomics.add(counts, 1, 1n);
          } else if (n === 0) {
            break; // end of input
          } else {
            const e = errno();
            if (e === C.EINTR) continue;
            if (e !== C.EAGAIN) {
              end = { end: "error", op: "read", errno: e };
              break;
            }
            if (Atomics.load(ctrl, 0) === 1) {
              // Told to end once the input pauses: a pause of ctrl[1] ms ends it.
              const now = performance.now();
              pausedSince ||= now;
              const left = Atomics.load(ctrl, 1) - (now - pausedSince);
              if (left <= 0) {
                end = { end: "stopped" };
                break;
              }
              ready(from, C.POLLIN, Math.min(50, Math.ceil(left)));
              continue;
            }
            ready(from, C.POLLIN, 50);
            continue;
          }
        }
        // What was read is delivered, even when told to stop — for at most 250 ms after,
        // as the read-and-write loop drains its writes in flight.
        let stopSeen = 0;
        while (inPipe > 0) {
          const m = Number(c.splice(pr, null, to, null, BigInt(inPipe), FLAGS));
          if (m > 0) {
            inPipe -= m;
            Atomics.add(counts, 0, BigInt(m));
            Atomics.add(counts, 1, 1n);
            continue;
          }
          const e = m < 0 ? errno() : C.EAGAIN;
          if (e === C.EINTR) continue;
          if (e !== C.EAGAIN) {
            end = { end: "error", op: "write", errno: e };
            break outer;
          }
          if (Atomics.load(ctrl, 0) === 2) {
            stopSeen ||= performance.now();
            if (performance.now() - stopSeen > 250) {
              end = { end: "stopped" };
              break outer;
            }
          }
          ready(to, C.POLLOUT, 50);
        }
      }
      c.close(pr);
      c.close(pw);
    }
    lib.close();
    scope.postMessage(end);
    scope.close();
  };
}

let source: string | undefined;

/** How a splice ended: end of input, told to stop, or a failed read or write (errno). */
export type SpliceEnd =
  | { end: "eof" | "stopped" }
  | { end: "error"; op: "read" | "write"; errno: number };

/** A running splice: one direction of a relay moved by the kernel. */
export interface SpliceJob {
  /** Resolves when the worker has stopped moving bytes (and closed its pipe). */
  readonly done: Promise<SpliceEnd>;
  /** Bytes delivered so far. */
  bytes(): number;
  /** `splice(2)` calls so far. */
  calls(): number;
  /** Ends at the next pause in the input longer than `linger` ms (0: the next pause). */
  cancel(linger?: number): void;
  /** Ends as soon as what was read is delivered. */
  stop(): void;
}

/**
 * Moves bytes from fd `from` to fd `to` with `splice(2)` in a worker until
 * end of input, an error or {@linkcode SpliceJob.stop}. Needs `--allow-ffi`
 * (see `ffiAvailable` in `libc.ts`); neither fd is closed.
 *
 * @example Usage
 * ```ts ignore
 * const job = startSplice(0, socketFd);
 * const end = await job.done; // { end: "eof" } at the end of stdin
 * ```
 */
export function startSplice(from: number, to: number): SpliceJob {
  const ctrl = new Int32Array(new SharedArrayBuffer(8));
  const counts = new BigInt64Array(new SharedArrayBuffer(16));
  source ??= workerSource(spliceWorker, SPLICE_SYMBOLS);
  const worker = spawnWorker("sockit-splice", source);
  const done = new Promise<SpliceEnd>((resolve) => {
    worker.onmessage = (event) => {
      resolve(event.data as SpliceEnd);
      worker.terminate();
    };
  });
  worker.postMessage({ from, to, ctrl, counts });
  return {
    done,
    bytes: () => Number(Atomics.load(counts, 0)),
    calls: () => Number(Atomics.load(counts, 1)),
    cancel(linger = 0) {
      if (Atomics.load(ctrl, 0) !== 0) return;
      Atomics.store(ctrl, 1, Math.max(0, Math.round(linger)));
      Atomics.store(ctrl, 0, 1);
    },
    stop: () => Atomics.store(ctrl, 0, 2),
  };
}
