/**
 * A command-line flag, declared: its type, short form, the placeholder of
 * its value and its help — and what its value means: a typed `parse` (a
 * duration arrives in ms, a count as a number), a `default`, the flags it
 * `conflicts` with and the ones it `depends` on. The command line checks
 * these once, where it reads the flags; the modules that own an option
 * group declare its flags here in the same form (see `option_group.ts`).
 * The value parsers every declaration shares are here too.
 *
 * @module
 */

import { parseDuration } from "./duration.ts";
import { UsageError } from "./errors.ts";

/** One flag. */
export interface FlagSpec<T = unknown> {
  /** `boolean` for switches, `string` for options with a value. */
  readonly type: "boolean" | "string";
  /** One-character alias. */
  readonly short?: string;
  /** Whether the flag may be given more than once (values are collected in order). */
  readonly multiple?: boolean;
  /** The placeholder of the value in help (`DUR`, `N`, `PEM`). */
  readonly value?: string;
  /**
   * A switch that may carry a value as `--name=VALUE` (never as the next
   * word): its value is `true`, or the text after `=` (parsed).
   */
  readonly optional?: true;
  /** What it does, for help (one sentence or two). */
  readonly help: string;
  /**
   * Its value from the text given (each one, for a flag given more than
   * once); throws a {@linkcode UsageError} naming the flag (`name`).
   */
  readonly parse?: (text: string, name: string) => T;
  /** Its value when it is not given. */
  readonly default?: T;
  /** Flags that may not be given with it (the relation is symmetric). */
  readonly conflicts?: readonly string[];
  /** Flags of which at least one must be given with it. */
  readonly depends?: readonly string[];
}

/** The value of one declared flag: `parse`'s type, else `boolean` or `string`; a list when repeatable. */
export type FlagValue<S> = S extends { readonly multiple: true } ? One<S>[] : One<S>;

type One<S> = S extends { readonly optional: true } ? Parsed<S> | true : Parsed<S>;

type Parsed<S> = S extends { readonly parse: (text: string, name: string) => infer T } ? T
  : S extends { readonly type: "boolean" } ? boolean
  : string;

/** Parsed values of a set of declarations, by long name (absent: not given, no default). */
export type FlagValuesOf<F> = { -readonly [N in keyof F]?: FlagValue<F[N]> };

/**
 * A duration in ms (`250ms`, `2s`, a bare number of seconds).
 *
 * @example Usage
 * ```ts
 * import { duration } from "./flag.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(duration("2s", "timeout"), 2000);
 * assert.throws(() => duration("soon", "timeout"), /option --timeout: cannot parse duration "soon"/);
 * ```
 */
export function duration(text: string, name: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new UsageError(`option --${name}: ${(err as Error).message}`);
  }
}

/**
 * A duration that is a limit: `0` means none (`undefined`).
 *
 * @example Usage
 * ```ts
 * import { limit } from "./flag.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(limit("0", "idle-timeout"), undefined);
 * assert.equal(limit("1m", "idle-timeout"), 60_000);
 * ```
 */
export function limit(text: string, name: string): number | undefined {
  return duration(text, name) || undefined;
}

/**
 * A parser of whole numbers within `min`–`max` (inclusive; at most 10⁹).
 *
 * @example Usage
 * ```ts
 * import { count } from "./flag.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(count()("3", "retry"), 3);
 * assert.throws(() => count()("-1", "retry"), /option --retry needs a whole number, not "-1"/);
 * assert.throws(() => count({ min: 1 })("0", "max-conns"), /option --max-conns needs at least 1/);
 * assert.throws(() => count({ min: 1, max: 255 })("300", "ttl"), /option --ttl needs 1–255/);
 * ```
 */
export function count(range: { min?: number; max?: number } = {}): (
  text: string,
  name: string,
) => number {
  return (text, name) => {
    if (!/^\d+$/.test(text) || Number(text) > 1e9) {
      throw new UsageError(`option --${name} needs a whole number, not ${JSON.stringify(text)}`);
    }
    const n = Number(text);
    const { min = 0, max } = range;
    if (n < min || (max !== undefined && n > max)) {
      throw new UsageError(
        max === undefined
          ? `option --${name} needs at least ${min}`
          : `option --${name} needs ${min}–${max}`,
      );
    }
    return n;
  };
}

/**
 * A parser of one word out of `choices`.
 *
 * @example Usage
 * ```ts
 * import { oneOf } from "./flag.ts";
 * import assert from "node:assert/strict";
 *
 * const when = oneOf("auto", "always", "never");
 * assert.equal(when("never", "color"), "never");
 * assert.throws(() => when("x", "color"), /option --color must be auto, always or never, not "x"/);
 * ```
 */
export function oneOf<const C extends string>(...choices: C[]): (text: string, name: string) => C {
  const words = `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`;
  return (text, name) => {
    if ((choices as string[]).includes(text)) return text as C;
    throw new UsageError(`option --${name} must be ${words}, not ${JSON.stringify(text)}`);
  };
}
