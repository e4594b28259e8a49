/**
 * WebSocket (RFC 6455) as a layer over a stream the dialer chain or a
 * listener produced: the HTTP/1.1 upgrade both ways, framing, masking,
 * fragmentation, ping/pong and the close handshake. A
 * {@linkcode WebSocketSide} is a layer that holds the stream it runs over
 * (a `Stream`: TCP, TLS, a proxy's tunnel), so the relay, `--hex`,
 * `--stats` (payload bytes), events and limits work on it as on any
 * stream; it offers no splice (frames are not bytes), reports its upgrade
 * as an `upgraded` event and its peer's close code in `closed`.
 *
 * Messages and bytes: in `text` mode each input line is one text message
 * (binary when the line is not UTF-8) and each text message read gets a
 * `\n`; in `binary` mode each write is one binary message and messages are
 * read as bytes. Relaying frames — `echo` mode, and two sides paired with
 * {@linkcode WebSocketSide.pair} (`forward ws:// ws://`) — every read is a
 * piece of one frame (an empty frame is a read of 0 bytes: see
 * `Duplex.messages`) and the matching write sends it on as the same piece
 * of the same frame: the header with the frame's opcode, FIN bit and length
 * before its first bytes, the rest as it comes. Kinds, boundaries and
 * fragments survive, and nothing is held back to be joined or cut up.
 *
 * Frames, pongs, Closes and pings take turns on the socket, a relayed frame
 * holding it from its header to its last byte; a pong is written before
 * reading goes on, so a peer that pings without reading meets backpressure.
 *
 * Deno's own `WebSocket` has no backpressure and cannot run over an
 * existing connection (which `--trace`, `--proxy` and address-by-address
 * connecting need); this layer is small and runs over any stream.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { concat, writeAll } from "../base/bytes.ts";
import { StreamLayer } from "../net/stream.ts";
import type { Stream } from "../net/stream.ts";
import type { Duplex } from "../engine/relay.ts";
import type { LayerEnd, LayerInfo, LayerReport } from "../engine/events.ts";
import { SockitError } from "../base/errors.ts";
import { formatDuration } from "../base/format.ts";
import { headerEnd } from "./proxy.ts";
import type { TraceFn } from "../engine/trace.ts";

/** How messages map to bytes (see the module text). */
export type WebSocketMode = "text" | "binary" | "echo";

/** Options of both ends. */
export interface WebSocketOptions {
  /** Default `text`. */
  mode?: WebSocketMode;
  /**
   * Text mode: each message keeps its line end (`--crlf`: the input's LF,
   * made CRLF, ends each message) instead of losing it.
   */
  keepLineEnds?: boolean;
  /** After the input ends, send Close once the peer has been quiet this long, in ms (default 250; 0: at once). */
  closeDelay?: number;
  /** Send no Close at the end of input (`--no-half-close`). */
  noCloseOnEof?: boolean;
  /** Send a ping this often, in ms. */
  pingInterval?: number;
  /** Fail when no pong came this long after a ping, in ms. */
  pingTimeout?: number;
  /** The largest message accepted, in bytes (default 64 MiB): a bigger one is closed with 1009. */
  maxMessage?: number;
  /**
   * How long a message may stay open, from its first frame, in ms (default
   * {@linkcode MAX_MESSAGE_TIME}): a frame that comes later while it is
   * still open is answered with Close 1008.
   */
  maxMessageTime?: number;
  /** Subprotocols: offered (client) or accepted (server), in order of preference. */
  protocols?: string[];
  /** Prints the handshake and each control frame (`--trace`). */
  trace?: TraceFn;
}

/** Options of {@linkcode websocketClient}. */
export interface WebSocketClientOptions extends WebSocketOptions {
  /** The request target: path and query (default `/`). */
  resource?: string;
  /** The `Host` header (host, and port unless it is the default). */
  host: string;
  /** More request headers (`-H 'K: V'`). */
  headers?: [string, string][];
  /** The `Origin` header. */
  origin?: string;
}

/** Options of {@linkcode websocketServer}. */
export interface WebSocketServerOptions extends WebSocketOptions {
  /** Serve only this path (any path when absent or `/`). */
  path?: string;
}

/** What the upgrade settled. */
export interface UpgradeInfo {
  /** The HTTP status of the upgrade (101). */
  status: number;
  /** The request target. */
  path: string;
  /** The subprotocol chosen, if any. */
  protocol?: string;
}

/** The largest message by default. */
export const MAX_MESSAGE = 64 * 2 ** 20;
/**
 * The most frames one message may come in (its first and its
 * continuations): one more is answered with Close 1009.
 */
export const MAX_FRAGMENTS = 65536;
/** How long a message may stay open by default, in ms (5 minutes). */
export const MAX_MESSAGE_TIME = 5 * 60_000;
/** The default quiet time before Close at the end of input. */
export const CLOSE_DELAY = 250;
/** How long to wait for the peer's Close after sending ours. */
const CLOSE_WAIT = 5000;
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/**
 * The largest HTTP head of an upgrade, request or answer (as Node's default):
 * a server answers a bigger one with 431, a client gives up.
 */
export const MAX_HEAD = 16 * 1024;

