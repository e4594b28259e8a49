/**
 * What dialers and listeners hand out: a connected byte stream with its
 * number and addresses, as the relay, the events and the commands take it.
 * A socket is a `Connection` (`conn.ts`); a layer over one — TLS
 * (`tls_stream.ts`), WebSocket (`websocket.ts`) — holds the stream it runs
 * over ({@linkcode StreamLayer}) and offers only what it supports: neither
 * offers `splice(2)` (the kernel cannot move what is encrypted or framed),
 * and a WebSocket takes nothing back with `unread`.
 *
 * @module
 */

import type { Peer } from "../engine/transfer.ts";
import type { TraceFn } from "../engine/trace.ts";

/**
 * A connected stream: a socket, or a layer over one.
 *
 * @example Usage
 * ```ts
 * import type { Stream } from "./stream.ts";
 * import { Connection } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = Connection.from(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
 * using server = Connection.from(await listener.accept());
 * listener.close();
 * const stream: Stream = client;
 * assert.equal(stream.remoteAddress, server.localAddress);
 * ```
 */
export interface Stream extends Peer, Disposable {
  /** `#1`, `#2`, …: the tag of trace lines. */
  readonly tag: string;
  /** When it was opened (`performance.now()`). */
  readonly openedAt: number;
  /** The peer, as messages name it. */
  readonly label: string;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** The socket's local address, as Deno gives it. */
  readonly localAddr: Deno.Addr;
  /** The socket's peer address, as Deno gives it. */
  readonly remoteAddr: Deno.Addr;
  /**
   * Gives bytes back to be read again before anything else (what a
   * handshake read past its own end); absent on a layer that cannot.
   */
  unread?(bytes: Uint8Array): void;
}

/**
 * A layer over a stream (TLS, WebSocket): it holds the stream it runs over,
 * whose number, addresses and trace are its own, and implements the rest —
 * reading, writing, ending — itself. Nothing else of the stream below shows
 * through: what the layer does not implement, it does not offer.
 *
 * @example Usage
 * ```ts
 * import { StreamLayer } from "./stream.ts";
 * import { Connection } from "./conn.ts";
 * import assert from "node:assert/strict";
 *
 * // A layer that shouts what it writes.
 * class Upper extends StreamLayer {
 *   read(p: Uint8Array) { return this.inner.read(p); }
 *   write(p: Uint8Array) { return this.inner.write(new TextEncoder().encode(new TextDecoder().decode(p).toUpperCase())); }
 *   closeWrite() { return this.inner.closeWrite(); }
 *   close() { this.inner.close(); }
 * }
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = new Upper(Connection.from(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })));
 * using server = Connection.from(await listener.accept());
 * listener.close();
 * await client.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(8);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, (await server.read(buf))!)), "HI");
 * assert.equal(client.remoteAddress, server.localAddress);
 * assert.ok(!("spliceFrom" in client));
 * ```
 */
export abstract class StreamLayer<S extends Stream = Stream> implements Stream {
  /** The stream this layer runs over. */
  protected readonly inner: S;

  /** A layer over `inner`, which it owns from now on. */
  constructor(inner: S) {
    this.inner = inner;
  }

  /** Connection number, for events and traces. */
  get id(): number {
    return this.inner.id;
  }

  /** `#1`, `#2`, …: the tag of trace lines. */
  get tag(): string {
    return this.inner.tag;
  }

  /** Prints each socket operation (`--trace`), when set. */
  get trace(): TraceFn | undefined {
    return this.inner.trace;
  }

  /** Local address, formatted. */
  get localAddress(): string {
    return this.inner.localAddress;
  }

  /** Peer address, formatted. */
  get remoteAddress(): string {
    return this.inner.remoteAddress;
  }

  /** The socket's local address, as Deno gives it. */
  get localAddr(): Deno.Addr {
    return this.inner.localAddr;
  }

  /** The socket's peer address, as Deno gives it. */
  get remoteAddr(): Deno.Addr {
    return this.inner.remoteAddr;
  }

  /** When the stream below was opened (`performance.now()`). */
  get openedAt(): number {
    return this.inner.openedAt;
  }

  /** The peer: the name of this side in messages. */
  get label(): string {
    return this.inner.label;
  }

  /** Whether the stream was closed. */
  get closed(): boolean {
    return this.inner.closed;
  }

  /** Resolves once the stream below is released after `close()`, when it says. */
  get released(): Promise<void> | undefined {
    return this.inner.released;
  }

  /** Reads into `p`; `null` at end of input. */
  abstract read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; resolves to the count written. */
  abstract write(p: Uint8Array): Promise<number>;
  /** Ends the write side, as the layer does. */
  abstract closeWrite(): Promise<void>;
  /** Closes the layer and the stream below; later calls do nothing. */
  abstract close(): void;

  /** Closes it (`using stream = …`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
