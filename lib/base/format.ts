/**
 * How sockit writes figures and records: bytes, durations and rates in
 * human units (every event message reads the same), and JSON lines.
 *
 * @module
 */

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/**
 * Formats a byte count in binary units: `6 B`, `1.5 KiB`, `256 MiB`.
 *
 * @example Usage
 * ```ts
 * import { formatBytes } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatBytes(6), "6 B");
 * assert.deepEqual(formatBytes(1536), "1.5 KiB");
 * assert.deepEqual(formatBytes(256 * 1024 * 1024), "256 MiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  const shown = () => unit === 0 && Number.isInteger(value) ? String(value) : trim(value);
  // Compare what is shown, so that 1048575 B reads 1 MiB, not 1024 KiB.
  while (Math.abs(Number(shown())) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${shown()} ${BYTE_UNITS[unit]}`;
}

/**
 * Formats milliseconds as `2 ms`, `1.25 s`, `2 m 5 s`, `1 h 2 m`.
 *
 * @example Usage
 * ```ts
 * import { formatDuration } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatDuration(2), "2 ms");
 * assert.deepEqual(formatDuration(1250), "1.25 s");
 * assert.deepEqual(formatDuration(125_000), "2 m 5 s");
 * ```
 */
export function formatDuration(ms: number): string {
  // Each branch rounds first and chooses the unit from the rounded value,
  // so that 59.9996 s reads `1 m 0 s`, never `60 s` or `0 m 60 s`.
  if (Math.round(ms) < 1000) return `${Math.round(ms)} ms`;
  const seconds = trim(ms / 1000);
  if (Number(seconds) < 60) return `${seconds} s`;
  const wholeSeconds = Math.round(ms / 1000);
  if (wholeSeconds < 3600) return `${Math.floor(wholeSeconds / 60)} m ${wholeSeconds % 60} s`;
  const minutes = Math.round(ms / 60_000);
  return `${Math.floor(minutes / 60)} h ${minutes % 60} m`;
}

/**
 * Formats a transfer rate from bytes and milliseconds: `1.2 GiB/s`.
 *
 * @example Usage
 * ```ts
 * import { formatRate } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatRate(1024 * 1024, 1000), "1 MiB/s");
 * assert.deepEqual(formatRate(10, 0), "- B/s");
 * ```
 */
export function formatRate(bytes: number, ms: number): string {
  if (ms <= 0) return "- B/s";
  return `${formatBytes((bytes * 1000) / ms)}/s`;
}

/** At most three significant digits, no trailing zeros. */
function trim(value: number): string {
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return String(Number(value.toFixed(digits)));
}

/**
 * One JSON line: `{"event": …, "time": …, …fields}`. Events (stderr) and the
 * results of `wait` and `scan` (stdout) share it.
 *
 * @example Usage
 * ```ts
 * import { jsonLine } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(JSON.parse(jsonLine("port", { port: 22 })).port, 22);
 * ```
 */
export function jsonLine(event: string, fields: Record<string, unknown>): string {
  return JSON.stringify({ event, time: new Date().toISOString(), ...fields }) + "\n";
}
