/**
 * The payload side of a session as one {@linkcode Duplex}: what is sent —
 * the sends of a dialogue (`--send` text, `--send-file` files), or the
 * input stream (stdin in the CLI) — and where what is received goes (the
 * output stream, stdout). A datagram peer takes the input in records of at
 * most its datagram size: each read of the input is one datagram, and a
 * text or file larger than a datagram goes as consecutive datagrams.
 *
 * @module
 */

import type { Dialogue, Step } from "./dialogue.ts";
import { SockitError, toSockitError } from "../base/errors.ts";
import type { Duplex } from "./relay.ts";
import type { Input, Output } from "./stdio.ts";

/** What a session sends, and where it writes what it receives. */
export interface PayloadOptions {
  /** Send the dialogue's sends (in its order) instead of the input. */
  dialogue?: Dialogue;
  /** The input stream (stdin). */
  input: Input;
  /** The output stream (stdout). */
  output: Output;
  /** Send nothing and never read the input (`--recv-only`). */
  recvOnly?: boolean;
  /** Send input line ends LF as CRLF (`--crlf`, nc's `-C`); a CRLF stays as it is. */
  crlf?: boolean;
  /**
   * The peer takes datagrams of at most this many bytes: read the input one
   * record (one read) at a time, at most this large.
   */
  maxRecord?: number;
}

/** The payload as a duplex, with what is known of its size. */
export interface Payload extends Duplex {
  /** The size of what is sent, when known (texts and files), for a progress ETA. */
  readonly sendTotal?: number;
  /**
   * Whether what is sent is read from the input stream (false for the sends
   * of a dialogue, `--send`/`--send-file`, and for `--recv-only`): the
   * session's end follows the input's kind only then.
   */
  readonly fromInput: boolean;
}

/** The bytes to send, with a way to stop reading them. */
interface Source {
  read(p: Uint8Array): Promise<number | null>;
  /** Stop; with `linger` > 0 only once the input pauses (texts and files never do). */
  cancel(linger?: number): void;
  close?(): void;
}

/** Sends nothing and ends only when the session stops it (`--recv-only`). */
function silentSource(): Source {
  const stopped = Promise.withResolvers<null>();
  return { read: () => stopped.promise, cancel: () => stopped.resolve(null) };
}

/** The input read record by record (one read each, at most `max` bytes), for a datagram peer. */
function recordSource(input: Input, max: number): Source {
  return {
    async read(p) {
      const record = input.readRecord
        ? await input.readRecord(max)
        : await input.read(p.subarray(0, max)).then((n) => (n === null ? null : p.slice(0, n)));
      if (record === null) return null;
      p.set(record);
      return record.length;
    },
    cancel: (linger) => input.cancel(linger),
  };
}

/**
 * LF as CRLF (a CR already before the LF is kept, also across reads): what
 * SMTP and HTTP typed by hand need.
 */
function crlfSource(inner: Source): Source {
  let lastWasCr = false;
  return {
    async read(p) {
      // Half the room: every byte may become two.
      const buf = new Uint8Array(Math.max(1, p.length >> 1));
      const n = await inner.read(buf);
      if (n === null || n === 0) return n;
      let at = 0;
      for (let i = 0; i < n; i++) {
        const byte = buf[i];
        if (byte === 0x0a && !lastWasCr) p[at++] = 0x0d;
        p[at++] = byte;
        lastWasCr = byte === 0x0d;
      }
      return at;
    },
    cancel: (linger) => inner.cancel(linger),
    close: () => inner.close?.(),
  };
}

/** The dialogue's sends; a stop (not a pause) ends them. */
function dialogueSource(dialogue: Dialogue): Source {
  return {
    read: (p) => dialogue.read(p),
    cancel: (linger = 0) => {
      if (linger <= 0) dialogue.cancel();
    },
    close: () => dialogue.close(),
  };
}

/**
 * Checks, before any socket is opened, that the files a session will send
 * can be read; resolves to their total size.
 *
 * @example Usage
 * ```ts
 * import { checkSendFiles } from "./payload.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await checkSendFiles([]), 0);
 * await assert.rejects(checkSendFiles(["/nonexistent"]), /open \/nonexistent: no such file/);
 * ```
 */
