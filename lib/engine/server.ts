/**
 * The accept loop every server shares (`listen`, `listen -k`, `echo`,
 * `forward`, `proxy`): accept, check `--allow`/`--deny` and `--max-conns`
 * before a byte is read or written, report the client, hand it to a
 * handler, and keep accepting until told to stop. A client that fails never
 * stops the server. Clients are connections from a stream listener, or the
 * peers a datagram listener hands out, one per sender
 * (`net/datagram_listener.ts`): the same loop serves both.
 *
 * @module
 */

import type { AccessRules } from "../net/cidr.ts";
import { refusal } from "../net/cidr.ts";
import type { PeerAddress } from "../net/datagram.ts";
import type { Stream } from "../net/stream.ts";
import type { Peer } from "./transfer.ts";
import { Coalescer } from "./coalesce.ts";
import { delay } from "./deadline.ts";
import { exitCodeOf, toSockitError } from "../base/errors.ts";
import type { SockitError } from "../base/errors.ts";
import { type Events, reportLayers } from "./events.ts";
import { formatDuration } from "../base/format.ts";
import { type ListenerUpgrade, PeerNameError } from "../net/listener.ts";
import { tlsFailure } from "../protocols/tls.ts";
import { C } from "../sys/constants.ts";

/**
 * A client as a listener hands it out: a connection (or a layer over one),
 * or a datagram listener's peer (one sender).
 */
export interface Client extends Peer, Disposable {
  /** When it was accepted (`performance.now()`). */
  readonly openedAt: number;
  /** The peer, as messages name it. */
  readonly label: string;
  /** The peer's address as the socket gives it: an IP peer's is what `--allow/--deny` check. */
  readonly remoteAddr: Deno.Addr | PeerAddress;
  /** The local address as the socket gives it, where it has one. */
  readonly localAddr?: Deno.Addr | PeerAddress;
}

/**
 * What the accept loop serves: a stream listener (`net/listener.ts`), or a
 * datagram listener that hands out a peer per sender.
 */
export interface ServerListener<C extends Client = Client> extends Disposable {
  /** The bound address, formatted. */
  readonly address: string;
  /** Whether it has stopped accepting. */
  readonly closed: boolean;
  /** A TLS server's certificate: accepted clients still need {@linkcode ServerListener.secure}. */
  readonly tls?: unknown;
  /** A protocol upgrade each accepted client goes through after TLS (a WebSocket handshake). */
  readonly upgrade?: ListenerUpgrade;
  /** Completes a TLS server's handshake with a client it accepted. */
  secure?(conn: NoInfer<C>, options: { timeout?: number; signal?: AbortSignal }): Promise<C>;
  /**
   * The next client; rejects once the listener is closed. (A TLS server's
   * client is what `secure()` makes of it: the type comes from there.)
   */
  accept(): Promise<NoInfer<C>>;
  /** Stops accepting. */
  close(): void;
  /** Resolves once its socket is released, after `close()` (and its last client). */
  readonly released?: Promise<void>;
  /** Clients at once when the server sets no `maxConns` (a datagram listener's: 100). */
  readonly maxConns?: number;
  /**
   * Told that the server is full (the limit as messages name it) or no longer
   * (`undefined`), by a listener that has no backlog to hold newcomers in (a
   * datagram listener drops a new sender's datagrams meanwhile, and says so).
   */
  full?(limit: string | undefined): void;
  /** Told that a client was refused at once (a datagram listener drops the rest of its run). */
  refused?(conn: C): void;
}

/**
 * Handles one accepted client (with the listener's layers set up over it:
 * TLS, an upgrade); resolves to its exit code. `slot` lets it say that the
 * client is still in an opening phase of its own (a proxy client's
 * request), as a TLS handshake is.
 */
export type ConnectionHandler<C extends Client = Stream> = (
  conn: C,
  slot: ConnectionSlot,
) => Promise<number>;

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
   * the handshake timeout, and a second) for a slot. Default: the
   * listener's (a datagram listener's 100 peers; no limit for streams).
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

