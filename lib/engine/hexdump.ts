/**
 * `--hex`: a dump of every chunk each way, in the layout people read in
 * `ncat -x`, `socat -x` and `hexdump -C` — a header naming the direction
 * (`>` sent to the peer, `<` received from it), the connection and the byte
 * count, then 16 bytes a line: the offset in that direction's stream, the
 * bytes in hex, and the printable ones as ASCII.
 *
 * ```
 * > #1 127.0.0.1:8888 6 bytes
 * 00000000  68 65 6c 6c 6f 21                                 |hello!|
 * ```
 *
 * The dump is built from the chunk after it was written, so it never
 * changes or holds back the payload, and it keeps nothing between chunks
 * but the two stream offsets.
 *
 * @module
 */

import { jsonLine } from "../base/format.ts";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Formats one chunk. `offset` is where the chunk starts in its direction's
 * stream.
 *
 * @example Usage
 * ```ts
 * import { hexDump } from "./hexdump.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   hexDump(">", "#1 127.0.0.1:8888", new TextEncoder().encode("hello!"), 0),
 *   "> #1 127.0.0.1:8888 6 bytes\n" +
 *     "00000000  68 65 6c 6c 6f 21                                 |hello!|\n",
 * );
 * ```
 */
export function hexDump(
  direction: ">" | "<",
  label: string,
  chunk: Uint8Array,
  offset: number,
): string {
  return hexHeader(direction, label, chunk.length) + hexLines(chunk, offset);
}

/** The line that heads a chunk: direction, connection, byte count. */
function hexHeader(direction: ">" | "<", label: string, length: number): string {
  return `${direction} ${label} ${length} byte${length === 1 ? "" : "s"}\n`;
}

/** The 16-byte lines of `bytes`, numbered from `offset`. */
function hexLines(bytes: Uint8Array, offset: number): string {
  let out = "";
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, Math.min(at + 16, bytes.length));
    let hex = "";
    let text = "";
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += " ";
      if (i < row.length) {
        hex += HEX[row[i]] + " ";
        text += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : ".";
      } else hex += "   ";
    }
    out += `${(offset + at).toString(16).padStart(8, "0")}  ${hex} |${text}|\n`;
  }
  return out;
}

/**
 * The bytes as lower-case hex digits, two per byte (the `data` of a `hex`
 * JSON event).
 *
 * @example Usage
 * ```ts
 * import { hexString } from "./hexdump.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(hexString(new Uint8Array([0, 0x68, 0xff])), "0068ff");
 * ```
 */
export function hexString(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += HEX[byte];
  return out;
}

/**
 * Formats one slice of a chunk in place of the text dump (e.g. as a JSON
 * line); `offset` is where the slice starts in its direction's stream.
 */
export type HexSliceFormat = (direction: ">" | "<", slice: Uint8Array, offset: number) => string;

/** Bytes formatted per write: a 256 KiB chunk goes out as 64 writes of ~18 KB, not one of 1.2 MB. */
const SLICE = 4096;

/** Where a hex dump goes: stderr, or a `--hex-file`. */
export interface HexSink {
  /** Writes dump text. */
  write(text: string): void;
}

/**
 * Dumps the chunks of one connection: feed it from the relay's `onChunk`
 * (direction 0 is received from the connection, 1 is sent to it).
 *
 * @example Usage
 * ```ts
 * import { HexTap } from "./hexdump.ts";
 * import assert from "node:assert/strict";
 *
 * let out = "";
 * const tap = new HexTap({ write: (t) => out += t }, "#2 [::1]:80");
 * tap.onChunk(1, new Uint8Array([0, 1]));
 * tap.onChunk(1, new Uint8Array([2]));
 * assert.match(out, /^> #2 \[::1\]:80 2 bytes\n00000000  00 01 /);
 * assert.match(out, /\n> #2 \[::1\]:80 1 byte\n00000002  02 /);
 * ```
 */
export class HexTap {
  #sink: HexSink;
  #label: string;
  #offsets: [number, number] = [0, 0];

