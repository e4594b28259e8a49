/**
 * Standard input and output for the relay, fast and without blocking the
 * event loop.
 *
 * Deno's asynchronous `Deno.stdin.read()` / `Deno.stdout.write()` cost a
 * thread hop per call and reach about half of nc's throughput; the
 * synchronous calls are fast but block the event loop while stdin is idle or
 * stdout is full. Here a worker does the synchronous calls and exchanges the
 * bytes with the main thread through a ring buffer in shared memory, so both
 * directions of a session stay live and a single socket write can carry many
 * pipe reads. The worker comes from a blob URL (it needs no `--allow-read`);
 * it can be started early ({@linkcode StdinReader.prepare}) but reads nothing
 * before the first `read()`.
 *
 * @module
 */

import { rebuildError } from "../base/errors.ts";
import { C, type Constants } from "../sys/constants.ts";
import { withLibc } from "../sys/libc.ts";
import { spawnWorker, type ThreadWorker, workerSource } from "../sys/worker.ts";

/** A source of bytes (like `Deno.Reader`). */
export interface ByteReader {
  /** Reads into `p`; resolves to the count read, or `null` at end of input. */
  read(p: Uint8Array): Promise<number | null>;
}

/** A sink of bytes (like `Deno.Writer`). */
export interface ByteWriter {
  /** Writes from `p`; resolves to the count written (maybe fewer than `p.length`). */
  write(p: Uint8Array): Promise<number>;
}

/** The payload input of a command: stdin in the CLI. One reader at a time. */
export interface Input extends ByteReader {
  /**
   * Stops reading once the input pauses. Bytes already read are still
   * returned; with `linger` > 0, so are bytes that arrive within `linger` ms
   * of the previous ones; then `read()` resolves to `null` (a pending
   * `read()` too).
   */
  cancel(linger?: number): void;
  /** Gets ready to read before the first `read()` (without reading ahead). */
  prepare?(): void;
  /**
   * Reads one chunk as the producer delivered it (one `read(2)` of stdin,
   * with a buffer of `max` bytes), for datagrams: what the producer wrote at
   * once is one datagram, and more than `max` bytes come as several. `null`
   * at end of input.
   */
  readRecord?(max: number): Promise<Uint8Array | null>;
  /**
   * The fd to `splice(2)` the input from, if it may be (a pipe, nothing read
   * yet, libc usable); taking it means `read()` is not used any more.
   */
  spliceFd?(): number | undefined;
}

/** The payload output of a command: stdout in the CLI. */
export interface Output extends ByteWriter {
  /** Resolves once everything written so far has reached its destination. */
  flush(): Promise<void>;
  /** Gets ready to write before the first `write()`. */
  prepare?(): void;
  /** The fd to `splice(2)` output into, if it may be (a pipe, libc usable); flush first. */
  spliceFd?(): number | undefined;
}

// Layout of the control block shared with the worker: int32 words, then the
// text of an error (JSON {name, message}) from byte ERROR_TEXT on.
const HEAD = 0; // bytes produced (wrapping int32)
const TAIL = 1; // bytes consumed (wrapping int32)
const STATE = 2; // 0 open, 1 end of input, 2 failed (error text written first)
const TO_MAIN = 3; // bumped by the worker after every change
const TO_WORKER = 4; // bumped by the main thread after every change
const GO = 5; // stdin: 0 until the first read() asks for data
const ERROR_LENGTH = 6; // bytes of error text
const ERROR_TEXT = 64;
const CONTROL_BYTES = 512;
const ENDED = 1;
const FAILED = 2;

/** Size of each ring; a power of two. */
const RING_BYTES = 1 << 20;

/**
 * The worker's body. It runs in the worker, so it only uses what it is sent:
 * the function's source text becomes the worker script, called with the
 * constants of `sys/constants.ts` (word indexes are written as numbers for
 * that reason; see the layout above).
 */
