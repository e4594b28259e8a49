/**
 * WebSocket frames fuzzed: sequences of frames a client could send —
 * messages whole and in fragments with control frames between them, valid
 * and invalid opcodes, RSV bits, masked and unmasked, lengths in 7, 16 and
 * 64 bits (lying ones too, and ones over `--max-message`), continuations
 * without a start, control frames over 125 bytes or fragmented, invalid
 * UTF-8 in text and in Close reasons, Close codes of every class, pings
 * with payloads — after an upgrade request, well-formed or mutated. They
 * go to `sockit echo ws://` and to `sockit forward ws:// ws://` in front of
 * it, as processes, with `--max-message 4096`.
 *
 * What each input must get is worked out here, from RFC 6455, by reading
 * the bytes as a server must ({@linkcode expectOf}): the frames that come
 * back, the pongs, and how it ends — Close 1002 for a protocol error, 1007
 * for text that is not UTF-8, 1009 for a message over the limit, the
 * client's own code answering its Close, or nothing yet. The rules every
 * input must keep: the servers never crash, answer a protocol error with
 * the right Close code (or close mid-frame, when one of theirs was half
 * sent), never send back data that was not valid as it came (nor mask,
 * nor set RSV bits, nor put 1005/1006 on the wire), answer within a
 * bound, and after every batch still serve a well-formed client; their
 * memory stays under a bound and their descriptors come back.
 * `tests/fuzz_test.ts` runs a sample in every test run; `deno task fuzz`
 * runs as many as asked (`WS_FUZZ_RUNS`).
 *
 * @module
 */

import fc from "fast-check";
import { acceptKey } from "../lib/protocols/websocket.ts";
import type { SockitRun } from "./helpers.ts";
import { decoder, encoder, spawnSockit } from "./helpers.ts";

/** The servers' `--max-message`. */
export const MAX_MESSAGE = 4096;
/** How long an answer that is due may take (the load of a test run included), in ms. */
const ANSWER_WITHIN = 5000;
/** How long to wait for more when nothing more is due, in ms. */
const QUIET = 60;
/** The resident memory a server may reach during the fuzz, in KiB. */
const RSS_BOUND_KIB = 600 * 1024;

/** One frame as a client writes it, exactly. */
export interface WireFrame {
  /** FIN bit. */
  fin: boolean;
  /** RSV1–3 as a number 0–7. */
  rsv: number;
  /** Opcode 0–15. */
  opcode: number;
  /** Masked (a client must mask). */
  masked: boolean;
  /** The payload, unmasked. */
  payload: Uint8Array;
  /** The length as written: the payload's, or a lie (more or fewer). */
  declared?: number;
  /** The length field's form: the smallest that fits (default), or 16 or 64 bits anyway. */
  form?: 7 | 16 | 64;
}

/** One fuzz input. */
export interface WsInput {
  /** 0: `echo ws://`; 1: `forward ws:// ws://` in front of it. */
  target: 0 | 1;
  /** The upgrade request's bytes. */
  upgrade: Uint8Array;
  /** The key the upgrade carries, when it carries one (to check the answer's accept). */
  key?: string;
  /** The frames after it. */
  frames: WireFrame[];
  /** Send the upgrade and the frames in one write. */
  glued: boolean;
  /** Split the frames' bytes into this many writes. */
  writes: number;
  /** Half-close after the last byte. */
  halfClose: boolean;
}

/** The bytes of a frame. */
export function frameBytes(f: WireFrame): Uint8Array {
  const length = f.declared ?? f.payload.length;
  const form = f.form ?? (length < 126 ? 7 : length < 65536 ? 16 : 64);
  const ext = form === 7 ? 0 : form === 16 ? 2 : 8;
  const head = new Uint8Array(2 + ext + (f.masked ? 4 : 0));
  head[0] = (f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 15);
  head[1] = (f.masked ? 0x80 : 0) | (form === 7 ? Math.min(length, 125) : form === 16 ? 126 : 127);
  const view = new DataView(head.buffer);
  if (form === 16) view.setUint16(2, Math.min(length, 65535));
  if (form === 64) view.setBigUint64(2, BigInt(Math.min(length, Number.MAX_SAFE_INTEGER)));
  const out = new Uint8Array(head.length + f.payload.length);
  out.set(head);
  if (f.masked) {
    const mask = [0x5a, 0x13, 0xc7, 0x81];
    out.set(mask, 2 + ext);
    for (let i = 0; i < f.payload.length; i++) out[head.length + i] = f.payload[i] ^ mask[i & 3];
  } else out.set(f.payload, head.length);
  return out;
}

