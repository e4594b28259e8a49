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
 * pipe reads. The worker is started on first use, from a blob URL (it needs
 * no `--allow-read`).
 *
 * @module
 */

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

/** The payload input of a command: stdin in the CLI. */
export interface Input extends ByteReader {
  /**
   * Stops reading: bytes already read are still returned, then `read()`
   * resolves to `null` — also a `read()` that is pending now.
   */
  cancel(): void;
  /** Gets ready to read (and may start reading ahead) before the first `read()`. */
  prepare?(): void;
}

/** The payload output of a command: stdout in the CLI. */
export interface Output extends ByteWriter {
  /** Resolves once everything written so far has reached its destination. */
  flush(): Promise<void>;
  /** Gets ready to write before the first `write()`. */
  prepare?(): void;
}

// Layout of the control words shared with the worker.
const HEAD = 0; // bytes produced (wrapping int32)
const TAIL = 1; // bytes consumed (wrapping int32)
const STATE = 2; // 0 open, 1 end of input / closed, 2 error
const TO_MAIN = 3; // bumped by the worker after every change
const TO_WORKER = 4; // bumped by the main thread after every change
const CONTROL_WORDS = 5;
const ENDED = 1;
const FAILED = 2;

/** Size of each ring; a power of two. */
const RING_BYTES = 1 << 20;

/**
 * The worker's body. It runs in the worker, so it only uses what it is sent:
 * the function's source text becomes the worker script.
 */
