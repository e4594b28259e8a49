/**
 * The few assertions the tests use, on top of `node:assert/strict`, in the
 * shape of Deno's std/assert (which cannot be installed here: no jsr).
 *
 * @module
 */

import assertNode from "node:assert/strict";

/** Asserts that `value` is truthy. */
export function assert(value: unknown, message?: string): asserts value {
  assertNode.ok(value, message);
}

/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assertNode.deepStrictEqual(actual, expected, message);
}

/** Asserts that `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  assertNode.match(text, pattern, message);
}

/** Asserts that `text` does not match `pattern`. */
export function assertNotMatch(text: string, pattern: RegExp, message?: string): void {
  assertNode.doesNotMatch(text, pattern, message);
}

/**
 * Asserts that `fn` throws an instance of `ErrorClass` (whose message
 * includes `includes`, if given), and returns the error.
 */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  ErrorClass: new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    assertNode.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err}`);
    if (includes !== undefined) {
      assertNode.ok(err.message.includes(includes), `"${err.message}" lacks "${includes}"`);
    }
    return err;
  }
  throw new assertNode.AssertionError({ message: `expected ${ErrorClass.name} to be thrown` });
}

/** Like {@linkcode assertThrows} for a promise. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  ErrorClass: new (...args: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    assertNode.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err}`);
    if (includes !== undefined) {
      assertNode.ok(err.message.includes(includes), `"${err.message}" lacks "${includes}"`);
    }
    return err;
  }
  throw new assertNode.AssertionError({ message: `expected ${ErrorClass.name} to be rejected` });
}
