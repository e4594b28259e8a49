/**
 * Human units for diagnostics: bytes, durations and rates. Used by every
 * event message so that they read the same everywhere.
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
  while (Math.abs(value) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 && Number.isInteger(value) ? value : trim(value)} ${BYTE_UNITS[unit]}`;
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
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${trim(ms / 1000)} s`;
  if (ms < 3_600_000) {
    const m = Math.floor(ms / 60_000);
    return `${m} m ${Math.round((ms - m * 60_000) / 1000)} s`;
  }
  const h = Math.floor(ms / 3_600_000);
  return `${h} h ${Math.round((ms - h * 3_600_000) / 60_000)} m`;
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