/** A data frame as it should come back: opcode, FIN, payload. */
export interface Echoed {
  opcode: number;
  fin: boolean;
  payload: Uint8Array;
}

/** What a server must do with an input's frames. */
export interface Expected {
  /** The data frames it relays back, whole, in order. */
  echoed: Echoed[];
  /** The pongs it sends, their payloads in order. */
  pongs: Uint8Array[];
  /**
   * How it ends: `fail` (Close with `code`: a protocol error), `answer` (the
   * client's Close answered with `code`, or none for 1005), `open` (the
   * session goes on: the bytes end between or inside frames), or `eof`
   * (the same, but the client half-closed: the server closes).
   */
  end:
    | { kind: "fail"; code: number; why: string }
    | { kind: "answer"; code: number }
    | { kind: "open" }
    | { kind: "eof" };
}

/** Close codes a peer may send (RFC 6455 7.4, and 3000–4999 for applications). */
export function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * What a server must make of `bytes` (the frames after the upgrade), read
 * as RFC 6455 says: a model written apart from sockit's, to hold it to.
 */
export function expectOf(bytes: Uint8Array, halfClose: boolean, max = MAX_MESSAGE): Expected {
  const echoed: Echoed[] = [];
  const pongs: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (code: number, why: string): Expected => ({
    echoed,
    pongs,
    end: { kind: "fail", code, why },
  });
  const unfinished = (): Expected => ({ echoed, pongs, end: { kind: halfClose ? "eof" : "open" } });
  let inMessage = false;
  let size = 0;
  let decoder: TextDecoder | undefined;
  for (let at = 0;;) {
    if (bytes.length - at < 2) return unfinished();
    const b0 = bytes[at];
    const b1 = bytes[at + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    const short = b1 & 0x7f;
    const ext = short === 126 ? 2 : short === 127 ? 8 : 0;
    const headSize = 2 + ext + (masked ? 4 : 0);
    if (bytes.length - at < headSize) return unfinished();
    let length = short;
    if (short === 126) length = view.getUint16(at + 2);
    if (short === 127) {
      const big = view.getBigUint64(at + 2);
      length = big > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(big);
    }
    if (b0 & 0x70) return fail(1002, "RSV bits without an extension");
    if (!masked) return fail(1002, "an unmasked client frame");
    const mask = bytes.subarray(at + headSize - 4, at + headSize);
    at += headSize;
    const available = Math.min(length, bytes.length - at);
    const payload = bytes.slice(at, at + available).map((b, i) => b ^ mask[i & 3]);
    if (opcode >= 8) {
      if (opcode > 10) return fail(1002, `a reserved control opcode ${opcode}`);
      if (!fin) return fail(1002, "a fragmented control frame");
      if (length > 125) return fail(1002, "a control frame over 125 bytes");
      if (available < length) return unfinished();
      at += length;
      if (opcode === 9) pongs.push(payload);
      if (opcode !== 8) continue;
      if (length === 1) return fail(1002, "a Close of one byte");
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(payload.subarray(2));
      } catch {
        return fail(1007, "a Close reason that is not UTF-8");
      }
      const code = length === 0 ? 1005 : (payload[0] << 8) | payload[1];
      if (length > 0 && !validCloseCode(code)) return fail(1002, `an invalid close code ${code}`);
      return { echoed, pongs, end: { kind: "answer", code } };
    }
    if (opcode > 2) return fail(1002, `a reserved data opcode ${opcode}`);
    if (opcode === 0 && !inMessage) return fail(1002, "a continuation outside a message");
    if (opcode !== 0 && inMessage) return fail(1002, "a new message inside one");
    if (opcode !== 0) {
      inMessage = true;
      size = 0;
      decoder = opcode === 1 ? new TextDecoder("utf-8", { fatal: true }) : undefined;
    }
    if (size + length > max) return fail(1009, `a message over ${max} bytes`);
    size += length;
    try {
      decoder?.decode(payload, { stream: !(fin && available === length) });
    } catch {
      return fail(1007, "text that is not UTF-8");
    }
    if (available < length) return unfinished();
    at += length;
    echoed.push({ opcode, fin, payload });
    if (fin) inMessage = false;
  }
}

// ---- generating inputs -------------------------------------------------------------

