/**
 * The accept loop every server shares (`listen`, `listen -k`, `echo`,
 * `forward`): accept, check `--allow`/`--deny` and `--max-conns` before a
 * byte is read or written, report the connection, hand it to a handler, and
 * keep accepting until told to stop. A connection that fails never stops
 * the server.
 *
 * @module
 */

import type { AccessRules } from "../net/cidr.ts";
import { refusal } from "../net/cidr.ts";
import type { Connection } from "../net/conn.ts";
import type { Stream } from "../net/stream.ts";
import { Coalescer } from "./coalesce.ts";
import { delay } from "./deadline.ts";
import { exitCodeOf, toSockitError } from "../base/errors.ts";
import type { SockitError } from "../base/errors.ts";
import { type Events, reportLayers } from "./events.ts";
import { formatDuration } from "../base/format.ts";
import { type Listener, PeerNameError } from "../net/listener.ts";
import { tlsFailure } from "../protocols/tls.ts";
import { C } from "../sys/constants.ts";

/**
 * Handles one accepted connection (with the listener's layers set up over
 * it: TLS, an upgrade); resolves to its exit code. `slot` lets it say that
 * the connection is still in an opening phase of its own (a proxy client's
 * request), as a TLS handshake is.
 */
export type ConnectionHandler = (conn: Stream, slot: ConnectionSlot) => Promise<number>;

/** What a handler may tell the accept loop about the `--max-conns` slot its connection holds. */
export interface ConnectionSlot {
  /**
   * The connection is in (`true`) or past (`false`) an opening phase that
   * the handler bounds in time (under {@linkcode ServeOptions.handshakeTimeout}):
   * while it is, a newcomer beyond `--max-conns` waits for the slot rather
   * than being closed at once, as for a TLS handshake.
   */
  opening(on: boolean): void;
}

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Where events (accepted, rejected, layers, warnings) go. */
  events?: Events;
  /** Stops accepting and closes the listener; handlers get it too. */
  signal: AbortSignal;
  /** Accept one connection (that passes the checks), then stop listening. */
  once?: boolean;
  /**
   * At most this many connections at once; more are accepted and closed at
   * once — except while a slot is held by a TLS handshake (or a handler's
   * opening phase, {@linkcode ConnectionSlot}), when a newcomer waits (up to
   * the handshake timeout, and a second) for a slot.
   */
  maxConns?: number;
  /** Most a TLS client may take to finish its handshake, in ms (0: no limit); default {@linkcode HANDSHAKE_TIMEOUT}. */
  handshakeTimeout?: number;
  /** `--allow` / `--deny`. */
  access?: AccessRules;
  /**
   * Reports a handler that failed (threw) and returns its exit code; by
   * default it is a `warning` event and exit code of the error.
   */
  report?: (error: unknown) => number;
}

/** Most a TLS client may take to finish its handshake, by default (`--handshake-timeout`). */
export const HANDSHAKE_TIMEOUT = 10_000;

/**
 * How much longer than the handshake timeout a newcomer waits for a slot.
 * The slots' holders all started before it, so their own timeouts end them
 * within the handshake timeout — but a waiter's timer of exactly that length
 * races their timers and the closing that follows, and could turn the
 * newcomer away just as a slot frees up.
 */
const SLOT_WAIT_GRACE = 1000;

/**
 * Accept failures that are about the connection being accepted (it was
 * reset or aborted before it was accepted): the next one is accepted at
 * once. Anything else — out of descriptors (EMFILE, ENFILE), of buffers or
 * memory — is worth a short pause before the next try.
 */
const CONNECTION_ERRORS = new Set(["ENOTCONN", "ECONNABORTED", "ECONNRESET", "EPROTO"]);

/** The first pause after an accept failure that is not the connection's; it doubles up to the most. */
const ACCEPT_BACKOFF = 5;
const ACCEPT_BACKOFF_MAX = 100;

