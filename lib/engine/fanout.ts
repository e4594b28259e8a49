/**
 * One-to-many delivery: what one side publishes is queued for every
 * subscriber (optionally except the publisher), in order. Two policies for
 * a subscriber that reads slowly:
 *
 * - backpressure (no `stallLimit`): a publisher waits while any subscriber
 *   has more than `highWater` bytes queued, so a slow reader slows the
 *   publisher instead of growing memory (`listen -k`: stdin to every
 *   client);
 * - drop (`stallLimit`): a publisher never waits; each subscriber has its
 *   own queue, and one that stays above `highWater` for `stallLimit` ms, or
 *   ever holds more than `maxQueued`, is dropped (its queue is freed and
 *   `onDropped` says why), so one reader that stops cannot delay the others
 *   at all (`--broker`: each client to all the others).
 *
 * @module
 */

import type { Input } from "./stdio.ts";

/** Options of {@linkcode Fanout}. */
export interface FanoutOptions {
  /**
   * Bytes a subscriber may have queued before publishers wait, or (with
   * `stallLimit`) before its time runs (default 1 MiB).
   */
  highWater?: number;
  /**
   * Publishers never wait; a subscriber above `highWater` for this many ms
   * is dropped. Default: never dropped (publishers wait for it).
   */
  stallLimit?: number;
  /**
   * With `stallLimit`: a subscriber with more than this many bytes queued is
   * dropped at once (default 64 × `highWater`): what bounds its memory.
   */
  maxQueued?: number;
  /** Called with a subscriber that was dropped (its `read()` ends), and why. */
  onDropped?: (sub: Subscription, why: DropReason) => void;
}

/**
 * Why a subscriber was dropped: above the high-water mark for the stall
 * limit (`stalled`), or above `maxQueued` (`overflow`).
 */
export type DropReason = "stalled" | "overflow";

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
   * Queues a copy of `chunk` for every subscriber but `from`; then, without
   * a `stallLimit`, waits until no subscriber is above the high-water mark.
   */
  async publish(chunk: Uint8Array, from?: Subscription): Promise<void> {
    if (this.#ended) return;
    const copy = chunk.slice();
    const limit = this.#options.stallLimit;
    for (const sub of this.#subscribers) {
      if (sub === from) continue;
      sub.push(copy);
      if (limit !== undefined) this.#watch(sub, limit);
    }
    if (limit !== undefined) return;
    for (;;) {
      const over = [...this.#subscribers].some((s) => s !== from && s.queued > this.#highWater);
      if (!over) return;
      await new Promise<void>((resolve) => this.#space.push(resolve));
    }
  }

  /** Drop policy: starts `sub`'s clock when it goes above the mark; drops it when due. */
  #watch(sub: Subscription, limit: number): void {
    if (sub.queued > (this.#options.maxQueued ?? this.#highWater * 64)) {
      this.#drop(sub, "overflow");
      return;
    }
    if (sub.queued <= this.#highWater || sub.stallTimer !== undefined) return;
    const over = () => {
      sub.stallTimer = undefined;
      if (!this.#subscribers.has(sub) || sub.queued <= this.#highWater) return;
      this.#drop(sub, "stalled");
    };
    sub.stallTimer = setTimeout(over, limit);
  }

  #drop(sub: Subscription, why: DropReason): void {
    this.#subscribers.delete(sub);
    sub.drop();
    this.#options.onDropped?.(sub, why);
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
    // Below the mark again (or gone): its clock stops.
    if (leaving || sub.queued <= this.#highWater) sub.stopClock();
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
  /** @internal Drop policy: runs while it is above the hub's mark. */
  stallTimer?: ReturnType<typeof setTimeout>;

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

  /** @internal Stops the stall clock. */
  stopClock(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  /** @internal Dropped by the hub: the queue is freed and reading ends. */
  drop(): void {
    this.stopClock();
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
    this.stopClock();
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
