/**
 * A datagram forwarder (socat `UDP-LISTEN:p,fork UDP:target`): each client
 * address gets a session with an upstream socket of its own, so the
 * target's replies go back to the client that asked; a session ends after
 * an idle time without datagrams either way, or when the forwarder stops.
 *
 * @module
 */

import type { DatagramSocket, PeerAddress } from "./datagram.ts";
import { formatPeer, RECEIVE_BUFFER } from "./datagram.ts";
import { Coalescer } from "../engine/coalesce.ts";
import { toSockitError } from "../base/errors.ts";
import { formatDuration } from "../base/format.ts";
import { refusal } from "./cidr.ts";
import type { AccessRules } from "./cidr.ts";

/** What a datagram session exchanged. */
export interface DatagramSessionInfo {
  /** The client, formatted. */
  client: string;
  /** Bytes from the client, forwarded to the target. */
  received: number;
  /** Bytes from the target, sent back to the client. */
  sent: number;
  /** Datagrams each way: [from the client, from the target]. */
  datagrams: [number, number];
  /** When it started (`performance.now()`). */
  since: number;
  /** Why it ended. */
  reason?: string;
}

/** Options of {@linkcode forwardDatagrams}. */
export interface ForwardDatagramsOptions {
  /** Stops the forwarder; every session ends. */
  signal: AbortSignal;
  /** A session ends after this many ms without a datagram either way (default 30 s). */
  idleTimeout?: number;
  /**
   * At most this many sessions at once (default {@linkcode DATAGRAM_MAX_SESSIONS});
   * a new client's datagrams beyond it are dropped, said through `onWarning`
   * once with a count per second.
   */
  maxSessions?: number;
  /** A new client showed up. */
  onSession?: (client: string) => void;
  /** A session ended, with its figures. */
  onClosed?: (info: DatagramSessionInfo) => void;
  /** A datagram could not be forwarded (the reason; the forwarder goes on). */
  onWarning?: (text: string) => void;
  /** `--allow` / `--deny`: datagrams from a client they refuse are dropped. */
  access?: AccessRules;
  /** A client's datagrams were dropped by `access` (said once per run of datagrams from it). */
  onRejected?: (client: string, why: string) => void;
  /** What the upstream is called in a session's end reason (default `target`). */
  upstreamName?: string;
  /** Stop after the first session has ended (a server without `-k`). */
  once?: boolean;
}

/** The idle time of a session, by default. */
export const DATAGRAM_SESSION_IDLE = 30_000;

/**
 * Sessions at once, by default (ncat's connection limit): each holds an
 * upstream socket or a child process, and a datagram from a new (or forged)
 * source address is all it takes to open one.
 */
export const DATAGRAM_MAX_SESSIONS = 100;

interface Session {
  info: DatagramSessionInfo;
  upstream: DatagramSocket;
  peer: PeerAddress;
  last: number;
  reading: Promise<void>;
}

/**
 * Forwards datagrams from `listener` to sockets made by `openUpstream`, one
 * per client, and the replies back; resolves when `signal` aborts and every
 * session is closed.
 *
 * @example Usage
 * ```ts ignore
 * await forwardDatagrams(bindDatagram("127.0.0.1", 5353), () => connectDatagram("127.0.0.1", 53), { signal });
 * ```
 */