const INVALID_UTF8 = [
  [0xc3, 0x28],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xff],
  [0xc0, 0xaf],
  [0xe2, 0x82],
  [0x80],
].map((b) => new Uint8Array(b));

const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014, 3000, 4001, 4999];
const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];

/** Text payloads: UTF-8, and bytes that are not. */
const textPayload: fc.Arbitrary<Uint8Array> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => encoder.encode(s)),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.string({ maxLength: 20 }),
      fc.constantFrom(...INVALID_UTF8),
      fc.string({ maxLength: 5 }),
    ).map(([a, bad, b]) => concat([encoder.encode(a), bad, encoder.encode(b)])),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 126, max: 3000 }).map((n) => encoder.encode("é".repeat(n >> 1))),
  },
);

/** Binary payloads: small, 16-bit sized, over the limit. */
const binaryPayload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 125 }) },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 126, max: 3000 }).map((n) => new Uint8Array(n).fill(0x61)),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: MAX_MESSAGE + 1, max: MAX_MESSAGE + 300 }).map((n) =>
      new Uint8Array(n)
    ),
  },
);

/** A masked frame, FIN set unless told, no RSV bits. */
export const frame = (opcode: number, payload: Uint8Array, fin = true): WireFrame => ({
  fin,
  rsv: 0,
  opcode,
  masked: true,
  payload,
});

/** A control frame: ping, pong, Close of each kind. */
const controlFrame: fc.Arbitrary<WireFrame> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 125 }).map((p) => frame(9, p)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 20 }).map((p) => frame(10, p)) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 126, max: 200 }).map((n) => frame(9, new Uint8Array(n))),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...VALID_CODES) },
        { weight: 2, arbitrary: fc.constantFrom(...INVALID_CODES) },
      ),
      fc.oneof(
        fc.constantFrom("", "bye", "é✓"),
        fc.constant("x".repeat(124)), // 126 bytes with the code: too long
        fc.string({ maxLength: 30 }),
      ).map((s) => encoder.encode(s)),
      fc.boolean(),
    ).map(([code, reason, badReason]) =>
      frame(
        8,
        concat([
          new Uint8Array([code >> 8, code & 255]),
          badReason ? new Uint8Array([0xff]) : reason,
        ]),
      )
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(frame(8, new Uint8Array(0)), frame(8, new Uint8Array([3]))),
  },
);

/** A message: text or binary, whole or in 2–4 fragments with control frames between them. */
const message: fc.Arbitrary<WireFrame[]> = fc.tuple(
  fc.boolean(),
  fc.integer({ min: 1, max: 4 }),
  fc.array(
    fc.option(controlFrame.filter((c) => c.opcode === 9 && c.payload.length <= 125), { freq: 3 }),
    {
      minLength: 3,
      maxLength: 3,
    },
  ),
).chain(([text, pieces, between]) =>
  (text ? textPayload : binaryPayload).map((payload) => {
    const frames: WireFrame[] = [];
    const cuts = Array.from({ length: pieces - 1 }, (_, i) =>
      Math.floor((payload.length * (i + 1)) / pieces));
    const bounds = [0, ...cuts, payload.length];
    for (let i = 0; i < pieces; i++) {
      frames.push(
        frame(
          i === 0 ? (text ? 1 : 2) : 0,
          payload.slice(bounds[i], bounds[i + 1]),
          i === pieces - 1,
        ),
      );
      const ping = between[i];
      if (i < pieces - 1 && ping) {
        frames.push(ping);
      }
    }
    return frames;
  })
);

/** Frames no client should send: reserved opcodes, a lone continuation, a 64-bit length of 2^63. */
const oddFrame: fc.Arbitrary<WireFrame> = fc.oneof(
  fc.tuple(fc.constantFrom(3, 4, 5, 6, 7, 11, 12, 13, 14, 15), fc.uint8Array({ maxLength: 8 })).map(
    ([op, p]) => frame(op, p),
  ),
  fc.uint8Array({ maxLength: 8 }).map((p) => frame(0, p)),
  fc.constant({
    ...frame(2, new Uint8Array(0)),
    declared: Number.MAX_SAFE_INTEGER,
    form: 64 as const,
  }),
  fc.constant({ ...frame(9, new Uint8Array(0)), fin: false }),
);

