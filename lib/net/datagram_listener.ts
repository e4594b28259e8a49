/**
 * A datagram socket as a listener (socat's `UDP-RECVFROM,fork`, nc's
 * `recvfrom(MSG_PEEK)` + `connect()`): one receive loop hands each datagram
 * to the peer of its sender, and a sender that has none becomes a new
 * {@linkcode DatagramPeer} that {@linkcode DatagramListener.accept} hands
 * out — a duplex whose reads are that sender's datagrams and whose writes go
 * back to it. The accept loop (`engine/server.ts`) and the transfer engine
 * take these peers as they take connections: `--allow/--deny`,
 * `--max-conns`, events, counts and the end of a session are theirs.
 *
 * What datagrams do differently, the listener and its peers do themselves:
 *
 * - a peer ends by itself once no datagram has gone either way for its idle
 *   time (`--idle-timeout`, {@linkcode DATAGRAM_SESSION_IDLE} by default):
 *   there is no close to wait for;
 * - there is no backlog that holds clients the server cannot take: while it
 *   is full (`full()`), a new sender's datagrams are dropped, said in one
 *   warning with a count; the server's cap is {@linkcode DATAGRAM_MAX_SESSIONS}
 *   unless it sets one;
 * - a sender the server refused at once has the rest of its run of datagrams
 *   dropped (one `rejected` event per run, not per datagram);
 * - a peer whose other side does not keep up has at most
 *   {@linkcode PEER_QUEUE} bytes waiting; later datagrams are dropped (as UDP
 *   drops them), said in a warning;
 * - `follow`: a server of one session (`listen` without `-k`, bridged to
 *   stdio) cannot turn other senders away — once it has stopped accepting,
 *   what they send goes to its one peer, which answers whoever sent last;
 * - closing the listener stops new peers; the socket is closed with the last one.
 *
 * @module
 */

import { nextConnectionId } from "./conn.ts";
import { datagramTooLarge, formatPeer, RECEIVE_BUFFER, samePeer } from "./datagram.ts";
import type { DatagramSocket, PeerAddress } from "./datagram.ts";
import { SockitError, toSockitError } from "../base/errors.ts";
import { formatBytes, formatDuration } from "../base/format.ts";
import { Coalescer } from "../engine/coalesce.ts";
import type { LayerEnd, PeerInfo } from "../engine/events.ts";

/** How long a datagram session lasts without a datagram either way, by default. */
export const DATAGRAM_SESSION_IDLE = 30_000;

/**
 * Sessions at once, by default (ncat's connection limit): each may hold an
 * upstream socket or a child process, and a datagram from a new (or forged)
 * source address is all it takes to open one.
 */
export const DATAGRAM_MAX_SESSIONS = 100;

/** Bytes of datagrams a peer may have waiting to be read; beyond, they are dropped. */
export const PEER_QUEUE = 256 * 1024;

/** What a queued datagram costs besides its bytes (so that empty ones are bounded too). */
const DATAGRAM_COST = 64;

/** New peers waiting for `accept()`; beyond, a new sender's datagrams are dropped. */
const BACKLOG = 128;

/** Senders whose figures a following peer keeps; beyond, the oldest are forgotten. */
export const PEER_SESSIONS = 4096;

/** What a following peer exchanged with one sender. */
export interface PeerSession {
  /** The sender, formatted. */
  remoteAddress: string;
  /** Bytes received from it. */
  received: number;
  /** Bytes sent to it. */
  sent: number;
  /** When it first showed up (`performance.now()`). */
  since: number;
}

/**
 * How the one peer of a server of one session takes other senders in
 * (`listen` without `-k`): see {@linkcode DatagramListenerOptions.follow}.
 */
export interface FollowOptions {
  /**
   * What each sender after the first is sent when it shows up (`--send`;
   * asked for then, so that a file is read only when it is needed).
   */
  greeting?: () => Promise<readonly Uint8Array[]>;
  /** Told each change of sender after the first (the first was accepted). */
  onPeer?(peer: PeerInfo): void;
}

/** Options of {@linkcode DatagramListener}. */
export interface DatagramListenerOptions {
  /** The scheme it serves, as events name it. */
  scheme: string;
  /** Written before a peer's address in events (`udp://`). */
  prefix: string;
  /** Datagrams dropped (the server full, a peer not keeping up): one line per condition and second. */
  onWarning?(text: string): void;
  /**
   * Once the listener has stopped accepting (a server of one session), what
   * senders without a peer send goes to the peer it accepted last, which
   * then answers whoever sent to it last. Without it, their datagrams are
   * dropped (a server of one client).
   */
  follow?: FollowOptions;
}