const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;
const encoder = new TextEncoder();

/** `Sec-WebSocket-Accept` for a key. */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** Where a chunk of payload sits in the frame it came in. */
interface FramePart {
  /** The frame's opcode as it came: text, binary, or a continuation. */
  opcode: number;
  /** The frame's FIN bit: its message ends with it. */
  fin: boolean;
  /** The frame's payload length. */
  length: number;
  /** The chunk begins the frame (a writer starts the frame's header with it). */
  start: boolean;
}

/** A chunk waiting to be read, and where it came from. */
interface Piece extends FramePart {
  bytes: Uint8Array;
}

/** What one read took of a frame (relaying frames: echo, or two paired sides). */
interface Segment extends FramePart {
  /** Bytes read. */
  size: number;
}

/** The frame being written piece by piece as it is read from the source. */
interface OpenFrame {
  /** Payload bytes still to come. */
  left: number;
  /** A client's mask for it, and where in the mask the next byte is. */
  mask?: Uint8Array;
  at: number;
}

/**
 * What the upgrade settled, as the `upgraded` event shows it: status, path,
 * subprotocol.
 *
 * @example Usage
 * ```ts
 * import { upgradeLayerInfo } from "./websocket.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(upgradeLayerInfo({ status: 101, path: "/chat" }).text, "101 /chat");
 * ```
 */
export function upgradeLayerInfo(upgrade: UpgradeInfo): LayerInfo {
  return {
    title: "WebSocket",
    text: `${upgrade.status} ${upgrade.path}${
      upgrade.protocol ? `, subprotocol ${upgrade.protocol}` : ""
    }`,
    fields: {
      status: upgrade.status,
      path: upgrade.path,
      ...(upgrade.protocol ? { protocol: upgrade.protocol } : {}),
    },
  };
}

/**
 * A WebSocket over a stream, as a stream.
 *
 * @example Usage
 * ```ts ignore
 * const ws = await websocketClient(conn, { host: "127.0.0.1:8080", resource: "/chat" });
 * await ws.write(new TextEncoder().encode("hello\n"));
 * ```
 */
export class WebSocketSide extends StreamLayer {
  /** What the upgrade settled. */
  readonly upgrade: UpgradeInfo;
  /** The layers below (TLS), then the upgrade: their events. */
  readonly layers: readonly LayerReport[];
  /** The peer's close code once it came (1005: none given). */
  closeCode?: number;
  /** The peer's close reason. */
  closeReason?: string;
  /** The end of what is read is the Close handshake: nothing can be sent after it. */
  readonly endIsClose = true;
  /** The stream below (`inner`), read and written frame by frame. */
  #inner: Stream;
  #client: boolean;
  #mode: WebSocketMode;
  #options: WebSocketOptions;
  #trace?: TraceFn;
  #raw: Uint8Array;
  #scratch = new Uint8Array(65536);
  #out: Piece[] = [];
  /**
   * Relaying frames: the side whose reads this side writes out frame by frame,
   * as they came (itself in echo mode; the other side of a `forward ws:// ws://`).
   */
  #source?: WebSocketSide;
  /** Each read's place in its frame, while frames are relayed from here. */
  #segments: Segment[] = [];
  /** Relaying frames: the frame being written, until its last byte is out. */
  #open?: OpenFrame;
  /** The write of a relayed frame's part under way. */
  #writing?: Promise<void>;
  /** A frame relayed half-way is being cut off (the peer failed): nothing more is written. */
  #cutting = false;
  #line: Uint8Array[] = [];
  // The frame being read.
  #left = 0;
  #mask?: Uint8Array;
  #maskAt = 0;
  #frameOpcode = 0;
  #frameFin = true;
  #frameLength = 0;
  #frameStart = true;
  // The message being read.
  #messageOpcode = 0;
  #messageSize = 0;
  #fragments = 0;
  #messageStart = 0;
  #inMessage = false;
  #decoder?: TextDecoder;
  #closeSent = false;
  #closeReceived = false;
  #ended = false;
  #endError?: Error;
  #lastReceive = performance.now();
  #lastPong = performance.now();
  /** Pending timers, each with the resolver of the sleep waiting on it (close() resolves them). */
  #timers = new Map<ReturnType<typeof setTimeout>, (() => void) | undefined>();
  #pinger?: ReturnType<typeof setInterval>;
  #pinging = false;
  #closed = false;
  // Whose turn it is to write (see #acquire).
  #busy = false;
  #waiting: Array<(granted: boolean) => void> = [];

