/**
 * Time limits as abort signals: one {@linkcode Deadline} per command
 * (`--timeout` covers connecting and the whole session with the same
 * clock), and one abortable {@linkcode delay} for pauses between attempts.
 * Whatever waits takes the signal; when it fires, the reason is the error to
 * report (a `TimeoutError`, exit 124), so no caller turns timers into
 * messages of its own.
 *
 * @module
 */

/**
 * A signal that aborts with `reason()` after `ms` milliseconds, or when
 * `parent` aborts (with the parent's reason). Without `ms` only the parent
 * counts. Dispose it (`using`) to clear the timer; disposing also aborts the
 * signal, so that nothing started under the deadline outlives it.
 *
 * @example Usage
 * ```ts
 * import { Deadline } from "./deadline.ts";
 * import assert from "node:assert/strict";
 *
 * using deadline = new Deadline(10, () => new Error("too late"));
 * await new Promise((resolve) => deadline.signal.addEventListener("abort", resolve));
 * assert.equal((deadline.signal.reason as Error).message, "too late");
 * ```
 */
export class Deadline implements Disposable {
  /** Aborts when the time is up or the parent aborts. */
  readonly signal: AbortSignal;
  /** When the deadline was set (`performance.now()`). */
  readonly startedAt: number = performance.now();
  #timer?: ReturnType<typeof setTimeout>;
  #controller = new AbortController();

  /** Starts the clock. */
  constructor(ms: number | undefined, reason: () => Error, parent?: AbortSignal) {
    if (ms !== undefined) {
      this.#timer = setTimeout(() => this.#controller.abort(reason()), Math.max(0, ms));
    }
    this.signal = parent
      ? AbortSignal.any([parent, this.#controller.signal])
      : this.#controller.signal;
  }

  /** Whether the time ran out (as opposed to the parent aborting). */
  get expired(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Stops the clock, and whatever still waits on the signal. */
  [Symbol.dispose](): void {
    clearTimeout(this.#timer);
    if (!this.signal.aborted) this.#controller.abort(new Error("the deadline was disposed"));
  }
}

/**
 * Waits `ms` milliseconds; rejects with `signal.reason` as soon as `signal`
 * aborts (at once if it has already).
 *
 * @example Usage
 * ```ts
 * import { delay } from "./deadline.ts";
 * import assert from "node:assert/strict";
 *
 * await delay(1);
 * const stop = new AbortController();
 * stop.abort(new Error("stopped"));
 * await assert.rejects(delay(1000, stop.signal), /stopped/);
 * ```
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