/** What a peer asks of its listener. */
interface PeerLink {
  readonly prefix: string;
  readonly localAddress: string;
  readonly localAddr?: PeerAddress;
  readonly maxDatagram: number;
  send(data: Uint8Array, to: PeerAddress): Promise<number>;
  release(peer: DatagramPeer): void;
  released(): Promise<void>;
  warn(condition: string, first: string): void;
}

/** A datagram and its sender. */
interface Queued {
  data: Uint8Array;
  from: PeerAddress;
}

/** A following peer's state. */
interface Following {
  options: FollowOptions;
  latest: PeerAddress;
  senders: Map<string, PeerSession>;
}

/**
 * A datagram listener's peer: one sender. `read()` is its next datagram
 * (at end of input once it has been idle, or after `cancelRead()`), `write()`
 * sends one datagram back to it; `closeWrite()` does nothing (datagrams have
 * no half-close). Closing it forgets the sender: its next datagram makes a
 * new peer.
 *
 * @example Usage
 * ```ts
 * import { DatagramListener } from "./datagram_listener.ts";
 * import { bindDatagram } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = new DatagramListener(bindDatagram("127.0.0.1", 0), { scheme: "udp", prefix: "udp://" });
 * const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const port = Number(listener.address.split(":")[1]);
 * await client.send(new TextEncoder().encode("hi"), { transport: "udp", hostname: "127.0.0.1", port });
 * using peer = await listener.accept();
 * const buf = new Uint8Array(65536);
 * assert.equal(await peer.read(buf), 2);
 * await peer.write(new TextEncoder().encode("back"));
 * const [reply] = await client.receive();
 * assert.equal(new TextDecoder().decode(reply), "back");
 * client.close();
 * peer.close();
 * listener.close();
 * await listener.released;
 * ```
 */
export class DatagramPeer implements Disposable {
  /** Its number, for events and `--hex`. */
  readonly id: number = nextConnectionId();
  /** `#1`, `#2`, …: its tag. */
  readonly tag: string;
  /** Each read is one datagram. */
  readonly datagrams = true;
  /** The relay reads it with a buffer this large (room for the largest datagram). */
  readonly readSize: number = RECEIVE_BUFFER;
  /** When its first datagram came (`performance.now()`). */
  readonly openedAt: number = performance.now();
  /** The sender. */
  readonly remoteAddr: PeerAddress;
  /** The listening socket's address, where it has one. */
  readonly localAddr?: PeerAddress;
  /** The listening socket's address, formatted. */
  readonly localAddress: string;
  /** The largest datagram it takes. */
  readonly maxDatagram: number;
  /** @internal Its key in the listener's table. */
  readonly key: string;
  #link: PeerLink;
  #queue: Queued[] = [];
  #queued = 0;
  #reader?: { buf: Uint8Array; resolve: (n: number | null | Promise<number>) => void };
  #ended = false;
  #closed = false;
  #dropping = false;
  #linger?: number;
  #lingerTimer?: ReturnType<typeof setTimeout>;
  #idle = 0;
  #idleTimer?: ReturnType<typeof setTimeout>;
  #last = performance.now();
  #reason?: string;
  #follow?: Following;

  /** @internal Made by {@linkcode DatagramListener}. */
  constructor(link: PeerLink, from: PeerAddress, key: string) {
    this.#link = link;
    this.remoteAddr = from;
    this.key = key;
    this.tag = `#${this.id}`;
    this.localAddr = link.localAddr;
    this.localAddress = link.localAddress;
    this.maxDatagram = link.maxDatagram;
  }

  /** The sender with its scheme (`udp://127.0.0.1:5000`); a following peer's latest sender. */
  get remoteAddress(): string {
    return `${this.#link.prefix}${this.label}`;
  }