  /** Wraps `inner` after the upgrade; `raw` is what was read past the handshake. */
  constructor(
    inner: Stream,
    client: boolean,
    upgrade: UpgradeInfo,
    raw: Uint8Array,
    options: WebSocketOptions,
  ) {
    super(inner);
    this.#inner = inner;
    this.#client = client;
    this.upgrade = upgrade;
    this.layers = [...inner.layers ?? [], { name: "upgraded", info: upgradeLayerInfo(upgrade) }];
    this.#raw = raw;
    this.#mode = options.mode ?? "text";
    this.#options = options;
    this.#trace = options.trace;
    if (this.#mode === "echo") this.#source = this;
    if (options.pingInterval) {
      this.#pinger = setInterval(() => this.#ping(), options.pingInterval);
    }
  }

  /**
   * Makes this side and `other` relay each other's frames as they came:
   * each message's kind, boundaries and fragments, empty ones included
   * (`forward ws:// ws://`). Does nothing unless `other` is another
   * WebSocket side. `transfer()` calls it.
   *
   * @example Usage
   * ```ts ignore
   * client.pair(target);
   * await relay(client, target);
   * ```
   */
  pair(other: Duplex): void {
    if (!(other instanceof WebSocketSide) || other === this) return;
    this.#source = other;
    other.#source = this;
  }

  /** The peer's close code once it came, for the `closed` event. */
  endInfo(): LayerEnd | undefined {
    const code = this.closeCode;
    return code === undefined
      ? undefined
      : { fields: { closeCode: code }, text: `close code ${code}` };
  }

  /**
   * Whether reads and writes are parts of frames relayed as they came (see
   * `Duplex.messages`): an empty frame is a read of 0 bytes, not nothing.
   */
  get messages(): boolean {
    return this.#source !== undefined;
  }

  /** The peer, as `ws://` names it in messages. */
  override get label(): string {
    return this.remoteAddress;
  }

  /** Whether {@linkcode WebSocketSide.close} was called. */
  override get closed(): boolean {
    return this.#closed;
  }

  #say(call: string): void {
    this.#trace?.(this.tag, call);
  }

  // ---- reading -------------------------------------------------------------------