function ringWorker(): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown): void;
    close(): void;
  };
  scope.onmessage = (event: MessageEvent) => {
    const { data, control, role } = event.data as {
      data: SharedArrayBuffer;
      control: SharedArrayBuffer;
      role: "stdin" | "stdout";
    };
    const ctrl = new Int32Array(control);
    const buf = new Uint8Array(data);
    const size = buf.length;
    const wakeMain = () => {
      Atomics.add(ctrl, 3, 1);
      Atomics.notify(ctrl, 3);
    };
    const fail = (err: unknown) => {
      scope.postMessage({ name: (err as Error)?.name, message: (err as Error)?.message });
      Atomics.store(ctrl, 2, 2);
      wakeMain();
    };
    if (role === "stdin") {
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
        const state = Atomics.load(ctrl, 2);
        const tail = Atomics.load(ctrl, 1);
        const used = (Atomics.load(ctrl, 0) - tail) | 0;
        if (used === 0) {
          if (state !== 0) break;
          Atomics.wait(ctrl, 4, seq);
          continue;
        }
        const at = tail & (size - 1);
        let n: number;
        try {
          n = Deno.stdout.writeSync(buf.subarray(at, at + Math.min(used, size - at)));
        } catch (err) {
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

let workerUrl: string | undefined;

interface Ring {
  buf: Uint8Array;
  ctrl: Int32Array;
  worker: Worker;
  error?: Error;
}

function startRing(role: "stdin" | "stdout"): Ring {
  workerUrl ??= URL.createObjectURL(
    new Blob([`(${ringWorker.toString()})()`], { type: "text/javascript" }),
  );
  const data = new SharedArrayBuffer(RING_BYTES);
  const control = new SharedArrayBuffer(CONTROL_WORDS * 4);
  const worker = new Worker(workerUrl, { type: "module", name: `sockit-${role}` });
  const ring: Ring = { buf: new Uint8Array(data), ctrl: new Int32Array(control), worker };
  worker.onmessage = (event: MessageEvent) => {
    const { name, message } = event.data as { name?: string; message?: string };
    const Ctor = (Deno.errors as unknown as Record<string, ErrorConstructor>)[name ?? ""] ?? Error;
    ring.error = new Ctor(message ?? `${role} failed`);
  };
  worker.postMessage({ data, control, role });
  return ring;
}

/** Waits until the worker bumps the wake-up word past `seq`. */
async function waitForWorker(ctrl: Int32Array, seq: number): Promise<void> {
  const result = Atomics.waitAsync(ctrl, TO_MAIN, seq);
  if (result.async) await result.value;
}

function wakeWorker(ctrl: Int32Array): void {
  Atomics.add(ctrl, TO_WORKER, 1);
  Atomics.notify(ctrl, TO_WORKER);
}

function ringError(ring: Ring, role: string): Error {
  return ring.error ?? new Error(`${role} failed`);
}

/**
 * Standard input as an {@linkcode Input}, read by a worker into a ring buffer.
 *
 * @example Usage
 * ```ts ignore
 * import { StdinReader } from "./stdio.ts";
 *
 * const stdin = new StdinReader();
 * const buf = new Uint8Array(4096);
 * const n = await stdin.read(buf); // null at end of input
 * ```
 */
export class StdinReader implements Input {
  #ring?: Ring;
  #cancelled = false;

  /** Starts the worker now, so that it is up when the first read comes. */
  prepare(): void {
    if (!this.#cancelled) this.#ring ??= startRing("stdin");
  }

  /** Reads what the worker has buffered, waiting for it if there is nothing. */
  async read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return 0;
    if (this.#cancelled && !this.#ring) return null;
    const ring = this.#ring ??= startRing("stdin");
    const { buf, ctrl } = ring;
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
      if (state === ENDED || this.#cancelled) return null;
      if (state === FAILED) throw ringError(ring, "stdin");
      await waitForWorker(ctrl, seq);
    }
  }

  /** Stops reading: buffered bytes are still returned, then end of input. */
  cancel(): void {
    this.#cancelled = true;
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
 * they are written to fd 1.
 *
 * @example Usage
 * ```ts ignore
 * import { StdoutWriter } from "./stdio.ts";
 *
 * const stdout = new StdoutWriter();
 * await stdout.write(new TextEncoder().encode("hello!\n"));
 * await stdout.flush();
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

  /**
   * Copies all of `p` into the ring, waiting for room when it is full.
   * Concurrent writes are queued, so chunks from several connections never
   * interleave.
   */
  write(p: Uint8Array): Promise<number> {
    const ring = this.#ring ??= startRing("stdout");
    const { buf, ctrl } = ring;
    if (Atomics.load(ctrl, STATE) === FAILED) return Promise.reject(ringError(ring, "stdout"));
    const used = (Atomics.load(ctrl, HEAD) - Atomics.load(ctrl, TAIL)) | 0;
    if (this.#pending === 0 && p.length <= buf.length - used) {
      // Fast path: nobody is queued and it fits, so the copy is whole and in order.
      this.#copyIn(ring, p);
      return Promise.resolve(p.length);
    }
    this.#pending++;
    const done = this.#queue.then(() => this.#writeAll(ring, p));
    this.#queue = done.catch(() => {}).finally(() => this.#pending--);
    return done;
  }

  #copyIn(ring: Ring, p: Uint8Array): void {
    const { buf, ctrl } = ring;
    let done = 0;
    while (done < p.length) {
      const head = Atomics.load(ctrl, HEAD);
      const at = head & (buf.length - 1);
      const n = Math.min(buf.length - at, p.length - done);
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
      if (Atomics.load(ctrl, STATE) === FAILED) throw ringError(ring, "stdout");
      const head = Atomics.load(ctrl, HEAD);
      const used = (head - Atomics.load(ctrl, TAIL)) | 0;
      if (used === buf.length) {
        await waitForWorker(ctrl, seq);
        continue;
      }
      const at = head & (buf.length - 1);
      const n = Math.min(buf.length - used, buf.length - at, p.length - done);
      buf.set(p.subarray(done, done + n), at);
      Atomics.store(ctrl, HEAD, (head + n) | 0);
      wakeWorker(ctrl);
      done += n;
    }
    return p.length;
  }

  /** Resolves when the worker has written everything to fd 1. */
  async flush(): Promise<void> {
    const ring = this.#ring;
    if (!ring) return;
    const { ctrl } = ring;
    for (;;) {
      const seq = Atomics.load(ctrl, TO_MAIN);
      if (Atomics.load(ctrl, STATE) === FAILED) throw ringError(ring, "stdout");
      if (Atomics.load(ctrl, HEAD) === Atomics.load(ctrl, TAIL)) return;
      await waitForWorker(ctrl, seq);
    }
  }
}