export async function forwardDatagrams(
  listener: DatagramSocket,
  openUpstream: (client: PeerAddress) => DatagramSocket | Promise<DatagramSocket>,
  options: ForwardDatagramsOptions,
): Promise<void> {
  const idle = options.idleTimeout ?? DATAGRAM_SESSION_IDLE;
  const maxSessions = options.maxSessions ?? DATAGRAM_MAX_SESSIONS;
  const sessions = new Map<string, Session>();
  // A flood of new clients beyond the cap is one line and a count, not one line each.
  using dropped = new Coalescer((line) => options.onWarning?.(line));
  let served = false;
  let lastRejected: string | undefined;

  // Sessions being ended (their upstream closing): the forwarder ends after all of them.
  const ending = new Set<Promise<void>>();
  const end = (key: string, reason?: string): Promise<void> => {
    const session = sessions.get(key);
    if (!session) return Promise.resolve();
    sessions.delete(key);
    session.upstream.close();
    const done = (async () => {
      await session.reading;
      await session.upstream.closed;
      options.onClosed?.({ ...session.info, ...(reason ? { reason } : {}) });
      if (options.once) stop();
    })();
    ending.add(done);
    return done.finally(() => ending.delete(done));
  };

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [key, s] of sessions) {
      if (now - s.last >= idle) end(key, `idle for ${formatDuration(idle)}`);
    }
  }, Math.max(10, Math.min(1000, idle / 4)));

  let stopped = false;
  const stop = () => {
    stopped = true;
    listener.close();
  };
  options.signal.addEventListener("abort", stop, { once: true });
  const buf = new Uint8Array(RECEIVE_BUFFER);
  try {
    while (!stopped) {
      let n: number;
      let from: PeerAddress;
      try {
        [n, from] = await listener.receive(buf);
      } catch (err) {
        if (stopped) break;
        throw err;
      }
      const key = formatPeer(from);
      let session = sessions.get(key);
      if (!session) {
        const why = options.access
          ? refusal(options.access, "address" in from ? from.address : undefined)
          : undefined;
        if (why) {
          if (lastRejected !== key) options.onRejected?.(key, why);
          lastRejected = key;
          continue;
        }
        // A server without -k serves its first peer only.
        if (options.once && served) continue;
        if (sessions.size >= maxSessions) {
          dropped.say(
            `--max-conns ${maxSessions} sessions reached: dropped a datagram from a new client`,
          );
          continue;
        }
        let upstream: DatagramSocket;
        try {
          upstream = await openUpstream(from);
          served = true;
        } catch (err) {
          options.onWarning?.(`${key}: ${(err as Error).message}`);
          continue;
        }
        const info: DatagramSessionInfo = {
          client: key,
          received: 0,
          sent: 0,
          datagrams: [0, 0],
          since: performance.now(),
        };
        const created: Session = {
          info,
          upstream,
          peer: from,
          last: performance.now(),
          reading: Promise.resolve(),
        };
        created.reading = (async () => {
          const back = new Uint8Array(RECEIVE_BUFFER);
          for (;;) {
            let m: number;
            try {
              [m] = await upstream.receive(back);
            } catch (err) {
              if (sessions.get(key) === created) {
                // The target refused (ICMP port unreachable) or failed: this session ends.
                const reason = toSockitError(err, "forward", key).reason;
                queueMicrotask(() => end(key, `${options.upstreamName ?? "target"}: ${reason}`));
              }
              return;
            }
            created.last = performance.now();
            // Stopping: the listener is closed, nothing can go back.
            if (stopped) continue;
            try {
              await listener.send(back.subarray(0, m), created.peer);
              info.sent += m;
              info.datagrams[1]++;
            } catch (err) {
              options.onWarning?.(`${key}: reply not delivered: ${(err as Error).message}`);
            }
          }
        })();
        sessions.set(key, created);
        session = created;
        options.onSession?.(key);
      }
      session.last = performance.now();
      try {
        await session.upstream.send(buf.subarray(0, n));
        session.info.received += n;
        session.info.datagrams[0]++;
      } catch (err) {
        options.onWarning?.(`${key}: not forwarded: ${(err as Error).message}`);
      }
    }
  } finally {
    clearInterval(sweep);
    options.signal.removeEventListener("abort", stop);
    listener.close();
    await Promise.all([...sessions.keys()].map((key) => end(key, "stopped")));
    // And those that were ending already (a child that closed its output as we stopped).
    await Promise.all([...ending]);
    await listener.closed;
  }
}