  /** Raw bytes from the socket into `#raw` until it holds `n`; false at end of input. */
  async #fill(n: number): Promise<boolean> {
    while (this.#raw.length < n) {
      // One scratch buffer for every read (a fresh 64 KiB one per small message cost ~10 %).
      const need = n - this.#raw.length;
      if (need > this.#scratch.length) this.#scratch = new Uint8Array(need);
      const got = await this.#inner.read(this.#scratch);
      if (got === null) return false;
      this.#raw = this.#raw.length
        ? concat(this.#raw, this.#scratch.subarray(0, got))
        : this.#scratch.slice(0, got);
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#raw.subarray(0, n);
    this.#raw = this.#raw.subarray(n);
    return out;
  }

  /** Reads message bytes into `p`; `null` once the close handshake is done. */
  override async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      const piece = this.#out[0];
      if (piece) {
        const n = Math.min(p.length, piece.bytes.length);
        p.set(piece.bytes.subarray(0, n));
        if (this.#source) {
          const { opcode, fin, length, start } = piece;
          this.#segments.push({ size: n, opcode, fin, length, start });
        }
        if (n === piece.bytes.length) this.#out.shift();
        else this.#out[0] = { ...piece, bytes: piece.bytes.subarray(n), start: false };
        return n;
      }
      if (this.#ended) {
        if (this.#endError) throw this.#endError;
        return null;
      }
      try {
        await this.#step();
      } catch (err) {
        if (this.#ended || this.#closed) continue;
        throw err;
      }
    }
  }

  /** Reads one frame header, or payload of the frame in progress. */
  async #step(): Promise<void> {
    if (this.#left > 0) {
      if (!this.#raw.length && !(await this.#fill(1))) return this.#dropped();
      const chunk = this.#unmask(this.#take(Math.min(this.#left, this.#raw.length)));
      this.#left -= chunk.length;
      return this.#data(chunk, this.#left === 0);
    }
    if (!(await this.#fill(2))) return this.#dropped();
    const b0 = this.#raw[0];
    const b1 = this.#raw[1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let headerSize = 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (!(await this.#fill(headerSize))) return this.#dropped();
    const view = new DataView(this.#raw.buffer, this.#raw.byteOffset, this.#raw.byteLength);
    if (length === 126) length = view.getUint16(2);
    else if (length === 127) {
      const big = view.getBigUint64(2);
      length = big > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(big);
    }
    if (b0 & 0x70) return this.#fail(1002, "a frame with reserved bits set");
    if (!this.#client && !masked) return this.#fail(1002, "an unmasked frame from a client");
    if (this.#client && masked) return this.#fail(1002, "a masked frame from a server");
    const mask = masked ? this.#raw.slice(headerSize - 4, headerSize) : undefined;
    this.#take(headerSize);
    headerSize = 0;
    if (this.#inMessage) {
      // A message cannot be held open for ever, by frames that carry nothing or by pings.
      const limit = this.#options.maxMessageTime ?? MAX_MESSAGE_TIME;
      if (performance.now() - this.#messageStart > limit) {
        return this.#fail(1008, `a message still open after ${formatDuration(limit)}`);
      }
    }
    if (opcode >= 8) {
      // 0xB–0xF are reserved control opcodes: not a Close, whatever they carry.
      if (opcode > OP.PONG) return this.#fail(1002, `an unknown opcode ${opcode}`);
      if (!fin || length > 125) return this.#fail(1002, "a fragmented or oversized control frame");
      if (!(await this.#fill(length))) return this.#dropped();
      this.#mask = mask;
      this.#maskAt = 0;
      return await this.#control(opcode, this.#unmask(this.#take(length).slice()));
    }
    if (opcode !== OP.CONT && opcode !== OP.TEXT && opcode !== OP.BINARY) {
      return this.#fail(1002, `an unknown opcode ${opcode}`);
    }
    if (opcode === OP.CONT && !this.#inMessage) {
      return this.#fail(1002, "a continuation frame outside a message");
    }
    if (opcode !== OP.CONT && this.#inMessage) {
      return this.#fail(1002, "a new message before the last one ended");
    }
    if (opcode === OP.CONT && ++this.#fragments > MAX_FRAGMENTS) {
      return this.#fail(1009, `a message in more than ${MAX_FRAGMENTS} fragments`);
    }
    if (opcode !== OP.CONT) {
      this.#inMessage = true;
      this.#messageOpcode = opcode;
      this.#messageSize = 0;
      this.#fragments = 1;
      this.#messageStart = performance.now();
      this.#decoder = opcode === OP.TEXT ? new TextDecoder("utf-8", { fatal: true }) : undefined;
    }
    if (this.#messageSize + length > (this.#options.maxMessage ?? MAX_MESSAGE)) {
      return this.#fail(1009, `a message over ${this.#options.maxMessage ?? MAX_MESSAGE} bytes`);
    }
    this.#messageSize += length;
    this.#frameOpcode = opcode;
    this.#frameFin = fin;
    this.#frameLength = length;
    this.#frameStart = true;
    this.#left = length;
    this.#mask = mask;
    this.#maskAt = 0;
    if (length === 0) return this.#data(new Uint8Array(0), true);
  }

  #unmask(chunk: Uint8Array): Uint8Array {
    const mask = this.#mask;
    if (!mask) return chunk;
    const out = xorMask(chunk, mask, this.#maskAt);
    this.#maskAt = (this.#maskAt + chunk.length) & 3;
    return out;
  }

  /** Payload of a data frame; `frameDone` when the frame's last byte is in. */
  #data(chunk: Uint8Array, frameDone: boolean): void | Promise<void> {
    // Data, not pings and pongs, is what the close delay waits to stop.
    this.#lastReceive = performance.now();
    const messageDone = frameDone && this.#frameFin;
    if (this.#decoder) {
      try {
        this.#decoder.decode(chunk, { stream: !messageDone });
      } catch {
        return this.#fail(1007, "a text message that is not UTF-8");
      }
    }
    const part = {
      opcode: this.#frameOpcode,
      fin: this.#frameFin,
      length: this.#frameLength,
      start: this.#frameStart,
    };
    this.#frameStart = false;
    if (this.#source) {
      // Relaying frames: every piece, an empty frame's too, is a read of its own.
      this.#out.push({ bytes: chunk, ...part });
    } else {
      const text = this.#messageOpcode === OP.TEXT;
      const bytes = this.#mode === "text" && text && messageDone
        ? concat(chunk, new Uint8Array([10]))
        : chunk;
      if (bytes.length) this.#out.push({ bytes, ...part });
    }
    if (messageDone) this.#inMessage = false;
  }

  /**
   * A control frame. The pong (and the Close in answer) is written before
   * reading goes on: a peer that pings without reading what comes back
   * meets TCP's backpressure like any writer, instead of a queue of pongs
   * that grows without bound.
   */
  async #control(opcode: number, payload: Uint8Array): Promise<void> {
    if (opcode === OP.PING) {
      this.#say(`ping(${payload.length}) received; pong sent`);
      // A pong that cannot be written: the socket failed, which reading says next.
      if (!this.#closeSent) await this.#send(OP.PONG, payload).catch(() => {});
      return;
    }
    if (opcode === OP.PONG) {
      this.#lastPong = performance.now();
      this.#say(`pong(${payload.length}) received`);
      return;
    }
    // Close.
    if (payload.length === 1) return this.#fail(1002, "a Close frame of 1 byte");
    const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
    let reason = "";
    try {
      reason = new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2));
    } catch {
      return this.#fail(1007, "a Close reason that is not UTF-8");
    }
    if (payload.length >= 2 && !validCloseCode(code)) {
      return this.#fail(1002, `an invalid close code ${code}`);
    }
    this.closeCode = code;
    this.closeReason = reason;
    this.#closeReceived = true;
    this.#say(`close(${code}${reason ? ` ${JSON.stringify(reason)}` : ""}) received`);
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.#say(`close(${code === 1005 ? "" : code}) sent in answer`);
      // A frame relayed from the other side half-way out goes first: its rest is on the way (a
      // source that never sends it is hung up on after the close wait).
      const stalled = this.#open
        ? setTimeout(() => this.#open && this.close(), CLOSE_WAIT)
        : undefined;
      await this.#send(OP.CLOSE, code === 1005 ? new Uint8Array(0) : payload.subarray(0, 2))
        .catch(() => {});
      clearTimeout(stalled);
    }
    this.#ended = true;
    if (code !== 1000 && code !== 1001 && code !== 1005) {
      this.#endError = new SockitError(
        `closed by peer: ${code}${reason ? ` ${reason}` : ""}`,
        { op: "websocket", address: this.remoteAddress, code: `WS${code}` },
      );
    }
  }

  /** The socket ended without a Close frame. */
  #dropped(): void {
    this.#ended = true;
    if (this.#closeSent) return; // we closed; the peer hung up without answering: done
    this.closeCode = 1006;
    this.#endError = new SockitError("connection dropped: no Close frame (1006)", {
      op: "websocket",
      address: this.remoteAddress,
      code: "WS1006",
    });
  }

  /**
   * A protocol violation by the peer: Close with `code`, then the session
   * fails. Resolves once the Close is out: it may wait for its turn behind
   * a frame being relayed, and reading must not end before (the relay
   * would close the socket under it).
   */
  #fail(code: number, what: string): void | Promise<void> {
    this.#ended = true;
    // Relaying a frame half-way (its rest was to follow): no Close can be sent after it — its rest
    // may never come (in echo mode it would have come from this very peer). A frame whose last
    // bytes are being written is whole: the Close waits for its turn behind it.
    const cut = this.#open !== undefined && this.#open.left > 0 && !this.#closeSent;
    const how = cut
      ? "closed without a Close frame: one of ours was half sent"
      : `closed with ${code}`;
    this.#say(cut ? `close(): ${what}; ${how}` : `close(${code}) sent: ${what}`);
    this.#endError = new SockitError(`the peer sent ${what} (${how})`, {
      op: "websocket",
      address: this.remoteAddress,
      code: `WS${code}`,
    });
    if (cut) {
      // The part being written goes out first, so the peer sees where the frame was cut.
      this.#cutting = true;
      const writing = this.#writing;
      if (!writing) return this.#inner.close();
      return writing.catch(() => {}).finally(() => this.#inner.close());
    }
    if (this.#closeSent) return;
    this.#closeSent = true;
    // The Close may wait for its turn behind a frame being written (or one the other side is
    // still to finish); a socket that takes nothing for the close wait is hung up on.
    const stalled = setTimeout(() => this.close(), CLOSE_WAIT);
    return this.#send(OP.CLOSE, closePayload(code, ""))
      .catch(() => {})
      .finally(() => {
        clearTimeout(stalled);
        this.#inner.close();
      });
  }

  // ---- writing -------------------------------------------------------------------

  /**
   * The right to write to the socket, in turn: frames from the relay's writes,
   * pongs and Closes from reading, pings from the timer never interleave
   * (a frame written in several writes would be cut by another). Resolves at
   * once when free (`undefined`: no await needed); rejects once closed.
   */
  #acquire(): Promise<void> | undefined {
    if (this.#closed) return Promise.reject(closedError());
    if (!this.#busy) {
      this.#busy = true;
      return undefined;
    }
    return new Promise((resolve, reject) =>
      this.#waiting.push((granted) => granted ? resolve() : reject(closedError()))
    );
  }

  /** Hands the socket to the next writer waiting. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next) next(true);
    else this.#busy = false;
  }

  /** One frame out, in turn: header, mask (client), payload. */
  async #send(opcode: number, payload: Uint8Array, fin = true): Promise<void> {
    const turn = this.#acquire();
    if (turn) await turn;
    try {
      await writeAll(this.#inner, this.#frame(opcode, payload, fin));
    } finally {
      this.#release();
    }
  }

  /** A whole frame as bytes: header, mask (client), payload. */
  #frame(opcode: number, payload: Uint8Array, fin: boolean): Uint8Array {
    const mask = this.#client ? crypto.getRandomValues(new Uint8Array(4)) : undefined;
    return concat(
      frameHead(opcode, fin, payload.length, mask),
      mask ? xorMask(payload, mask, 0) : payload,
    );
  }

  /**
   * Writes `p`, read from the source side, frame by frame as it was read: a
   * frame's header (with the length it came with) before its first bytes,
   * the rest of its payload as it follows, so no frame is cut up or joined.
   */
  async #relayFrames(p: Uint8Array): Promise<number> {
    const segments = this.#source!.#segments;
    let at = 0;
    do {
      const seg = segments.shift();
      if (!seg) {
        // Bytes not read from the source (a library user's write): one binary message.
        await this.#send(OP.BINARY, p.subarray(at));
        return p.length;
      }
      const part = p.subarray(at, at + seg.size);
      at += part.length;
      await this.#writePart(seg, part);
    } while (at < p.length);
    return p.length;
  }

