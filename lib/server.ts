/**
 * The accept loop every server shares (`listen`, `listen -k`, `echo`,
 * `forward`): accept, check `--allow`/`--deny` and `--max-conns` before a
 * byte is read or written, report the connection, hand it to a handler, and
 * keep accepting until told to stop. A connection that fails never stops
 * the server.
 *
 * @module
 */

import type { AccessRules } from "./cidr.ts";
import { refusal } from "./cidr.ts";
import type { Connection } from "./conn.ts";
import { exitCodeOf, toSockitError } from "./errors.ts";
import type { Events } from "./events.ts";
import type { Listener } from "./listener.ts";
import { serverHandshake, tlsFailure } from "./tls.ts";

/** Handles one accepted connection; resolves to its exit code. */
export type ConnectionHandler = (conn: Connection) => Promise<number>;

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Where events (accepted, rejected, tls, warnings) go. */
  events?: Events;
  /** Stops accepting and closes the listener; handlers get it too. */
  signal: AbortSignal;
  /** Accept one connection (that passes the checks), then stop listening. */
  once?: boolean;
  /** At most this many connections at once; more are accepted and closed at once. */
  maxConns?: number;
  /** `--allow` / `--deny`. */
  access?: AccessRules;
  /**
   * Reports a handler that failed (threw) and returns its exit code; by
   * default it is a `warning` event and exit code of the error.
   */
  report?: (error: unknown) => number;
}

/** Most a TLS client may take to finish its handshake. */
export const HANDSHAKE_TIMEOUT = 10_000;

/**
 * Completes a server-side TLS handshake (in the connection's own task, so a
 * slow client never holds up accepting); reports what was negotiated, or
 * why it failed (then the client is closed).
 */
async function handshake(conn: Connection, events: Events | undefined): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // A node:tls server's connections come with their handshake done.
    conn.handshake ??= await Promise.race([
      serverHandshake(conn.conn as Deno.TlsConn),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timed out")), HANDSHAKE_TIMEOUT);
      }),
    ]);
    events?.tls?.(conn, conn.handshake);
    return true;
  } catch (err) {
    events?.warning?.(
      `${conn.remoteAddress}: TLS handshake failed: ${tlsFailure(err, conn.remoteAddress).reason}`,
    );
    conn.close();
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** The IP address of a connection's peer, or `undefined` for a Unix peer. */
function peerIp(conn: Connection): string | undefined {
  const addr = conn.conn.remoteAddr;
  return "hostname" in addr ? addr.hostname : undefined;
}

/**
 * Runs the accept loop on `listener` until `signal` aborts (or, with
 * `once`, until the one connection is handled), then waits for the
 * connections in progress. Resolves to the exit code of the last handler
 * (0 when there was none). The listener is closed when this returns.
 *
 * @example Usage
 * ```ts
 * import { listenTcp } from "./listener.ts";
 * import { serve } from "./server.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = await listenTcp("127.0.0.1", 0);
 * const port = (listener.addr as Deno.NetAddr).port;
 * const served = serve(listener, (conn) => {
 *   conn.close();
 *   return Promise.resolve(0);
 * }, { signal: new AbortController().signal, once: true });
 * (await Deno.connect({ hostname: "127.0.0.1", port })).close();
 * assert.deepEqual(await served, 0);
 * ```
 */
export async function serve(
  listener: Listener,
  handler: ConnectionHandler,
  options: ServeOptions,
): Promise<number> {
  const { events, signal } = options;
  const active = new Set<Promise<void>>();
  let lastCode = 0;
  const stop = () => listener.close();
  signal.addEventListener("abort", stop, { once: true });
  try {
    while (!signal.aborted && !listener.closed) {
      let conn: Connection;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (signal.aborted || listener.closed) break;
        // EMFILE and the like: say so, breathe, go on accepting.
        events?.warning?.(`accept on ${listener.address}: ${(err as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      const why = options.access ? refusal(options.access, peerIp(conn)) : undefined;
      const full = options.maxConns !== undefined && active.size >= options.maxConns;
      if (why || full) {
        events?.rejected?.(conn, why ?? `--max-conns ${options.maxConns} reached`);
        conn.close();
        continue;
      }
      events?.accepted?.(conn);
      if (options.once) listener.close();
      const task: Promise<void> = (conn.isTls ? handshake(conn, events) : Promise.resolve(true))
        .then((ok) => (ok ? handler(conn) : 1))
        .then((code) => void (lastCode = code))
        .catch((err) => {
          const error = toSockitError(err, "serve", conn.remoteAddress);
          if (options.report) lastCode = options.report(error);
          else {
            events?.warning?.(error.message);
            lastCode = exitCodeOf(error);
          }
        })
        .finally(() => active.delete(task));
      active.add(task);
    }
  } finally {
    signal.removeEventListener("abort", stop);
    listener.close();
  }
  await Promise.all(active);
  return lastCode;
}