/** The errno name of an accept failure. */
function acceptErrno(err: unknown): string {
  const code = (err as { code?: string })?.code;
  if (code && code !== "EFAIL") return code;
  const n = /os error (\d+)/.exec(String((err as Error)?.message))?.[1];
  const names: Record<number, string> = {
    [C.ENOTCONN]: "ENOTCONN",
    [C.ECONNABORTED]: "ECONNABORTED",
    [C.ECONNRESET]: "ECONNRESET",
    [C.EPROTO]: "EPROTO",
  };
  return names[Number(n)] ?? code ?? "EFAIL";
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
 * import { listenTcp } from "../net/listener.ts";
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
  const handshakeTimeout = options.handshakeTimeout ?? HANDSHAKE_TIMEOUT;
  const active = new Set<Promise<void>>();
  /** Connections still in their TLS handshake or another opening phase (they hold a `--max-conns` slot). */
  const handshaking = new Set<Stream>();
  /** Connections waiting for a slot that a handshake holds, with when they give up. */
  const waiting: Array<{ conn: Connection; timer: ReturnType<typeof setTimeout> }> = [];
  using coalescer = new Coalescer((line) => events?.warning?.(line));
  using notes = new Coalescer((line) => events?.info?.(line));
  let lastCode = 0;
  let backoff = 0;

  const start = (conn: Connection) => {
    events?.accepted?.(conn);
    let opened: Stream | undefined;
    const slot: ConnectionSlot = {
      opening: (on) => void (on ? handshaking.add(opened!) : handshaking.delete(opened!)),
    };
    const task: Promise<void> = secure(conn)
      .then((secured) => (secured ? handler(opened = secured, slot) : 1))
      .then((code) => void (lastCode = code))
      .catch((err) => {
        const error = toSockitError(err, "serve", conn.remoteAddress);
        if (options.report) lastCode = options.report(error);
        else {
          events?.warning?.(error.message);
          lastCode = exitCodeOf(error);
        }
      })
      .finally(() => {
        if (opened) handshaking.delete(opened);
        active.delete(task);
        admitWaiting();
      });
    active.add(task);
  };

  /** A TLS server's handshake, then a protocol upgrade, in the connection's own task. */
  const secure = async (conn: Connection): Promise<Stream | undefined> => {
    const secured = await secureTls(conn);
    const upgrade = listener.upgrade;
    if (!secured || !upgrade) return secured;
    handshaking.add(secured);
    const limit = handshakeTimeout > 0 && Number.isFinite(handshakeTimeout)
      ? AbortSignal.any([signal, AbortSignal.timeout(handshakeTimeout)])
      : signal;
    try {
      const layered = await upgrade.open(secured, { signal: limit });
      reportLayers(events, layered, secured.layers?.length);
      return layered;
    } catch (err) {
      secured.close();
      if (signal.aborted) return undefined;
      const reason = limit.aborted
        ? `timed out after ${formatDuration(handshakeTimeout)} (--handshake-timeout)`
        : (err as SockitError).reason ?? (err as Error).message;
      coalescer.say(
        `${upgrade.title} upgrade failed: ${reason}`,
        `${conn.remoteAddress}: ${upgrade.title} upgrade failed: ${reason}`,
      );
      return undefined;
    } finally {
      handshaking.delete(secured);
    }
  };

  /** A TLS server's handshake, in the connection's own task; undefined when it failed. */
  const secureTls = async (conn: Connection): Promise<Stream | undefined> => {
    if (!listener.tls) return conn;
    handshaking.add(conn);
    try {
      const secured = await listener.secure(conn, { timeout: handshakeTimeout, signal });
      reportLayers(events, secured);
      return secured;
    } catch (err) {
      if (signal.aborted) return undefined;
      const reason = (err as { code?: string }).code === "ETIMEDOUT"
        ? `timed out after ${formatDuration(handshakeTimeout)} (--handshake-timeout)`
        : tlsFailure(err, conn.remoteAddress).reason;
      coalescer.say(
        `TLS handshake failed: ${reason}`,
        `${conn.remoteAddress}: TLS handshake failed: ${reason}`,
      );
      return undefined;
    } finally {
      handshaking.delete(conn);
    }
  };

  /** Gives a freed slot to the connection that has waited longest. */
  const admitWaiting = () => {
    while (waiting.length > 0 && !signal.aborted && active.size < options.maxConns!) {
      const { conn, timer } = waiting.shift()!;
      clearTimeout(timer);
      start(conn);
    }
  };

  const stop = () => listener.close();
  signal.addEventListener("abort", stop, { once: true });
  try {
    while (!signal.aborted && !listener.closed) {
      let conn: Connection;
      try {
        conn = await listener.accept();
        backoff = 0;
      } catch (err) {
        if (signal.aborted || listener.closed) break;
        const errno = acceptErrno(err);
        const reason = (err as SockitError).reason ?? (err as Error).message;
        if (err instanceof PeerNameError) {
          // Deno closed that one client: the next is accepted at once.
          coalescer.say(
            `accept on ${listener.address}: ${reason}`,
            `accept on ${listener.address}: ${reason}: "${err.peer}"`,
          );
          continue;
        }
        // A client that reset before it was accepted concerns only itself (said with -v).
        if (CONNECTION_ERRORS.has(errno)) {
          notes.say(
            `accept on ${listener.address}: ${reason} (a client left before it was accepted)`,
          );
          continue;
        }
        coalescer.say(`accept on ${listener.address}: ${reason}`);
        // Out of descriptors or memory: give the connections in progress a moment.
        backoff = Math.min(backoff ? backoff * 2 : ACCEPT_BACKOFF, ACCEPT_BACKOFF_MAX);
        await delay(backoff, signal).catch(() => {});
        continue;
      }
      const why = options.access ? refusal(options.access, peerIp(conn)) : undefined;
      if (why) {
        events?.rejected?.(conn, why);
        conn.close();
        continue;
      }
      if (options.maxConns !== undefined && active.size >= options.maxConns) {
        // A slot held by an unfinished handshake frees up within the handshake
        // timeout: wait for it (as many as there are slots), rather than turn
        // a real client away because of clients that never finish.
        const bounded = handshakeTimeout > 0 && Number.isFinite(handshakeTimeout);
        if (bounded && handshaking.size > 0 && waiting.length < options.maxConns) {
          const timer = setTimeout(() => {
            const at = waiting.findIndex((w) => w.conn === conn);
            if (at >= 0) waiting.splice(at, 1);
            events?.rejected?.(conn, `--max-conns ${options.maxConns} reached`);
            conn.close();
          }, handshakeTimeout + SLOT_WAIT_GRACE);
          waiting.push({ conn, timer });
          continue;
        }
        events?.rejected?.(conn, `--max-conns ${options.maxConns} reached`);
        conn.close();
        continue;
      }
      if (options.once) listener.close();
      start(conn);
    }
  } finally {
    signal.removeEventListener("abort", stop);
    listener.close();
    for (const { conn, timer } of waiting.splice(0)) {
      clearTimeout(timer);
      conn.close();
    }
  }
  await Promise.all(active);
  return lastCode;
}
