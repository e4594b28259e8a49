/**
 * The transfer engine: one relay between a peer (a connection or a
 * datagram side) and the other side (the payload, a child, another
 * connection, or the peer itself for an echo), with everything a command
 * wants around it — `--expect`, the deadline and signals (through the abort
 * signal), taps (`--hex`), live counts (`--progress`), the `closed` event
 * with its figures, and failures turned into exit codes. Every command that
 * moves bytes runs through {@linkcode transfer}; what it reports goes to an
 * {@linkcode Events} implementation.
 *
 * @module
 */

import {
  SignalInterrupt,
  SockitError,
  TimeoutError,
  toSockitError,
  UsageError,
} from "../base/errors.ts";
import type { ChunkTap, Counted, Events, LayerReport, PeerInfo } from "./events.ts";
import type { Dialogue, PendingExpect } from "./dialogue.ts";
import { formatBytes } from "../base/format.ts";
import { Relay, RelayError } from "./relay.ts";
import type { Direction, Duplex } from "./relay.ts";
import type { TraceFn } from "./trace.ts";

/**
 * A peer side of a transfer: a duplex with a number and addresses. What a
 * layer over it (TLS, …) has to say about its end comes through
 * `Duplex.endInfo`; what it settled as it was set up, through `layers`.
 */
export interface Peer extends Duplex, PeerInfo {
  /** `#1`, `#2`, …: the tag of its trace lines. */
  readonly tag?: string;
  /** Prints each socket operation (`--trace`): a spliced direction is one line here. */
  readonly trace?: TraceFn;
  /** What each layer it runs over settled as it was set up, lowest first (their events). */
  readonly layers?: readonly LayerReport[];
  /**
   * Its end of input is the end of the connection both ways (a layer's
   * closing handshake): nothing can be sent to it after that, so a session
   * bridged to it ends there, whatever its input is doing.
   */
  readonly endIsClose?: boolean;
  /**
   * A datagram side that counts per peer: the figures of each, so that the
   * transfer reports one `closed` per peer instead of one for the socket.
   */
  sessions?(): Array<{ remoteAddress: string; sent: number; received: number; since: number }>;
  /**
   * Told the side it is about to be relayed with: when that side speaks
   * the same framing, each relays the other's reads as they came (frames
   * with their kinds and boundaries, empty ones too) instead of as bytes.
   */
  pair?(other: Duplex): void;
}

/** How a transfer runs and ends. */
export interface TransferOptions {
  /** Stops the transfer: signals (exit 130/143) and the command's deadline (its reason, 124). */
  signal: AbortSignal;
  /**
   * The send/expect dialogue: it sees what is received, and the transfer
   * succeeds as soon as its final expect matches; a pending expect when the
   * peer closes is a failure.
   */
  dialogue?: Dialogue;
  /** Fail after this many ms without data either way (exit 124). */
  idleTimeout?: number;
  /** End the transfer when this side reaches end of input (`"a"` is the peer). */
  endOnEof?: "a" | "b";
  /** With `endOnEof`: the pause in the other side's input that ends it. */
  linger?: number;
  /** Pass end of input on as half-close, per direction `[peer→other, other→peer]`. */
  halfClose?: [boolean, boolean];
  /** First read buffer size; servers use a small one so that idle connections cost little. */
  bufferSize?: number;
  /** Let the kernel move bytes with `splice(2)` where it can (see `RelayOptions.splice`). */
  splice?: boolean | "bulk";
  /** Names the other side in error messages (`stdin`/`stdout` by default). */
  otherName?: { read: string; write: string };
  /** The size of what is sent, when known, for the progress ETA. */
  sendTotal?: number;
  /**
   * The peer's name in the `closed` event (default: its address), or a
   * function that gives it when the transfer ends (a datagram side's latest peer).
   */
  closedName?: string | (() => string);
  /** When a failed `--expect` gave up, after `no match for /…/` (default `before the peer closed`). */
  noMatch?: string;
  /** Where taps, progress and the `closed` event go. */
  events?: Events;
  /**
   * Reports a failure and returns its exit code: the command's error for a
   * one-connection command, a warning for one connection of a server.
   */
  report(error: unknown): number;
}