/** Mutations of one frame of a sequence. */
function mutate(f: WireFrame, how: number, n: number): WireFrame {
  switch (how) {
    case 0:
      return { ...f, rsv: 1 + (n % 7) };
    case 1:
      return { ...f, masked: false };
    case 2:
      return { ...f, fin: !f.fin };
    case 3:
      return { ...f, opcode: n % 16 };
    case 4:
      return {
        ...f,
        declared: Math.max(0, f.payload.length + (n % 2 ? 1 + (n % 9) : -(1 + (n % 9)))),
      };
    case 5:
      return { ...f, form: n % 2 ? 16 : 64 };
    default:
      return f;
  }
}

/** The well-formed upgrade request, with `key`. */
export function upgradeRequest(key: string, lines: string[] = []): string {
  return [
    "GET /fuzz HTTP/1.1",
    "Host: 127.0.0.1",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...lines,
  ].join("\r\n") + "\r\n\r\n";
}

/** Upgrade requests: mostly well-formed, some mutated line by line or byte by byte. */
const upgrades: fc.Arbitrary<{ bytes: Uint8Array; key?: string }> = fc.tuple(
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => btoa(String.fromCharCode(...b))),
  fc.nat(),
).chain(([key, n]) => {
  const good = upgradeRequest(key);
  const lines = good.split("\r\n");
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant({ bytes: encoder.encode(good), key }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        good.replace("Upgrade: websocket", "Upgrade: WebSocket"),
        good.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
        good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        good.replace(/Sec-WebSocket-Key: [^\r]*\r\n/, ""),
        good.replace("Upgrade: websocket\r\n", ""),
        good.replace("GET", "POST"),
        good.replace("HTTP/1.1", "HTTP/1.0"),
        good.replaceAll("\r\n", "\n"),
        good.replace("Host: 127.0.0.1", "Host: 127.0.0.1\r\n folded"),
        good.replace("Host:", "Host :"),
        good.replace("\r\n\r\n", `\r\nX-Big: ${"a".repeat(17_000)}\r\n\r\n`),
        good.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: a, b\r\n\r\n"),
        good.replace("/fuzz", "/fuzz?x=%00"),
        good.replace("\r\n\r\n", "\r\nUpgrade: h2c\r\n\r\n"),
        `${good.slice(0, good.length - 2)}\u0000\r\n`,
        good.slice(0, (n % (good.length - 1)) + 1),
        `${lines[0]}\r\n\r\n`,
        "\r\n\r\n",
      ).map((text) => ({ bytes: encoder.encode(text), key })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })).map(
        ([i, b]) => {
          const bytes = encoder.encode(good);
          bytes[i] = b;
          return { bytes, key };
        },
      ),
    },
  );
});

/** Fuzz inputs. */
export function wsInputs(): fc.Arbitrary<WsInput> {
  const item = fc.oneof(
    { weight: 6, arbitrary: message },
    { weight: 2, arbitrary: controlFrame.map((c) => [c]) },
    { weight: 1, arbitrary: oddFrame.map((c) => [c]) },
  );
  return fc.record({
    target: fc.constantFrom<0 | 1>(0, 1),
    upgrade: upgrades,
    items: fc.array(item, { minLength: 0, maxLength: 5 }),
    mutations: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 5 }), fc.nat()), {
      maxLength: 2,
    }),
    close: fc.option(controlFrame.filter((c) => c.opcode === 8), { freq: 2 }),
    glued: fc.boolean(),
    writes: fc.integer({ min: 1, max: 3 }),
    halfClose: fc.boolean(),
  }).map(({ target, upgrade, items, mutations, close, glued, writes, halfClose }) => {
    const frames = items.flat();
    for (const [at, how, n] of mutations) {
      if (frames.length) frames[at % frames.length] = mutate(frames[at % frames.length], how, n);
    }
    if (close) frames.push(close);
    return { target, upgrade: upgrade.bytes, key: upgrade.key, frames, glued, writes, halfClose };
  });
}

// ---- talking to a server ---------------------------------------------------------------

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A frame a server sent, as read. */
interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Uint8Array;
}

