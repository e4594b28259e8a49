/**
 * UDP sockets, and the three ways a datagram socket becomes a side of the
 * one relay ({@linkcode DatagramSide}): read is one datagram received,
 * write is one datagram sent —
 *
 * - `connected` (`connect udp://`): to and from one peer;
 * - `latest-peer` (`listen udp://`): from anyone, to whoever sent last;
 * - `reply` (`echo udp://`): each datagram goes back to its sender.
 *
 * Servers bind with Deno's datagram API (`Deno.listenDatagram`, behind
 * `--unstable-net`). A client should learn that nothing listens at the other
 * end: the kernel reports an ICMP "port unreachable" as ECONNREFUSED, but
 * only on a *connected* UDP socket, and Deno offers none (`node:dgram`'s
 * `connect()` only remembers the address). So the client socket is made
 * with libc (`libc.ts`) — socket(), connect(), send(), recv(), waiting in
 * the epoll set of `epoll.ts` — when `--allow-ffi` is granted; without it,
 * sockit falls back to an unconnected socket that keeps only the target's
 * replies and cannot see refusals.
 *
 * @module
 */

import { nextConnectionId } from "./conn.ts";
import { errnoError, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatAddr, formatHost, isIPv6 } from "./ip.ts";
import {
  acquireLibc,
  C,
  decodeSockaddr,
  encodeSockaddr,
  ffiAvailable,
  lastErrno,
  lastError,
  releaseLibc,
  setsockoptInt,
} from "../sys/libc.ts";
import type { Libc } from "../sys/libc.ts";
import type { SourceAddress } from "./tcp_libc.ts";
import type { Duplex } from "../engine/relay.ts";
import { forget, READABLE, waitFor, WRITABLE } from "../sys/epoll.ts";
import { addressFamily, failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

/** The largest UDP payload over IPv4 and over IPv6. */
export const MAX_DATAGRAM = { 4: 65507, 6: 65527 } as const;

/** A receive buffer that no datagram overflows (Deno truncates silently). */
export const RECEIVE_BUFFER = 65536;

/** A UDP socket, bound or connected. */
export interface DatagramSocket {
  /** `U1`, `U2`, …: the tag of its trace lines. */
  readonly tag: string;
  /** The local address, formatted. */
  readonly address: string;
  /** The largest datagram this socket's family carries. */
  readonly maxDatagram: number;
  /** Receives one datagram into `buf`; resolves to its size and sender. */
  receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]>;
  /** Sends one datagram (to `to`, or to the connected peer). */
  send(data: Uint8Array, to?: Deno.NetAddr): Promise<number>;
  /** Closes the socket; a pending `receive()` rejects. */
  close(): void;
  /** Resolves once the socket is released (a receive in flight has returned). */
  readonly closed: Promise<void>;
  /** How a peer is written, when not `host:port` (`ip://` peers are `host/protocol`). */
  formatPeer?(addr: Deno.NetAddr): string;
  /** Joins groups and sets the multicast TTL and loop (UDP sockets). */
  multicast?(options: MulticastOptions): Promise<void>;
}

/** UDP multicast settings (`--multicast-join`, `--multicast-ttl`, `--multicast-loop`). */
export interface MulticastOptions {
  /** Groups to join, each on the interface with address `iface` (IPv6: an interface index). */
  join?: Array<{ group: string; iface?: string }>;
  /** IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS of what is sent to a group (the system's: 1). */
  ttl?: number;
  /** IP_MULTICAST_LOOP: whether this host's members hear what is sent (the system's: on). */
  loop?: boolean;
}

/** The setsockopt names (level, option) of the multicast settings, per family. */
const MULTICAST_OPTION = {
  4: { level: 0, ttl: [33, "IP_MULTICAST_TTL"], loop: [34, "IP_MULTICAST_LOOP"] },
  6: { level: 41, ttl: [18, "IPV6_MULTICAST_HOPS"], loop: [19, "IPV6_MULTICAST_LOOP"] },
} as const;

function needUnstableNet(): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new SockitError("UDP needs Deno's datagram API, which is behind --unstable-net", {
      op: "udp",
      hint:
        "deno.json sets it: run from the project directory (or with --config), or pass --unstable-net",
    });
  }
}

let lastSocketId = 0;

