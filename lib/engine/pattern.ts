/**
 * Regular expressions that the peer cannot turn against sockit: `--expect`
 * and `wait --body` match what a peer sends, and a backtracking engine
 * (JavaScript's own) can take exponential time on a crafted input —
 * `(a+)+$` against forty `a`s and a `b` runs for hours and holds the event
 * loop, so neither `--timeout` nor Ctrl-C would work. These are matched by
 * RE2 (the `re2js` port), which runs in time linear in the input. The
 * syntax is RE2's: what JavaScript writes, less lookaround and
 * backreferences (which no linear-time engine can do).
 *
 * The engine loads on first use ({@linkcode Pattern.compile}), so commands
 * without patterns do not pay for it.
 *
 * @module
 */

import type { RE2JS } from "re2js";

let engine: Promise<typeof RE2JS> | undefined;

/** What RE2 cannot do, found before the engine is loaded, with the reason. */
const UNSUPPORTED: Array<[RegExp, string]> = [
  [/\(\?<?[=!]/, "lookaround ((?=…), (?!…), (?<=…), (?<!…)) is not supported"],
  [/\\[1-9]|\\k</, "backreferences are not supported"],
];

/** A match: where it starts and ends in the text. */
export interface PatternMatch {
  /** Index of the first character. */
  index: number;
  /** Index after the last character. */
  end: number;
}

/**
 * A regular expression matched in linear time. Construct it with the
 * source (a syntax error throws a `SyntaxError`), then
 * {@linkcode Pattern.compile} it once before matching.
 *
 * @example Usage
 * ```ts
 * import { Pattern } from "./pattern.ts";
 * import assert from "node:assert/strict";
 *
 * const pattern = new Pattern("^\\+PONG");
 * await pattern.compile();
 * assert.deepEqual(pattern.find("x\r\n+PONG\r\n", 0), { index: 3, end: 8 });
 * // What would take a backtracking engine hours is over at once.
 * const evil = new Pattern("(a+)+$");
 * await evil.compile();
 * assert.equal(evil.test("a".repeat(40) + "b"), false);
 * ```
 */
export class Pattern {
  /** The expression as written. */
  readonly source: string;
  #compiled?: RE2JS;

  /** Checks the syntax (JavaScript's, less what RE2 cannot do); throws a `SyntaxError`. */
  constructor(source: string) {
    for (const [feature, reason] of UNSUPPORTED) {
      if (feature.test(source)) throw new SyntaxError(reason);
    }
    try {
      new RegExp(source);
    } catch (err) {
      throw new SyntaxError((err as Error).message.replace(/^Invalid regular expression: /, ""));
    }
    this.source = source;
  }

  /** Loads the engine (once per process) and compiles; throws a `SyntaxError` if RE2 refuses it. */
  async compile(): Promise<this> {
    if (this.#compiled) return this;
    engine ??= import("re2js").then((module) => module.RE2JS);
    const re2 = await engine;
    try {
      // Multi-line: ^ and $ match at each line, as a line-oriented dialogue expects.
      this.#compiled = re2.compile(this.source, re2.MULTILINE);
    } catch (err) {
      throw new SyntaxError((err as Error).message.replace(/^error parsing regexp: /, ""));
    }
    return this;
  }

  /** The first match in `text` at or after `from`, or `null`. */
  find(text: string, from: number): PatternMatch | null {
    const matcher = this.#engine().matcher(text);
    if (!matcher.find(from)) return null;
    return { index: matcher.start(), end: matcher.end() };
  }

  /** Whether `text` has a match. */
  test(text: string): boolean {
    return this.find(text, 0) !== null;
  }

  /** `/source/`, as messages show it. */
  toString(): string {
    return `/${this.source}/`;
  }

  #engine(): RE2JS {
    if (!this.#compiled) throw new Error(`pattern ${this} used before compile()`);
    return this.#compiled;
  }
}
