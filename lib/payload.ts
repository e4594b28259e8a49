/**
 * The payload side of a session as one {@linkcode Duplex}: what is sent
 * (`--send` text, a `--send-file`, or the input stream — stdin in the CLI)
 * and where what is received goes (the output stream — stdout). A datagram
 * peer takes the input record by record: each read of the input, the text,
 * or the file is one datagram.
 *
 * @module
 */

import { datagramTooLarge } from "./datagram.ts";
import { SockitError, toSockitError, UsageError } from "./errors.ts";
import type { Duplex } from "./relay.ts";
import type { Input, Output } from "./stdio.ts";

/** What a session sends, and where it writes what it receives. */
export interface PayloadOptions {
  /** Send these bytes instead of the input, then end. */
  send?: Uint8Array;
  /** Send this file instead of the input, then end. */
  sendFile?: string;
  /** The input stream (stdin). */
  input: Input;
  /** The output stream (stdout). */
  output: Output;
  /**
   * The peer takes datagrams of at most this many bytes: read the input one
   * record at a time, and refuse one that is larger.
   */
  maxRecord?: number;
}

/** The payload as a duplex, with what is known of its size. */
export interface Payload extends Duplex {
  /** The size of what is sent, when known (`--send`, `--send-file`), for a progress ETA. */
  readonly sendTotal?: number;
}

/** The bytes to send, with a way to stop reading them. */
interface Source {
  read(p: Uint8Array): Promise<number | null>;
  /** Stop; with `linger` > 0 only once the input pauses (text and files never do). */
  cancel(linger?: number): void;
  close?(): void;
}

function bytesSource(bytes: Uint8Array): Source {
  let offset = 0;
  return {
    read(p) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - offset);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
    cancel(linger = 0) {
      if (linger <= 0) offset = bytes.length;
    },
  };
}

function fileSource(file: Deno.FsFile): Source {
  let reading = true;
  let closed = false;
  return {
    read: (p) => (reading ? file.read(p) : Promise.resolve(null)),
    cancel(linger = 0) {
      if (linger <= 0) reading = false;
    },
    close() {
      reading = false;
      if (!closed) {
        closed = true;
        file.close();
      }
    },
  };
}

/** The input read record by record (one read(2) each), for a datagram peer. */
function recordSource(input: Input, max: number): Source {
  return {
    async read(p) {
      const record = input.readRecord
        ? await input.readRecord(max)
        : await input.read(p).then((n) => (n === null ? null : p.slice(0, n)));
      if (record === null) return null;
      // A record one byte over the limit stands for "more than fits".
      if (record.length > max) {
        throw datagramTooLarge(max, record.length > max + 1 ? `${record.length} bytes` : "more");
      }
      p.set(record);
      return record.length;
    },
    cancel: (linger) => input.cancel(linger),
  };
}

/** A whole text or file as one record (an empty one too: it is still a datagram). */
function oneRecord(bytes: Uint8Array, max: number): Source {
  if (bytes.length > max) throw datagramTooLarge(max, `${bytes.length} bytes`);
  let sent = false;
  return {
    read(p) {
      if (sent) return Promise.resolve(null);
      sent = true;
      p.set(bytes);
      return Promise.resolve(bytes.length);
    },
    cancel(linger = 0) {
      if (linger <= 0) sent = true;
    },
  };
}

/**
 * Checks, before any socket is opened, that a `--send-file` can be read.
 *
 * @example Usage
 * ```ts
 * import { checkSendFile } from "./payload.ts";
 * import assert from "node:assert/strict";
 *
 * await checkSendFile(undefined);
 * await assert.rejects(checkSendFile("/nonexistent"), /open \/nonexistent: no such file/);
 * ```
 */
export async function checkSendFile(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new SockitError("is a directory", { op: "open", address: path });
  } catch (err) {
    throw toSockitError(err, "open", path);
  }
}

/**
 * Opens the payload: the text, the file, or the input, as the side that
 * sends it; what the relay writes to it goes to `output`, and its
 * `closeWrite()` flushes the output. Throws a `SockitError` when the file
 * cannot be opened, a `UsageError` when a datagram would be too large.
 *
 * @example Usage
 * ```ts
 * import { openPayload } from "./payload.ts";
 * import assert from "node:assert/strict";
 *
 * const written: Uint8Array[] = [];
 * const payload = await openPayload({
 *   send: new TextEncoder().encode("hello!"),
 *   input: { read: () => Promise.resolve(null), cancel() {} },
 *   output: { write: (p) => (written.push(p.slice()), Promise.resolve(p.length)), flush: () => Promise.resolve() },
 * });
 * const buf = new Uint8Array(16);
 * assert.equal(await payload.read(buf), 6);
 * assert.equal(payload.sendTotal, 6);
 * payload.close();
 * ```
 */
export async function openPayload(options: PayloadOptions): Promise<Payload> {
  const max = options.maxRecord;
  let source: Source;
  let sendTotal: number | undefined;
  if (options.send !== undefined) {
    sendTotal = options.send.length;
    source = max === undefined ? bytesSource(options.send) : oneRecord(options.send, max);
  } else if (options.sendFile !== undefined) {
    try {
      if (max === undefined) {
        const file = await Deno.open(options.sendFile, { read: true });
        try {
          sendTotal = (await file.stat()).size;
        } catch (err) {
          file.close();
          throw err;
        }
        source = fileSource(file);
      } else {
        const bytes = await Deno.readFile(options.sendFile);
        sendTotal = bytes.length;
        source = oneRecord(bytes, max);
      }
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw toSockitError(err, "open", options.sendFile);
    }
  } else {
    source = max === undefined ? options.input : recordSource(options.input, max);
  }
  const output = options.output;
  return {
    label: "stdio",
    sendTotal,
    readSize: max === undefined ? undefined : max + 1,
    datagrams: max !== undefined,
    read: (p) => source.read(p),
    write: (p) => output.write(p),
    closeWrite: () => output.flush(),
    cancelRead: (linger) => source.cancel(linger),
    close: () => {
      source.cancel();
      source.close?.();
    },
  };
}