/** A datagram socket from `Deno.listenDatagram`. */
class BoundSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  readonly tag: string;
  readonly closed: Promise<void> = Promise.resolve();
  #conn: Deno.DatagramConn;
  #trace?: TraceFn;
  #closed = false;

  constructor(conn: Deno.DatagramConn, family: 4 | 6, tag: string, trace?: TraceFn) {
    this.#conn = conn;
    this.address = formatAddr(conn.addr);
    this.maxDatagram = MAX_DATAGRAM[family];
    this.#trace = trace;
    this.tag = tag;
    this.#family = family;
  }

  #family: 4 | 6;

  /** Deno's own calls: TTL and loop are set through the first membership. */
  async multicast(options: MulticastOptions): Promise<void> {
    const memberships: Array<Deno.MulticastV4Membership | Deno.MulticastV6Membership> = [];
    for (const { group, iface } of options.join ?? []) {
      const v6 = isIPv6(group);
      const on = iface ?? (v6 ? "0" : "0.0.0.0");
      const call = `setsockopt(${
        v6 ? "IPV6_ADD_MEMBERSHIP" : "IP_ADD_MEMBERSHIP"
      }, ${group}@${on})`;
      try {
        memberships.push(
          v6
            ? await this.#conn.joinMulticastV6(group, Number(on))
            : await this.#conn.joinMulticastV4(group, on),
        );
        this.#trace?.(this.tag, `${call} = 0`);
      } catch (err) {
        this.#trace?.(this.tag, `${call} = ${failedCall(err)}`);
        throw toSockitError(err, "join", `${group}@${on}`);
      }
    }
    if (options.ttl === undefined && options.loop === undefined) return;
    const names = MULTICAST_OPTION[this.#family];
    if (memberships.length === 0) {
      throw new UsageError(
        `${names.ttl[1]} and ${names.loop[1]} on a server's socket come with --multicast-join`,
      );
    }
    if (options.ttl !== undefined) {
      const first = memberships[0];
      if (!("setTTL" in first)) {
        throw new UsageError(`${names.ttl[1]} on a server's IPv6 socket: Deno has no call for it`);
      }
      await first.setTTL(options.ttl);
      this.#trace?.(this.tag, `setsockopt(${names.ttl[1]}, ${options.ttl}) = 0`);
    }
    if (options.loop !== undefined) {
      await memberships[0].setLoopback(options.loop);
      this.#trace?.(this.tag, `setsockopt(${names.loop[1]}, ${options.loop ? 1 : 0}) = 0`);
    }
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    const [data, from] = await this.#conn.receive(buf);
    const addr = from as Deno.NetAddr;
    this.#trace?.(this.tag, `recvfrom(${buf.length}) = ${data.length} ${formatAddr(addr)}`);
    return [data.length, addr];
  }

  async send(data: Uint8Array, to?: Deno.NetAddr): Promise<number> {
    if (!to) throw new Error("a bound datagram socket needs an address to send to");
    try {
      const n = await this.#conn.send(data, to);
      this.#trace?.(this.tag, `sendto(${data.length}, ${formatAddr(to)}) = ${n}`);
      return n;
    } catch (err) {
      this.#trace?.(this.tag, `sendto(${data.length}, ${formatAddr(to)}) = ${failedCall(err)}`);
      throw err;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#trace?.(this.tag, "close()");
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Options of {@linkcode bindDatagram} and {@linkcode connectDatagram}. */
export interface DatagramOptions {
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** A client's own address (`--source`): bound before it connects. */
  source?: SourceAddress;
  /** SO_BROADCAST on a connected socket (Deno's own UDP sockets always have it). */
  broadcast?: boolean;
}

/**
 * Binds a UDP socket to an IP address (port 0: any free port) with
 * `Deno.listenDatagram`.
 *
 * @example Usage
 * ```ts
 * import { bindDatagram } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * const sock = bindDatagram("127.0.0.1", 0);
 * assert.match(sock.address, /^127\.0\.0\.1:\d+$/);
 * sock.close();
 * ```
 */
export function bindDatagram(
  hostname: string,
  port: number,
  options: DatagramOptions = {},
): DatagramSocket {
  needUnstableNet();
  const family = isIPv6(hostname) ? 6 : 4;
  const tag = `U${++lastSocketId}`;
  const requested = `${formatHost(hostname)}:${port}`;
  options.trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  try {
    const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
    options.trace?.(tag, `bind(${requested}) = 0`);
    return new BoundSocket(conn, family, tag, options.trace);
  } catch (err) {
    options.trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
    throw toSockitError(err, "listen", `udp://${requested}`);
  }
}

/**
 * A UDP socket connected with connect(2): refusals by ICMP are reported.
 * recv()/send() with `MSG_DONTWAIT`, waiting in the one epoll set of
 * `epoll.ts` only when the socket is not ready: a poll() per waiting socket
 * held one of Deno's blocking threads each, so a forwarder with a hundred
 * sessions left new clients unanswered for seconds.
 */
class ConnectedSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  readonly tag: string;
  readonly closed: Promise<void> = Promise.resolve();
  #c: Libc;
  #fd: number;
  #peer: Deno.NetAddr;
  #trace?: TraceFn;
  #closed = false;

  constructor(
    c: Libc,
    fd: number,
    peer: Deno.NetAddr,
    family: 4 | 6,
    tag: string,
    trace?: TraceFn,
  ) {
    this.#c = c;
    this.#fd = fd;
    this.#peer = peer;
    this.maxDatagram = MAX_DATAGRAM[family];
    this.tag = tag;
    this.#trace = trace;
    const local = new Uint8Array(28);
    const len = new Uint32Array([28]);
    c.getsockname(fd, local, new Uint8Array(len.buffer));
    const { hostname, port } = decodeSockaddr(local);
    this.address = `${formatHost(hostname)}:${port}`;
    this.#family = family;
  }

  #family: 4 | 6;

  /** TTL and loop through setsockopt; a connected socket hears only its peer, so it joins none. */
  multicast(options: MulticastOptions): Promise<void> {
    if (options.join?.length) {
      return Promise.reject(
        new UsageError(
          "--multicast-join is for a receiver (listen, echo, forward udp://): a connected " +
            "socket hears only its peer",
        ),
      );
    }
    const names = MULTICAST_OPTION[this.#family];
    const settings: Array<[readonly [number, string], number | undefined]> = [
      [names.ttl, options.ttl],
      [names.loop, options.loop === undefined ? undefined : options.loop ? 1 : 0],
    ];
    for (const [[name, text], value] of settings) {
      if (value === undefined) continue;
      const errno = setsockoptInt(this.#c, this.#fd, names.level, name, value);
      const err = errno ? errnoError(errno) : undefined;
      this.#trace?.(this.tag, `setsockopt(${text}, ${value}) = ${err ? failedCall(err) : 0}`);
      if (err) return Promise.reject(toSockitError(err, "setsockopt", this.address));
    }
    return Promise.resolve();
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.Interrupted("operation canceled");
      const n = Number(this.#c.recv(this.#fd, buf, BigInt(buf.length), C.MSG_DONTWAIT));
      if (n >= 0) {
        this.#trace?.(this.tag, `recv(${buf.length}) = ${n}`);
        return [n, this.#peer];
      }
      const errno = lastErrno(this.#c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) {
        // ECONNREFUSED: an ICMP port unreachable came back for what was sent.
        const err = errnoError(errno);
        this.#trace?.(this.tag, `recv(${buf.length}) = ${failedCall(err)}`);
        throw err;
      }
      try {
        await waitFor(this.#fd, READABLE);
      } catch {
        // Taken out of the set: closed here.
        throw new Deno.errors.Interrupted("operation canceled");
      }
      // Ready, or failed: a pending error is what the next recv() says.
    }
  }

  async send(data: Uint8Array): Promise<number> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.Interrupted("operation canceled");
      const n = Number(this.#c.send(this.#fd, data, BigInt(data.length), C.MSG_DONTWAIT));
      if (n >= 0) {
        this.#trace?.(this.tag, `send(${data.length}) = ${n}`);
        return n;
      }
      const errno = lastErrno(this.#c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) {
        const err = errnoError(errno);
        this.#trace?.(this.tag, `send(${data.length}) = ${failedCall(err)}`);
        throw err;
      }
      // The send buffer is full: wait for room in the epoll set, not in the event loop.
      try {
        await waitFor(this.#fd, WRITABLE);
      } catch {
        throw new Deno.errors.Interrupted("operation canceled");
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#trace?.(this.tag, "close()");
    // Out of the epoll set first (its waits end), then closed.
    forget(this.#fd);
    this.#c.close(this.#fd);
    this.#fd = -1;
    releaseLibc();
  }
}

/** An unconnected socket that talks to one peer and ignores other senders. */
class PeerSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  readonly tag: string;
  readonly closed: Promise<void>;
  #inner: DatagramSocket;
  #peer: Deno.NetAddr;

  constructor(inner: DatagramSocket, peer: Deno.NetAddr) {
    this.#inner = inner;
    this.#peer = peer;
    this.address = inner.address;
    this.maxDatagram = inner.maxDatagram;
    this.tag = inner.tag;
    this.closed = inner.closed;
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    for (;;) {
      const [n, from] = await this.#inner.receive(buf);
      if (from.port === this.#peer.port && from.hostname === this.#peer.hostname) return [n, from];
    }
  }

  send(data: Uint8Array): Promise<number> {
    return this.#inner.send(data, this.#peer);
  }

  close(): void {
    this.#inner.close();
  }
}

/**
 * Whether connected UDP sockets (and so ICMP refusals) are available.
 *
 * @example Usage
 * ```ts
 * import { canConnectDatagram } from "./datagram.ts";
 *
 * console.assert(typeof canConnectDatagram() === "boolean");
 * ```
 */
export function canConnectDatagram(): boolean {
  return ffiAvailable();
}

/**
 * A UDP socket for talking to one peer (an IP literal): connected through
 * libc when `--allow-ffi` is granted (ICMP port unreachable then rejects
 * `receive()` or `send()` with ConnectionRefused), else an unconnected
 * socket that keeps only the peer's datagrams.
 *
 * @example Usage
 * ```ts
 * import { bindDatagram, connectDatagram } from "./datagram.ts";
 * import { idle } from "../sys/epoll.ts";
 * import assert from "node:assert/strict";
 *
 * const server = bindDatagram("127.0.0.1", 0);
 * const port = Number(server.address.split(":")[1]);
 * const client = connectDatagram("127.0.0.1", port);
 * await client.send(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(16);
 * const [n, from] = await server.receive(buf);
 * await server.send(buf.subarray(0, n), from);
 * const [m] = await client.receive(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, m)), "hi");
 * client.close();
 * server.close();
 * await idle(); // the epoll set is closed once nothing waits
 * ```
 */
export function connectDatagram(
  hostname: string,
  port: number,
  options: DatagramOptions = {},
): DatagramSocket {
  const family = isIPv6(hostname) ? 6 : 4;
  const peer: Deno.NetAddr = { transport: "udp", hostname, port };
  const address = `udp://${formatHost(hostname)}:${port}`;
  const trace = options.trace;
  const source = options.source;
  const sourceHost = source?.host ?? (family === 6 ? "::" : "0.0.0.0");
  if (!canConnectDatagram()) {
    const bound = bindDatagram(sourceHost, source?.port ?? 0, { trace });
    return new PeerSocket(bound, peer);
  }
  const tag = `U${++lastSocketId}`;
  const c = acquireLibc();
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  const fd = c.socket(family === 6 ? C.AF_INET6 : C.AF_INET, C.SOCK_DGRAM | C.SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const err = lastError(c);
    releaseLibc();
    throw toSockitError(err, "connect", address);
  }
  if (source) {
    const from = `${formatHost(sourceHost)}:${source.port ?? 0}`;
    const local = encodeSockaddr(sourceHost, source.port ?? 0);
    if (c.bind(fd, local, local.length) < 0) {
      const err = lastError(c);
      trace?.(tag, `bind(${from}) = ${failedCall(err)}`);
      c.close(fd);
      releaseLibc();
      throw toSockitError(err, "bind", `udp://${from}`);
    }
    trace?.(tag, `bind(${from}) = 0`);
  }
  if (options.broadcast) {
    const errno = setsockoptInt(c, fd, C.SOL_SOCKET, C.SO_BROADCAST, 1);
    trace?.(tag, `setsockopt(SO_BROADCAST, 1) = ${errno ? failedCall(errnoError(errno)) : 0}`);
  }
  const sa = encodeSockaddr(hostname, port);
  if (c.connect(fd, sa, sa.length) < 0) {
    const err = lastError(c);
    trace?.(tag, `connect(${formatAddr(peer)}) = ${failedCall(err)}`);
    c.close(fd);
    releaseLibc();
    if (err instanceof Deno.errors.PermissionDenied) {
      // Linux refuses a broadcast destination (EACCES) unless SO_BROADCAST is set.
      throw new SockitError(
        "permission denied: a broadcast address needs SO_BROADCAST, which was not asked for",
        {
          op: "connect",
          address,
          code: "EACCES",
          hint: "add --broadcast (SO_BROADCAST), or send to a host's own address",
          cause: err,
        },
      );
    }
    throw toSockitError(err, "connect", address);
  }
  trace?.(tag, `connect(${formatAddr(peer)}) = 0`);
  return new ConnectedSocket(c, fd, peer, family, tag, trace);
}

/**
 * The usage error for a datagram too large for the socket: `size` is the
 * byte count, or `more` when the input only said that it did not fit.
 *
 * @example Usage
 * ```ts
 * import { datagramTooLarge } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(datagramTooLarge(65507, "70000 bytes").message, /at most 65507 bytes; the input gave 70000 bytes/);
 * ```
 */
export function datagramTooLarge(max: number, size: string): UsageError {
  return new UsageError(`a UDP datagram carries at most ${max} bytes; the input gave ${size}`);
}

/** How a {@linkcode DatagramSide} picks the peer it sends to. */
export type DatagramMode = "connected" | "latest-peer" | "reply" | "all-peers";

/** Options of {@linkcode DatagramSide}. */
export interface DatagramSideOptions {
  /** How the peer is chosen (see the module text). */
  mode: DatagramMode;
  /** The scheme as written before addresses (`udp://`), for the names of peers. */
  prefix: string;
  /** The operation failures are reported under (`connect`, `listen`, `echo`). */
  op: string;
  /** The peer's name in messages for a connected socket (`udp://localhost:53`). */
  peerName?: string;
  /** Called when a datagram comes from a peer that differs from the previous one. */
  onPeer?: (peer: Deno.NetAddr) => void;
  /**
   * A server's choice: a datagram that cannot be sent is reported here and
   * dropped, instead of failing the relay.
   */
  onSendError?: (error: unknown, peer: Deno.NetAddr) => void;
  /** Datagrams sent to each new peer when it first shows up (`listen udp:// --send`). */
  greeting?: Uint8Array[];
  /** Count bytes per peer (see {@linkcode DatagramSide.sessions}). */
  perPeer?: boolean;
  /** `all-peers`: a peer is written to while it was heard from within this many ms (default 60 s). */
  peerWindow?: number;
}

/** What a datagram side exchanged with one peer. */
export interface PeerSession {
  /** The peer, formatted. */
  remoteAddress: string;
  /** Bytes received from it. */
  received: number;
  /** Bytes sent to it. */
  sent: number;
  /** When it first showed up (`performance.now()`). */
  since: number;
  /** When it was last heard from (`performance.now()`). */
  last: number;
}

/** Peers whose figures a side keeps; beyond it the oldest are forgotten. */
export const PEER_SESSIONS = 4096;

/**
 * A datagram socket as a {@linkcode Duplex} for the relay: `read()` is one
 * datagram (the relay reads with a {@linkcode RECEIVE_BUFFER}-sized buffer,
 * {@linkcode DatagramSide.readSize}), `write()` sends one datagram — one too
 * large for UDP is refused with a usage error naming the limit.
 * `closeWrite()` does nothing: datagrams have no half-close.
 * `cancelRead(linger)` ends reading once no datagram has come for `linger`
 * ms (how `connect udp://` waits for replies after its input ended).
 * Failures are reported as failures of `options.op` (`connect
 * udp://host:53: connection refused`).
 *
 * @example Usage
 * ```ts
 * import { bindDatagram, connectDatagram, DatagramSide } from "./datagram.ts";
 * import { idle } from "../sys/epoll.ts";
 * import { relay } from "../engine/relay.ts";
 * import assert from "node:assert/strict";
 *
 * // An echo server: datagrams relayed into their own socket go back to their senders.
 * const server = new DatagramSide(bindDatagram("127.0.0.1", 0), { mode: "reply", prefix: "udp://", op: "echo" });
 * const echoed = relay(server, server, {});
 * const client = connectDatagram("127.0.0.1", Number(server.localAddress.split(":")[1]));
 * await client.send(new TextEncoder().encode("ping"));
 * const buf = new Uint8Array(16);
 * const [n] = await client.receive(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, n)), "ping");
 * client.close();
 * server.close();
 * await echoed.catch(() => {});
 * await idle(); // the epoll set is closed once nothing waits
 * ```
 */
export class DatagramSide implements Duplex, Disposable {
  /** Connection number, for events and `--hex`. */
  readonly id: number = nextConnectionId();
  /** The relay reads datagrams with a buffer this large. */
  readonly readSize: number = RECEIVE_BUFFER;
  /** Each read is one datagram. */
  readonly datagrams = true;
  /** The socket. */
  readonly socket: DatagramSocket;
  /** When the side was opened (`performance.now()`). */
  readonly openedAt: number = performance.now();
  #options: DatagramSideOptions;
  #peer?: Deno.NetAddr;
  #peerKnown = Promise.withResolvers<void>();
  #pending?: Promise<[number, Deno.NetAddr]>;
  #pendingBuf?: Uint8Array;
  #linger?: number;
  #wake = Promise.withResolvers<void>();
  #closed = false;
  #sessions = new Map<string, PeerSession>();
  #peerAddrs = new Map<string, Deno.NetAddr>();

  /** Wraps `socket`; the side owns it from now on. */
  constructor(socket: DatagramSocket, options: DatagramSideOptions) {
    this.socket = socket;
    this.#options = options;
    if (options.mode === "connected") this.#peerKnown.resolve();
  }

  /** The local address, formatted. */
  get localAddress(): string {
    return this.socket.address;
  }

  /**
   * The peer with its scheme (`udp://127.0.0.1:5000`): the latest sender, or
   * the local address while none has come; the name the user gave for a
   * connected socket. `--hex` labels datagrams with it.
   */
  get remoteAddress(): string {
    if (this.#options.mode === "connected") return this.#options.peerName ?? "";
    return `${this.#options.prefix}${this.label}`;
  }

  /** The peer as a plain address (the local address while none has come): the name in messages. */
  get label(): string {
    if (this.#options.mode === "connected") return this.#options.peerName ?? "";
    return this.#peer ? this.formatPeer(this.#peer) : this.socket.address;
  }

  /** A peer as its socket writes it (`127.0.0.1:53`, `127.0.0.1/253`). */
  formatPeer(peer: Deno.NetAddr): string {
    return this.socket.formatPeer?.(peer) ?? formatAddr(peer);
  }

  /** The largest datagram this side carries. */
  get maxDatagram(): number {
    return this.socket.maxDatagram;
  }

  /** Resolves once the socket is released. */
  get released(): Promise<void> {
    return this.socket.closed;
  }

  /** Receives one datagram into `p` (of at least {@linkcode RECEIVE_BUFFER} bytes). */
  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) return null;
      if (!this.#pending) {
        // Deno truncates a datagram to the buffer silently: always offer room for the largest.
        this.#pendingBuf = p.length >= RECEIVE_BUFFER ? p : new Uint8Array(RECEIVE_BUFFER);
        this.#pending = this.socket.receive(this.#pendingBuf);
        this.#pending.catch(() => {});
      }
      const pending = this.#pending;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waits: Promise<"quiet" | "woken" | [number, Deno.NetAddr]>[] = [
        pending,
        this.#wake.promise.then(() => "woken" as const),
      ];
      if (this.#linger !== undefined) {
        waits.push(
          new Promise((resolve) => (timer = setTimeout(() => resolve("quiet"), this.#linger))),
        );
      }
      let result: "quiet" | "woken" | [number, Deno.NetAddr];
      try {
        result = await Promise.race(waits);
      } catch (err) {
        this.#pending = undefined;
        if (this.#closed) return null;
        throw this.#named(err);
      } finally {
        clearTimeout(timer);
      }
      if (result === "quiet") return null;
      if (result === "woken") continue;
      this.#pending = undefined;
      const [n, from] = result;
      if (this.#pendingBuf !== p) p.set(this.#pendingBuf!.subarray(0, Math.min(n, p.length)));
      if (this.#options.mode !== "connected") {
        if (!this.#peer || this.#peer.hostname !== from.hostname || this.#peer.port !== from.port) {
          this.#peer = from;
          this.#options.onPeer?.(from);
        }
        this.#peerKnown.resolve();
        const [session, created] = this.#session(from);
        if (session) {
          session.received += n;
          session.last = performance.now();
          if (created && this.#options.greeting) await this.#greet(from, session);
        }
      }
      return n;
    }
  }

  /**
   * Sends `p` as one datagram: to the connected peer, or the latest sender
   * (waiting for the first one to show up).
   */
  async write(p: Uint8Array): Promise<number> {
    if (p.length > this.socket.maxDatagram) {
      throw datagramTooLarge(this.socket.maxDatagram, `${p.length} bytes`);
    }
    await this.#peerKnown.promise;
    if (this.#closed) throw new Deno.errors.Interrupted("operation canceled");
    if (this.#options.mode === "all-peers") return await this.#writeAll(p);
    const peer = this.#options.mode === "connected" ? undefined : this.#peer;
    const onError = this.#options.onSendError;
    try {
      await this.socket.send(p, peer);
      const [session] = peer ? this.#session(peer) : [undefined];
      if (session) session.sent += p.length;
    } catch (err) {
      if (!onError || !peer) throw this.#named(err);
      onError(err, peer);
    }
    return p.length;
  }

  /** `all-peers`: one datagram to every peer heard from within the window. */
  async #writeAll(p: Uint8Array): Promise<number> {
    const window = this.#options.peerWindow ?? 60_000;
    const now = performance.now();
    for (const [key, session] of this.#sessions) {
      const peer = this.#peerAddrs.get(key);
      if (!peer || now - session.last > window) continue;
      try {
        await this.socket.send(p, peer);
        session.sent += p.length;
      } catch (err) {
        if (!this.#options.onSendError) throw this.#named(err);
        this.#options.onSendError(err, peer);
      }
    }
    return p.length;
  }

  /** The figures of `peer` when counted per peer, and whether it is new (then it is added). */
  #session(peer: Deno.NetAddr): [PeerSession | undefined, boolean] {
    if (!this.#options.perPeer) return [undefined, false];
    const key = this.formatPeer(peer);
    const known = this.#sessions.get(key);
    if (known) return [known, false];
    if (this.#sessions.size >= PEER_SESSIONS) {
      const oldest = this.#sessions.keys().next().value!;
      this.#sessions.delete(oldest);
      this.#peerAddrs.delete(oldest);
    }
    this.#peerAddrs.set(key, peer);
    const now = performance.now();
    const session = { remoteAddress: key, received: 0, sent: 0, since: now, last: now };
    this.#sessions.set(key, session);
    return [session, true];
  }

  /** Sends the greeting to a peer that has just shown up. */
  async #greet(peer: Deno.NetAddr, session: PeerSession): Promise<void> {
    for (const datagram of this.#options.greeting ?? []) {
      try {
        await this.socket.send(datagram, peer);
        session.sent += datagram.length;
      } catch (err) {
        if (!this.#options.onSendError) throw this.#named(err);
        this.#options.onSendError(err, peer);
        return;
      }
    }
  }

  /** What was exchanged with each peer (with `perPeer`), oldest first. */
  sessions(): PeerSession[] {
    return [...this.#sessions.values()];
  }

  /** A failure of the socket as a failure of the command's operation on its address. */
  #named(err: unknown): unknown {
    return toSockitError(err, this.#options.op, this.label);
  }

  /** Nothing to shut down: a datagram socket has no half-close. */
  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  /** Ends reading once no datagram has come for `linger` ms (at once for 0). */
  cancelRead(linger = 0): void {
    this.#linger = Math.min(this.#linger ?? linger, linger);
    const wake = this.#wake;
    this.#wake = Promise.withResolvers<void>();
    wake.resolve();
  }

  /** Closes the socket; a pending read ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#peerKnown.resolve();
    this.socket.close();
    this.#wake.resolve();
  }

  /** Closes the socket (`using side = …`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
