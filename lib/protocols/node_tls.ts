/**
 * TLS through `node:tls` over any stream socket, both ends: for what Deno's own
 * TLS cannot do — serve TLS so that a client that never finishes its
 * handshake can be dropped (a timed-out `Deno.TlsConn` handshake keeps its
 * socket open until the client leaves), ask clients for certificates
 * (`--client-ca`), skip verification (`--insecure`) or present a client
 * certificate (`--cert/--key`) per connection.
 *
 * The TLS engine reads ciphertext from the connection through a small node
 * `Duplex` that this module drives, and hands the plaintext to an inbox that
 * the relay reads as a `StreamSocket` (as it reads a `Deno.Conn`). Flow control is done at the ciphertext
 * end: the duplex reads from the socket only while the inbox holds less than
 * {@linkcode INBOX_HIGH} bytes, so a slow reader holds up the peer through
 * TCP and memory stays bounded. (Pausing the node TLS socket instead would
 * lose its end of stream in Deno, which is why it is never paused.)
 *
 * @module
 */

import type { TLSSocket } from "node:tls";
import type { Duplex as NodeDuplex } from "node:stream";
import { SockitError } from "../base/errors.ts";
import type { HandshakeInfo, TlsClientOptions } from "./tls.ts";
import type { StreamSocket } from "../net/stream_socket.ts";

/** Plaintext the inbox holds before the socket is read no further. */
export const INBOX_HIGH = 1 << 20;

/** Ciphertext read from the socket at a time. */
const CHUNK = 64 * 1024;

/** A server's certificate and key (PEM text), and what it asks of clients. */
export interface ServerTls {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
  /** ALPN protocols to accept. */
  alpn?: string[];
  /** Ask every client for a certificate signed by one of these CAs (PEM), and refuse others. */
  clientCa?: string[];
}

/** A connection after its TLS handshake, and what the handshake negotiated. */
export interface SecuredConn {
  /** The plaintext side: a socket like the one under it. */
  conn: StreamSocket;
  /** Version, cipher, ALPN, the peer's certificate. */
  info: HandshakeInfo;
}

/** Options of {@linkcode acceptTls}. */
export interface AcceptTlsOptions {
  /** Give up (and close the connection) when the handshake takes longer, in ms; default none. */
  timeout?: number;
  /** Give up (and close the connection) when this aborts. */
  signal?: AbortSignal;
}

/** Plaintext received and not yet read, with the wake-ups both ends wait on. */
class Inbox {
  #chunks: Uint8Array[] = [];
  #offset = 0;
  #queued = 0;
  #ended = false;
  #failure?: Error;
  #dataWaiter?: () => void;
  #roomWaiter?: () => void;