/** The abort reason when `--expect` matched: the transfer ends successfully. */
class ExpectMatched extends Error {}

/** The first read buffer of a server's connections: small, so that idle ones cost little. */
export const SERVER_BUFFER = 1024;

/**
 * Relays `peer` with `other` until the transfer ends, emits the `closed`
 * event, and returns the exit code: 0, the code of a failure (reported
 * through `options.report`), 124 for a timeout, 130/143 when stopped by a
 * signal. Both sides are closed when it returns.
 *
 * @example Usage
 * ```ts
 * import { transfer } from "./transfer.ts";
 * import { Connection } from "../net/conn.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = Connection.from(await listener.accept());
 * listener.close();
 * // An echo: the connection relayed into itself.
 * const done = transfer(server, server, { signal: new AbortController().signal, halfClose: [true, false], report: () => 1 });
 * await client.write(new TextEncoder().encode("ping"));
 * await client.closeWrite();
 * const buf = new Uint8Array(8);
 * assert.equal(await client.read(buf), 4);
 * assert.equal(await done, 0);
 * client.close();
 * ```
 */
export async function transfer(
  peer: Peer,
  other: Duplex,
  options: TransferOptions,
): Promise<number> {
  const events = options.events;
  // A controller of its own only when --expect may end the transfer early.
  const dialogue = options.dialogue?.expects ? options.dialogue : undefined;
  const matched = dialogue ? new AbortController() : undefined;
  const echoing = other === peer;
  const tap = events?.tap?.(peer);
  // Relayed into itself (echo), each chunk received is also the chunk sent back.
  const hex: ChunkTap | undefined = tap && echoing
    ? (_direction, chunk) => {
      tap(0, chunk);
      tap(1, chunk);
    }
    : tap;
  // The final expect may match as a chunk arrives, or as the send before it ends.
  dialogue?.completed.then(() => matched!.abort(new ExpectMatched()));
  const expect = dialogue
    ? (direction: Direction, chunk: Uint8Array) => {
      if (direction === 0) dialogue.received(chunk);
    }
    : undefined;
  if (!echoing) peer.pair?.(other);
  const relay = new Relay(peer, other, {
    signal: matched ? AbortSignal.any([options.signal, matched.signal]) : options.signal,
    idleTimeout: options.idleTimeout,
    bufferSize: options.bufferSize,
    endOnEof: options.endOnEof,
    linger: options.linger,
    halfClose: options.halfClose,
    splice: options.splice,
    onSplice: (direction, moved) => {
      const [from, to] = direction === 0
        ? [peer.label ?? "peer", other.label ?? "stdio"]
        : [other.label ?? "stdio", peer.label ?? "peer"];
      events?.info?.(
        `${from} → ${to}: moved by splice(2) in the kernel (${moved.bytes} B in ${moved.calls} calls)`,
        { splice: true, from, to, bytes: moved.bytes, calls: moved.calls },
      );
      // --trace: the calls as what they are (one line for the direction's many).
      peer.trace?.(
        peer.tag ?? "",
        `splice(${from} → ${to}) × ${moved.calls} = ${moved.bytes} bytes`,
      );
    },
    // Taps only when asked for: the plain relay calls nothing per chunk.
    onChunk: hex && expect
      ? (direction, chunk) => {
        hex(direction, chunk);
        expect(direction, chunk);
      }
      : hex ?? expect,
  });
  let code = 0;
  let reason: string | undefined;
  // Counts as [received, sent]: relay.bytes is [peer→other, other→peer].
  // Relayed into itself (echo), the one direction is both received and sent.
  const moved = (): [number, number] => echoing ? [relay.bytes[0], relay.bytes[0]] : relay.bytes;
  const counted: Counted = {
    get bytes(): [number, number] {
      return moved();
    },
  };
  events?.track?.(counted, options.sendTotal);
  try {
    await relay.run();
    const pending = dialogue?.pending;
    if (pending) code = options.report(noMatch(pending, peer, options));
  } catch (err) {
    if (err instanceof ExpectMatched) code = 0;
    else if (err instanceof SignalInterrupt) {
      code = err.exitCode;
      reason = err.message;
    } else if (err instanceof RelayError) {
      reason = `${err.op} failed`;
      code = relayFailure(err, peer, options);
    } else {
      const error = sessionTimeout(err, moved());
      reason = (error as Error)?.message;
      code = options.report(error);
    }
  } finally {
    events?.untrack?.(counted);
  }
  // What the layers say of the end (a TLS peer gone without close_notify, a close code).
  const layer = peer.endInfo?.();
  for (const side of [peer, other]) {
    const note = (side === peer ? layer : side.endInfo?.())?.note;
    if (note) events?.info?.(`${side.label} ${note}`);
  }
  const [received, sent] = moved();
  const name = typeof options.closedName === "function" ? options.closedName() : options.closedName;
  const ended = performance.now();
  const sessions = peer.sessions?.() ?? [];
  if (sessions.length) {
    // One line per peer of a datagram socket, each with its own figures.
    for (const s of sessions) {
      events?.closed?.({ ...peerInfo(peer), remoteAddress: s.remoteAddress }, {
        sent: s.sent,
        received: s.received,
        durationMs: Math.round(ended - s.since),
        ...(reason ? { reason } : {}),
      });
    }
  } else {
    events?.closed?.({ ...peerInfo(peer), remoteAddress: name ?? peer.remoteAddress }, {
      sent,
      received,
      durationMs: Math.round(relay.elapsed),
      ...(reason ? { reason } : {}),
      ...(layer ? { layer } : {}),
    });
  }
  return code;
}

