/**
 * `waitFor`: block until every target is ready (or, with `reverse`, until
 * none is) — what wait-on, wait-for-it and `nc -z` loops are used for in CI.
 * A target is an endpoint (ready when it accepts a connection; a host name
 * when any of its addresses does), an HTTP(S) URL (ready when a request —
 * GET by default — answers with an accepted status, 2xx by default, after
 * following redirects), or a file (ready when it exists).
 *
 * Every target is tried once per interval, all at once. An attempt has its
 * own limit (so one that hangs — a SYN nobody acknowledges — cannot eat the
 * whole timeout; a cut attempt says how long it waited, and that the SYN
 * went unanswered only when its connect was seen waiting for one) and never outlives the deadline; a connection that
 * succeeds is closed at once. The last failure of each target is kept, for
 * the message when the time is up.
 *
 * @module
 */

import { directDialer, plainOpener } from "../net/dial.ts";
import type { AddressOpener, Dialer } from "../net/dial.ts";
import type { Connection } from "../net/conn.ts";
import { formatEndpoint, isTls } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { Deadline, delay } from "../engine/deadline.ts";
import { exitCodeOf, SockitError, toSockitError } from "../base/errors.ts";
import { formatBytes, formatDuration } from "../base/format.ts";
import {
  httpExchange,
  MAX_BODY,
  originOf,
  parseHttpUrl,
  redirectTarget,
} from "../protocols/http.ts";
import type { HttpRequest } from "../protocols/http.ts";
import { connect, connectAddress, dialTarget } from "../net/open.ts";
import type { Lookup } from "../net/resolve.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import { ipFamily } from "../net/ip.ts";
import type { Pattern } from "../engine/pattern.ts";

/** Something to wait for: an endpoint, an HTTP(S) URL, or a file. */
export type WaitTarget = Endpoint | { url: string } | { file: string };

/** Which HTTP statuses count as ready: exact codes and classes (`2xx`). */
export type StatusSet = Array<number | `${1 | 2 | 3 | 4 | 5}xx`>;

/** Options of {@linkcode waitFor}. */
export interface WaitOptions {
  /** Give up after this many ms (default 30 s; 0: no limit). */
  timeout?: number;
  /** Try each target this often, in ms (default 250 ms). */
  interval?: number;
  /** Limit of one attempt, in ms (default 5 s; never past the timeout). */
  attemptTimeout?: number;
  /** Wait until the targets are not ready instead (refused, gone, another status). */
  reverse?: boolean;
  /** Restrict name resolution to IPv4 or IPv6. */
  family?: 4 | 6;
  /** The first link of each connection's dialer chain (a proxy's dialer, `--proxy`). */
  base?: Dialer<Connection>;
  /** Stops waiting; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called as soon as a target is done (ready, or not when the time is up). */
  onResult?: (result: WaitResult) => void;
  /** The resolver for host names. */
  lookup?: Lookup;
  /** HTTP: the request (method, headers); its body is read when `body` is given. */
  request?: HttpRequest;
  /** HTTP: the statuses that count as ready (default `["2xx"]`). */
  status?: StatusSet;
  /** HTTP: the body must match too. */
  body?: Pattern;
  /** HTTPS: TLS client settings. */
  tls?: TlsClientOptions;
}

/** The outcome for one target. */
export interface WaitResult {
  /** The target as given (formatted). */
  endpoint: string;
  /** Where it was tried (`127.0.0.1:5432`, `unix:/run/app.sock`, the URL, the path). */
  address: string;
  /** Whether it became ready (with `reverse`: not ready) in time. */
  ready: boolean;
  /** Milliseconds from the start until it was ready, or until the deadline. */
  elapsedMs: number;
  /** Attempts made. */
  attempts: number;
  /** Why the last attempt did not count (with `reverse`: what the last one found), if any. */
  lastError?: string;
  /** HTTP: the last status seen (`503 Service Unavailable`). */
  lastStatus?: string;
}

/** How many redirects an attempt follows (curl's --max-redirs is 50; a health check needs few). */
const MAX_REDIRECTS = 10;

/** Default limit of one attempt. */
const ATTEMPT_TIMEOUT = 5000;

