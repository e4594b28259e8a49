/**
 * Backslash escapes in `--send TEXT`: `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`
 * and `\e`, so a one-line health check can send `PING\r\n`.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

const SIMPLE: Record<string, number> = {
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  "0": 0x00,
  "\\": 0x5c,
  e: 0x1b,
  a: 0x07,
};

/**
 * Encodes `text` as UTF-8, interpreting backslash escapes. Throws a
 * {@linkcode UsageError} for an unknown or incomplete escape.
 *
 * @example Usage
 * ```ts
 * import { decodeEscapes } from "./escapes.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeEscapes("PING\\r\\n"), new TextEncoder().encode("PING\r\n"));
 * assert.deepEqual(decodeEscapes("\\xff"), new Uint8Array([0xff]));
 * ```
 */
export function decodeEscapes(text: string): Uint8Array {
  const out: number[] = [];
  const encoder = new TextEncoder();
  let plain = "";
  const flush = () => {
    if (plain) out.push(...encoder.encode(plain));
    plain = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== "\\") {
      plain += c;
      continue;
    }
    const next = text[i + 1];
    if (next === undefined) {
      throw new UsageError(`cannot parse ${JSON.stringify(text)}: a lone "\\" at the end`);
    }
    flush();
    if (next in SIMPLE) {
      out.push(SIMPLE[next]);
      i++;
    } else if (next === "x" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 2, i + 4))) {
      out.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      throw new UsageError(
        `cannot parse ${JSON.stringify(text)}: unknown escape "\\${next}" ` +
          `(known: \\n \\r \\t \\0 \\e \\a \\\\ \\xHH)`,
      );
    }
  }
  flush();
  return new Uint8Array(out);
}
