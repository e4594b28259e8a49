/**
 * `--progress`: one status line on a terminal, redrawn in place (`\r`) at
 * most ten times a second while transfers run — bytes each way, the rate
 * over the last second, the time so far, and for a file being sent its
 * share and ETA. The clock and the terminal width are injected, so the line
 * can be tested without a terminal or waiting.
 *
 * @module
 */

import type { Counted } from "../engine/events.ts";
import { formatBytes, formatDuration } from "../base/format.ts";

/** How often the line is redrawn (at most 10 times a second). */
export const PROGRESS_INTERVAL = 100;

/** Options of {@linkcode ProgressLine}. */
export interface ProgressOptions {
  /** Writes to the terminal (stderr). */
  write(text: string): void;
  /** The prefix of the line (`sockit:`, maybe coloured). */
  prefix: string;
  /** The terminal's width now, to keep the line on one row. */
  columns?: () => number | undefined;
  /** The clock in ms (default `performance.now`). */
  now?: () => number;
  /** Redraw every this many ms while something is tracked; 0: only by {@linkcode ProgressLine.draw}. */
  interval?: number;
}

/**
 * The progress line of a command.
 *
 * @example Usage
 * ```ts
 * import { ProgressLine } from "./progress.ts";
 * import assert from "node:assert/strict";
 *
 * let out = "";
 * let now = 0;
 * const line = new ProgressLine({ write: (t) => out += t, prefix: "sockit:", now: () => now, interval: 0 });
 * const counted = { bytes: [0, 1024] as [number, number] };
 * line.track(counted);
 * now = 1000;
 * line.draw();
 * assert.match(out, /^\rsockit: received 0 B, sent 1 KiB, 1 KiB\/s, 1 s\x1b\[K$/);
 * line.untrack(counted);
 * ```
 */
export class ProgressLine {
  #options: ProgressOptions;
  #now: () => number;
  #active = new Map<Counted, number | undefined>();
  #done: [number, number] = [0, 0];
  #started = 0;
  #samples: Array<[number, number, number]> = [];
  #timer?: ReturnType<typeof setInterval>;
  #shown = false;

  /** Creates the line; nothing is drawn until something is tracked. */
  constructor(options: ProgressOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Shows `counted` until {@linkcode ProgressLine.untrack}; `total` is the size being sent, when known. */
  track(counted: Counted, total?: number): void {
    if (this.#active.size === 0) {
      this.#started = this.#now();
      this.#samples = [];
      const interval = this.#options.interval ?? PROGRESS_INTERVAL;
      if (interval > 0) this.#timer = setInterval(() => this.draw(), interval);
    }
    this.#active.set(counted, total);
  }

  /** Stops showing `counted`; the line is cleared when nothing is left to show. */
  untrack(counted: Counted): void {
    if (!this.#active.delete(counted)) return;
    this.#done[0] += counted.bytes[0];
    this.#done[1] += counted.bytes[1];
    if (this.#active.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.clear();
    }
  }

  /** Erases the line if it is shown. */
  clear(): void {
    if (this.#shown) this.#options.write("\r\x1b[K");
    this.#shown = false;
  }

  /** Draws the line now. */
  draw(): void {
    let received = this.#done[0];
    let sent = this.#done[1];
    let total: number | undefined;
    let sentOfTotal = 0;
    for (const [counted, size] of this.#active) {
      received += counted.bytes[0];
      sent += counted.bytes[1];
      if (size !== undefined) {
        total = (total ?? 0) + size;
        sentOfTotal += counted.bytes[1];
      }
    }
    const now = this.#now();
    this.#samples.push([now, received, sent]);
    if (this.#samples.length > 10) this.#samples.shift();
    // The rates over the last second of samples (since the start until there are two).
    const [t0, r0, s0] = this.#samples.length > 1 ? this.#samples[0] : [this.#started, 0, 0];
    const perSecond = (bytes: number) => (now > t0 ? (bytes * 1000) / (now - t0) : 0);
    const rate = perSecond(received - r0 + sent - s0);
    const pace = `${formatBytes(rate)}/s, ${formatDuration(now - this.#started)}`;
    let line = `received ${formatBytes(received)}, sent ${formatBytes(sent)}, ${pace}`;
    if (total !== undefined) {
      // Sending a file: its share and ETA first, where a narrow terminal keeps them.
      const percent = total > 0 ? Math.floor((sentOfTotal * 100) / total) : 100;
      // The ETA counts on the sending rate alone: what comes back does not shorten the upload.
      const sendRate = perSecond(sent - s0);
      const eta = sendRate > 0 && sentOfTotal < total
        ? ` ETA ${formatDuration(((total - sentOfTotal) * 1000) / sendRate)}`
        : "";
      line = `sent ${formatBytes(sent)} of ${formatBytes(total)} (${percent}%)${eta}, ${pace}, ` +
        `received ${formatBytes(received)}`;
    }
    // One row only: a line that wraps cannot be redrawn or cleared with \r.
    // The last column is left free, so the cursor never wraps either.
    const width = this.#options.columns?.();
    const room = width === undefined ? Infinity : width - 1 - "sockit: ".length;
    const chars = [...line];
    if (chars.length > room) line = chars.slice(0, Math.max(0, room - 1)).join("") + "…";
    this.#options.write(`\r${this.#options.prefix} ${line}\x1b[K`);
    this.#shown = true;
  }
}
