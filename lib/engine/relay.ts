/**
 * The one copy loop. Every command opens two endpoints and relays between
 * them; this is the only place bytes are copied — streams and datagrams
 * alike (a datagram side reads one datagram per `read()` and sends one per
 * `write()`).
 *
 * Each direction is a pump that reads into a reused buffer with `read()` and
 * writes all of it with `write()` before reading again, so nothing read is
 * lost. The buffer starts small (idle connections stay cheap) and doubles
 * while reads fill it, up to 256 KiB. At end of input a pump shuts down the
 * write side of the other end (`closeWrite()`); the relay ends when both
 * directions have ended, or — for sessions bridged to stdin/stdout — when the
 * peer's side ends. `conn.readable` is not used: it closes the whole socket
 * at EOF.
 *
 * @module
 */

import { errnoError, TimeoutError } from "../base/errors.ts";
import { type SpliceEnd, type SpliceJob, startSplice } from "../sys/splice.ts";
import { formatDuration } from "../base/format.ts";
import type { LayerEnd } from "./events.ts";

/** A duplex byte stream: a connection, or stdin/stdout together. */
export interface Duplex {
  /** Reads into `p`; resolves to the count, or `null` at end of input. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; resolves to the count written (maybe fewer). */
  write(p: Uint8Array): Promise<number>;
  /** Ends the write side (`shutdown(SHUT_WR)`, or flushing stdout). */
  closeWrite(): Promise<void>;
  /** Releases the stream. Must be safe to call more than once. */
  close(): void;
  /**
   * Makes a pending and every later `read()` end without closing the stream:
   * bytes already buffered are still delivered, and with `linger` > 0 so are
   * bytes that keep arriving less than `linger` ms apart. Streams without it
   * are closed instead when the relay must stop reading them.
   */
  cancelRead?(linger?: number): void;
  /** A name for messages, e.g. `127.0.0.1:8888` or `stdio`. */
  readonly label?: string;
  /**
   * Read with a buffer of exactly this many bytes (a datagram side needs
   * room for the largest datagram; a record source one byte more than the
   * largest record). Without it the buffer starts small and grows.
   */
  readonly readSize?: number;
  /**
   * Each read is one datagram: an empty one (0 bytes) is still one, passed
   * on as an empty write; "no data" is "no datagram" in messages.
   */
  readonly datagrams?: boolean;
  /**
   * Each read is a piece of a message (a frame's payload, as it
   * came): a read of 0 bytes is still one — an empty frame that ends a
   * message, or an empty message — and is passed on as an empty write to a
   * side that takes messages too (to a byte stream it is nothing).
   */
  readonly messages?: boolean;
  /** Resolves once the side is fully released after `close()` (a read in flight has returned). */
  readonly released?: Promise<void>;
  /**
   * An fd that `splice(2)` may read this side's input from, when it may
   * (taking it means `read()` is not used any more).
   */
  spliceFrom?(): number | undefined;
  /** An fd that `splice(2)` may write this side's output to, once what was written is out. */
  spliceTo?(): Promise<number | undefined>;
  /**
   * What the layer this side runs over (TLS, …) says of how it
   * ended, once the relay is done: the `closed` event carries it. The
   * relay itself never asks.
   */
  endInfo?(): LayerEnd | undefined;
}

/** Bytes a direction moves through the read/write loop before a `"bulk"` splice may take over. */
export const SPLICE_AFTER = 4 << 20;

/** Directions spliced at once for `"bulk"` relays, over the whole process. */
export const MAX_SPLICES = 16;

let bulkSplices = 0;

/** Which way bytes move: `0` from `a` to `b`, `1` from `b` to `a`. */
export type Direction = 0 | 1;