  #format?: HexSliceFormat;

  /**
   * Dumps to `sink`, labelling chunks with `label` (the connection and its
   * peer); with `format`, each slice of up to 4 KiB is written as it formats
   * it instead.
   */
  constructor(sink: HexSink, label: string, format?: HexSliceFormat) {
    this.#sink = sink;
    this.#label = label;
    this.#format = format;
  }

  /** Dumps a chunk moved in `direction` (0: received, 1: sent). */
  onChunk = (direction: 0 | 1, chunk: Uint8Array): void => {
    const start = this.#offsets[direction];
    const arrow = direction === 0 ? "<" : ">";
    const format = this.#format;
    if (!format) this.#sink.write(hexHeader(arrow, this.#label, chunk.length));
    for (let at = 0; at < chunk.length; at += SLICE) {
      const slice = chunk.subarray(at, at + SLICE);
      this.#sink.write(format ? format(arrow, slice, start + at) : hexLines(slice, start + at));
    }
    this.#offsets[direction] += chunk.length;
  };
}

/** Peers whose offsets a {@linkcode HexDumper} tap remembers; beyond it they start again from 0. */
export const HEX_PEERS = 256;

/** Options of {@linkcode HexDumper}. */
export interface HexDumperOptions {
  /** Each 4 KiB slice as a `hex` JSON line instead of text. */
  json?: boolean;
  /** Called once when the sink fails; the dump stops, the payload goes on. */
  onFailure?: (error: unknown) => void;
}

/**
 * Makes the `--hex` taps of a command: one per transfer, labelled with the
 * connection and its peer. A datagram side's peer changes from datagram to
 * datagram, so offsets are counted per peer (for {@linkcode HEX_PEERS}
 * peers). A sink that fails is not written again: the dump stops, the
 * payload goes on.
 *
 * @example Usage
 * ```ts
 * import { HexDumper } from "./hexdump.ts";
 * import assert from "node:assert/strict";
 *
 * let out = "";
 * const dumper = new HexDumper({ write: (t) => out += t });
 * const tap = dumper.tap({ id: 1, remoteAddress: "127.0.0.1:8888" });
 * tap(1, new TextEncoder().encode("hi"));
 * assert.match(out, /^> #1 127\.0\.0\.1:8888 2 bytes\n00000000  68 69 /);
 * ```
 */
export class HexDumper {
  #sink: HexSink;
  #options: HexDumperOptions;
  #failed = false;

  /** Dumps into `sink`. */
  constructor(sink: HexSink, options: HexDumperOptions = {}) {
    this.#options = options;
    this.#sink = {
      write: (text) => {
        if (this.#failed) return;
        try {
          sink.write(text);
        } catch (err) {
          this.#failed = true;
          options.onFailure?.(err);
        }
      },
    };
  }

  /** A tap for the transfer with `peer`: feed it each chunk (0 received, 1 sent). */
  tap(peer: { readonly id: number; readonly remoteAddress: string }): (
    direction: 0 | 1,
    chunk: Uint8Array,
  ) => void {
    const taps = new Map<string, HexTap>();
    return (direction, chunk) => {
      // Read at each chunk: a datagram side's peer is whoever sent last.
      const remote = peer.remoteAddress;
      let tap = taps.get(remote);
      if (!tap) {
        if (taps.size >= HEX_PEERS) taps.clear();
        tap = new HexTap(this.#sink, `#${peer.id} ${remote}`, this.#jsonFormat(peer.id, remote));
        taps.set(remote, tap);
      }
      tap.onChunk(direction, chunk);
    };
  }

  #jsonFormat(conn: number, remote: string): HexSliceFormat | undefined {
    if (!this.#options.json) return undefined;
    return (direction, slice, offset) =>
      jsonLine("hex", {
        conn,
        remote,
        direction: direction === ">" ? "sent" : "received",
        offset,
        length: slice.length,
        data: hexString(slice),
      });
  }
}