export async function checkSendFiles(paths: string[]): Promise<number> {
  let total = 0;
  for (const path of paths) {
    try {
      const info = await Deno.stat(path);
      if (info.isDirectory) throw new SockitError("is a directory", { op: "open", address: path });
      total += info.size;
    } catch (err) {
      throw toSockitError(err, "open", path);
    }
  }
  return total;
}

/**
 * The files the steps of a dialogue send.
 *
 * @example Usage
 * ```ts
 * import { sendFiles } from "./payload.ts";
 * import { Pattern } from "./pattern.ts";
 * import assert from "node:assert/strict";
 *
 * const steps = [{ sendFile: "/etc/hostname" }, { expect: new Pattern("x") }];
 * assert.deepEqual(sendFiles(steps), ["/etc/hostname"]);
 * ```
 */
export function sendFiles(steps: readonly Step[] | undefined): string[] {
  return (steps ?? []).flatMap((s) => ("sendFile" in s ? [s.sendFile] : []));
}

/**
 * The datagrams the sends of `steps` make: each text or file is one
 * datagram, or several of at most `max` bytes when it is larger (an empty
 * text is one empty datagram). Throws a `SockitError` when a file cannot be
 * read.
 *
 * @example Usage
 * ```ts
 * import { sendDatagrams } from "./payload.ts";
 * import assert from "node:assert/strict";
 *
 * const datagrams = await sendDatagrams([{ send: new Uint8Array(5) }, { send: new Uint8Array(0) }], 2);
 * assert.deepEqual(datagrams.map((d) => d.length), [2, 2, 1, 0]);
 * ```
 */
export async function sendDatagrams(steps: readonly Step[], max: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const step of steps) {
    let bytes: Uint8Array;
    if ("send" in step) bytes = step.send;
    else if ("sendFile" in step) {
      try {
        bytes = await Deno.readFile(step.sendFile);
      } catch (err) {
        throw toSockitError(err, "open", step.sendFile);
      }
    } else continue;
    if (bytes.length === 0) out.push(bytes);
    for (let at = 0; at < bytes.length; at += max) out.push(bytes.subarray(at, at + max));
  }
  return out;
}

/**
 * Opens the payload: the dialogue's sends or the input, as the side that
 * sends them; what the relay writes to it goes to `output`, and its
 * `closeWrite()` flushes the output. Throws a `SockitError` when a file
 * cannot be read.
 *
 * @example Usage
 * ```ts
 * import { openPayload } from "./payload.ts";
 * import { Dialogue } from "./dialogue.ts";
 * import assert from "node:assert/strict";
 *
 * const payload = await openPayload({
 *   dialogue: new Dialogue([{ send: new TextEncoder().encode("hello!") }]),
 *   input: { read: () => Promise.resolve(null), cancel() {} },
 *   output: { write: (p) => Promise.resolve(p.length), flush: () => Promise.resolve() },
 * });
 * const buf = new Uint8Array(16);
 * assert.equal(await payload.read(buf), 6);
 * assert.equal(payload.sendTotal, 6);
 * assert.equal(payload.fromInput, false);
 * payload.close();
 * ```
 */
export async function openPayload(options: PayloadOptions): Promise<Payload> {
  const max = options.maxRecord;
  const dialogue = options.dialogue?.sends ? options.dialogue : undefined;
  let source: Source;
  let sendTotal: number | undefined;
  if (options.recvOnly) source = silentSource();
  else if (dialogue) {
    sendTotal = (dialogue.sendBytes ?? 0) + await checkSendFiles(sendFiles(dialogue.steps));
    source = dialogueSource(dialogue);
  } else source = max === undefined ? options.input : recordSource(options.input, max);
  if (options.crlf && !options.recvOnly) source = crlfSource(source);
  const output = options.output;
  return {
    label: "stdio",
    sendTotal,
    fromInput: !options.recvOnly && !dialogue,
    readSize: max,
    datagrams: max !== undefined,
    read: (p) => source.read(p),
    write: (p) => output.write(p),
    closeWrite: () => output.flush(),
    cancelRead: (linger) => source.cancel(linger),
    close: () => {
      source.cancel();
      source.close?.();
    },
    // The input itself, unchanged, may be moved by splice(2); so may the output, once
    // what was written to it is out.
    spliceFrom: () => source === options.input ? options.input.spliceFd?.() : undefined,
    spliceTo: async () => {
      if (!output.spliceFd) return undefined;
      await output.flush();
      return output.spliceFd();
    },
  };
}
