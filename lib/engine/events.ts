/**
 * What the library reports, as one interface: servers and transfers call
 * these methods, and whoever runs them decides what to show. The CLI's
 * reporter implements it (as `-v` text or `--json` lines); a library user
 * may implement any part of it, or none. The library itself never prints.
 *
 * @module
 */

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
  /** What the layer the peer runs over said of its end (see `Duplex.endInfo`). */
  layer?: LayerEnd;
}

/**
 * What a layer over a connection (TLS, for one) settled as it was set up,
 * as its event reports it. The layer writes all of it: whoever shows it
 * needs to know nothing of the layer.
 */
export interface LayerInfo {
  /** The layer as the `-v` line names it (`TLS`). */
  readonly title: string;
  /** What it settled, in words: `TLSv1.3, TLS_AES_128_GCM_SHA256, no ALPN`. */
  readonly text: string;
  /** The same as the fields of the JSON event. */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** One layer's event: its name (`tls`, …) and what the layer settled. */
export interface LayerReport {
  /** The event's name. */
  readonly name: string;
  /** What the layer settled. */
  readonly info: LayerInfo;
}

/**
 * What a layer says of how its stream ended (see `Duplex.endInfo`): what
 * the `closed` event adds, and a note worth showing with `-v`.
 */
export interface LayerEnd {
  /** Fields the `closed` event carries (a close code the peer sent, say). */
  readonly fields?: Readonly<Record<string, unknown>>;
  /** The same in words, for the `closed` line. */
  readonly text?: string;
  /** A note on the end, after the side's name (`closed without TLS close_notify …`). */
  readonly note?: string;
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
  /**
   * A layer over a connection was set up and settled `info`: `tls` (what
   * the handshake negotiated), or any other layer's event by its name.
   */
  layer?(peer: PeerInfo, name: string, info: LayerInfo): void;
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

/**
 * Reports the layers `peer` runs over, lowest first, from
 * the `from`th on: one {@linkcode Events.layer} each.
 *
 * @example Usage
 * ```ts
 * import { reportLayers } from "./events.ts";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const peer = {
 *   id: 1,
 *   remoteAddress: "127.0.0.1:443",
 *   localAddress: "127.0.0.1:5000",
 *   layers: [{ name: "tls", info: { title: "TLS", text: "TLSv1.3", fields: {} } }],
 * };
 * reportLayers({ layer: (_peer, name) => seen.push(name) }, peer);
 * assert.deepEqual(seen, ["tls"]);
 * ```
 */
export function reportLayers(
  events: Events | undefined,
  peer: PeerInfo & { readonly layers?: readonly LayerReport[] },
  from = 0,
): void {
  for (const { name, info } of peer.layers?.slice(from) ?? []) events?.layer?.(peer, name, info);
}