function ringWorker(C: Constants): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown, transfer?: Transferable[]): void;
    close(): void;
  };
  scope.onmessage = (event: MessageEvent) => {
    const { data, control, role, recordSize } = event.data as {
      data: SharedArrayBuffer;
      control: SharedArrayBuffer;
      role: "stdin" | "stdout" | "records";
      recordSize: number;
    };
    const ctrl = new Int32Array(control);
    const bytes = new Uint8Array(control);
    const buf = new Uint8Array(data);
    const size = buf.length;
    const wakeMain = () => {
      Atomics.add(ctrl, 3, 1);
      Atomics.notify(ctrl, 3);
    };
    const fail = (err: unknown) => {
      // The text first, then the state: the main thread reads both at once.
      const text = new TextEncoder().encode(
        JSON.stringify({ name: (err as Error)?.name, message: (err as Error)?.message }),
      ).subarray(0, 512 - 64);
      bytes.set(text, 64);
      Atomics.store(ctrl, 6, text.length);
      Atomics.store(ctrl, 2, 2);
      wakeMain();
    };
    const eagain = `os error ${C.EAGAIN})`;
    const wouldBlock = (err: unknown) =>
      (err as Error)?.name === "WouldBlock" || String((err as Error)?.message).includes(eagain);
    if (role === "records") {
      // One message per read(2); at most 64 unconsumed (word 0 counts them).
      for (;;) {
        const outstanding = Atomics.load(ctrl, 0);
        if (outstanding >= 64) {
          Atomics.wait(ctrl, 0, outstanding);
          continue;
        }
        const chunk = new Uint8Array(recordSize);
        let n: number | null;
        try {
          n = Deno.stdin.readSync(chunk);
        } catch (err) {
          scope.postMessage({ name: (err as Error)?.name, message: (err as Error)?.message });
          break;
        }
        if (n === null) {
          scope.postMessage({ end: true });
          break;
        }
        Atomics.add(ctrl, 0, 1);
        const record = chunk.slice(0, n);
        scope.postMessage({ record }, [record.buffer]);
      }
    } else if (role === "stdin") {
      while (Atomics.load(ctrl, 5) === 0) Atomics.wait(ctrl, 5, 0);
      for (;;) {
        const head = Atomics.load(ctrl, 0);
        const seq = Atomics.load(ctrl, 4);
        const used = (head - Atomics.load(ctrl, 1)) | 0;
        if (used === size) {
          Atomics.wait(ctrl, 4, seq);
          continue;
        }
        const at = head & (size - 1);
        const room = Math.min(size - used, size - at);
        let n: number | null;
        try {
          n = Deno.stdin.readSync(buf.subarray(at, at + room));
        } catch (err) {
          if (wouldBlock(err)) {
            Atomics.wait(ctrl, 4, seq, 2);
            continue;
          }
          fail(err);
          break;
        }
        if (n === null) {
          Atomics.store(ctrl, 2, 1);
          wakeMain();
          break;
        }
        Atomics.store(ctrl, 0, (head + n) | 0);
        wakeMain();
      }
    } else {
      for (;;) {
        const seq = Atomics.load(ctrl, 4);
        const tail = Atomics.load(ctrl, 1);
        const used = (Atomics.load(ctrl, 0) - tail) | 0;
        if (used === 0) {
          Atomics.wait(ctrl, 4, seq);
          continue;
        }
        const at = tail & (size - 1);
        let n: number;
        try {
          n = Deno.stdout.writeSync(buf.subarray(at, at + Math.min(used, size - at)));
        } catch (err) {
          if (wouldBlock(err)) {
            // A non-blocking stdout that is full: wait a little, try again.
            Atomics.wait(ctrl, 4, seq, 2);
            continue;
          }
          fail(err);
          break;
        }
        Atomics.store(ctrl, 1, (tail + n) | 0);
        wakeMain();
      }
    }
    scope.close();
  };
}

let ringSource: string | undefined;

/** Starts a stdio worker (the synchronous reads and writes of fd 0 and 1), named `name`. */
function startRingWorker(name: string): ThreadWorker {
  ringSource ??= workerSource(ringWorker);
  return spawnWorker(name, ringSource);
}

interface Ring {
  buf: Uint8Array;
  ctrl: Int32Array;
  control: Uint8Array;
  worker: ThreadWorker;
}

/** How big sockit makes a stdin or stdout pipe (Linux's default is 64 KiB). */
export const PIPE_BYTES = 1 << 20;

/**
 * Makes fd `fd` hold {@linkcode PIPE_BYTES} if it is a pipe smaller than
 * that and libc may be used (`--allow-ffi`): fewer, larger reads and writes,
 * and fewer wake-ups of the thread on the other side. The pipe is shared with
 * the process at its other end, which sees the larger size too. A pipe that
 * cannot grow (the per-user limit of `/proc/sys/fs/pipe-user-pages-soft`) is
 * left as it is.
 */