  /** The sender as a plain address (a following peer's latest): the name in messages. */
  get label(): string {
    return this.#follow ? formatPeer(this.#follow.latest) : this.key;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves once released (with the last peer of a closed listener, its socket). */
  get released(): Promise<void> {
    return this.#link.released();
  }

  /** The next datagram from the sender into `p` (of at least {@linkcode RECEIVE_BUFFER} bytes). */
  read(p: Uint8Array): Promise<number | null> {
    const next = this.#queue.shift();
    if (next) {
      this.#queued -= next.data.length + DATAGRAM_COST;
      if (this.#queue.length === 0) this.#dropping = false;
      return Promise.resolve(this.#take(p, next.data, next.from));
    }
    if (this.#ended || this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.#reader = { buf: p, resolve };
      if (this.#linger !== undefined) this.#armLinger(this.#linger);
    });
  }

  /** Sends `p` as one datagram to the sender (a following peer: to whoever sent last). */
  async write(p: Uint8Array): Promise<number> {
    if (p.length > this.maxDatagram) throw datagramTooLarge(this.maxDatagram, `${p.length} bytes`);
    if (this.#closed) throw new Deno.errors.Interrupted("operation canceled");
    const to = this.#follow?.latest ?? this.remoteAddr;
    await this.#link.send(p, to);
    this.#last = performance.now();
    if (this.#follow) {
      const sender = this.#follow.senders.get(formatPeer(to));
      if (sender) sender.sent += p.length;
    }
    return p.length;
  }

  /** Nothing to shut down: a datagram has no half-close. */
  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Ends reading once no datagram has come for `linger` ms (at once for 0,
   * after those already waiting).
   */
  cancelRead(linger = 0): void {
    this.#linger = Math.min(this.#linger ?? linger, linger);
    if (this.#reader) this.#armLinger(this.#linger);
  }

  /**
   * Takes the transfer's idle time (its default without one; 0: none): once
   * no datagram has gone either way for that long, reading ends — the end
   * of the session, with the reason `idle for …`. A following peer stands
   * for the whole socket and does not end by itself.
   */
  idle(ms: number | undefined): boolean {
    if (this.#follow) return false;
    this.#idle = ms ?? DATAGRAM_SESSION_IDLE;
    clearTimeout(this.#idleTimer);
    if (this.#idle > 0 && Number.isFinite(this.#idle)) this.#armIdle(this.#idle);
    return true;
  }

  /** Why it ended itself, when it did (`idle for 30 s`). */
  endInfo(): LayerEnd | undefined {
    return this.#reason ? { reason: this.#reason } : undefined;
  }

  /** A following peer's figures per sender, oldest first (else none). */
  sessions(): PeerSession[] {
    return this.#follow ? [...this.#follow.senders.values()] : [];
  }

  /** Forgets the sender (its next datagram makes a new peer); a pending read ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#finishRead();
    this.#queue = [];
    this.#queued = 0;
    this.#link.release(this);
  }

  /** Closes it (`using peer = …`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal A datagram from `from` (the listener's buffer: copied before this returns). */
  deliver(data: Uint8Array, from: PeerAddress): void {
    if (this.#closed || this.#ended) return;
    this.#last = performance.now();
    const reader = this.#reader;
    if (reader) {
      this.#reader = undefined;
      clearTimeout(this.#lingerTimer);
      reader.resolve(this.#take(reader.buf, data, from));
      return;
    }
    const cost = data.length + DATAGRAM_COST;
    if (this.#queued + cost > PEER_QUEUE) {
      if (!this.#dropping) {
        this.#dropping = true;
        const what = `datagrams dropped: ${formatBytes(PEER_QUEUE)} wait to be relayed`;
        this.#link.warn(what, `${this.label}: ${what}`);
      }
      return;
    }
    this.#queued += cost;
    this.#queue.push({ data: data.slice(), from });
  }

  /** @internal What a peer nobody accepted had received (its datagrams go elsewhere). */
  takeQueue(): Queued[] {
    const queue = this.#queue;
    this.#queue = [];
    this.#queued = 0;
    return queue;
  }

  /** @internal From now on, takes what senders without a peer send, and answers the latest. */
  follow(options: FollowOptions): void {
    const own: PeerSession = {
      remoteAddress: this.key,
      received: 0,
      sent: 0,
      since: this.openedAt,
    };
    this.#follow = { options, latest: this.remoteAddr, senders: new Map([[this.key, own]]) };
  }

  /** Copies a datagram into `p` now (it may be the receive buffer), then a follower's bookkeeping. */
  #take(p: Uint8Array, data: Uint8Array, from: PeerAddress): number | Promise<number> {
    const n = Math.min(data.length, p.length);
    p.set(data.subarray(0, n));
    return this.#follow ? this.#followed(this.#follow, from, n) : n;
  }

  /** A following peer read `n` bytes from `from`: its latest sender, counted; a newcomer is greeted. */
  async #followed(follow: Following, from: PeerAddress, n: number): Promise<number> {
    const key = formatPeer(from);
    const changed = !samePeer(follow.latest, from);
    follow.latest = from;
    let sender = follow.senders.get(key);
    const created = !sender;
    if (!sender) {
      if (follow.senders.size >= PEER_SESSIONS) {
        follow.senders.delete(follow.senders.keys().next().value!);
      }
      sender = { remoteAddress: key, received: 0, sent: 0, since: performance.now() };
      follow.senders.set(key, sender);
    }
    sender.received += n;
    if (changed) {
      follow.options.onPeer?.({
        id: this.id,
        remoteAddress: `${this.#link.prefix}${key}`,
        localAddress: this.localAddress,
        label: key,
        datagrams: true,
      });
    }
    if (created && follow.options.greeting) {
      for (const datagram of await follow.options.greeting()) {
        // One larger than a datagram goes as consecutive ones; an empty one is one.
        let at = 0;
        do {
          const part = datagram.subarray(at, at + this.maxDatagram);
          await this.#link.send(part, from);
          sender.sent += part.length;
          at += this.maxDatagram;
        } while (at < datagram.length);
      }
    }
    return n;
  }

  #armLinger(linger: number): void {
    clearTimeout(this.#lingerTimer);
    if (linger <= 0) {
      this.#ended = true;
      this.#finishRead();
      return;
    }
    this.#lingerTimer = setTimeout(() => {
      this.#ended = true;
      this.#finishRead();
    }, linger);
  }

  #armIdle(after: number): void {
    this.#idleTimer = setTimeout(() => {
      const quiet = performance.now() - this.#last;
      if (quiet < this.#idle) return this.#armIdle(this.#idle - quiet + 1);
      this.#reason = `idle for ${formatDuration(this.#idle)}`;
      this.#ended = true;
      this.#finishRead();
    }, after);
  }

  /** Ends a pending read (end of input). */
  #finishRead(): void {
    clearTimeout(this.#lingerTimer);
    const reader = this.#reader;
    this.#reader = undefined;
    reader?.resolve(null);
  }
}

/**
 * A datagram socket that hands out a {@linkcode DatagramPeer} per sender
 * (see the module text). It owns the socket from now on.
 *
 * @example Usage
 * ```ts
 * import { DatagramListener } from "./datagram_listener.ts";
 * import { bindDatagram } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * // An echo server of one datagram: the peer's read, written back to it.
 * using listener = new DatagramListener(bindDatagram("127.0.0.1", 0), { scheme: "udp", prefix: "udp://" });
 * const port = Number(listener.address.split(":")[1]);
 * const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * await client.send(new TextEncoder().encode("ping"), { transport: "udp", hostname: "127.0.0.1", port });
 * const peer = await listener.accept();
 * assert.equal(peer.remoteAddress, `udp://127.0.0.1:${(client.addr as Deno.NetAddr).port}`);
 * const buf = new Uint8Array(65536);
 * await peer.write(buf.subarray(0, (await peer.read(buf))!));
 * assert.equal(new TextDecoder().decode((await client.receive())[0]), "ping");
 * client.close();
 * peer.close();
 * listener.close();
 * await listener.released;
 * ```
 */
export class DatagramListener implements Disposable {
  /** The bound address, formatted. */
  readonly address: string;
  /** The scheme it serves, as events name it. */
  readonly scheme: string;
  /** The server's cap when it sets none: {@linkcode DATAGRAM_MAX_SESSIONS} peers at once. */
  readonly maxConns: number = DATAGRAM_MAX_SESSIONS;
  #socket: DatagramSocket;
  #options: DatagramListenerOptions;
  #link: PeerLink;
  #peers = new Map<string, DatagramPeer>();
  #backlog: DatagramPeer[] = [];
  #waiting?: PromiseWithResolvers<DatagramPeer>;
  #failure?: unknown;
  #pump?: Promise<void>;
  #pumping = false;
  #closed = false;
  #socketClosed = false;
  #full?: string;
  #refused?: string;
  #last?: DatagramPeer;
  #follower?: DatagramPeer;
  #warnings: Coalescer;
  #released = Promise.withResolvers<void>();

  /** Listens on `socket` (bound), which it owns from now on. */
  constructor(socket: DatagramSocket, options: DatagramListenerOptions) {
    this.#socket = socket;
    this.#options = options;
    this.address = socket.address;
    this.scheme = options.scheme;
    this.#warnings = new Coalescer((line) => options.onWarning?.(line));
    this.#link = {
      prefix: options.prefix,
      localAddress: socket.address,
      localAddr: socket.localAddress,
      maxDatagram: socket.maxDatagram,
      send: (data, to) => socket.send(data, to),
      release: (peer) => this.#release(peer),
      released: () => this.#socketClosed ? this.#released.promise : Promise.resolve(),
      warn: (condition, first) => this.#warnings.say(condition, first),
    };
  }

  /** Whether it has stopped accepting (`close()`). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves once the socket is closed (after `close()` and the last peer) and released. */
  get released(): Promise<void> {
    return this.#released.promise;
  }

  /** The next new sender, as a peer with its first datagram. Rejects once closed. */
  accept(): Promise<DatagramPeer> {
    if (this.#closed) return Promise.reject(new SockitError("listener closed", { op: "accept" }));
    const next = this.#backlog.shift();
    if (next) return Promise.resolve(this.#handOut(next));
    if (this.#failure !== undefined) {
      const failure = this.#failure;
      this.#failure = undefined;
      return Promise.reject(failure);
    }
    this.#waiting ??= Promise.withResolvers();
    if (!this.#pumping) this.#pump = this.#receive();
    return this.#waiting.promise;
  }

  /**
   * Told by the accept loop that the server is full (the limit, as messages
   * name it: `--max-conns 100`), or no longer (`undefined`): meanwhile a new
   * sender's datagrams are dropped, said in one warning a second with a count.
   */
  full(limit: string | undefined): void {
    this.#full = limit;
  }

  /** Told that `peer` was refused at once: the rest of its sender's run of datagrams is dropped. */
  refused(peer: DatagramPeer): void {
    this.#refused = peer.key;
  }

  /**
   * Stops accepting (a pending `accept()` rejects). Open peers go on; the
   * socket is closed with the last of them. With `follow`, the peer
   * accepted last takes what other senders send from now on.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(new SockitError("listener closed", { op: "accept" }));
    const follow = this.#options.follow;
    if (follow && this.#last && !this.#last.closed) {
      this.#follower = this.#last;
      this.#follower.follow(follow);
    }
    // Senders nobody accepted: what they sent goes to the follower, or nowhere.
    for (const peer of this.#backlog.splice(0)) {
      for (const { data, from } of peer.takeQueue()) this.#follower?.deliver(data, from);
      peer.close();
    }
    this.#closeSocketWhenDone();
  }

  /** Stops accepting (`using listener = …`). */
  [Symbol.dispose](): void {
    this.close();
  }

  #handOut(peer: DatagramPeer): DatagramPeer {
    this.#last = peer;
    return peer;
  }

  /** The receive loop: each datagram to its sender's peer, a new sender made one. */
  async #receive(): Promise<void> {
    this.#pumping = true;
    const buf = new Uint8Array(RECEIVE_BUFFER);
    try {
      for (;;) {
        let n: number;
        let from: PeerAddress;
        try {
          [n, from] = await this.#socket.receive(buf);
        } catch (err) {
          if (this.#socketClosed) return;
          // Said through the accept loop, which tries again (a new receive loop) after a pause.
          const failure = toSockitError(err, "receive", this.address);
          const waiting = this.#waiting;
          this.#waiting = undefined;
          if (waiting) waiting.reject(failure);
          else this.#failure = failure;
          return;
        }
        this.#route(buf.subarray(0, n), from);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #route(data: Uint8Array, from: PeerAddress): void {
    const key = formatPeer(from);
    const peer = this.#peers.get(key);
    if (peer) return peer.deliver(data, from);
    // The run of datagrams of a sender refused at once.
    if (key === this.#refused) return;
    if (this.#follower && !this.#follower.closed) return this.#follower.deliver(data, from);
    // A server of one client: others are not served.
    if (this.#closed) return;
    if (this.#full !== undefined) {
      this.#warnings.say(`${this.#full} sessions reached: dropped a datagram from a new client`);
      return;
    }
    if (this.#backlog.length >= BACKLOG) {
      this.#warnings.say(
        `${BACKLOG} new clients wait to be accepted: dropped a datagram from another`,
      );
      return;
    }
    const created = new DatagramPeer(this.#link, from, key);
    this.#peers.set(key, created);
    created.deliver(data, from);
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting.resolve(this.#handOut(created));
    else this.#backlog.push(created);
  }

  #release(peer: DatagramPeer): void {
    if (this.#peers.get(peer.key) === peer) this.#peers.delete(peer.key);
    const at = this.#backlog.indexOf(peer);
    if (at >= 0) this.#backlog.splice(at, 1);
    if (this.#follower === peer) this.#follower = undefined;
    this.#closeSocketWhenDone();
  }

  /** Closes the socket once the listener is closed and its last peer is. */
  #closeSocketWhenDone(): void {
    if (!this.#closed || this.#peers.size > 0 || this.#socketClosed) return;
    this.#socketClosed = true;
    this.#socket.close();
    this.#warnings[Symbol.dispose]();
    Promise.all([this.#socket.closed, this.#pump]).then(
      () => this.#released.resolve(),
      () => this.#released.resolve(),
    );
  }
}
