/**
 * `--expect REGEX`: matches a regular expression against the text received
 * so far, across chunk boundaries, in time that does not grow with the
 * stream.
 *
 * @module
 */

/** How far back before a new chunk a match may start (bytes of text). */
export const EXPECT_OVERLAP = 64 * 1024;

/** How much received text is kept (the oldest is dropped). */
export const EXPECT_WINDOW = 1024 * 1024;

/**
 * Feeds received bytes and says whether the pattern matches. The text is
 * decoded as UTF-8 (a character split across chunks is joined). Each chunk is
 * searched from {@linkcode EXPECT_OVERLAP} characters before it, so a match
 * may straddle any number of chunks as long as it starts no further back;
 * `^` and `$` match at line ends (the `m` flag).
 *
 * @example Usage
 * ```ts
 * import { ExpectMatcher } from "./expect.ts";
 * import assert from "node:assert/strict";
 *
 * const m = new ExpectMatcher(/^\+PONG/);
 * assert(!m.push(new TextEncoder().encode("+PO")));
 * assert(m.push(new TextEncoder().encode("NG\r\n")));
 * ```
 */
export class ExpectMatcher {
  /** The pattern, with the `g` and `m` flags. */
  readonly pattern: RegExp;
  #decoder = new TextDecoder();
  #text = "";

  /** Wraps `pattern` (its own flags are kept; `g` and `m` are added). */
  constructor(pattern: RegExp) {
    const flags = new Set([...pattern.flags, "g", "m"]);
    this.pattern = new RegExp(pattern.source, [...flags].join(""));
  }

  /** Adds received bytes; true once the pattern matches. */
  push(chunk: Uint8Array): boolean {
    const added = this.#decoder.decode(chunk, { stream: true });
    this.#text += added;
    if (this.#text.length > EXPECT_WINDOW) this.#text = this.#text.slice(-EXPECT_WINDOW);
    this.pattern.lastIndex = Math.max(0, this.#text.length - added.length - EXPECT_OVERLAP);
    return this.pattern.test(this.#text);
  }

  /** The pattern as the user gave it, for messages. */
  toString(): string {
    return `/${this.pattern.source}/`;
  }
}
