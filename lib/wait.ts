/**
 * `waitFor`: block until every endpoint accepts connections (or, with
 * `reverse`, until none does) — what wait-on, wait-for-it and `nc -z` loops
 * are used for in CI.
 *
 * Each endpoint is tried once per interval, all at once; a host name is
 * ready when any of its addresses accepts. An attempt never outlives the
 * deadline, and a connection that succeeds is closed at once.
 *
 * @module
 */

import { formatEndpoint } from "./address.ts";
import type { Endpoint } from "./address.ts";
import { Deadline, delay } from "./deadline.ts";
import { toSockitError } from "./errors.ts";
import { connect, connectAddress } from "./open.ts";
import type { Lookup } from "./resolve.ts";

/** Options of {@linkcode waitFor}. */
export interface WaitOptions {
  /** Give up after this many ms (default 30 s). */
  timeout?: number;
  /** Try each endpoint this often, in ms (default 250 ms). */
  interval?: number;
  /** Wait until the endpoints refuse connections instead. */
  reverse?: boolean;
  /** Restrict name resolution to IPv4 or IPv6. */
  family?: 4 | 6;
  /** Stops waiting; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called as soon as an endpoint is done (ready, or not when the time is up). */
  onResult?: (result: WaitResult) => void;
  /** The resolver for host names. */
  lookup?: Lookup;
}

/** The outcome for one endpoint. */
export interface WaitResult {
  /** The endpoint as given (formatted). */
  endpoint: string;
  /** The address connected to (`127.0.0.1:5432`, `unix:/run/app.sock`). */
  address: string;
  /** Whether it became ready (accepted, or with `reverse` refused) in time. */
  ready: boolean;
  /** Milliseconds from the start until it was ready, or until the deadline. */
  elapsedMs: number;
  /** Connection attempts made. */
  attempts: number;
  /** The reason of the last failed attempt (with `reverse`: of the last success), if any. */
  lastError?: string;
}

/**
 * Waits until every endpoint accepts a connection (with `reverse`: until
 * every one refuses), or until the timeout. Resolves to one result per
 * endpoint, in the order given; it never rejects for a network error.
 *
 * @example Usage
 * ```ts
 * import { waitFor } from "./wait.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [result] = await waitFor(
 *   [{ transport: "tcp", hostname: "127.0.0.1", port: listener.addr.port }],
 *   { timeout: 2000 },
 * );
 * assert(result.ready);
 * listener.close();
 * ```
 */
export async function waitFor(
  endpoints: Endpoint[],
  options: WaitOptions = {},
): Promise<WaitResult[]> {
  const timeout = options.timeout ?? 30_000;
  const interval = options.interval ?? 250;
  const started = performance.now();
  using deadline = new Deadline(timeout, () => new Error("the time is up"), options.signal);
  const stop = deadline.signal;
  const results = await Promise.all(endpoints.map(async (endpoint) => {
    const result: WaitResult = {
      endpoint: formatEndpoint(endpoint),
      address: connectAddress(endpoint, options.family),
      ready: false,
      elapsedMs: 0,
      attempts: 0,
    };
    while (!stop.aborted) {
      const attemptStarted = performance.now();
      result.attempts++;
      let accepted = false;
      try {
        const conn = await connect(endpoint, {
          family: options.family,
          signal: stop,
          lookup: options.lookup,
        });
        conn.close();
        accepted = true;
        if (options.reverse) result.lastError = "accepted a connection";
      } catch (err) {
        if (stop.aborted) break;
        result.lastError = toSockitError(err, "connect", result.address).reason;
        // Usage errors and denied permissions will not heal by waiting.
        if (
          (err as { exitCode?: number }).exitCode === 2 || toSockitError(err, "").exitCode === 126
        ) {
          throw err;
        }
      }
      if (accepted !== (options.reverse ?? false)) {
        result.ready = true;
        delete result.lastError;
        break;
      }
      await delay(interval - (performance.now() - attemptStarted), stop).catch(() => {});
    }
    result.elapsedMs = Math.round(performance.now() - started);
    options.onResult?.(result);
    return result;
  }));
  if (options.signal?.aborted) throw options.signal.reason;
  return results;
}
