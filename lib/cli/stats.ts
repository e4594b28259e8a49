/**
 * `--stats`: the figures of each connection as it ends, and a server's
 * totals at exit — bytes each way with their average rates, and the
 * duration — as text and as the fields of a `stats` JSON event.
 *
 * @module
 */

import type { ClosedInfo } from "../engine/events.ts";
import { formatBytes, formatDuration, formatRate } from "../base/format.ts";

/** A `stats` record: its text line and its JSON fields. */
export interface StatsRecord {
  /** The line shown without `--json` (after `sockit: `). */
  text: string;
  /** The fields of the `stats` JSON event. */
  fields: Record<string, unknown>;
}

/**
 * The record for bytes sent and received over `ms` milliseconds; `label`
 * starts the text and `fields` name what is counted.
 *
 * @example Usage
 * ```ts
 * import { statsRecord } from "./stats.ts";
 * import assert from "node:assert/strict";
 *
 * const r = statsRecord("stats 127.0.0.1:80:", { conn: 1 }, 2048, 0, 1000);
 * assert.equal(r.text, "stats 127.0.0.1:80: sent 2 KiB (2 KiB/s), received 0 B (0 B/s) in 1 s");
 * assert.equal(r.fields.sentPerSecond, 2048);
 * ```
 */
export function statsRecord(
  label: string,
  fields: Record<string, unknown>,
  sent: number,
  received: number,
  ms: number,
): StatsRecord {
  const durationMs = Math.round(ms);
  return {
    text: `${label} sent ${formatBytes(sent)} (${formatRate(sent, ms)}), ` +
      `received ${formatBytes(received)} (${formatRate(received, ms)}) in ${formatDuration(ms)}`,
    fields: {
      ...fields,
      sent,
      received,
      durationMs,
      sentPerSecond: ms > 0 ? Math.round((sent * 1000) / ms) : null,
      receivedPerSecond: ms > 0 ? Math.round((received * 1000) / ms) : null,
    },
  };
}

/**
 * A server's totals: every closed connection is added; {@linkcode StatsTotals.record}
 * gives the line at exit.
 *
 * @example Usage
 * ```ts
 * import { StatsTotals } from "./stats.ts";
 * import assert from "node:assert/strict";
 *
 * const totals = new StatsTotals(() => 0);
 * totals.add({ sent: 1, received: 2, durationMs: 5 });
 * assert.match(totals.record().text, /^stats total, 1 connection: sent 1 B/);
 * ```
 */
export class StatsTotals {
  /** Connections counted. */
  connections = 0;
  /** Bytes sent in all. */
  sent = 0;
  /** Bytes received in all. */
  received = 0;
  #now: () => number;
  #started: number;

  /** Starts counting now (`now` is the clock, `performance.now` by default). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.#started = now();
  }

  /** Adds a closed connection. */
  add(info: ClosedInfo): void {
    this.connections++;
    this.sent += info.sent;
    this.received += info.received;
  }

  /** The totals as a record, over the time since counting started. */
  record(): StatsRecord {
    const n = this.connections;
    return statsRecord(
      `stats total, ${n} connection${n === 1 ? "" : "s"}:`,
      { scope: "total", connections: n },
      this.sent,
      this.received,
      this.#now() - this.#started,
    );
  }
}