/** Options of {@linkcode Relay}. */
export interface RelayOptions {
  /**
   * Stops the relay: no more reads, writes in flight may finish for
   * `drainTimeout` ms, then both sides close and the relay rejects with
   * `signal.reason`.
   */
  signal?: AbortSignal;
  /** How long writes in flight may take after `signal` aborts (default 250 ms). */
  drainTimeout?: number;
  /** Fails with a {@linkcode TimeoutError} after this many ms without data either way. */
  idleTimeout?: number;
  /**
   * When this side reaches end of input (and all it sent is written), the
   * relay ends: the other direction stops reading once its input pauses for
   * `linger` ms, delivers what it read, and ends too. A stream session
   * bridged to stdin/stdout uses `"a"` with the connection as `a`; `connect
   * udp://` uses `"b"` (the input ending starts the wait for replies). See
   * "Sessions, half-close, and how they end" in the README. Default: each
   * direction ends on its own and the relay ends when both have.
   */
  endOnEof?: "a" | "b";
  /** With `endOnEof`: how long a pause in the other side's input ends it (default 0). */
  linger?: number;
  /**
   * Whether end of input is passed on as `closeWrite()` of the other side,
   * per direction: `[a→b, b→a]`. Default `[true, true]` (half-close).
   */
  halfClose?: [boolean, boolean];
  /** First buffer size in bytes (default 4 KiB); doubles up to `maxBufferSize`. */
  bufferSize?: number;
  /** Largest buffer size in bytes (default 256 KiB). */
  maxBufferSize?: number;
  /** Sees each chunk after it has been written to the other side. */
  onChunk?: (direction: Direction, chunk: Uint8Array) => void;
  /**
   * Let the kernel move a direction with `splice(2)` when both sides offer an fd
   * and there is no `onChunk`: `true` from the start (one session); `"bulk"`
   * once a direction has moved {@linkcode SPLICE_AFTER} bytes, and while fewer
   * than {@linkcode MAX_SPLICES} directions are spliced in the process (a
   * server's connections: each costs a worker thread, worth it only for bulk).
   * Default: never.
   */
  splice?: boolean | "bulk";
  /**
   * Told when a direction was moved by `splice(2)` rather than read and
   * written here (both sides offered an fd and there is no `onChunk`), once
   * it has ended: bytes and calls.
   */
  onSplice?: (direction: Direction, moved: { bytes: number; calls: number }) => void;
}