/** The IP address of a client, or `undefined` for a Unix peer (or a child). */
function peerIp(conn: Client): string | undefined {
  const addr = conn.remoteAddr;
  if ("hostname" in addr) return addr.hostname;
  return "address" in addr ? addr.address : undefined;
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
export async function serve<C extends Client>(
  listener: ServerListener<C>,
  handler: ConnectionHandler<C>,
  options: ServeOptions,
): Promise<number> {
  const { events, signal } = options;
  const handshakeTimeout = options.handshakeTimeout ?? HANDSHAKE_TIMEOUT;
  const maxConns = options.maxConns ?? listener.maxConns;
  const limit = `--max-conns ${maxConns}`;
  const active = new Set<Promise<void>>();
  /** Connections still in their TLS handshake or another opening phase (they hold a `--max-conns` slot). */
  const handshaking = new Set<C>();
  /** Connections waiting for a slot that a handshake holds, with when they give up. */
  const waiting: Array<{ conn: C; timer: ReturnType<typeof setTimeout> }> = [];
  using coalescer = new Coalescer((line) => events?.warning?.(line));
  using notes = new Coalescer((line) => events?.info?.(line));
  let lastCode = 0;
  let backoff = 0;

  /** Closes a client at once, before a byte moves. */
  const refuse = (conn: C, reason: string) => {
    events?.rejected?.(conn, reason);
    listener.refused?.(conn);
    conn.close();
  };

  const start = (conn: C) => {
    events?.accepted?.(conn);
    let opened: C | undefined;
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
        if (maxConns !== undefined && active.size < maxConns) listener.full?.(undefined);
      });
    active.add(task);
    // A listener without a backlog drops newcomers itself while the server is full.
    if (maxConns !== undefined && active.size >= maxConns) listener.full?.(limit);
  };

  /** A TLS server's handshake, then a protocol upgrade, in the connection's own task. */
  const secure = async (conn: C): Promise<C | undefined> => {
    const secured = await secureTls(conn);
    const upgrade = listener.upgrade;
    // Only a stream listener has an upgrade: what it hands out are streams.
    if (!secured || !upgrade) return secured;
    handshaking.add(secured);
    const within = handshakeTimeout > 0 && Number.isFinite(handshakeTimeout)
      ? AbortSignal.any([signal, AbortSignal.timeout(handshakeTimeout)])
      : signal;
    try {
      const layered = await upgrade.open(secured as unknown as Stream, { signal: within });
      reportLayers(events, layered, secured.layers?.length);
      return layered as unknown as C;
    } catch (err) {
      secured.close();
      if (signal.aborted) return undefined;
      const reason = within.aborted
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
  const secureTls = async (conn: C): Promise<C | undefined> => {
    if (!listener.tls || !listener.secure) return conn;
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
    while (waiting.length > 0 && !signal.aborted && active.size < maxConns!) {
      const { conn, timer } = waiting.shift()!;
      clearTimeout(timer);
      start(conn);
    }
  };

  const stop = () => listener.close();
  signal.addEventListener("abort", stop, { once: true });
  try {
    while (!signal.aborted && !listener.closed) {
      let conn: C;
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
        refuse(conn, why);
        continue;
      }
      if (maxConns !== undefined && active.size >= maxConns) {
        // A slot held by an unfinished handshake frees up within the handshake
        // timeout: wait for it (as many as there are slots), rather than turn
        // a real client away because of clients that never finish.
        const bounded = handshakeTimeout > 0 && Number.isFinite(handshakeTimeout);
        if (bounded && handshaking.size > 0 && waiting.length < maxConns) {
          const timer = setTimeout(() => {
            const at = waiting.findIndex((w) => w.conn === conn);
            if (at >= 0) waiting.splice(at, 1);
            refuse(conn, `${limit} reached`);
          }, handshakeTimeout + SLOT_WAIT_GRACE);
          waiting.push({ conn, timer });
          continue;
        }
        refuse(conn, `${limit} reached`);
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
  await listener.released;
  return lastCode;
}
