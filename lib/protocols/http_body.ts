/**
 * Where an HTTP/1.1 request's body ends in the bytes after its head
 * (RFC 9112 §6.3: `Content-Length`, chunked, or none), and a target side
 * for the relay that passes one request and drops what follows it: the
 * plain HTTP proxy's "one request per connection".
 *
 * @module
 */

import { writeAll } from "../base/bytes.ts";
import type { Connection } from "../net/conn.ts";
import type { Duplex } from "../engine/relay.ts";

/**
 * Where a request ends in the bytes after its head: a body of
 * `Content-Length` bytes, a chunked body (RFC 9112 §7.1: chunks, the last
 * one empty, trailer lines, an empty line; strict CRLFs), or none.
 *
 * @example Usage
 * ```ts
 * import { BodyFraming } from "./http_body.ts";
 * import assert from "node:assert/strict";
 *
 * const chunked = new BodyFraming("chunked");
 * const bytes = new TextEncoder().encode("5\r\nhello\r\n0\r\n\r\nGET /next");
 * assert.equal(chunked.take(bytes), 15);
 * assert(chunked.done);
 * const sized = new BodyFraming(3);
 * assert.equal(sized.take(new Uint8Array(10)), 3);
 * assert.throws(() => new BodyFraming("chunked").take(new TextEncoder().encode("5\nhello")), /malformed/);
 * ```
 */
export class BodyFraming {
  #left: number;
  #chunked: boolean;
  /** Where in the chunked syntax the next byte falls. */
  #state:
    | "size"
    | "ext"
    | "size-lf"
    | "data"
    | "data-cr"
    | "data-lf"
    | "trailer"
    | "line"
    | "line-lf"
    | "end-lf" = "size";
  #digits = 0;
  /** Set when the body is complete. */
  done: boolean;

  /** A body of `length` bytes, or a chunked one. */
  constructor(length: number | "chunked") {
    this.#chunked = length === "chunked";
    this.#left = this.#chunked ? 0 : length as number;
    this.done = !this.#chunked && this.#left === 0;
  }

  /**
   * How many of `bytes` belong to the body (all of them until it ends);
   * throws on a chunked body that breaks the syntax.
   */
  take(bytes: Uint8Array): number {
    if (this.done) return 0;
    if (!this.#chunked) {
      const n = Math.min(this.#left, bytes.length);
      this.#left -= n;
      this.done = this.#left === 0;
      return n;
    }
    let i = 0;
    const fail = (why: string): never => {
      throw new Error(`a malformed chunked request body: ${why}`);
    };
    while (i < bytes.length && !this.done) {
      const b = bytes[i];
      switch (this.#state) {
        case "size": {
          const hex = b >= 48 && b <= 57
            ? b - 48
            : (b | 32) >= 97 && (b | 32) <= 102
            ? (b | 32) - 87
            : -1;
          if (hex >= 0) {
            if (++this.#digits > 12) fail("a chunk size over 12 hex digits");
            this.#left = this.#left * 16 + hex;
          } else if (this.#digits === 0) fail("a chunk size that is not hex");
          else if (b === 59 /* ; */) this.#state = "ext";
          else if (b === 13) this.#state = "size-lf";
          else fail("a chunk size that is not hex");
          i++;
          break;
        }
        case "ext":
          if (b === 10) fail("a bare LF after a chunk extension");
          if (b === 13) this.#state = "size-lf";
          i++;
          break;
        case "size-lf":
          if (b !== 10) fail("a chunk size line that does not end in CRLF");
          this.#digits = 0;
          this.#state = this.#left === 0 ? "trailer" : "data";
          i++;
          break;
        case "data": {
          const n = Math.min(this.#left, bytes.length - i);
          this.#left -= n;
          i += n;
          if (this.#left === 0) this.#state = "data-cr";
          break;
        }
        case "data-cr":
          if (b !== 13) fail("chunk data longer than its size");
          this.#state = "data-lf";
          i++;
          break;
        case "data-lf":
          if (b !== 10) fail("chunk data not followed by CRLF");
          this.#state = "size";
          i++;
          break;
        case "trailer":
          this.#state = b === 13 ? "end-lf" : "line";
          if (b === 10) fail("a bare LF in the trailer");
          i++;
          break;
        case "line":
          if (b === 10) fail("a bare LF in the trailer");
          if (b === 13) this.#state = "line-lf";
          i++;
          break;
        case "line-lf":
          if (b !== 10) fail("a bare CR in the trailer");
          this.#state = "trailer";
          i++;
          break;
        case "end-lf":
          if (b !== 10) fail("a bare CR after the trailer");
          this.done = true;
          i++;
          break;
      }
    }
    return i;
  }
}

/**
 * The target of a plain HTTP request as the relay sees it: writes pass the
 * request's head (`head` bytes) and its body, then nothing — a second
 * request pipelined behind the first is dropped (the origin was told
 * `Connection: close`, so the client knows to send it again on a new
 * connection), and `dropped` is told once. Reads and the rest go to the
 * target.
 *
 * @example Usage
 * ```ts ignore
 * const side = new OneRequest(target, head.length, new BodyFraming(0), (n) => note(n));
 * await transfer(client, side, { signal });
 * ```
 */
export class OneRequest implements Duplex {
  #target: Connection;
  #head: number;
  #framing: BodyFraming;
  #dropped?: (bytes: number) => void;
  #told = false;

  /** Passes `head` bytes, then what `framing` says is the body, to `target`. */
  constructor(
    target: Connection,
    head: number,
    framing: BodyFraming,
    dropped?: (bytes: number) => void,
  ) {
    this.#target = target;
    this.#head = head;
    this.#framing = framing;
    this.#dropped = dropped;
  }

  /** The target's name. */
  get label(): string {
    return this.#target.label;
  }

  /** Reads from the target. */
  read(p: Uint8Array): Promise<number | null> {
    return this.#target.read(p);
  }

  /** Passes what belongs to the request; counts the rest as written. */
  async write(p: Uint8Array): Promise<number> {
    const head = Math.min(this.#head, p.length);
    this.#head -= head;
    const pass = head + (this.#head === 0 ? this.#framing.take(p.subarray(head)) : 0);
    if (pass < p.length && !this.#told) {
      this.#told = true;
      this.#dropped?.(p.length - pass);
    }
    if (pass > 0) await writeAll(this.#target, p.subarray(0, pass));
    return p.length;
  }

  /** Half-closes the target. */
  closeWrite(): Promise<void> {
    return this.#target.closeWrite();
  }

  /** Closes the target. */
  close(): void {
    this.#target.close();
  }

  /** The target's fd, for splice(2) of the response. */
  spliceFrom(): number | undefined {
    return this.#target.spliceFrom();
  }
}
