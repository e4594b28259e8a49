/**
 * Small byte helpers the protocol layers share: joining arrays and writing
 * all of a buffer to something that may take less per write.
 *
 * @module
 */

/**
 * The arrays as one, in order.
 *
 * @example Usage
 * ```ts
 * import { concat } from "./bytes.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(concat(new Uint8Array([1]), new Uint8Array([2, 3])), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Writes all of `bytes` to `writer`, however little each write takes.
 *
 * @example Usage
 * ```ts
 * import { writeAll } from "./bytes.ts";
 * import assert from "node:assert/strict";
 *
 * const got: number[] = [];
 * await writeAll({ write: (p) => Promise.resolve((got.push(p[0]), 1)) }, new Uint8Array([7, 8]));
 * assert.deepEqual(got, [7, 8]);
 * ```
 */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await writer.write(bytes.subarray(at));
}