function enlargePipe(fd: 0 | 1): void {
  withLibc((c) => {
    const size = c.fcntl(fd, C.F_GETPIPE_SZ, 0);
    if (size > 0 && size < PIPE_BYTES) c.fcntl(fd, C.F_SETPIPE_SZ, PIPE_BYTES);
  }, undefined);
}

function startRing(role: "stdin" | "stdout"): Ring {
  enlargePipe(role === "stdin" ? 0 : 1);
  const data = new SharedArrayBuffer(RING_BYTES);
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  const worker = startRingWorker(`sockit-${role}`);
  worker.postMessage({ data, control, role });
  return {
    buf: new Uint8Array(data),
    ctrl: new Int32Array(control),
    control: new Uint8Array(control),
    worker,
  };
}

/** The error the worker hit, rebuilt as the Deno error it was (BrokenPipe, …). */
function ringError(ring: Ring): Error {
  const length = Atomics.load(ring.ctrl, ERROR_LENGTH);
  let name = "";
  let message = "failed";
  try {
    ({ name, message } = JSON.parse(
      new TextDecoder().decode(ring.control.slice(ERROR_TEXT, ERROR_TEXT + length)),
    ));
  } catch {
    // Cut short: keep the generic message.
  }
  return rebuildError(name, message);
}

/** Waits until the worker bumps the wake-up word past `seq`; false on timeout. */
async function waitForWorker(ctrl: Int32Array, seq: number, timeout?: number): Promise<boolean> {
  const result = Atomics.waitAsync(ctrl, TO_MAIN, seq, timeout);
  const outcome = result.async ? await result.value : result.value;
  return outcome !== "timed-out";
}

function wakeWorker(ctrl: Int32Array): void {
  Atomics.add(ctrl, TO_WORKER, 1);
  Atomics.notify(ctrl, TO_WORKER);
}

interface RecordQueue {
  ctrl: Int32Array;
  queue: Array<Uint8Array | Error | null>;
  wake?: () => void;
}

/**
 * Standard input as an {@linkcode Input}, read by a worker into a ring buffer.
 *
 * @example Usage
 * ```ts
 * import { StdinReader } from "./stdio.ts";
 * import assert from "node:assert/strict";
 *
 * const stdin = new StdinReader();
 * // A session that needs no input stops reading before it starts:
 * stdin.cancel();
 * assert.equal(await stdin.read(new Uint8Array(4096)), null);
 * ```
 */
export class StdinReader implements Input {
  #ring?: Ring;
  #records?: RecordQueue;
  #cancelled = false;
  #linger = 0;

