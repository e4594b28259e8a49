/**
 * A `node:net` or `node:tls` socket shaped as the `Deno.Conn` the relay
 * uses (`node_tls.ts` hands it the plaintext side of a TLS socket).
 *
 * What the socket receives waits in an {@linkcode Inbox} until the relay
 * reads it. A plain socket is paused while the inbox holds
 * {@linkcode INBOX_HIGH} bytes and resumed when it has drained to half, so
 * a slow reader holds up the peer through TCP and memory stays bounded. (A
 * TLS socket is never paused — that would lose its end of stream in Deno —
 * and is held up at its ciphertext end instead; see `node_tls.ts`.)
 *
 * @module
 */

import type { Socket } from "node:net";
import { errnoError } from "./errors.ts";

/** Bytes the inbox holds before a plain socket is paused. */
export const INBOX_HIGH = 1 << 20;

/**
 * Data received and not yet read, with the wake-ups both ends wait on.
 *
 * @example Usage
 * ```ts
 * import { Inbox } from "./node_conn.ts";
 * import assert from "node:assert/strict";
 *
 * const inbox = new Inbox();
 * inbox.push(new TextEncoder().encode("hi"));
 * inbox.end();
 * const buf = new Uint8Array(8);
 * assert.equal(await inbox.read(buf), 2);
 * assert.equal(await inbox.read(buf), null);
 * ```
 */
export class Inbox {
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #queued = 0;
  #ended = false;
  #full = false;
  #failure?: Error;
  #dataWaiter?: () => void;
  #roomWaiter?: () => void;
  #onFull?: () => void;
  #onRoom?: () => void;

  /**
   * `onFull` is called when the inbox reaches {@linkcode INBOX_HIGH} bytes,
   * `onRoom` when it has drained to half after that (pause and resume).
   */
  constructor(onFull?: () => void, onRoom?: () => void) {
    this.#onFull = onFull;
    this.#onRoom = onRoom;
  }

  /** Adds received bytes. */
  push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued >= INBOX_HIGH && !this.#full) {
      this.#full = true;
      this.#onFull?.();
    }
    this.#wakeReader();
  }

  /** The end of the stream: reads return `null` once the inbox is empty. */
  end(): void {
    this.#ended = true;
    this.#wakeReader();
    this.#wakeWriter();
  }

  /** A failure: reads throw `err` once the inbox is empty. */
  fail(err: Error): void {
    this.#failure ??= err;
    this.end();
  }

  /** Resolves when there is room for more (or nobody will read any more). */
  room(): Promise<void> {
    if (this.#queued < INBOX_HIGH || this.#ended) return Promise.resolve();
    return new Promise((resolve) => (this.#roomWaiter = resolve));
  }

  /** Reads into `p`, as `Deno.Conn.read` does. */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#dataWaiter = resolve));
    }
    const head = this.#chunks[0];
    const n = Math.min(p.length, head.length - this.#offset);
    p.set(head.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    this.#queued -= n;
    if (this.#offset === head.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
    if (this.#queued < INBOX_HIGH / 2) {
      this.#wakeWriter();
      if (this.#full) {
        this.#full = false;
        this.#onRoom?.();
      }
    }
    return n;
  }

  #wakeReader(): void {
    this.#dataWaiter?.();
    this.#dataWaiter = undefined;
  }

  #wakeWriter(): void {
    this.#roomWaiter?.();
    this.#roomWaiter = undefined;
  }
}

/** The part of a node socket {@linkcode nodeConn} uses. */
export type NodeSocket = Pick<
  Socket,
  "on" | "once" | "write" | "end" | "destroy" | "destroyed" | "writableEnded"
>;

/** Options of {@linkcode nodeConn}. */
export interface NodeConnOptions {
  /** The connection's own address. */
  localAddr: Deno.Addr;
  /** The peer's address. */
  remoteAddr: Deno.Addr;
  /** Where received data waits (default: a new inbox that pauses and resumes the socket). */
  inbox?: Inbox;
  /** Resolves once what was written is on the wire (default: when node calls the write back). */
  flushed?: () => Promise<void>;
}

/** A node error (negative `errno`) as the Deno error of that errno. */
function denoError(err: Error): Error {
  const errno = (err as { errno?: unknown }).errno;
  return typeof errno === "number" ? errnoError(-errno) : err;
}

/**
 * `socket` as a `Deno.Conn`: reads from its inbox, writes resolve once
 * node has taken the bytes (and `flushed()` has), `closeWrite()` ends the
 * write side.
 *
 * @example Usage
 * ```ts
 * import { nodeConn } from "./node_conn.ts";
 * import net from "node:net";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const socket = net.connect({ host: "127.0.0.1", port: listener.addr.port });
 * await new Promise((resolve) => socket.once("connect", resolve));
 * const server = await listener.accept();
 * const conn = nodeConn(socket, { localAddr: server.remoteAddr, remoteAddr: server.localAddr });
 * await server.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(8);
 * assert.equal(await conn.read(buf), 2);
 * conn.close();
 * server.close();
 * listener.close();
 * ```
 */
export function nodeConn(socket: NodeSocket, options: NodeConnOptions): Deno.Conn {
  const plain = socket as Partial<Socket>;
  const inbox = options.inbox ??
    new Inbox(() => plain.pause?.(), () => {
      if (!socket.destroyed) plain.resume?.();
    });
  const flushed = options.flushed ?? (() => Promise.resolve());
  socket.on("data", (chunk: Uint8Array) => inbox.push(chunk));
  socket.on("end", () => inbox.end());
  socket.on("close", () => inbox.end());
  socket.on("error", (err: Error) => inbox.fail(denoError(err)));
  const conn = {
    localAddr: options.localAddr,
    remoteAddr: options.remoteAddr,
    read: (p: Uint8Array) => inbox.read(p),
    async write(p: Uint8Array): Promise<number> {
      if (socket.destroyed) throw new Deno.errors.BrokenPipe("connection closed");
      await new Promise<void>((resolve, reject) =>
        // The relay reuses its buffer: hand node a copy.
        socket.write(p.slice(), (err) => (err ? reject(denoError(err)) : resolve()))
      );
      // Written means on the socket, as with any Deno.Conn.
      await flushed();
      return p.length;
    },
    closeWrite(): Promise<void> {
      if (socket.destroyed || socket.writableEnded) return Promise.resolve();
      return new Promise((resolve) => {
        socket.once("close", () => resolve());
        socket.end(() => resolve());
      });
    },
    close(): void {
      socket.destroy();
      inbox.end();
    },
  };
  return conn as unknown as Deno.Conn;
}
