/**
 * What the library reports, as one interface: servers and transfers call
 * these methods, and whoever runs them decides what to show. The CLI's
 * reporter implements it (as `-v` text or `--json` lines); a library user
 * may implement any part of it, or none. The library itself never prints.
 *
 * @module
 */

import type { HandshakeInfo } from "../protocols/tls.ts";
import type { UpgradeInfo } from "../protocols/websocket.ts";

/** The peer of a connection or datagram socket, as events name it. */
export interface PeerInfo {
  /** The connection number (`#1`). */
  readonly id: number;
  /** The peer's address, formatted. */
  readonly remoteAddress: string;
  /** The local address, formatted. */
  readonly localAddress: string;
}

/** Byte counts and duration of a finished connection. */
export interface ClosedInfo {
  /** Bytes written to the peer. */
  sent: number;
  /** Bytes received from the peer. */
  received: number;
  /** How long the connection lasted, in milliseconds. */
  durationMs: number;
  /** Why it ended, when not a normal close (`reset`, `idle timeout`, …). */
  reason?: string;
  /** A WebSocket's close code. */
  closeCode?: number;
}

/** Something whose byte counts a progress line shows: `[received, sent]`. */
export interface Counted {
  /** Bytes received and sent so far. */
  readonly bytes: readonly [number, number];
}

/** Sees each chunk a transfer moved: direction 0 was received from the peer, 1 sent to it. */
export type ChunkTap = (direction: 0 | 1, chunk: Uint8Array) => void;

/**
 * Everything sockit's library reports. Each method is optional; a missing
 * one means nobody listens.
 *
 * @example Usage
 * ```ts
 * import type { Events } from "./events.ts";
 *
 * const seen: string[] = [];
 * const events: Events = { accepted: (peer) => seen.push(`from ${peer.remoteAddress}`) };
 * events.accepted?.({ id: 1, remoteAddress: "127.0.0.1:5000", localAddress: "127.0.0.1:80" });
 * console.assert(seen[0] === "from 127.0.0.1:5000");
 * ```
 */
export interface Events {
  /** A server listens, on its real bound address. */
  listening?(address: string, transport: string): void;
  /** A server accepted a connection (it passed `--allow/--deny` and `--max-conns`). */
  accepted?(peer: PeerInfo): void;
  /** A server closed a client at once, before a byte was read or written. */
  rejected?(peer: PeerInfo, reason: string): void;
  /** A client connection is established. */
  connected?(peer: PeerInfo): void;
  /** What a TLS handshake negotiated. */
  tls?(peer: PeerInfo, info: HandshakeInfo): void;
  /** A connection became a WebSocket (`peer.upgrade` says how). */
  upgraded?(peer: PeerInfo & { readonly upgrade?: UpgradeInfo }): void;
  /** A connection (or a datagram socket's session) ended, with its figures. */
  closed?(peer: PeerInfo, info: ClosedInfo): void;
  /** Something went wrong that does not stop the command (one of many connections). */
  warning?(text: string): void;
  /** A note worth showing with `-v`. */
  info?(text: string, fields?: Record<string, unknown>): void;
  /** A tap for the chunks of a transfer with `peer` (a hex dump), or none. */
  tap?(peer: PeerInfo): ChunkTap | undefined;
  /** A transfer's counts are live until {@linkcode Events.untrack} (a progress line). */
  track?(counted: Counted, total?: number): void;
  /** A transfer that was tracked has ended. */
  untrack?(counted: Counted): void;
}
