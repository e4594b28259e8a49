/**
 * TLS as a layer over a connection: once a handshake is done (Deno's TLS
 * for verified clients, `node:tls` for servers and the rest), a
 * {@linkcode TlsStream} holds the connection that carries the plaintext —
 * with the socket's number, trace and name — and offers what TLS
 * supports: reads, writes, close_notify on `closeWrite()`, bytes given
 * back, what the handshake negotiated (its `tls` event), and how the peer
 * ended (its `closed` note). It offers no `splice(2)`: the kernel cannot
 * move what is encrypted.
 *
 * @module
 */

import { Connection, type StreamSocket } from "../net/conn.ts";
import { StreamLayer } from "../net/stream.ts";
import type { LayerEnd, LayerInfo, LayerReport } from "../engine/events.ts";
import { tlsFailure } from "./tls.ts";
import type { HandshakeInfo } from "./tls.ts";

/** The note of a peer that closed without close_notify. */
const UNCLEAN = "closed without TLS close_notify (taken as the end of its stream)";

/**
 * What a handshake negotiated, as the `tls` event shows it: version,
 * cipher, ALPN, the peer's certificate.
 *
 * @example Usage
 * ```ts
 * import { tlsLayerInfo } from "./tls_stream.ts";
 * import assert from "node:assert/strict";
 *
 * const info = tlsLayerInfo({ alpn: "h2", version: "TLSv1.3" });
 * assert.equal(info.text, "TLSv1.3, ALPN h2");
 * assert.deepEqual(info.fields, { alpn: "h2", version: "TLSv1.3" });
 * ```
 */
export function tlsLayerInfo(info: HandshakeInfo): LayerInfo {
  const parts = [
    info.version,
    info.cipher,
    info.alpn ? `ALPN ${info.alpn}` : "no ALPN",
    info.peer ? `certificate ${info.peer.subject}, SHA-256 ${info.peer.fingerprint}` : undefined,
  ].filter(Boolean);
  return {
    title: "TLS",
    text: parts.join(", "),
    fields: {
      alpn: info.alpn,
      ...(info.version ? { version: info.version } : {}),
      ...(info.cipher ? { cipher: info.cipher } : {}),
      ...(info.peer
        ? { peerSubject: info.peer.subject, peerFingerprint: info.peer.fingerprint }
        : {}),
    },
  };
}

/**
 * A connection after its TLS handshake: `inner` carries the plaintext.
 *
 * @example Usage
 * ```ts
 * import { TlsStream } from "./tls_stream.ts";
 * import { acceptTls, connectTls } from "./node_tls.ts";
 * import { ephemeralCertificate } from "./tls.ts";
 * import { Connection, type StreamSocket } from "../net/conn.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert, key } = await ephemeralCertificate();
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const accepting = listener.accept().then((raw) => acceptTls(raw, { cert, key }));
 * const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const { conn, info } = await connectTls(raw, { insecure: true });
 * using client = new TlsStream(Connection.from(conn), info);
 * using server = new TlsStream(Connection.from((await accepting).conn), (await accepting).info);
 * listener.close();
 * await client.write(new TextEncoder().encode("hi"));
 * await client.closeWrite();
 * const buf = new Uint8Array(8);
 * assert.equal(await server.read(buf), 2);
 * assert.equal(await server.read(buf), null);
 * assert.ok(!("spliceFrom" in server));
 * assert.equal(client.layers[0].name, "tls");
 * ```
 */
export class TlsStream extends StreamLayer<Connection> {
  /** What the handshake negotiated. */
  readonly handshake: HandshakeInfo;
  /** The `tls` event of the handshake. */
  readonly layers: readonly LayerReport[];
  #unclean = false;

  /** Wraps `inner`, the connection over the TLS session's plaintext. */
  constructor(inner: Connection, handshake: HandshakeInfo) {
    super(inner);
    this.handshake = handshake;
    this.layers = [{ name: "tls", info: tlsLayerInfo(handshake) }];
  }

  /**
   * Reads plaintext into `p`; `null` at the end. A peer that closes without
   * close_notify ends it too, which {@linkcode TlsStream.endInfo} notes; a
   * TLS alert fails in words.
   */
  override async read(p: Uint8Array): Promise<number | null> {
    try {
      return await this.inner.read(p);
    } catch (err) {
      // A TLS alert (the server wanted a client certificate, …) in words.
      if (/fatal alert/.test((err as Error)?.message)) throw tlsFailure(err, this.remoteAddress);
      if (!(err instanceof Deno.errors.UnexpectedEof)) throw err;
      this.#unclean = true;
      return null;
    }
  }

  /** Gives plaintext back to be read again first. */
  unread(bytes: Uint8Array): void {
    this.inner.unread(bytes);
  }

  /** Writes plaintext from `p`; resolves to the count written. */
  override write(p: Uint8Array): Promise<number> {
    return this.inner.write(p);
  }

  /** Sends close_notify and shuts down the write side. */
  override closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  /** How the peer ended: a note when it sent no close_notify. */
  endInfo(): LayerEnd | undefined {
    return this.#unclean ? { note: UNCLEAN } : undefined;
  }

  /** Closes the connection; later calls do nothing. */
  override close(): void {
    this.inner.close();
  }
}

/**
 * `plain` after a TLS handshake over it: `conn` carries the plaintext, under
 * `plain`'s number, trace and name.
 *
 * @example Usage
 * ```ts ignore
 * const { conn, info } = await connectTls(plain.conn, { insecure: true });
 * const stream = securedStream(plain, conn, info);
 * ```
 */
export function securedStream(
  plain: Connection,
  conn: StreamSocket,
  handshake: HandshakeInfo,
): TlsStream {
  const inner = Connection.from(conn, {
    id: plain.id,
    trace: plain.trace,
    remoteAddress: plain.remoteAddress,
  });
  return new TlsStream(inner, handshake);
}
