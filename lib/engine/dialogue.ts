/**
 * A send/expect dialogue (`--send A --expect R1 --send B --expect R2`):
 * steps run in the order given — a send goes out once every expect before
 * it has matched; an expect waits for the received text to match, searching
 * from where the previous match ended. The dialogue is the sending side of
 * a session (its sends are what the relay reads) and watches what the
 * relay receives. It succeeds when every expect has matched; the first
 * that does not decides the error.
 *
 * Received text is decoded as UTF-8 and kept in a window of
 * {@linkcode EXPECT_WINDOW} characters; each new chunk is searched from
 * {@linkcode EXPECT_OVERLAP} characters before it (or from the previous
 * match, if that is later), so a match may straddle chunks as long as it
 * starts no further back. `^` and `$` match at line ends. Patterns are
 * {@linkcode Pattern}s (RE2, linear time), compiled before the dialogue
 * starts, so that what a peer sends cannot make matching hang.
 *
 * @module
 */

import type { Pattern } from "./pattern.ts";

/** How far back before a new chunk a match may start (characters of text). */
export const EXPECT_OVERLAP = 64 * 1024;

/** How much received text is kept (the oldest is dropped). */
export const EXPECT_WINDOW = 1024 * 1024;

/** One step of a dialogue. */
export type Step =
  /** Send these bytes. */
  | { send: Uint8Array }
  /** Send this file. */
  | { sendFile: string }
  /** Wait until the received text matches (compiled: see {@linkcode Pattern.compile}). */
  | { expect: Pattern };

/** An expect step that has not matched, for messages. */
export interface PendingExpect {
  /** Its number among the expects, from 1. */
  number: number;
  /** How many expects the dialogue has. */
  of: number;
  /** The pattern as given, `/…/`. */
  pattern: string;
}

/**
 * The state of a dialogue.
 *
 * @example Usage
 * ```ts
 * import { Dialogue } from "./dialogue.ts";
 * import { Pattern } from "./pattern.ts";
 * import assert from "node:assert/strict";
 *
 * const pong = await new Pattern("^\\+PONG").compile();
 * const d = new Dialogue([{ send: new TextEncoder().encode("PING\r\n") }, { expect: pong }]);
 * const buf = new Uint8Array(16);
 * assert.equal(await d.read(buf), 6); // the send
 * const next = d.read(buf); // waits: the expect comes next
 * assert.equal(d.received(new TextEncoder().encode("+PONG\r\n")), true); // complete
 * assert.equal(await next, null);
 * ```
 */
export class Dialogue {
  /** The steps, in order. */
  readonly steps: readonly Step[];
  #index = 0;
  #offset = 0;
  #file?: Deno.FsFile;
  #text = "";
  #cursor = 0;
  #decoder = new TextDecoder();
  #cancelled = false;
  #wake?: () => void;
  #patterns = new Map<number, Pattern>();
  #completed = Promise.withResolvers<void>();

  /** Resolves when the final step, an expect, has matched: the dialogue succeeded. */
  readonly completed: Promise<void> = this.#completed.promise;

  /** Starts at the first step. */
  constructor(steps: readonly Step[]) {
    this.steps = steps;
    steps.forEach((step, i) => {
      if ("expect" in step) this.#patterns.set(i, step.expect);
    });
  }

  /** Whether the dialogue sends anything (otherwise the input is sent, and only expects run). */
  get sends(): boolean {
    return this.steps.some((s) => !("expect" in s));
  }

  /** Whether it has expects. */
  get expects(): boolean {
    return this.#patterns.size > 0;
  }

  /** Whether every step has run (every expect matched). */
  get done(): boolean {
    return this.#index >= this.steps.length;
  }

  /** The expect that is waiting (or would wait) for a match, if any. */
  get pending(): PendingExpect | undefined {
    const i = this.steps.findIndex((s, k) => k >= this.#index && "expect" in s);
    if (i === -1) return undefined;
    const numbers = [...this.#patterns.keys()];
    return {
      number: numbers.indexOf(i) + 1,
      of: numbers.length,
      pattern: String((this.steps[i] as { expect: Pattern }).expect),
    };
  }

  /** The total size of the texts sent (files not counted), for a progress ETA. */
  get sendBytes(): number | undefined {
    let total = 0;
    for (const s of this.steps) {
      if ("sendFile" in s) return undefined;
      if ("send" in s) total += s.send.length;
    }
    return total;
  }

  /**
   * Reads the next bytes to send into `p`; waits while an expect stands
   * before them; `null` once no send is left — even if expects are (the
   * session half-closes after the last send, as after a single `--send`).
   */
  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#cancelled) return null;
      const step = this.steps[this.#index];
      if (!this.steps.some((s, i) => i >= this.#index && !("expect" in s))) return null;
      if ("expect" in step) {
        if (this.#check()) continue;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      if ("send" in step) {
        if (step.send.length === 0) {
          // Nothing to send, yet a step: for a datagram peer, one empty datagram.
          this.#next();
          return 0;
        }
        const n = Math.min(p.length, step.send.length - this.#offset);
        p.set(step.send.subarray(this.#offset, this.#offset + n));
        this.#offset += n;
        if (this.#offset >= step.send.length) this.#next();
        return n;
      }
      this.#file ??= await Deno.open(step.sendFile, { read: true });
      const n = await this.#file.read(p);
      if (n !== null) return n;
      this.#file.close();
      this.#file = undefined;
      this.#next();
    }
  }

  #next(): void {
    this.#index++;
    this.#offset = 0;
    if (this.done && this.expects && "expect" in this.steps[this.steps.length - 1]) {
      this.#completed.resolve();
    }
    // What arrived while the sends ran may already answer the expects after them.
    while (this.#check()) { /* matched: the next step may be an expect too */ }
  }

  /**
   * Adds bytes received from the peer. Returns true once every step has run
   * and there were expects (see also {@linkcode Dialogue.completed}).
   */
  received(chunk: Uint8Array): boolean {
    const added = this.#decoder.decode(chunk, { stream: true });
    this.#text += added;
    if (this.#text.length > EXPECT_WINDOW) {
      const drop = this.#text.length - EXPECT_WINDOW;
      this.#text = this.#text.slice(drop);
      this.#cursor = Math.max(0, this.#cursor - drop);
    }
    const from = Math.max(this.#cursor, this.#text.length - added.length - EXPECT_OVERLAP);
    this.#check(from);
    return this.done && this.expects;
  }

  /** Matches the current step if it is an expect; true when it matched (and the step advanced). */
  #check(from = this.#cursor): boolean {
    const pattern = this.#patterns.get(this.#index);
    if (!pattern) return false;
    const m = pattern.find(this.#text, Math.max(from, this.#cursor));
    if (!m) return false;
    this.#cursor = m.end;
    this.#wake?.();
    this.#wake = undefined;
    this.#next();
    return true;
  }

  /** Stops sending: a pending `read()` resolves to `null`. */
  cancel(): void {
    this.#cancelled = true;
    this.#wake?.();
    this.#wake = undefined;
  }

  /** Releases a file being sent. */
  close(): void {
    this.cancel();
    this.#file?.close();
    this.#file = undefined;
  }
}