  /** One piece of a relayed frame; the socket is this frame's from its header to its last byte. */
  async #writePart(seg: Segment, part: Uint8Array): Promise<void> {
    let open = this.#open;
    let bytes: Uint8Array;
    if (seg.start) {
      if (open) throw new Error("a frame began before the one being written ended");
      if (this.#closeSent || this.#closeReceived || this.#ended) {
        throw new Deno.errors.BrokenPipe(
          "the WebSocket is closing: the peer takes no more messages",
        );
      }
      const turn = this.#acquire();
      if (turn) await turn;
      const mask = this.#client ? crypto.getRandomValues(new Uint8Array(4)) : undefined;
      open = this.#open = { left: seg.length, mask, at: 0 };
      const head = frameHead(seg.opcode, seg.fin, seg.length, mask);
      bytes = part.length ? concat(head, mask ? xorMask(part, mask, 0) : part) : head;
    } else {
      if (!open) throw new Error("a frame's bytes without its header");
      bytes = open.mask ? xorMask(part, open.mask, open.at) : part;
    }
    open.at = (open.at + part.length) & 3;
    open.left -= part.length;
    try {
      const writing = this.#writing = writeAll(this.#inner, bytes);
      await writing;
    } catch (err) {
      this.#open = undefined;
      this.#release();
      throw err;
    }
    if (open.left === 0) {
      this.#open = undefined;
      this.#release();
    }
  }

  /** Writes `p` as messages (see the mode); resolves to `p.length`. */
  override async write(p: Uint8Array): Promise<number> {
    // Closing, a frame being relayed is still finished (the Close waits for it), no new one starts.
    const finishing = !this.#cutting && this.#source !== undefined && this.#open !== undefined;
    if (!finishing && (this.#closeSent || this.#closeReceived || this.#ended)) {
      throw new Deno.errors.BrokenPipe("the WebSocket is closing: the peer takes no more messages");
    }
    if (this.#source) return await this.#relayFrames(p);
    if (this.#mode !== "text") await this.#send(OP.BINARY, p);
    else {
      let start = 0;
      for (let i = 0; i < p.length; i++) {
        if (p[i] !== 10) continue;
        this.#line.push(p.subarray(start, this.#options.keepLineEnds ? i + 1 : i));
        await this.#sendLine();
        start = i + 1;
      }
      if (start < p.length) this.#line.push(p.slice(start));
    }
    return p.length;
  }

  /** The line gathered so far as one message: text when it is UTF-8, else binary. */
  async #sendLine(): Promise<void> {
    const line = this.#line.length === 1 ? this.#line[0] : concat(...this.#line);
    this.#line = [];
    let text = true;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(line);
    } catch {
      text = false;
    }
    await this.#send(text ? OP.TEXT : OP.BINARY, line);
  }

  /**
   * The end of the input: the last partial line goes out as a message, then
   * Close(1000) once the peer has been quiet for the close delay (replies
   * still coming in are not cut short), then the peer's Close is awaited.
   */
  override async closeWrite(): Promise<void> {
    if (this.#closeSent || this.#ended || this.#closed) return;
    if (this.#open) {
      // The source ended in the middle of a frame being relayed: no Close can follow it.
      this.close();
      return;
    }
    if (this.#mode === "text" && this.#line.length) await this.#sendLine();
    if (this.#options.noCloseOnEof) return;
    const delay = this.#options.closeDelay ?? CLOSE_DELAY;
    for (;;) {
      const quiet = performance.now() - this.#lastReceive;
      if (quiet >= delay || this.#ended || this.#closed) break;
      await this.#sleep(delay - quiet);
    }
    if (this.#closeSent || this.#ended || this.#closed) return;
    this.#closeSent = true;
    // Relaying another WebSocket (forward ws:// ws://): its peer's close code goes on.
    const from = this.#source !== this ? this.#source : undefined;
    const code = from?.closeCode !== undefined && validCloseCode(from.closeCode)
      ? from.closeCode
      : 1000;
    const reason = code === 1000 ? "" : from?.closeReason ?? "";
    this.#say(`close(${code}) sent: end of input`);
    await this.#send(OP.CLOSE, closePayload(code, reason));
    // The peer answers with its Close; one that does not is hung up on.
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#ended) this.#inner.close();
    }, CLOSE_WAIT);
    this.#timers.set(timer, undefined);
  }

  /** Resolves after `ms`, or at once when the side is closed (its timer is cleared then). */
  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      this.#timers.set(timer, resolve);
    });
  }

  #ping(): void {
    // One ping at a time: a socket that is slow to take them does not queue more.
    if (this.#closeSent || this.#ended || this.#pinging) return;
    const timeout = this.#options.pingTimeout;
    if (
      timeout && performance.now() - this.#lastPong > timeout + (this.#options.pingInterval ?? 0)
    ) {
      this.#ended = true;
      this.#endError = new SockitError(`no pong within ${timeout} ms (--ping-timeout)`, {
        op: "websocket",
        address: this.remoteAddress,
        code: "ETIMEDOUT",
      });
      this.#inner.close();
      return;
    }
    this.#say("ping(0) sent");
    this.#pinging = true;
    this.#send(OP.PING, new Uint8Array(0)).catch(() => {}).finally(() => this.#pinging = false);
  }

  /** Closes the socket (after the close handshake, or at once). */
  override close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ended = true;
    if (this.#pinger !== undefined) clearInterval(this.#pinger);
    // A sleep whose timer is cleared must still end: closeWrite() waits on one (the close delay).
    for (const [timer, wake] of this.#timers) {
      clearTimeout(timer);
      wake?.();
    }
    this.#timers.clear();
    // Writers waiting for their turn fail now (a pong awaited by read(), a Close, a ping).
    for (const next of this.#waiting.splice(0)) next(false);
    this.#inner.close();
  }
}

