/**
 * Durations on the command line: `250ms`, `2s`, `1m`, `1h`; a bare number is seconds.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds. Throws a {@linkcode UsageError} naming
 * the input when it is not a non-negative number with an optional unit.
 *
 * @example Usage
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseDuration("250ms"), 250);
 * assert.deepEqual(parseDuration("1.5"), 1500);
 * assert.deepEqual(parseDuration("1m"), 60_000);
 * assert.deepEqual(parseDuration("0.2ms"), 1); // a limit, not "no limit"
 * assert.throws(() => parseDuration("soon"), /cannot parse duration "soon"/);
 * ```
 */
export function parseDuration(input: string): number {
  const m = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/.exec(input.trim());
  if (!m) {
    throw new UsageError(
      `cannot parse duration ${
        JSON.stringify(input)
      }: expected a number with an optional unit ms, s, m or h (e.g. 250ms, 2s)`,
    );
  }
  const ms = Number(m[1]) * UNITS[m[2] ?? "s"];
  if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) {
    throw new UsageError(`cannot parse duration ${JSON.stringify(input)}: too long`);
  }
  // Whole milliseconds, but never down to 0 (which means "no limit" for timeouts).
  return ms > 0 ? Math.max(1, Math.round(ms)) : 0;
}
