/**
 * One-to-many delivery with backpressure: what one side publishes is queued
 * for every subscriber (optionally except the publisher), in order. A
 * publisher waits while any subscriber has more than `highWater` bytes
 * queued, so a slow reader slows the publisher instead of growing memory.
 * With `stallLimit`, a subscriber that stays above the mark that long is
 * dropped instead (its queue is freed and `onDropped` says so), so one
 * reader that stops cannot freeze the others. Used by `listen -k` (stdin to
 * every client) and `--broker` (each client to all the others).
 *
 * @module
 */

import type { Input } from "./stdio.ts";

/** Options of {@linkcode Fanout}. */
export interface FanoutOptions {
  /** Bytes a subscriber may have queued before publishers wait (default 1 MiB). */
  highWater?: number;
  /**
   * A subscriber above `highWater` for this many ms is dropped, so that
   * publishers go on; default: never (publishers wait for it).
   */
  stallLimit?: number;
  /** Called with a subscriber that was dropped (after its `read()` ends). */
  onDropped?: (sub: Subscription) => void;
}

/**
 * A publish/subscribe hub for byte chunks.
 *
 * @example Usage
 * ```ts
 * import { Fanout } from "./fanout.ts";
 * import assert from "node:assert/strict";
 *
 * const hub = new Fanout();
 * const a = hub.subscribe();
 * const b = hub.subscribe();
 * await hub.publish(new Uint8Array([1, 2]), a); // to everyone but a
 * hub.end();
 * const buf = new Uint8Array(8);
 * assert.deepEqual(await b.read(buf), 2);
 * assert.deepEqual(await b.read(buf), null);
 * assert.deepEqual(await a.read(buf), null);
 * ```
 */
export class Fanout {
  #subscribers = new Set<Subscription>();
  #highWater: number;
  #options: FanoutOptions;
  #ended = false;
  #space: Array<() => void> = [];

  /** Creates a hub. */
  constructor(options: FanoutOptions = {}) {
    this.#highWater = options.highWater ?? 1 << 20;
    this.#options = options;
  }

  /** How many subscribers there are now. */
  get size(): number {
    return this.#subscribers.size;
  }

  /** A new subscriber; it receives what is published from now on. */
  subscribe(): Subscription {
    const sub = new Subscription(this, this.#ended);
    if (!this.#ended) this.#subscribers.add(sub);
    return sub;
  }

  /**
   * Queues a copy of `chunk` for every subscriber but `from`, then waits
   * until no subscriber is above the high-water mark.
   */
  async publish(chunk: Uint8Array, from?: Subscription): Promise<void> {
    if (this.#ended) return;
    const copy = chunk.slice();
    for (const sub of this.#subscribers) if (sub !== from) sub.push(copy);
    const limit = this.#options.stallLimit;
    for (;;) {
      const over = [...this.#subscribers].filter((s) => s !== from && s.queued > this.#highWater);
      if (over.length === 0) return;
      let wait = Infinity;
      if (limit !== undefined) {
        const now = performance.now();
        for (const sub of over) {
          const since = sub.overSince ??= now;
          if (now - since >= limit) this.#drop(sub);
          else wait = Math.min(wait, since + limit - now);
        }
        if (wait === Infinity) continue; // every one over the mark was dropped
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#space.push(resolve);
        if (wait !== Infinity) timer = setTimeout(resolve, Math.ceil(wait));
      });
      clearTimeout(timer);
    }
  }

  #drop(sub: Subscription): void {
    this.#subscribers.delete(sub);
    sub.drop();
    this.#options.onDropped?.(sub);
  }

  /** No more data: every subscriber reads what is queued, then end of input. */
  end(): void {
    this.#ended = true;
    for (const sub of this.#subscribers) sub.finish();
    this.#subscribers.clear();
    this.#wake();
  }

  /** @internal A subscriber consumed data or left: publishers may go on. */
  drained(sub: Subscription, leaving: boolean): void {
    if (leaving) this.#subscribers.delete(sub);
    else if (sub.queued <= this.#highWater) sub.overSince = undefined;
    this.#wake();
  }

  #wake(): void {
    for (const resolve of this.#space.splice(0)) resolve();
  }
}

/**
 * One subscriber's queue, read like stdin: `read()` resolves to the next
 * bytes, or `null` once the hub has ended (or {@linkcode Subscription.cancel}).
 */
export class Subscription implements Input {
  #hub: Fanout;
  #queue: Uint8Array[] = [];
  #offset = 0;
  #queued = 0;
  #done: boolean;
  #linger = 0;
  #lingering = false;
  #dropped = false;
  #waiter?: () => void;
  /** @internal Since when (`performance.now()`) it has been above the hub's mark. */
  overSince?: number;

  /** @internal Use {@linkcode Fanout.subscribe}. */
  constructor(hub: Fanout, done: boolean) {
    this.#hub = hub;
    this.#done = done;
  }

  /** Bytes waiting to be read. */
  get queued(): number {
    return this.#queued;
  }

  /** Whether the hub dropped it for reading too slowly (see `FanoutOptions.stallLimit`). */
  get dropped(): boolean {
    return this.#dropped;
  }

  /** @internal Dropped by the hub: the queue is freed and reading ends. */
  drop(): void {
    this.#dropped = true;
    this.#done = true;
    this.#queue = [];
    this.#queued = 0;
    this.#offset = 0;
    this.#waiter?.();
  }

  /** @internal Queues a chunk. */
  push(chunk: Uint8Array): void {
    if (this.#done) return;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    this.#waiter?.();
  }

  /** @internal The hub has ended. */
  finish(): void {
    this.#done = true;
    this.#waiter?.();
  }

  /** Reads queued bytes into `p`; waits when there are none; `null` at the end. */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#done) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arrived = await new Promise<boolean>((resolve) => {
        this.#waiter = () => resolve(true);
        if (this.#lingering) timer = setTimeout(() => resolve(false), this.#linger);
      });
      clearTimeout(timer);
      this.#waiter = undefined;
      if (!arrived) {
        this.cancel();
        return null;
      }
    }
    const head = this.#queue[0];
    const n = Math.min(p.length, head.length - this.#offset);
    p.set(head.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    if (this.#offset === head.length) {
      this.#queue.shift();
      this.#offset = 0;
    }
    this.#queued -= n;
    this.#hub.drained(this, false);
    return n;
  }

  /**
   * Leaves the hub: what is queued is still read, then end of input. With
   * `linger` > 0, it leaves only once nothing has come for `linger` ms.
   */
  cancel(linger = 0): void {
    if (this.#done) return;
    if (linger > 0) {
      this.#lingering = true;
      this.#linger = linger;
      this.#waiter?.();
      return;
    }
    this.#done = true;
    this.#hub.drained(this, true);
    this.#waiter?.();
  }
}