/**
 * `bytes` XORed with the 4-byte `mask` starting at mask byte `at`, as a new
 * array: four bytes at a time, then the tail.
 *
 * @example Usage
 * ```ts ignore
 * xorMask(new Uint8Array([1, 2, 3, 4, 5]), new Uint8Array([1, 1, 1, 1]), 0); // [0, 3, 2, 5, 4]
 * ```
 */
function xorMask(bytes: Uint8Array, mask: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  const m = new Uint8Array(4);
  for (let k = 0; k < 4; k++) m[k] = mask[(at + k) & 3];
  const words = out.length >>> 2;
  const word = new Uint32Array(m.buffer)[0];
  const out32 = new Uint32Array(out.buffer, 0, words);
  for (let i = 0; i < words; i++) out32[i] ^= word;
  for (let i = words * 4; i < out.length; i++) out[i] ^= m[i & 3];
  return out;
}

/** A frame's header: FIN and opcode, length, and a client's mask. */
function frameHead(opcode: number, fin: boolean, length: number, mask?: Uint8Array): Uint8Array {
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = new Uint8Array(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127);
  const view = new DataView(head.buffer);
  if (ext === 2) view.setUint16(2, length);
  if (ext === 8) view.setBigUint64(2, BigInt(length));
  if (mask) head.set(mask, 2 + ext);
  return head;
}