/** The whole frames in `bytes`, and whether a part of one is left at the end. */
function serverFrames(bytes: Uint8Array): { frames: ServerFrame[]; partial: boolean } {
  const frames: ServerFrame[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (bytes.length - at >= 2) {
    const short = bytes[at + 1] & 0x7f;
    const masked = (bytes[at + 1] & 0x80) !== 0;
    const ext = short === 126 ? 2 : short === 127 ? 8 : 0;
    const head = 2 + ext + (masked ? 4 : 0);
    if (bytes.length - at < head) break;
    let length = short;
    if (short === 126) length = view.getUint16(at + 2);
    if (short === 127) length = Number(view.getBigUint64(at + 2));
    if (bytes.length - at - head < length) break;
    frames.push({
      fin: (bytes[at] & 0x80) !== 0,
      rsv: (bytes[at] >> 4) & 7,
      opcode: bytes[at] & 0x0f,
      masked,
      payload: bytes.slice(at + head, at + head + length),
    });
    at += head + length;
  }
  return { frames, partial: at < bytes.length };
}

const equalBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** What came back from a server: the answer to the upgrade, frames, how it ended. */
interface Exchange {
  /** The status line of the answer to the upgrade ("" if none). */
  status: string;
  /** The rest of its head. */
  head: string;
  /** Bytes after the head. */
  bytes: Uint8Array;
  /** The server closed the connection (EOF or reset). */
  closed: boolean;
  /** When the answer that was due did not come in time: what was due. */
  late?: string;
}

/** Reads from `conn` until `done(bytes)` says so, the server closes, or `ms` pass. */
async function readUntil(
  conn: Deno.Conn,
  have: Uint8Array,
  done: (bytes: Uint8Array) => boolean,
  ms: number,
): Promise<{ bytes: Uint8Array; closed: boolean; timedOut: boolean }> {
  let bytes = have;
  const buf = new Uint8Array(65536);
  const deadline = Date.now() + ms;
  let pending: Promise<number | null> | undefined;
  for (;;) {
    if (done(bytes)) {
      pending?.catch(() => {});
      return { bytes, closed: false, timedOut: false };
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      pending?.catch(() => {});
      return { bytes, closed: false, timedOut: true };
    }
    pending ??= conn.read(buf).catch(() => null);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      pending,
      new Promise<"time">((r) => timer = setTimeout(() => r("time"), left)),
    ]);
    clearTimeout(timer);
    if (n === "time") continue;
    pending = undefined;
    if (n === null) return { bytes, closed: true, timedOut: false };
    bytes = concat([bytes, buf.subarray(0, n)]);
  }
}

/**
 * Sends one input to 127.0.0.1:`port` and checks what comes back against
 * {@linkcode expectOf}; resolves to a broken rule, or undefined.
 */
