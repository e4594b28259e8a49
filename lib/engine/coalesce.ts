/**
 * Repeated warnings as one line and a count: a flood of resets or failed
 * handshakes must not flood stderr. The first occurrence of a condition is
 * said at once; the ones after it within a window are counted and said as
 * one line when the window closes (or when the coalescer is disposed).
 *
 * @module
 */

/** Options of {@linkcode Coalescer}. */
export interface CoalescerOptions {
  /** How long repeats of one condition are gathered, in ms; default 1000. */
  window?: number;
}

/**
 * Says each condition once per window, then how many more times it
 * happened.
 *
 * @example Usage
 * ```ts
 * import { Coalescer } from "./coalesce.ts";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * {
 *   using coalescer = new Coalescer((line) => lines.push(line));
 *   for (let i = 0; i < 5; i++) coalescer.say("accept on 127.0.0.1:9000: not connected");
 * }
 * assert.deepEqual(lines, [
 *   "accept on 127.0.0.1:9000: not connected",
 *   "accept on 127.0.0.1:9000: not connected (4 more times)",
 * ]);
 * ```
 */
export class Coalescer implements Disposable {
  #emit: (line: string) => void;
  #window: number;
  #repeats = new Map<string, number>();
  #timer?: ReturnType<typeof setTimeout>;

  /** Says lines through `emit`. */
  constructor(emit: (line: string) => void, options: CoalescerOptions = {}) {
    this.#emit = emit;
    this.#window = options.window ?? 1000;
  }

  /**
   * Says `condition` (or `first`, a more particular line for its first
   * occurrence, such as one naming the peer), or counts it if it was said
   * within the window.
   */
  say(condition: string, first: string = condition): void {
    const seen = this.#repeats.get(condition);
    if (seen !== undefined) {
      this.#repeats.set(condition, seen + 1);
      return;
    }
    this.#repeats.set(condition, 0);
    this.#emit(first);
    this.#timer ??= setTimeout(() => this.flush(), this.#window);
  }

  /** Says the counts gathered so far and starts a new window. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const repeats = [...this.#repeats];
    this.#repeats.clear();
    for (const [line, count] of repeats) {
      if (count > 0) this.#emit(`${line} (${count} more ${count === 1 ? "time" : "times"})`);
    }
  }

  /** Says what is still counted; no timer is left behind. */
  [Symbol.dispose](): void {
    this.flush();
  }
}