function closedError(): Error {
  return new Deno.errors.BrokenPipe("the WebSocket is closed");
}

function validCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014].includes(code);
}

function closePayload(code: number, reason: string): Uint8Array {
  return concat(new Uint8Array([code >> 8, code & 0xff]), encoder.encode(reason));
}

/** An HTTP head that cannot be taken: the status a server answers it with, and why. */
class HeadError extends Error {
  constructor(readonly status: string, message: string) {
    super(message);
    this.name = "HeadError";
  }
}

/** An HTTP head taken apart: the start line and each field by lower-case name. */
interface Head {
  start: string;
  /** Values with the spaces around them removed; a repeated field's values joined by ", ". */
  fields: Map<string, string>;
}

/**
 * Reads an HTTP head of at most {@linkcode MAX_HEAD} bytes from `conn` and
 * takes it apart; resolves to it and the bytes read past it. Each byte is
 * looked at a bounded number of times (no pattern that backtracks).
 */
async function readHead(conn: Stream, what: string): Promise<[Head, Uint8Array]> {
  let buf: Uint8Array = new Uint8Array(0);
  let from = 0;
  for (;;) {
    const found = headerEnd(buf.subarray(from));
    if (found !== -1 && from + found + 4 <= MAX_HEAD) {
      const end = from + found;
      return [parseHead(new TextDecoder().decode(buf.subarray(0, end))), buf.slice(end + 4)];
    }
    if (found !== -1 || buf.length >= MAX_HEAD) {
      throw new HeadError("431 Request Header Fields Too Large", `${what} head over 16 KiB`);
    }
    from = Math.max(0, buf.length - 3);
    const chunk = new Uint8Array(4096);
    const n = await conn.read(chunk);
    if (n === null) throw new Deno.errors.UnexpectedEof("closed during the WebSocket upgrade");
    buf = concat(buf, chunk.subarray(0, n));
  }
}