  push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    this.#wakeReader();
  }

  end(): void {
    this.#ended = true;
    this.#wakeReader();
    this.#wakeWriter();
  }

  fail(err: Error): void {
    this.#failure ??= err;
    this.end();
  }

  /** Resolves when there is room for more (or nobody will read any more). */
  room(): Promise<void> {
    if (this.#queued < INBOX_HIGH || this.#ended) return Promise.resolve();
    return new Promise((resolve) => (this.#roomWaiter = resolve));
  }

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
    if (this.#queued < INBOX_HIGH / 2) this.#wakeWriter();
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

/** Whether a failed `closeWrite` only means the peer has gone already. */
function peerGone(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.BadResource;
}

/**
 * The ciphertext side: a node `Duplex` that reads `raw` only while `room()`
 * allows; `flushed()` resolves once everything given to it is written to
 * `raw` (node calls a TLS write back before that).
 */
async function rawDuplex(
  raw: StreamSocket,
  room: () => Promise<void>,
): Promise<NodeDuplex & { flushed(): Promise<void>; failure(): Error | undefined }> {
  const { Duplex } = await import("node:stream");
  let pumping = false;
  let writing = 0;
  // Why reading `raw` failed (a reset): node's socket closes on it without an error.
  let failure: Error | undefined;
  const idle: Array<() => void> = [];
  const pump = async () => {
    try {
      for (;;) {
        await room();
        if (duplex.destroyed) return;
        const buf = new Uint8Array(CHUNK);
        const n = await raw.read(buf);
        if (n === null) {
          duplex.push(null);
          return;
        }
        if (!duplex.push(buf.subarray(0, n))) {
          pumping = false;
          return;
        }
      }
    } catch (err) {
      failure = err as Error;
      duplex.destroy(err as Error);
    }
  };
  const duplex: NodeDuplex = new Duplex({
    allowHalfOpen: true,
    read() {
      if (pumping) return;
      pumping = true;
      pump();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writing++;
      (async () => {
        for (let off = 0; off < chunk.length;) off += await raw.write(chunk.subarray(off));
      })().then(() => callback(), callback).finally(() => {
        if (--writing > 0) return;
        for (const resolve of idle.splice(0)) resolve();
      });
    },
    final(callback) {
      raw.closeWrite().then(() => callback(), (err) => callback(peerGone(err) ? null : err));
    },
    destroy(err, callback) {
      try {
        raw.close();
      } catch {
        // Closed already.
      }
      callback(err);
      for (const resolve of idle.splice(0)) resolve();
    },
  });
  return Object.assign(duplex, {
    failure: () => failure,
    flushed: () =>
      writing === 0 || duplex.destroyed
        ? Promise.resolve()
        : new Promise<void>((resolve) => idle.push(resolve)),
  });
}

/** The plaintext side of `socket` as a {@linkcode StreamSocket}, with `raw`'s addresses. */
function plainConn(
  socket: TLSSocket,
  raw: StreamSocket,
  inbox: Inbox,
  duplex: { flushed(): Promise<void>; failure(): Error | undefined },
): StreamSocket {
  const flushed = duplex.flushed;
  socket.on("data", (chunk: Uint8Array) => inbox.push(chunk));
  socket.on("end", () => inbox.end());
  // A reset under TLS is a reset, not an end of the stream.
  socket.on("close", () => {
    const failure = duplex.failure();
    if (failure) inbox.fail(failure);
    else inbox.end();
  });
  socket.on("error", (err: Error) => inbox.fail(err));
  return {
    localAddr: raw.localAddr,
    remoteAddr: raw.remoteAddr,
    // Released with the socket under it (closed with this one).
    get released() {
      return raw.released;
    },
    read: (p: Uint8Array) => inbox.read(p),
    async write(p: Uint8Array): Promise<number> {
      if (socket.destroyed) throw new Deno.errors.BrokenPipe("connection closed");
      await new Promise<void>((resolve, reject) =>
        // The relay reuses its buffer: hand node a copy.
        socket.write(p.slice(), (err) => (err ? reject(err) : resolve()))
      );
      // Written means on the socket, as with a Deno.Conn.
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
      // Destroying the TLS socket closes the one under it, perhaps a tick later: at once
      // here, so that what it holds (a libc socket's epoll entry) is released now.
      try {
        raw.close();
      } catch {
        // Closed already.
      }
    },
  };
}

/**
 * What a `node:tls` socket negotiated: ALPN, version, cipher, and the
 * peer's certificate (a server's, or a client's under mutual TLS).
 *
 * @example Usage
 * ```ts ignore
 * const info = nodeHandshake(socket);
 * console.log(info.version, info.cipher);
 * ```
 */
export function nodeHandshake(socket: TLSSocket): HandshakeInfo {
  const peer = socket.getPeerCertificate();
  const subject = peer?.subject as unknown as Record<string, string> | undefined;
  return {
    alpn: socket.alpnProtocol || null,
    version: socket.getProtocol() ?? undefined,
    cipher: socket.getCipher()?.name,
    peer: peer && peer.fingerprint256
      ? {
        subject: subject ? Object.entries(subject).map(([k, v]) => `${k}=${v}`).join(", ") : "",
        fingerprint: peer.fingerprint256,
        names: peer.subjectaltname,
        validTo: peer.valid_to,
      }
      : undefined,
  };
}

/**
 * Waits for `event` on a TLS socket being set up; rejects on its error, on
 * `timeout` ms, or when `signal` aborts — and then destroys it, which
 * closes the connection under it.
 */
function settle(
  socket: TLSSocket,
  event: "secure" | "secureConnect",
  options: AcceptTlsOptions,
): Promise<void> {
  const { signal, timeout } = options;
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = (err?: unknown) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off(event, onSecure);
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.off("end", onClose);
      if (err === undefined) return resolve();
      // Destroyed mid-handshake, node may still say why ("disconnected before secure TLS
      // connection"): nobody listens any more, and an error event nobody hears is thrown.
      socket.on("error", () => {});
      socket.destroy();
      reject(err);
    };
    const onSecure = () => done();
    const onError = (err: Error) => done(err);
    const onClose = () =>
      done(
        new Deno.errors.UnexpectedEof("the peer closed the connection during the TLS handshake"),
      );
    const onAbort = () => done(signal?.reason);
    if (signal?.aborted) return done(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeout !== undefined && timeout > 0) {
      timer = setTimeout(
        () => done(new SockitError("timed out", { op: "tls", code: "ETIMEDOUT" })),
        timeout,
      );
    }
    socket.once(event, onSecure);
    socket.once("error", onError);
    socket.once("close", onClose);
    // The peer's end of input before the handshake is done: it will never be done. (Over our
    // half-open duplex, node's socket says "end", not "close", and would wait for the timeout.)
    socket.once("end", onClose);
  });
}

/**
 * Completes the server side of a TLS handshake on an accepted connection.
 * With `tls.clientCa` the client must present a certificate signed by one
 * of those CAs. A handshake that fails, takes longer than
 * `options.timeout`, or is aborted closes `raw` (its descriptor is
 * released at once) and rejects.
 *
 * @example Usage
 * ```ts
 * import { acceptTls, connectTls } from "./node_tls.ts";
 * import { ephemeralCertificate } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert, key } = await ephemeralCertificate();
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port })
 *   .then((raw) => connectTls(raw, { caCerts: [cert], host: "localhost" }));
 * const server = await acceptTls(await listener.accept(), { cert, key }, { timeout: 5000 });
 * const { conn } = await client;
 * await conn.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(8);
 * assert.equal(await server.conn.read(buf), 2);
 * assert.match(server.info.version ?? "", /TLS/);
 * conn.close();
 * server.conn.close();
 * listener.close();
 * ```
 */
export async function acceptTls(
  raw: StreamSocket,
  tls: ServerTls,
  options: AcceptTlsOptions = {},
): Promise<SecuredConn> {
  const nodeTls = await import("node:tls");
  const inbox = new Inbox();
  const requestCert = tls.clientCa !== undefined;
  const duplex = await rawDuplex(raw, () => inbox.room());
  const socket = new nodeTls.TLSSocket(
    duplex,
    {
      isServer: true,
      secureContext: nodeTls.createSecureContext({
        cert: tls.cert,
        key: tls.key,
        ca: tls.clientCa,
      }),
      requestCert,
      rejectUnauthorized: requestCert,
      ALPNProtocols: tls.alpn,
    } as import("node:tls").TLSSocketOptions,
  );
  await settle(socket, "secure", options);
  if (requestCert) {
    // Node checks the client's chain for its own servers only; a socket made
    // here is checked here, and refused when that cannot be done.
    const handle = (socket as unknown as { _handle?: { verifyError?: () => unknown } })._handle;
    const problem = typeof handle?.verifyError === "function"
      ? handle.verifyError()
      : "this Deno cannot verify client certificates";
    if (problem) {
      socket.destroy();
      const code = String((problem as { code?: string }).code ?? problem);
      throw Object.assign(new Error(`client certificate not accepted: ${code}`), { code });
    }
  }
  return { conn: plainConn(socket, raw, inbox, duplex), info: nodeHandshake(socket) };
}

/**
 * The system's root certificates as `node:tls` lists them; none where Deno
 * does not let sockit read them (that needs `--allow-sys`).
 */
function systemRoots(tls: typeof import("node:tls")): readonly string[] {
  try {
    // The list loads lazily: copy it here, where a refusal can be caught.
    return [...tls.rootCertificates];
  } catch {
    return [];
  }
}

/**
 * Completes the client side of a TLS handshake over `raw` (a TCP
 * connection, or anything a dialer made): verifying the server for
 * `options.serverName` (else `options.host`, the name dialled) against the system's roots plus `caCerts`, or not at
 * all with `insecure`; presenting `cert`/`key` when given. A failure closes
 * `raw` and rejects with node's error.
 *
 * @example Usage
 * ```ts
 * import { acceptTls, connectTls } from "./node_tls.ts";
 * import { ephemeralCertificate } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert, key } = await ephemeralCertificate();
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const server = listener.accept().then((raw) => acceptTls(raw, { cert, key }));
 * const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * // Not trusted, yet connected: nothing is verified.
 * const { conn, info } = await connectTls(raw, { insecure: true });
 * assert.match(info.version ?? "", /TLS/);
 * conn.close();
 * (await server).conn.close();
 * listener.close();
 * ```
 */
export async function connectTls(
  raw: StreamSocket,
  options: TlsClientOptions & { host?: string },
  signal?: AbortSignal,
): Promise<SecuredConn> {
  const nodeTls = await import("node:tls");
  const { isIP } = await import("node:net");
  const inbox = new Inbox();
  // The name to verify; sent as SNI unless it is an IP address.
  const name = options.serverName ?? options.host;
  const duplex = await rawDuplex(raw, () => inbox.room());
  const socket = nodeTls.connect(
    {
      socket: duplex,
      host: name,
      servername: name && !isIP(name) ? name : undefined,
      rejectUnauthorized: !options.insecure,
      // The system's roots plus --cacert, as with Deno's own TLS (where sockit may read them).
      ca: options.caCerts ? [...systemRoots(nodeTls), ...options.caCerts] : undefined,
      cert: options.cert,
      key: options.key,
      ALPNProtocols: options.alpn,
      allowHalfOpen: true,
    } as import("node:tls").ConnectionOptions,
  );
  await settle(socket, "secureConnect", { signal });
  return { conn: plainConn(socket, raw, inbox, duplex), info: nodeHandshake(socket) };
}