/** Where a relay failed: the side and the operation. */
export class RelayError extends Error {
  /** Creates a relay error wrapping `cause`. */
  constructor(
    /** The side whose operation failed. */
    readonly side: "a" | "b",
    /** `read`, `write` or `closeWrite`. */
    readonly op: "read" | "write" | "closeWrite",
    cause: unknown,
    /** For a failed write: the bytes read from the other side that it did not take. */
    readonly undelivered = 0,
  ) {
    super(`${op} ${side}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = "RelayError";
  }
}

const DEFAULT_BUFFER = 4 * 1024;

/** Closes a stream that may already be closed. */
function closeQuietly(side: Duplex): void {
  try {
    side.close();
  } catch {
    // Already closed: nothing to release.
  }
}
const MAX_BUFFER = 256 * 1024;

/**
 * Relays bytes between two duplex streams until both directions end, with
 * half-close, byte counters, an idle timeout and cancellation. The relay owns
 * both streams: it closes them when it ends.
 *
 * @example Usage
 * ```ts
 * import { Relay } from "./relay.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * listener.close();
 * // An echo server: the relay copies the connection into itself.
 * const echo = new Relay(server, server, { endOnEof: "a", halfClose: [true, false] });
 * const done = echo.run();
 * await client.write(new TextEncoder().encode("ping"));
 * await client.closeWrite();
 * const buf = new Uint8Array(16);
 * const n = await client.read(buf);
 * assert.deepEqual(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "ping");
 * await done;
 * client.close();
 * ```
 */
export class Relay {
  /** Bytes moved from `a` to `b` and from `b` to `a`. */
  readonly bytes: [number, number] = [0, 0];
  /** When the relay started (`performance.now()`). */
  readonly startedAt: number = performance.now();
  #a: Duplex;
  #b: Duplex;
  #options: RelayOptions;
  #error: unknown = undefined;
  #stopping = false;
  #draining = false;
  #writing = 0;
  #drainTimer?: ReturnType<typeof setTimeout>;
  #settleTimer?: ReturnType<typeof setTimeout>;
  /** Directions being moved by splice(2), by the side they read from. */
  #jobs = new Map<Duplex, SpliceJob>();
  #lastActivity = performance.now();

  /** Prepares a relay between `a` and `b`; {@linkcode Relay.run} starts it. */
  constructor(a: Duplex, b: Duplex, options: RelayOptions = {}) {
    this.#a = a;
    this.#b = b;
    this.#options = options;
  }

  /** Milliseconds since the relay started. */
  get elapsed(): number {
    return performance.now() - this.startedAt;
  }

  /**
   * Runs until the relay ends. Resolves on a clean end; rejects with the
   * first {@linkcode RelayError}, a {@linkcode TimeoutError} for the idle
   * timeout, or the abort reason of `signal`. Both streams are closed either way.
   */
  async run(): Promise<void> {
    const { signal, idleTimeout, endOnEof } = this.#options;
    const onAbort = () => this.#drain(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    if (idleTimeout !== undefined && idleTimeout > 0) {
      const check = () => {
        const idle = performance.now() - this.#lastActivity;
        if (idle >= idleTimeout) {
          this.#fail(
            new TimeoutError(
              this.#a.datagrams
                ? `no datagram for ${formatDuration(idleTimeout)}`
                : `no data for ${idleTimeout} ms`,
              {
                op: "idle timeout",
                address: this.#a.label,
              },
            ),
          );
        } else idleTimer = setTimeout(check, idleTimeout - idle + 1);
      };
      idleTimer = setTimeout(check, idleTimeout);
    }
    const single = this.#a === this.#b;
    try {
      if (signal?.aborted) throw signal.reason;
      const ab = this.#pump(0).then(() => {
        if (endOnEof === "a" && !single) this.#stopReading(this.#b);
      });
      const ba = single ? Promise.resolve() : this.#pump(1).then(() => {
        if (endOnEof === "b") this.#stopReading(this.#a);
      });
      await Promise.allSettled([ab, ba]);
      if (this.#error !== undefined) throw this.#error;
    } finally {
      clearTimeout(idleTimer);
      clearTimeout(this.#drainTimer);
      clearTimeout(this.#settleTimer);
      signal?.removeEventListener("abort", onAbort);
      this.#stopping = true;
      for (const job of this.#jobs.values()) job.stop();
      await Promise.all([...this.#jobs.values()].map((job) => job.done));
      closeQuietly(this.#a);
      if (!single) closeQuietly(this.#b);
      // A side may still be finishing a read on another thread: the relay ends after it.
      await Promise.all([this.#a.released, this.#b.released]);
    }
  }

  /** Stops reading `side` once the relay is ending. */
  #stopReading(side: Duplex): void {
    this.#jobs.get(side)?.cancel(this.#options.linger ?? 0);
    if (side.cancelRead) side.cancelRead(this.#options.linger ?? 0);
    else {
      this.#stopping = true;
      closeQuietly(side);
    }
  }

  /**
   * Stops reading; writes in flight finish (for at most `drainTimeout` ms),
   * then both sides close. The relay then rejects with `reason`.
   */
  #drain(reason: unknown): void {
    if (this.#error !== undefined || this.#stopping) return;
    this.#error = reason;
    this.#draining = true;
    this.#a.cancelRead?.();
    this.#b.cancelRead?.();
    for (const job of this.#jobs.values()) job.stop();
    this.#drainTimer = setTimeout(() => this.#closeBoth(), this.#options.drainTimeout ?? 250);
    // A read may have completed just now, its chunk not yet handed to write (the abort came
    // first in the same turn: an --expect matching the reply to a send that was just read).
    // One turn later it is in flight, and the pump closes both sides once it is written.
    this.#settleTimer = setTimeout(() => {
      if (this.#writing === 0) this.#closeBoth();
    }, 0);
  }

  #closeBoth(): void {
    clearTimeout(this.#drainTimer);
    clearTimeout(this.#settleTimer);
    this.#stopping = true;
    this.#closeSides();
  }

  /** Closes both sides — once no splice worker is using their fds any more. */
  #closeSides(): void {
    const sides = this.#a === this.#b ? [this.#a] : [this.#a, this.#b];
    if (this.#jobs.size === 0) {
      for (const side of sides) closeQuietly(side);
      return;
    }
    for (const job of this.#jobs.values()) job.stop();
    Promise.all([...this.#jobs.values()].map((job) => job.done)).then(() => {
      for (const side of sides) closeQuietly(side);
    });
  }

  /** The fds to splice from `src` to `dst`, when both offer one and the relay goes on. */
  async #spliceFds(src: Duplex, dst: Duplex): Promise<[number, number] | undefined> {
    const to = await dst.spliceTo!();
    if (to === undefined || this.#stopping || this.#draining) return undefined;
    const from = src.spliceFrom!();
    return from === undefined ? undefined : [from, to];
  }

  /** One direction moved by the kernel: counted while it runs, ended as the read loop ends. */
  async #splice(
    direction: Direction,
    src: Duplex,
    dst: Duplex,
    job: SpliceJob,
    base = 0,
  ): Promise<void> {
    const side = direction === 0 ? "a" : "b";
    const other = direction === 0 ? "b" : "a";
    this.#jobs.set(src, job);
    const count = () => {
      const moved = base + job.bytes();
      if (moved !== this.bytes[direction]) {
        this.bytes[direction] = moved;
        this.#lastActivity = performance.now();
      }
    };
    const ticker = setInterval(count, 100);
    let end: SpliceEnd;
    try {
      end = await job.done;
    } finally {
      clearInterval(ticker);
      count();
      this.#jobs.delete(src);
      this.#options.onSplice?.(direction, { bytes: job.bytes(), calls: job.calls() });
    }
    if (end.end === "error") {
      const which = end.op === "read" ? side : other;
      if (!this.#stopping) this.#fail(new RelayError(which, end.op, errnoError(end.errno)));
      return;
    }
    if (this.#draining) {
      if (this.#writing === 0 && this.#jobs.size === 0) this.#closeBoth();
      return;
    }
    if (this.#stopping || !(this.#options.halfClose?.[direction] ?? true)) return;
    try {
      await dst.closeWrite();
    } catch (err) {
      if (!this.#stopping) this.#fail(new RelayError(other, "closeWrite", err));
    }
  }

  /** Records the first failure and unblocks both directions. */
  #fail(error: unknown): void {
    if (this.#error !== undefined || this.#stopping) return;
    this.#error = error;
    this.#stopping = true;
    for (const side of this.#a === this.#b ? [this.#a] : [this.#a, this.#b]) side.cancelRead?.();
    this.#closeSides();
  }

  async #pump(direction: Direction): Promise<void> {
    const src = direction === 0 ? this.#a : this.#b;
    const dst = direction === 0 ? this.#b : this.#a;
    const side = direction === 0 ? "a" : "b";
    const other = direction === 0 ? "b" : "a";
    const max = this.#options.maxBufferSize ?? MAX_BUFFER;
    const onChunk = this.#options.onChunk;
    const counted = this.#options.idleTimeout !== undefined;
    const fixed = src.readSize;
    const spliceable = !onChunk && !src.datagrams && !dst.datagrams && !!src.spliceFrom &&
      !!dst.spliceTo;
    if (spliceable && this.#options.splice === true) {
      const fds = await this.#spliceFds(src, dst);
      if (fds) return await this.#splice(direction, src, dst, startSplice(...fds));
    }
    // "bulk": asked once, when the direction has moved enough (not on every chunk after).
    let bulk = spliceable && this.#options.splice === "bulk";
    let buf = new Uint8Array(fixed ?? Math.min(this.#options.bufferSize ?? DEFAULT_BUFFER, max));
    for (;;) {
      let n: number | null;
      try {
        n = await src.read(buf);
      } catch (err) {
        if (!this.#stopping) this.#fail(new RelayError(side, "read", err));
        return;
      }
      if (n === null) break;
      // An empty read is an event only where it is a datagram, or a message's end between messages.
      if (n === 0 && !src.datagrams && !(src.messages && dst.messages)) continue;
      if (counted) this.#lastActivity = performance.now();
      const chunk = n === buf.length ? buf : buf.subarray(0, n);
      this.#writing++;
      let written = 0;
      try {
        written = await dst.write(chunk);
        while (written < n) written += await dst.write(chunk.subarray(written));
      } catch (err) {
        if (!this.#stopping) this.#fail(new RelayError(other, "write", err, n - written));
        return;
      } finally {
        this.#writing--;
      }
      this.bytes[direction] += n;
      if (counted) this.#lastActivity = performance.now();
      if (onChunk) {
        try {
          onChunk(direction, chunk);
        } catch (err) {
          // A tap that fails ends the relay with its error rather than silently.
          if (!this.#stopping) this.#fail(err);
          return;
        }
      }
      if (this.#draining) {
        // Stopping: what was read is delivered; nothing more is read.
        if (this.#writing === 0) this.#closeBoth();
        return;
      }
      if (bulk && this.bytes[direction] >= SPLICE_AFTER && bulkSplices < MAX_SPLICES) {
        // A bulk transfer: the kernel takes over from here (nothing is held in between).
        bulk = false;
        const fds = await this.#spliceFds(src, dst);
        if (fds && bulkSplices < MAX_SPLICES) {
          bulkSplices++;
          try {
            return await this.#splice(
              direction,
              src,
              dst,
              startSplice(...fds),
              this.bytes[direction],
            );
          } finally {
            bulkSplices--;
          }
        }
      }
      if (n === buf.length && buf.length < max && !fixed) {
        buf = new Uint8Array(Math.min(buf.length * 2, max));
      }
    }
    if (this.#stopping || this.#draining || !(this.#options.halfClose?.[direction] ?? true)) return;
    try {
      await dst.closeWrite();
    } catch (err) {
      if (!this.#stopping) this.#fail(new RelayError(other, "closeWrite", err));
    }
  }
}

/**
 * Relays between `a` and `b` until both directions end; see {@linkcode Relay}.
 * Resolves to the bytes moved `[a→b, b→a]`.
 *
 * @example Usage
 * ```ts
 * import { relay } from "./relay.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * listener.close();
 * const done = relay(server, server, { endOnEof: "a", halfClose: [true, false] });
 * await client.write(new Uint8Array([1, 2, 3]));
 * await client.closeWrite();
 * const buf = new Uint8Array(8);
 * assert.deepEqual(await client.read(buf), 3);
 * assert.deepEqual(await done, [3, 0]);
 * client.close();
 * ```
 */
export async function relay(
  a: Duplex,
  b: Duplex,
  options?: RelayOptions,
): Promise<[number, number]> {
  const r = new Relay(a, b, options);
  await r.run();
  return r.bytes;
}