export async function exchange(port: number, input: WsInput): Promise<string | undefined> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (err) {
    return `could not connect: ${(err as Error).message}`;
  }
  try {
    const frameBytesAll = concat(input.frames.map(frameBytes));
    const writing = (async () => {
      const parts: Uint8Array[] = input.glued ? [] : [input.upgrade];
      let rest = input.glued ? concat([input.upgrade, frameBytesAll]) : frameBytesAll;
      for (let i = input.writes; i > 1 && rest.length > 1; i--) {
        const cut = Math.max(1, Math.floor(rest.length / i));
        parts.push(rest.subarray(0, cut));
        rest = rest.subarray(cut);
      }
      parts.push(rest);
      for (const [i, part] of parts.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, 5));
        for (let at = 0; at < part.length;) at += await conn.write(part.subarray(at));
      }
      if (input.halfClose) await conn.closeWrite();
    })().catch(() => {}); // the server may close first: that is an answer
    const upgradeText = decoder.decode(input.upgrade);
    const headDone = (b: Uint8Array) => findHeadEnd(b) >= 0;
    // A whole request head is answered (431 past 16 KiB); a part of one may wait (the server's
    // upgrade timeout) unless the client half-closed.
    const requestEnd = findHeadEnd(input.upgrade);
    const requestComplete = requestEnd >= 0 || input.upgrade.length > 16 * 1024;
    const first = await readUntil(
      conn,
      new Uint8Array(0),
      headDone,
      requestComplete || input.halfClose ? ANSWER_WITHIN : QUIET * 3,
    );
    const end = findHeadEnd(first.bytes);
    if (end < 0) {
      await writing;
      if (first.timedOut && (requestComplete || input.halfClose)) {
        return `no answer to the upgrade within ${ANSWER_WITHIN} ms`;
      }
      if (first.bytes.length) return `a partial answer to the upgrade: ${show(first.bytes)}`;
      if (first.closed && requestComplete) {
        return "closed without answering a whole upgrade request";
      }
      return undefined;
    }
    const head = decoder.decode(first.bytes.subarray(0, end));
    const status = head.split("\r\n")[0];
    let bytes: Uint8Array = first.bytes.slice(end + 4);
    if (!/^HTTP\/1\.1 (101|4\d\d) /.test(status)) {
      return `upgrade answered ${JSON.stringify(status)}`;
    }
    if (!status.startsWith("HTTP/1.1 101 ")) {
      // Refused: the server closes.
      const rest = await readUntil(conn, bytes, () => false, ANSWER_WITHIN);
      await writing;
      return rest.closed
        ? undefined
        : `refused the upgrade (${status}) and kept the connection open`;
    }
    if (requestEnd < 0 || requestEnd + 4 > 16 * 1024) return "101 for an incomplete request head";
    if (
      input.key !== undefined && !head.includes(`Sec-WebSocket-Accept: ${acceptKey(input.key)}`)
    ) {
      if (upgradeText.includes(`Sec-WebSocket-Key: ${input.key}\r\n`)) {
        return `a wrong Sec-WebSocket-Accept: ${JSON.stringify(head)}`;
      }
    }
    // The request as the server took it: what follows its head is frames.
    const sent = concat([input.upgrade.subarray(requestEnd + 4), frameBytesAll]);
    const expected = expectOf(sent, input.halfClose);
    const due = expected.end.kind !== "open";
    const complete = (b: Uint8Array) => {
      const { frames } = serverFrames(b);
      if (frames.some((f) => f.opcode === 8)) return false; // then the close of TCP is due
      const data = frames.filter((f) => f.opcode <= 2).length;
      const pongs = frames.filter((f) => f.opcode === 10).length;
      return !due && data >= expected.echoed.length && pongs >= expected.pongs.length;
    };
    const rest = await readUntil(conn, bytes, complete, ANSWER_WITHIN);
    bytes = rest.bytes;
    if (!due && !rest.timedOut) {
      // Everything due came back; anything more would come now.
      const more = await readUntil(conn, bytes, () => false, QUIET);
      bytes = more.bytes;
      rest.closed = more.closed;
    }
    await writing;
    return judge(expected, bytes, rest.closed, rest.timedOut, input.target);
  } finally {
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }
}

/** Whether what came back keeps the rules, given what was due. */
function judge(
  expected: Expected,
  bytes: Uint8Array,
  closed: boolean,
  timedOut: boolean,
  target: 0 | 1,
): string | undefined {
  const { frames, partial } = serverFrames(bytes);
  for (const f of frames) {
    if (f.masked) return "a masked frame from the server";
    if (f.rsv) return "RSV bits from the server";
    if (![0, 1, 2, 8, 9, 10].includes(f.opcode)) return `opcode ${f.opcode} from the server`;
  }
  const closeAt = frames.findIndex((f) => f.opcode === 8);
  if (closeAt >= 0 && closeAt < frames.length - 1) return "frames after the server's Close";
  const close = closeAt >= 0 ? frames[closeAt] : undefined;
  if (close) {
    const p = close.payload;
    if (p.length === 1 || p.length > 125) return `a Close of ${p.length} bytes`;
    if (p.length >= 2 && !validCloseCode((p[0] << 8) | p[1])) {
      return `Close code ${(p[0] << 8) | p[1]} on the wire`;
    }
  }
  const code = close
    ? (close.payload.length ? (close.payload[0] << 8) | close.payload[1] : 1005)
    : undefined;
  // Data: the frames sent back are those sent, in order, whole — never a frame past a fault.
  const data = frames.filter((f) => f.opcode <= 2);
  if (data.length > expected.echoed.length) {
    return `${data.length} data frames back, ${expected.echoed.length} valid ones sent`;
  }
  for (const [i, f] of data.entries()) {
    const e = expected.echoed[i];
    if (f.opcode !== e.opcode || f.fin !== e.fin || !equalBytes(f.payload, e.payload)) {
      return `data frame ${i} came back as ${f.opcode}/${f.fin}/${
        show(f.payload)
      }, sent ${e.opcode}/${e.fin}/${show(e.payload)}`;
    }
  }
  const pongs = frames.filter((f) => f.opcode === 10);
  if (pongs.length > expected.pongs.length) {
    return `${pongs.length} pongs for ${expected.pongs.length} pings`;
  }
  for (const [i, p] of pongs.entries()) {
    if (!equalBytes(p.payload, expected.pongs[i])) {
      return `pong ${i} does not carry its ping's payload`;
    }
  }
  const end = expected.end;
  switch (end.kind) {
    case "fail":
      if (code === end.code) {
        return closed || !timedOut ? undefined : "no close of TCP after its Close";
      }
      if (code !== undefined) return `Close ${code} for ${end.why} (${end.code} due)`;
      // Closing mid-frame (one of its frames half sent) is the one way to end without a Close.
      if (closed && partial) return undefined;
      return closed
        ? `closed without Close ${end.code} for ${end.why}`
        : `no Close ${end.code} within ${ANSWER_WITHIN} ms for ${end.why}`;
    case "answer":
      if (code === end.code) return undefined;
      return code === undefined
        ? `${closed ? "closed" : "no answer"} without answering Close ${end.code}`
        : `answered Close ${end.code} with ${code}`;
    case "eof":
      if (code !== undefined) return `Close ${code} after a half-close without one`;
      return closed ? undefined : `still open ${ANSWER_WITHIN} ms after the client's end`;
    case "open":
      if (code !== undefined) return `Close ${code} in a session that was fine`;
      if (closed) return `closed a session that was fine (${target ? "forward" : "echo"})`;
      if (data.length < expected.echoed.length) {
        return `${data.length} of ${expected.echoed.length} data frames back within ${ANSWER_WITHIN} ms`;
      }
      if (pongs.length < expected.pongs.length) {
        return `${pongs.length} of ${expected.pongs.length} pongs within ${ANSWER_WITHIN} ms`;
      }
      return undefined;
  }
}