  /** Starts the worker now; it reads nothing before the first `read()`. */
  prepare(): void {
    if (!this.#cancelled && !this.#records) this.#ring ??= startRing("stdin");
  }

  /** Reads what the worker has buffered, waiting for it if there is nothing. */
  async read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return 0;
    if (this.#records) throw new Error("stdin is already read chunk by chunk");
    if (this.#cancelled && !this.#ring) return null;
    const ring = this.#ring ??= startRing("stdin");
    const { buf, ctrl } = ring;
    if (Atomics.load(ctrl, GO) === 0) {
      Atomics.store(ctrl, GO, 1);
      Atomics.notify(ctrl, GO);
    }
    for (;;) {
      const seq = Atomics.load(ctrl, TO_MAIN);
      const state = Atomics.load(ctrl, STATE);
      const tail = Atomics.load(ctrl, TAIL);
      const used = (Atomics.load(ctrl, HEAD) - tail) | 0;
      if (used > 0) {
        const at = tail & (buf.length - 1);
        const n = Math.min(used, buf.length - at, p.length);
        p.set(buf.subarray(at, at + n));
        Atomics.store(ctrl, TAIL, (tail + n) | 0);
        wakeWorker(ctrl);
        return n;
      }
      if (state === ENDED) return null;
      if (state === FAILED) throw ringError(ring);
      if (this.#cancelled) {
        // Lingering after a cancel: data that comes soon is still delivered.
        if (this.#linger <= 0 || !(await waitForWorker(ctrl, seq, this.#linger))) return null;
        continue;
      }
      await waitForWorker(ctrl, seq);
    }
  }

  /** Reads one chunk as stdin delivered it (see {@linkcode Input.readRecord}). */
  async readRecord(max: number): Promise<Uint8Array | null> {
    if (this.#ring) throw new Error("stdin is already read as a stream");
    if (this.#cancelled && !this.#records) return null;
    const r = this.#records ??= this.#startRecords(max);
    while (r.queue.length === 0) {
      if (this.#cancelled) return null;
      await new Promise<void>((resolve) => (r.wake = resolve));
    }
    const next = r.queue[0];
    if (next === null) return null;
    r.queue.shift();
    if (next instanceof Error) throw next;
    Atomics.sub(r.ctrl, 0, 1);
    Atomics.notify(r.ctrl, 0);
    return next;
  }

  #startRecords(recordSize: number): RecordQueue {
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const worker = startRingWorker("sockit-stdin-records");
    const r: RecordQueue = { ctrl: new Int32Array(control), queue: [] };
    worker.onmessage = (event: MessageEvent) => {
      const { record, end, name, message } = event.data as {
        record?: Uint8Array;
        end?: boolean;
        name?: string;
        message?: string;
      };
      if (record) r.queue.push(record);
      else if (end) r.queue.push(null);
      else {
        r.queue.push(rebuildError(name, message ?? "stdin failed"), null);
      }
      r.wake?.();
    };
    worker.postMessage({ data: new SharedArrayBuffer(0), control, role: "records", recordSize });
    return r;
  }

  /** fd 0 for `splice(2)` when it is a pipe and nothing was read from it here. */
  spliceFd(): number | undefined {
    if (this.#records || this.#cancelled || !isPipe(0)) return undefined;
    if (this.#ring) {
      if (Atomics.load(this.#ring.ctrl, GO) !== 0) return undefined;
      // Prepared but never asked to read: its worker has read nothing; it is not needed.
      this.#ring.worker.terminate();
      this.#ring = undefined;
    }
    this.#cancelled = true;
    enlargePipe(0);
    return 0;
  }

  /** Stops reading once stdin pauses (see {@linkcode Input.cancel}). */
  cancel(linger = 0): void {
    if (this.#cancelled) {
      this.#linger = Math.min(this.#linger, linger);
    } else {
      this.#cancelled = true;
      this.#linger = linger;
    }
    this.#records?.wake?.();
    if (this.#ring) {
      // Wake a pending read() in this thread.
      Atomics.add(this.#ring.ctrl, TO_MAIN, 1);
      Atomics.notify(this.#ring.ctrl, TO_MAIN);
    }
  }
}

/**
 * Standard output as an {@linkcode Output}, written by a worker from a ring
 * buffer. `write()` resolves once the bytes are in the ring; `flush()` once
 * they are written to fd 1. Concurrent writes are queued, so chunks from
 * several connections never interleave.
 *
 * @example Usage
 * ```ts
 * import { StdoutWriter } from "./stdio.ts";
 *
 * const stdout = new StdoutWriter();
 * await stdout.write(new TextEncoder().encode("hello!\n"));
 * await stdout.close(); // flushes, then stops the worker
 * ```
 */
export class StdoutWriter implements Output {
  #ring?: Ring;
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;

  /** Starts the worker now, so that it is up when the first write comes. */
  prepare(): void {
    this.#ring ??= startRing("stdout");
  }

  /** fd 1 for `splice(2)` when it is a pipe (flush what was written here first). */
  spliceFd(): number | undefined {
    if (!isPipe(1)) return undefined;
    enlargePipe(1);
    return 1;
  }

  /** Copies all of `p` into the ring, waiting for room when it is full. */
  write(p: Uint8Array): Promise<number> {
    const ring = this.#ring ??= startRing("stdout");
    const { buf, ctrl } = ring;
    if (Atomics.load(ctrl, STATE) === FAILED) return Promise.reject(ringError(ring));
    const used = (Atomics.load(ctrl, HEAD) - Atomics.load(ctrl, TAIL)) | 0;
    if (this.#pending === 0 && p.length <= buf.length - used) {
      // Fast path: nobody is queued and it fits, so the copy is whole and in order.
      this.#copyIn(ring, p, p.length);
      return Promise.resolve(p.length);
    }
    this.#pending++;
    const done = this.#queue.then(() => this.#writeAll(ring, p));
    this.#queue = done.catch(() => {}).finally(() => this.#pending--);
    return done;
  }

  /** Copies `count` bytes of `p` into the ring (they fit) and wakes the worker. */
  #copyIn(ring: Ring, p: Uint8Array, count: number): void {
    const { buf, ctrl } = ring;
    let done = 0;
    while (done < count) {
      const head = Atomics.load(ctrl, HEAD);
      const at = head & (buf.length - 1);
      const n = Math.min(buf.length - at, count - done);
      buf.set(p.subarray(done, done + n), at);
      Atomics.store(ctrl, HEAD, (head + n) | 0);
      done += n;
    }
    wakeWorker(ctrl);
  }

  async #writeAll(ring: Ring, p: Uint8Array): Promise<number> {
    const { buf, ctrl } = ring;
    let done = 0;
    while (done < p.length) {
      const seq = Atomics.load(ctrl, TO_MAIN);
      if (Atomics.load(ctrl, STATE) === FAILED) throw ringError(ring);
      const room = buf.length - ((Atomics.load(ctrl, HEAD) - Atomics.load(ctrl, TAIL)) | 0);
      if (room === 0) {
        await waitForWorker(ctrl, seq);
        continue;
      }
      const n = Math.min(room, p.length - done);
      this.#copyIn(ring, p.subarray(done), n);
      done += n;
    }
    return p.length;
  }

  /** Flushes, then stops the worker; writing again starts a new one. */
  async close(): Promise<void> {
    await this.flush();
    this.#ring?.worker.terminate();
    this.#ring = undefined;
  }

  /** Resolves when the worker has written everything to fd 1. */
  async flush(): Promise<void> {
    const ring = this.#ring;
    if (!ring) return;
    await this.#queue;
    const { ctrl } = ring;
    for (;;) {
      const seq = Atomics.load(ctrl, TO_MAIN);
      if (Atomics.load(ctrl, STATE) === FAILED) throw ringError(ring);
      if (Atomics.load(ctrl, HEAD) === Atomics.load(ctrl, TAIL)) return;
      await waitForWorker(ctrl, seq);
    }
  }
}

/**
 * Whether stdout is `/dev/null` open read-write — which is what a process
 * started with stdout closed (`cmd >&-`) has, as Deno, like every Rust
 * program, then opens `/dev/null` read-write on fd 1; but also what
 * Python's `subprocess.DEVNULL` and `1<>/dev/null` give, and nothing tells
 * the two apart. So it is a reason for a note, never for refusing to run.
 * The open mode is read with `fcntl` (with `--allow-ffi`) or from
 * `/proc/self/fdinfo/1` (Deno lets only `--allow-all` read it); `false`
 * where sockit cannot tell.
 *
 * @example Usage
 * ```ts
 * import { stdoutMayBeClosed } from "./stdio.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeof stdoutMayBeClosed(), "boolean");
 * ```
 */
export function stdoutMayBeClosed(): boolean {
  try {
    if (Deno.stdout.isTerminal()) return false;
    const fd1 = describeStdout();
    return fd1?.target === "/dev/null" && fd1.mode === C.O_RDWR;
  } catch {
    return false;
  }
}

/** What fd 1 is (`/proc/self/fd/1`) and how it is open, when sockit may find out. */
function describeStdout(): { target: string; mode: number } | undefined {
  // Through libc, which Deno's file permissions do not cover.
  const viaLibc = withLibc((c) => {
    const flags = c.fcntl(1, C.F_GETFL, 0);
    const buf = new Uint8Array(256);
    const n = Number(c.readlink(new TextEncoder().encode("/proc/self/fd/1\0"), buf, 255n));
    if (flags < 0 || n < 0) return null;
    return { target: new TextDecoder().decode(buf.subarray(0, n)), mode: flags & C.O_ACCMODE };
  }, undefined);
  if (viaLibc !== undefined) return viaLibc ?? undefined;
  // Deno lets only --allow-all read these.
  if (Deno.permissions.querySync({ name: "read" }).state !== "granted") return undefined;
  const flags = /^flags:\s*([0-7]+)/m.exec(Deno.readTextFileSync("/proc/self/fdinfo/1"))?.[1];
  if (flags === undefined) return undefined;
  return { target: Deno.readLinkSync("/proc/self/fd/1"), mode: parseInt(flags, 8) & C.O_ACCMODE };
}

/** Whether fd `fd` is a pipe (and libc may be used to find out). */
export function isPipe(fd: number): boolean {
  return withLibc((c) => c.fcntl(fd, C.F_GETPIPE_SZ, 0) > 0, false);
}