/**
 * Whether `status` is in `set`.
 *
 * @example Usage
 * ```ts
 * import { statusAccepted } from "./wait.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(statusAccepted(204, ["2xx"]));
 * assert.ok(!statusAccepted(301, [200, 204]));
 * ```
 */
export function statusAccepted(status: number, set: StatusSet): boolean {
  return set.some((s) =>
    typeof s === "number" ? s === status : Math.floor(status / 100) === Number(s[0])
  );
}

/** One attempt: resolves to what was found; `ready` is whether the target is up. */
type Attempt = (
  signal: AbortSignal,
) => Promise<{ ready: boolean; detail?: string; status?: string }>;

function describe(target: WaitTarget, options: WaitOptions): { name: string; address: string } {
  if ("url" in target) return { name: target.url, address: target.url };
  if ("file" in target) return { name: `file:${target.file}`, address: target.file };
  return { name: formatEndpoint(target), address: connectAddress(target, options.family) };
}

function attemptOf(target: WaitTarget, options: WaitOptions): Attempt {
  if ("file" in target) {
    return async () => {
      try {
        await Deno.stat(target.file);
        return { ready: true, detail: "the file exists" };
      } catch (err) {
        const error = toSockitError(err, "stat", target.file);
        if (error.exitCode !== 1) throw error;
        return { ready: false, detail: error.reason };
      }
    };
  }
  if ("url" in target) return (signal) => httpAttempt(target.url, options, signal);
  return async (signal) => {
    // Watch each TCP connect (without a proxy): when the attempt is cut, what
    // it was waiting for decides the words.
    let answer: unknown;
    let opened = false;
    let synUnanswered = 0;
    const watched: AddressOpener = async (...args) => {
      const since = performance.now();
      opened = true;
      answer = undefined;
      try {
        return await plainOpener(...args);
      } catch (err) {
        if (err === signal.reason) synUnanswered = performance.now() - since;
        else answer = err;
        throw err;
      }
    };
    let conn;
    try {
      conn = await connect(target, {
        family: options.family,
        signal,
        lookup: options.lookup,
        base: options.base ?? ("path" in target ? undefined : directDialer(watched)),
      });
    } catch (err) {
      if (!signal.aborted) throw err;
      // The answer came, just after the cut: it is the attempt's result.
      if (answer !== undefined) throw toSockitError(answer, "connect", "");
      if (options.base || "path" in target) throw new AttemptCut("");
      const dialled = dialTarget(target, "connect", options.family);
      if (!opened && "host" in dialled && ipFamily(dialled.host) === undefined) {
        throw new AttemptCut("name not resolved");
      }
      throw new AttemptCut(synUnanswered >= SYN_UNANSWERED ? "SYN not acknowledged" : "");
    }
    conn.close();
    return { ready: true, detail: "accepted a connection" };
  };
}

/**
 * An attempt cut by its limit before an answer came, and what it was
 * waiting for, when that is known (`SYN not acknowledged`).
 */
class AttemptCut extends Error {
  constructor(readonly waitingFor: string) {
    super(waitingFor || "cut short");
  }
}

/**
 * How long a connect must have gone without a SYN-ACK or a reset before a
 * cut attempt says the SYN was not acknowledged (a refusal comes back in
 * a round trip; sooner, the attempt was merely cut before any answer).
 */
const SYN_UNANSWERED = 200;

/**
 * Requests `url`, following redirects (at most {@linkcode MAX_REDIRECTS}),
 * and judges the final answer. The user's headers (`-H`) go only to the
 * origin of `url`: a redirect elsewhere — another host, port or scheme —
 * is requested without them, as curl does with credentials (here every
 * `-H`, since any of them may be one: `X-Api-Key`, `Cookie`, …). A redirect
 * that {@linkcode redirectTarget} refuses (another scheme, https:// to
 * http://, into a Unix socket) is not followed: the attempt ends with the
 * 3xx and says why.
 */