/** Where an HTTP head ends (the index of its CRLFCRLF), or -1. */
function findHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

function show(bytes: Uint8Array): string {
  const hex = [...bytes.subarray(0, 24)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${bytes.length} B ${hex}${bytes.length > 24 ? "…" : ""}`;
}

/** A well-formed client: a text message and its echo, then Close 1000 answered. */
async function served(port: number, n: number): Promise<string | undefined> {
  const key = btoa("sockit-ws-probe!");
  const text = encoder.encode(`probe ${n} ✓`);
  const input: WsInput = {
    target: 0,
    upgrade: encoder.encode(upgradeRequest(key)),
    key,
    frames: [frame(1, text), frame(8, new Uint8Array([0x03, 0xe8]))],
    glued: false,
    writes: 1,
    halfClose: false,
  };
  const broke = await exchange(port, input);
  return broke ? `a well-formed client: ${broke}` : undefined;
}

/** The number of descriptors process `pid` has open (through `ls`: Deno reads /proc only with -A). */
async function descriptors(pid: number): Promise<number> {
  const out = await new Deno.Command("ls", { args: [`/proc/${pid}/fd`] }).output();
  return decoder.decode(out.stdout).split("\n").filter(Boolean).length;
}

/** The resident memory of process `pid`, in KiB. */
async function rss(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  return Number(/VmRSS:\s+(\d+)/.exec(decoder.decode(out.stdout))?.[1] ?? 0);
}

/** Options of {@linkcode fuzzWebSocket}. */
export interface WsFuzzOptions {
  /** How many inputs. */
  runs: number;
  /** The generator's seed. */
  seed: number;
  /** Inputs in flight at once. */
  concurrency: number;
  /** A well-formed client is served after each batch of this many. */
  batch: number;
}

/** What a WebSocket fuzz run found. */
export interface WsFuzzResult {
  /** Inputs sent. */
  runs: number;
  /** Broken rules, in words. */
  failures: string[];
  /** How the inputs were due to end (fail 1002, answer 1000, open, eof, refused…), by count. */
  outcomes: Record<string, number>;
  /** Well-formed clients served between batches. */
  probes: number;
  /** The most resident memory either server had, in KiB. */
  maxRss: number;
}

/**
 * Runs the WebSocket fuzz: `sockit echo ws://` and `sockit forward ws://
 * ws://` in front of it (both `--max-message 4096`), each input sent to one
 * of them and checked, a well-formed client after each batch; then
 * descriptors, memory and the end on SIGTERM checked.
 */
export async function fuzzWebSocket(options: WsFuzzOptions): Promise<WsFuzzResult> {
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  const limit = ["--max-message", String(MAX_MESSAGE)];
  const echo = spawnSockit(["echo", "ws://127.0.0.1:0/", "-v", ...limit], { process: true });
  const runs: SockitRun[] = [echo];
  let probes = 0;
  let maxRss = 0;
  try {
    const echoPort = await echo.listeningPort();
    const forward = spawnSockit(
      ["forward", "ws://127.0.0.1:0/", `ws://127.0.0.1:${echoPort}/`, "-v", ...limit],
      { process: true },
    );
    runs.push(forward);
    const ports = [echoPort, await forward.listeningPort()];
    const pids = runs.map((r) => (r as unknown as { child: Deno.ChildProcess }).child.pid);
    const ended = runs.map((run) => {
      const state = { done: false };
      run.result().then(() => state.done = true);
      return state;
    });
    for (const port of ports) {
      const broke = await served(port, probes++);
      if (broke) throw new Error(`before the fuzz: ${broke}`);
    }
    await new Promise((r) => setTimeout(r, 200));
    const before = await Promise.all(pids.map(descriptors));
    const inputs = fc.sample(wsInputs(), { numRuns: options.runs, seed: options.seed });
    for (let start = 0; start < inputs.length; start += options.batch) {
      const batch = inputs.slice(start, start + options.batch);
      let next = 0;
      const worker = async () => {
        while (next < batch.length) {
          const i = start + next;
          const input = batch[next++];
          outcomes[outcomeOf(input)] = (outcomes[outcomeOf(input)] ?? 0) + 1;
          const broke = await exchange(ports[input.target], input);
          if (broke) failures.push(`input ${i} ${describe(input)}: ${broke}`);
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      for (const port of ports) {
        const broke = await served(port, probes++);
        if (broke) failures.push(`after inputs ${start}–${start + batch.length - 1}: ${broke}`);
      }
      for (const [i, pid] of pids.entries()) {
        const kib = await rss(pid);
        maxRss = Math.max(maxRss, kib);
        if (kib > RSS_BOUND_KIB) {
          failures.push(`server ${i}: ${kib} KiB resident (bound ${RSS_BOUND_KIB})`);
        }
      }
      for (const [i, state] of ended.entries()) {
        if (state.done) {
          failures.push(`server ${i} ended during the fuzz:\n${runs[i].stderr.slice(-2000)}`);
          throw new Error("a server ended");
        }
      }
    }
    // Every input's connection is closed: the servers' descriptors come back.
    for (const [i, pid] of pids.entries()) {
      let now = await descriptors(pid);
      for (let tries = 0; tries < 60 && now > before[i]; tries++) {
        await new Promise((r) => setTimeout(r, 100));
        now = await descriptors(pid);
      }
      if (now > before[i]) {
        failures.push(`server ${i}: ${now - before[i]} descriptors not given back`);
      }
    }
  } finally {
    for (const run of runs) run.kill("SIGTERM");
    const results = await Promise.all(runs.map((r) => r.result()));
    for (const [i, r] of results.entries()) {
      if (r.code !== 143) failures.push(`server ${i} exited ${r.code} on SIGTERM`);
      if (/^\s+at .*:\d+:\d+\)?$/m.test(r.stderr) || /Uncaught/.test(r.stderr)) {
        failures.push(`server ${i}: a stack trace:\n${r.stderr.slice(-2000)}`);
      }
    }
  }
  return { runs: options.runs, failures, outcomes, probes, maxRss };
}

/** How an input is due to end, in a word or two. */
function outcomeOf(input: WsInput): string {
  const end = findHeadEnd(input.upgrade);
  if (!input.key || decoder.decode(input.upgrade) !== upgradeRequest(input.key)) {
    return "upgrade mutated";
  }
  const sent = concat([input.upgrade.subarray(end + 4), ...input.frames.map(frameBytes)]);
  const e = expectOf(sent, input.halfClose).end;
  return e.kind === "fail" || e.kind === "answer" ? `${e.kind} ${e.code}` : e.kind;
}

/** An input in words, for a failure message. */
function describe(input: WsInput): string {
  const frames = input.frames.map((f) =>
    `${f.fin ? "" : "~"}${f.rsv ? `rsv${f.rsv}:` : ""}${f.opcode}${
      f.masked ? "" : "!m"
    }(${f.payload.length}${f.declared !== undefined ? `→${f.declared}` : ""}${
      f.form ? `/${f.form}` : ""
    })`
  ).join(" ");
  return `to ${input.target ? "forward" : "echo"} [${frames}]${
    input.halfClose ? " half-closed" : ""
  }${input.glued ? " glued" : ""} upgrade ${
    JSON.stringify(decoder.decode(input.upgrade.subarray(0, 60)))
  }`;
}