/**
 * A command's deadline that expires after data has flowed is the session's
 * time running out, not the connect's: it is said so, with what moved.
 */
function sessionTimeout(err: unknown, [received, sent]: [number, number]): unknown {
  if (!(err instanceof TimeoutError) || err.op !== "connect" || received + sent === 0) return err;
  return new TimeoutError(
    `${err.reason} (--timeout counts the whole session; received ${formatBytes(received)}, ` +
      `sent ${formatBytes(sent)})`,
    { op: "session", address: err.address },
  );
}

/**
 * The failure of an expect that never matched: `expect ADDRESS: no match for
 * /re/ before the peer closed`, or with several, `expect #2 /re/: no match …`.
 */
function noMatch(pending: PendingExpect, peer: Peer, options: TransferOptions): SockitError {
  const when = options.noMatch ?? "before the peer closed";
  return pending.of === 1
    ? new SockitError(`no match for ${pending.pattern} ${when}`, {
      op: "expect",
      address: peer.remoteAddress,
      code: "ENOMATCH",
    })
    : new SockitError(`no match ${when}`, {
      op: `expect #${pending.number} ${pending.pattern}`,
      code: "ENOMATCH",
    });
}

function peerInfo(peer: Peer): PeerInfo {
  return { id: peer.id, remoteAddress: peer.remoteAddress, localAddress: peer.localAddress };
}

/** Reports a failed relay operation and returns its exit code. */
function relayFailure(err: RelayError, peer: Peer, options: TransferOptions): number {
  // A record too large for a datagram, found while relaying: the user's input.
  if (err.cause instanceof UsageError) return options.report(err.cause);
  if (err.side === "b") {
    const names = options.otherName ?? { read: "stdin", write: "stdout" };
    // The other side: stdin/stdout (or the --send-file), a child, a hub, a target.
    if (err.op !== "read" && err.cause instanceof Deno.errors.BrokenPipe) {
      // The reader of stdout went away (`sockit connect … | head -1`): stop quietly.
      return 0;
    }
    const op = err.op === "read" ? "read" : "write";
    return options.report(toSockitError(err.cause, op, op === "read" ? names.read : names.write));
  }
  const op = err.op === "closeWrite" ? "shutdown" : err.op;
  const error = toSockitError(err.cause, op, peer.remoteAddress);
  if (err.op !== "write" || err.undelivered === 0) return options.report(error);
  // Nothing is lost silently: say how much of what was read could not be delivered.
  return options.report(
    new SockitError(`${error.reason}; ${formatBytes(err.undelivered)} of input not delivered`, {
      op: error.op,
      address: error.address,
      code: error.code,
      hint: error.hint,
      cause: error,
    }),
  );
}