/** A header field's name: an HTTP token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The lines of a head, split once; a line that is not `Name: value` is a 400. */
function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const fields = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    // No colon, a space before it, or a folded line (obsolete, refused as RFC 9112 allows).
    if (colon < 1 || !TOKEN.test(line.slice(0, colon))) {
      throw new HeadError(
        "400 Bad Request",
        `a malformed header line: ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = trimSpaces(line, colon + 1);
    const had = fields.get(name);
    fields.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  return { start: lines[0], fields };
}

/** `line` from `at`, without the spaces and tabs around it. */
function trimSpaces(line: string, at: number): string {
  let start = at;
  let end = line.length;
  while (start < end && (line[start] === " " || line[start] === "\t")) start++;
  while (end > start && (line[end - 1] === " " || line[end - 1] === "\t")) end--;
  return line.slice(start, end);
}

/**
 * Reads and drops what a refused client still sends, for at most `ms` and
 * `max` bytes, so that closing does not reset the connection before the
 * client has read the refusal (unread input makes close() send a RST).
 */
async function drain(conn: Stream, ms: number, max: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), ms));
  const buf = new Uint8Array(16384);
  try {
    for (let got = 0; got < max;) {
      const n = await Promise.race([conn.read(buf).catch(() => null), timeUp]);
      if (n === null) return;
      got += n;
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The client's upgrade over `conn`: resolves to the WebSocket once the
 * server answered 101 with the right `Sec-WebSocket-Accept`; a refusal
 * rejects naming the status (`server answered 404 Not Found`).
 *
 * @example Usage
 * ```ts ignore
 * const ws = await websocketClient(conn, { host: "example.com", resource: "/chat" });
 * ```
 */
export async function websocketClient(
  conn: Stream,
  options: WebSocketClientOptions,
): Promise<WebSocketSide> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const resource = options.resource || "/";
  const lines = [
    `GET ${resource} HTTP/1.1`,
    `Host: ${options.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
  ];
  if (options.protocols?.length) {
    lines.push(`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`);
  }
  if (options.origin) lines.push(`Origin: ${options.origin}`);
  for (const [k, v] of options.headers ?? []) lines.push(`${k}: ${v}`);
  await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
  const fail = (why: string) =>
    new SockitError(why, { op: "connect", address: conn.remoteAddress, code: "EUPGRADE" });
  let head: Head;
  let rest: Uint8Array;
  try {
    [head, rest] = await readHead(conn, "a");
  } catch (err) {
    if (!(err instanceof HeadError)) throw err;
    throw fail(`the server's answer to the WebSocket upgrade has ${err.message}`);
  }
  const status = head.start;
  const code = Number(/^HTTP\/1\.\d (\d{3})/.exec(status)?.[1]);
  options.trace?.(conn.tag, `websocket upgrade GET ${resource} = ${status}`);
  if (code !== 101) {
    throw fail(
      `the server answered ${
        status.replace(/^HTTP\/1\.\d /, "") || "nothing HTTP"
      } to the WebSocket upgrade`,
    );
  }
  if (head.fields.get("sec-websocket-accept") !== acceptKey(key)) {
    throw fail("the server's Sec-WebSocket-Accept is wrong: not a WebSocket server");
  }
  const protocol = head.fields.get("sec-websocket-protocol");
  if (protocol && !(options.protocols ?? []).includes(protocol)) {
    throw fail(`the server chose a subprotocol not offered: ${protocol}`);
  }
  return new WebSocketSide(conn, true, { status: 101, path: resource, protocol }, rest, options);
}

/** A failed upgrade on the server: the client got `status`. */
export class UpgradeRefused extends Error {
  /** The HTTP status sent. */
  readonly status: string;
  /** A refusal of the upgrade, with the status the client got. */
  constructor(status: string, reason: string) {
    super(reason);
    this.name = "UpgradeRefused";
    this.status = status;
  }
}

/**
 * The server's side of the upgrade over an accepted `conn`: 101 for a
 * WebSocket request to the right path; 404 for another path, 426 for a
 * plain HTTP request, 400 for a bad one — each rejects with
 * {@linkcode UpgradeRefused} after answering.
 *
 * @example Usage
 * ```ts ignore
 * const ws = await websocketServer(conn, { path: "/chat" });
 * ```
 */
export async function websocketServer(
  conn: Stream,
  options: WebSocketServerOptions,
): Promise<WebSocketSide> {
  let requestLine = "";
  const refuse = async (status: string, reason: string, extra = ""): Promise<never> => {
    const body = `${status}\n`;
    const response = `HTTP/1.1 ${status}\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${
      encoder.encode(body).length
    }\r\nConnection: close\r\n\r\n${body}`;
    await conn.write(encoder.encode(response)).catch(() => {});
    options.trace?.(conn.tag, `websocket upgrade ${requestLine || "(head not read)"} = ${status}`);
    if (/^4(?:00|31) /.test(status)) {
      // The client may still be sending its head: let it read the answer before the close.
      await conn.closeWrite().catch(() => {});
      await drain(conn, 1000, 1 << 20);
    }
    throw new UpgradeRefused(status, reason);
  };
  let head: Head;
  let rest: Uint8Array;
  try {
    [head, rest] = await readHead(conn, "a request");
  } catch (err) {
    if (!(err instanceof HeadError)) throw err;
    return await refuse(err.status, err.message);
  }
  requestLine = head.start;
  const m = /^GET (\S+) HTTP\/1\.1$/.exec(requestLine);
  if (!m) {
    return await refuse(
      "400 Bad Request",
      `not a WebSocket request: ${JSON.stringify(requestLine.slice(0, 60))}`,
    );
  }
  const resource = m[1];
  const upgrade = head.fields.get("upgrade")?.toLowerCase();
  const connection = head.fields.get("connection")?.toLowerCase() ?? "";
  if (upgrade !== "websocket" || !/\bupgrade\b/.test(connection)) {
    return await refuse(
      "426 Upgrade Required",
      `a plain HTTP request (${requestLine.slice(0, 60)})`,
      "Upgrade: websocket\r\nConnection: Upgrade\r\n",
    );
  }
  const key = head.fields.get("sec-websocket-key");
  if (head.fields.get("sec-websocket-version") !== "13" || !key) {
    return await refuse(
      "426 Upgrade Required",
      "not WebSocket version 13",
      "Sec-WebSocket-Version: 13\r\n",
    );
  }
  const path = resource.split("?")[0];
  if (options.path && options.path !== "/" && path !== options.path) {
    return await refuse("404 Not Found", `path ${path} (this server serves ${options.path})`);
  }
  const offered = (head.fields.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim())
    .filter(Boolean);
  const protocol = options.protocols?.find((p) => offered.includes(p));
  const response = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${acceptKey(key)}`,
    ...(protocol ? [`Sec-WebSocket-Protocol: ${protocol}`] : []),
  ].join("\r\n") + "\r\n\r\n";
  await writeAll(conn, encoder.encode(response));
  options.trace?.(
    conn.tag,
    `websocket upgrade GET ${resource} = 101 Switching Protocols${protocol ? `, ${protocol}` : ""}`,
  );
  return new WebSocketSide(conn, false, { status: 101, path: resource, protocol }, rest, options);
}