async function httpAttempt(
  url: string,
  options: WaitOptions,
  signal: AbortSignal,
): Promise<{ ready: boolean; detail?: string; status?: string }> {
  const accepted = options.status ?? ["2xx"];
  let target = parseHttpUrl(url);
  const home = originOf(target);
  for (let hop = 0;; hop++) {
    using conn = await connect(target.endpoint, {
      family: options.family,
      signal,
      lookup: options.lookup,
      base: options.base,
      groups: isTls(target.endpoint) ? { "tls-client": options.tls ?? {} } : undefined,
    });
    const onAbort = () => conn.close();
    signal.addEventListener("abort", onAbort, { once: true });
    let response;
    try {
      response = await httpExchange(conn, target, {
        ...options.request,
        headers: originOf(target) === home ? options.request?.headers : undefined,
        readBody: !!options.body,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
    const location = response.headers.get("location");
    if (
      !statusAccepted(response.status, accepted) && response.status >= 300 &&
      response.status < 400 && location !== undefined
    ) {
      if (hop === MAX_REDIRECTS) {
        return {
          ready: false,
          detail: `answered ${status} after ${MAX_REDIRECTS} redirects; no more are followed`,
          status,
        };
      }
      const next = redirectTarget(target, location);
      if ("refused" in next) {
        return {
          ready: false,
          detail: `answered ${status}; not followed: ${next.refused}`,
          status,
        };
      }
      target = next.target;
      continue;
    }
    if (!statusAccepted(response.status, accepted)) {
      return { ready: false, detail: `answered ${status}`, status };
    }
    if (options.body && !options.body.test(response.body ?? "")) {
      return {
        ready: false,
        detail: `answered ${status}, but the body does not match ${options.body}${
          response.truncated ? ` (in its first ${formatBytes(MAX_BODY)}, as much as is read)` : ""
        }`,
        status,
      };
    }
    return { ready: true, detail: `answered ${status}`, status };
  }
}

/**
 * Waits until every target is ready (with `reverse`: until none is), or
 * until the timeout. Resolves to one result per target, in the order
 * given; it never rejects for a network error.
 *
 * @example Usage
 * ```ts
 * import { waitFor } from "./wait.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const [result] = await waitFor(
 *   [{ form: "host-port", scheme: "tcp", hostname: "127.0.0.1", port: listener.addr.port }],
 *   { timeout: 2000 },
 * );
 * assert(result.ready);
 * listener.close();
 * ```
 */
export async function waitFor(
  targets: WaitTarget[],
  options: WaitOptions = {},
): Promise<WaitResult[]> {
  const timeout = options.timeout ?? 30_000;
  const interval = options.interval ?? 250;
  const attemptLimit = options.attemptTimeout ?? ATTEMPT_TIMEOUT;
  const started = performance.now();
  using deadline = new Deadline(
    timeout > 0 ? timeout : undefined,
    () => new Error("the time is up"),
    options.signal,
  );
  const stop = deadline.signal;
  const results = await Promise.all(targets.map(async (target) => {
    const { name, address } = describe(target, options);
    const attempt = attemptOf(target, options);
    const result: WaitResult = { endpoint: name, address, ready: false, elapsedMs: 0, attempts: 0 };
    while (!stop.aborted) {
      const attemptStarted = performance.now();
      result.attempts++;
      let ready = false;
      using limit = new Deadline(
        attemptLimit,
        () => new SockitError("the attempt's time is up", { op: "wait", code: "ETIMEDOUT" }),
        stop,
      );
      let cutAfter = 0;
      limit.signal.addEventListener("abort", () => cutAfter = performance.now() - attemptStarted, {
        once: true,
      });
      try {
        const found = await attempt(limit.signal);
        ready = found.ready;
        result.lastError = found.detail;
        if (found.status) result.lastStatus = found.status;
      } catch (err) {
        // Usage errors and denied permissions will not heal by waiting.
        const code = exitCodeOf(err);
        if (code === 2 || code === 126) throw err;
        // An attempt cut short has no answer of its own: say how long it waited, and for
        // what when that is known — unless the deadline cut it as it began, when the attempt
        // before it says more.
        const cutShort = limit.signal.aborted &&
          (err === limit.signal.reason || err instanceof AttemptCut);
        if (!cutShort) result.lastError = toSockitError(err, "connect", address).reason;
        else if (limit.expired || !result.lastError || cutAfter >= attemptLimit / 2) {
          const waitingFor = err instanceof AttemptCut && err.waitingFor;
          result.lastError = `no answer within ${
            formatDuration(limit.expired ? attemptLimit : cutAfter)
          }${waitingFor ? ` (${waitingFor})` : ""}`;
        }
        if (stop.aborted) break;
      }
      if (ready !== (options.reverse ?? false)) {
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
