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
 * `--unstable-net`) — or through libc when `--reuseport` asks for an option
 * that must be set before `bind()`. A client should learn that nothing
 * listens at the other end: the kernel reports an ICMP "port unreachable"
 * as ECONNREFUSED, but only on a *connected* UDP socket, and Deno offers
 * none (`node:dgram`'s `connect()` only remembers the address). So the
 * client socket is made with libc (`sys/socket.ts`) — socket(), connect(),
 * send(), recv(), waiting in the one epoll set of `sys/epoll.ts` — when
 * `--allow-ffi` is granted; without it, sockit falls back to an unconnected
 * socket that keeps only the target's replies and cannot see refusals.
 *
 * Peers are {@linkcode PeerAddress}es, typed by family: an IP address and
 * port (UDP), an IP address and protocol (`ip://`), a Unix path
 * (`unixgram:`), a child process (`--exec`).
 *
 * @module
 */

import { nextConnectionId, socketOptionFailure } from "./conn.ts";
import { errnoError, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, isIPv6 } from "./ip.ts";
import { C } from "../sys/constants.ts";
import { READABLE, WRITABLE } from "../sys/epoll.ts";
import { ffiAvailable, lastErrno } from "../sys/libc.ts";
import {
  decodeSockaddr,
  encodeSockaddr,
  formatSocketAddress,
  type InetAddress,
  inetAddress,
  SOCKADDR_SIZE,
  type UnixAddress,
} from "../sys/sockaddr.ts";
import { domainOf, LibcSocket } from "../sys/socket.ts";
import { applySocketOptions, type Setting } from "../sys/sockopt.ts";
import type { SourceAddress } from "./tcp_libc.ts";
import type { Duplex } from "../engine/relay.ts";
import { addressFamily, failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

/** The largest UDP payload over IPv4 and over IPv6. */
export const MAX_DATAGRAM = { 4: 65507, 6: 65527 } as const;

/** A receive buffer that no datagram overflows (Deno truncates silently). */
export const RECEIVE_BUFFER = 65536;

/** An IP address and protocol: the peer of an `ip://` socket. */
export interface IpProtocolAddress {
  /** IPv4 or IPv6. */
  family: 4 | 6;
  /** The address as text. */
  address: string;
  /** The IP protocol number. */
  protocol: number;
}

/** A child process as the far end of a datagram session (`--exec`). */
export interface ChildAddress {
  /** A child. */
  family: "child";
  /** Its process id. */
  pid: number;
}

/**
 * Who a datagram came from or goes to, typed by family: an IP address and
 * port (UDP), an IP address and protocol (`ip://`), a Unix path
 * (`unixgram:`; `""` for an unbound sender), or a child process.
 */
export type PeerAddress = InetAddress | IpProtocolAddress | UnixAddress | ChildAddress;

/**
 * A peer as sockit writes it: `127.0.0.1:53`, `[::1]:53`, `127.0.0.1/253`,
 * a path, `@name`, `(unnamed)`, `pid 42`.
 *
 * @example Usage
 * ```ts
 * import { formatPeer } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatPeer({ family: 6, address: "::1", port: 53 }), "[::1]:53");
 * assert.equal(formatPeer({ family: 4, address: "127.0.0.1", protocol: 253 }), "127.0.0.1/253");
 * assert.equal(formatPeer({ family: "local", path: "", abstract: false }), "(unnamed)");
 * ```
 */
export function formatPeer(peer: PeerAddress): string {
  if (peer.family === "child") return `pid ${peer.pid}`;
  if ("protocol" in peer) return `${formatHost(peer.address)}/${peer.protocol}`;
  return formatSocketAddress(peer);
}

/** Whether two peers are the same one. */
export function samePeer(a: PeerAddress, b: PeerAddress): boolean {
  if (a.family === "child" || b.family === "child") {
    return a.family === b.family && (a as ChildAddress).pid === (b as ChildAddress).pid;
  }
  if (a.family === "local" || b.family === "local") {
    return a.family === b.family && (a as UnixAddress).path === (b as UnixAddress).path &&
      (a as UnixAddress).abstract === (b as UnixAddress).abstract;
  }
  return a.family === b.family && a.address === b.address &&
    ("port" in a ? a.port : a.protocol) === ("port" in b ? b.port : b.protocol);
}

/** A datagram socket: UDP, raw IP, Unix, or a child's pipes. */
export interface DatagramSocket {
  /** `U1`, `U2`, …: the tag of its trace lines. */
  readonly tag: string;
  /** The local address, formatted. */
  readonly address: string;
  /** The local address, where the socket has one to give (a bound UDP or Unix socket). */
  readonly localAddress?: PeerAddress;
  /** The largest datagram this socket carries. */
  readonly maxDatagram: number;
  /** Receives one datagram into `buf`; resolves to its size and sender. */
  receive(buf: Uint8Array): Promise<[number, PeerAddress]>;
  /** Sends one datagram (to `to`, or to the connected peer). */
  send(data: Uint8Array, to?: PeerAddress): Promise<number>;
  /** Closes the socket; a pending `receive()` rejects. */
  close(): void;
  /** Resolves once the socket is released (out of the epoll set, a receive in flight ended). */
  readonly closed: Promise<void>;
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

/** The option names of the multicast settings, per family. */
const MULTICAST_OPTION = {
  4: { ttl: "IP_MULTICAST_TTL", loop: "IP_MULTICAST_LOOP" },
  6: { ttl: "IPV6_MULTICAST_HOPS", loop: "IPV6_MULTICAST_LOOP" },
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

/** A Deno address as a peer. */
function peerOf(addr: Deno.NetAddr): InetAddress {
  return { family: isIPv6(addr.hostname) ? 6 : 4, address: addr.hostname, port: addr.port };
}

/** A datagram socket from `Deno.listenDatagram`. */
class BoundSocket implements DatagramSocket {
  readonly address: string;
  readonly localAddress: InetAddress;
  readonly maxDatagram: number;
  readonly tag: string;
  readonly closed: Promise<void> = Promise.resolve();
  #conn: Deno.DatagramConn;
  #trace?: TraceFn;
  #closed = false;
  #family: 4 | 6;

  constructor(conn: Deno.DatagramConn, family: 4 | 6, tag: string, trace?: TraceFn) {
    this.#conn = conn;
    this.localAddress = peerOf(conn.addr as Deno.NetAddr);
    this.address = formatPeer(this.localAddress);
    this.maxDatagram = MAX_DATAGRAM[family];
    this.#trace = trace;
    this.tag = tag;
    this.#family = family;
  }

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
        `${names.ttl} and ${names.loop} on a server's socket come with --multicast-join`,
      );
    }
    if (options.ttl !== undefined) {
      const first = memberships[0];
      if (!("setTTL" in first)) {
        throw new UsageError(`${names.ttl} on a server's IPv6 socket: Deno has no call for it`);
      }
      await first.setTTL(options.ttl);
      this.#trace?.(this.tag, `setsockopt(${names.ttl}, ${options.ttl}) = 0`);
    }
    if (options.loop !== undefined) {
      await memberships[0].setLoopback(options.loop);
      this.#trace?.(this.tag, `setsockopt(${names.loop}, ${options.loop ? 1 : 0}) = 0`);
    }
  }

  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    const [data, from] = await this.#conn.receive(buf);
    const peer = peerOf(from as Deno.NetAddr);
    this.#trace?.(this.tag, `recvfrom(${buf.length}) = ${data.length} ${formatPeer(peer)}`);
    return [data.length, peer];
  }

  async send(data: Uint8Array, to?: PeerAddress): Promise<number> {
    if (!to || to.family === "local" || to.family === "child" || !("port" in to)) {
      throw new Error("a bound UDP socket needs an IP address and port to send to");
    }
    const text = formatPeer(to);
    try {
      const n = await this.#conn.send(data, {
        transport: "udp",
        hostname: to.address,
        port: to.port,
      });
      this.#trace?.(this.tag, `sendto(${data.length}, ${text}) = ${n}`);
      return n;
    } catch (err) {
      this.#trace?.(this.tag, `sendto(${data.length}, ${text}) = ${failedCall(err)}`);
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
  /**
   * SO_REUSEPORT on a server's socket (`--reuseport`): other sockets may
   * bind the same port, and the kernel shares the senders out. Set before
   * `bind()`, so the socket is made through libc (`--allow-ffi`).
   */
  reusePort?: boolean;
}

/**
 * Binds a UDP socket to an IP address (port 0: any free port) with
 * `Deno.listenDatagram` — or through libc with `reusePort`, which must be
 * set before `bind()`.
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
  const family = isIPv6(hostname) ? 6 : 4;
  const tag = `U${++lastSocketId}`;
  const requested = `${formatHost(hostname)}:${port}`;
  if (options.reusePort) return bindThroughLibc(hostname, port, family, tag, options);
  needUnstableNet();
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

/** {@linkcode bindDatagram} through libc: socket(), the options, bind(). */
function bindThroughLibc(
  hostname: string,
  port: number,
  family: 4 | 6,
  tag: string,
  options: DatagramOptions,
): DatagramSocket {
  const requested = `${formatHost(hostname)}:${port}`;
  if (!ffiAvailable()) {
    throw new SockitError("--reuseport on udp:// goes through libc, which needs --allow-ffi", {
      op: "listen",
      address: `udp://${requested}`,
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
  const trace = options.trace;
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  let socket: LibcSocket;
  try {
    socket = LibcSocket.open(domainOf(family), C.SOCK_DGRAM, 0);
  } catch (err) {
    throw toSockitError(err, "listen", `udp://${requested}`);
  }
  try {
    const settings: Setting[] = [["SO_REUSEPORT", true]];
    applySocketOptions(socket, settings, (call, error) => {
      trace?.(tag, `${call} = ${error ? failedCall(error) : 0}`);
    });
    try {
      socket.bind(inetAddress(hostname, port));
    } catch (err) {
      trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
      throw toSockitError(err, "listen", `udp://${requested}`);
    }
    trace?.(tag, `bind(${requested}) = 0`);
    return new LibcDatagramSocket(socket, family, tag, { trace });
  } catch (err) {
    socket.close();
    throw socketOptionFailure(err, `udp://${requested}`);
  }
}

/**
 * A UDP socket of libc's: connected with connect(2) (refusals by ICMP are
 * reported), or bound (a server's, `--reuseport`). recv()/send() with
 * `MSG_DONTWAIT`, waiting in the one epoll set only when the socket is not
 * ready: a poll() per waiting socket held one of Deno's blocking threads
 * each, so a forwarder with a hundred sessions left new clients unanswered
 * for seconds.
 */
class LibcDatagramSocket implements DatagramSocket {
  readonly address: string;
  readonly localAddress?: PeerAddress;
  readonly maxDatagram: number;
  readonly tag: string;
  #socket: LibcSocket;
  #peer?: InetAddress;
  #trace?: TraceFn;
  #family: 4 | 6;
  #from = new Uint8Array(SOCKADDR_SIZE);
  #fromLength = new Uint32Array(1);
  #lastTo?: { peer: InetAddress; sa: Uint8Array };

  constructor(
    socket: LibcSocket,
    family: 4 | 6,
    tag: string,
    options: { peer?: InetAddress; trace?: TraceFn },
  ) {
    this.#socket = socket;
    this.#peer = options.peer;
    this.maxDatagram = MAX_DATAGRAM[family];
    this.tag = tag;
    this.#trace = options.trace;
    this.#family = family;
    this.localAddress = socket.address();
    this.address = this.localAddress ? formatPeer(this.localAddress) : "";
  }

  /** Resolves once the descriptor is closed and out of the epoll set. */
  get closed(): Promise<void> {
    return this.#socket.closed;
  }

  /**
   * Joins groups (a bound socket: a connected one hears only its peer) and
   * sets the multicast TTL and loop, through the option table.
   */
  multicast(options: MulticastOptions): Promise<void> {
    if (options.join?.length && this.#peer) {
      return Promise.reject(
        new UsageError(
          "--multicast-join is for a receiver (listen, echo, forward udp://): a connected " +
            "socket hears only its peer",
        ),
      );
    }
    const settings: Setting[] = [];
    for (const { group, iface } of options.join ?? []) {
      settings.push(
        isIPv6(group)
          ? ["IPV6_ADD_MEMBERSHIP", { group, index: Number(iface ?? 0) }]
          : ["IP_ADD_MEMBERSHIP", { group, iface: iface ?? "0.0.0.0" }],
      );
    }
    const names = MULTICAST_OPTION[this.#family];
    if (options.ttl !== undefined) settings.push([names.ttl, options.ttl]);
    if (options.loop !== undefined) settings.push([names.loop, options.loop]);
    try {
      applySocketOptions(this.#socket, settings, (call, error) => {
        this.#trace?.(this.tag, `${call} = ${error ? failedCall(error) : 0}`);
      });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(socketOptionFailure(err, this.address));
    }
  }

  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    const c = this.#socket.c;
    for (;;) {
      if (this.#socket.done) throw new Deno.errors.Interrupted("operation canceled");
      let n: number;
      if (this.#peer) {
        n = Number(c.recv(this.#socket.fd, buf, BigInt(buf.length), C.MSG_DONTWAIT));
      } else {
        this.#fromLength[0] = this.#from.length;
        n = Number(
          c.recvfrom(
            this.#socket.fd,
            buf,
            BigInt(buf.length),
            C.MSG_DONTWAIT,
            this.#from,
            new Uint8Array(this.#fromLength.buffer),
          ),
        );
      }
      if (n >= 0) {
        if (this.#peer) {
          this.#trace?.(this.tag, `recv(${buf.length}) = ${n}`);
          return [n, this.#peer];
        }
        const from = decodeSockaddr(this.#from, this.#fromLength[0]) as InetAddress;
        this.#trace?.(this.tag, `recvfrom(${buf.length}) = ${n} ${formatPeer(from)}`);
        return [n, from];
      }
      const errno = lastErrno(c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) {
        // ECONNREFUSED: an ICMP port unreachable came back for what was sent.
        const err = errnoError(errno);
        this.#trace?.(
          this.tag,
          `${this.#peer ? "recv" : "recvfrom"}(${buf.length}) = ${failedCall(err)}`,
        );
        throw err;
      }
      // Not ready: wait in the epoll set (closing here ends the wait with Interrupted).
      await this.#socket.wait(READABLE);
    }
  }

  async send(data: Uint8Array, to?: PeerAddress): Promise<number> {
    const c = this.#socket.c;
    const peer = this.#peer ? undefined : to;
    if (
      !this.#peer &&
      (!peer || peer.family === "local" || peer.family === "child" || !("port" in peer))
    ) {
      throw new Error("a bound UDP socket needs an IP address and port to send to");
    }
    let sa: Uint8Array | undefined;
    if (peer) {
      const inet = peer as InetAddress;
      if (this.#lastTo && samePeer(this.#lastTo.peer, inet)) sa = this.#lastTo.sa;
      else {
        sa = encodeSockaddr(inet);
        this.#lastTo = { peer: inet, sa };
      }
    }
    const call = peer ? `sendto(${data.length}, ${formatPeer(peer)})` : `send(${data.length})`;
    for (;;) {
      if (this.#socket.done) throw new Deno.errors.Interrupted("operation canceled");
      const n = Number(
        sa
          ? c.sendto(this.#socket.fd, data, BigInt(data.length), C.MSG_DONTWAIT, sa, sa.length)
          : c.send(this.#socket.fd, data, BigInt(data.length), C.MSG_DONTWAIT),
      );
      if (n >= 0) {
        this.#trace?.(this.tag, `${call} = ${n}`);
        return n;
      }
      const errno = lastErrno(c);
      if (errno === C.EINTR) continue;
      if (errno !== C.EAGAIN) {
        const err = errnoError(errno);
        this.#trace?.(this.tag, `${call} = ${failedCall(err)}`);
        throw err;
      }
      // The send buffer is full: wait for room in the epoll set, not in the event loop.
      await this.#socket.wait(WRITABLE);
    }
  }

  close(): void {
    if (this.#socket.close()) this.#trace?.(this.tag, "close()");
  }
}

/** An unconnected socket that talks to one peer and ignores other senders. */
class PeerSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  readonly tag: string;
  readonly closed: Promise<void>;
  #inner: DatagramSocket;
  #peer: InetAddress;

  constructor(inner: DatagramSocket, peer: InetAddress) {
    this.#inner = inner;
    this.#peer = peer;
    this.address = inner.address;
    this.maxDatagram = inner.maxDatagram;
    this.tag = inner.tag;
    this.closed = inner.closed;
  }

  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    for (;;) {
      const [n, from] = await this.#inner.receive(buf);
      if (samePeer(from, this.#peer)) return [n, from];
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
 * A UDP socket for talking to one peer (an IP literal, `%zone` allowed):
 * connected through libc when `--allow-ffi` is granted (ICMP port
 * unreachable then rejects `receive()` or `send()` with ConnectionRefused),
 * else an unconnected socket that keeps only the peer's datagrams.
 *
 * @example Usage
 * ```ts
 * import { bindDatagram, connectDatagram } from "./datagram.ts";
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
 * await client.closed; // out of the epoll set, its helper thread gone
 * ```
 */
export function connectDatagram(
  hostname: string,
  port: number,
  options: DatagramOptions = {},
): DatagramSocket {
  const family = isIPv6(hostname) ? 6 : 4;
  const address = `udp://${formatHost(hostname)}:${port}`;
  const trace = options.trace;
  const source = options.source;
  const sourceHost = source?.host ?? (family === 6 ? "::" : "0.0.0.0");
  if (!canConnectDatagram()) {
    const bound = bindDatagram(sourceHost, source?.port ?? 0, { trace });
    return new PeerSocket(bound, { family, address: hostname.split("%")[0], port });
  }
  let peer: InetAddress;
  try {
    peer = inetAddress(hostname, port);
  } catch (err) {
    throw toSockitError(err, "connect", address);
  }
  const tag = `U${++lastSocketId}`;
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  let socket: LibcSocket;
  try {
    socket = LibcSocket.open(domainOf(family), C.SOCK_DGRAM, 0);
  } catch (err) {
    throw toSockitError(err, "connect", address);
  }
  const fail = (err: unknown): never => {
    socket.close();
    throw err;
  };
  if (source) {
    const from = `${formatHost(sourceHost)}:${source.port ?? 0}`;
    try {
      socket.bind(inetAddress(sourceHost, source.port ?? 0));
    } catch (err) {
      trace?.(tag, `bind(${from}) = ${failedCall(err)}`);
      fail(toSockitError(err, "bind", `udp://${from}`));
    }
    trace?.(tag, `bind(${from}) = 0`);
  }
  if (options.broadcast) {
    try {
      applySocketOptions(socket, [["SO_BROADCAST", true]], (call, error) => {
        trace?.(tag, `${call} = ${error ? failedCall(error) : 0}`);
      });
    } catch {
      // Traced; connect() says what it means.
    }
  }
  const errno = socket.connect(peer);
  const target = formatPeer(peer);
  if (errno !== 0) {
    const err = errnoError(errno);
    trace?.(tag, `connect(${target}) = ${failedCall(err)}`);
    if (err instanceof Deno.errors.PermissionDenied) {
      // Linux refuses a broadcast destination (EACCES) unless SO_BROADCAST is set.
      fail(
        new SockitError(
          "permission denied: a broadcast address needs SO_BROADCAST, which was not asked for",
          {
            op: "connect",
            address,
            code: "EACCES",
            hint: "add --broadcast (SO_BROADCAST), or send to a host's own address",
            cause: err,
          },
        ),
      );
    }
    fail(toSockitError(err, "connect", address));
  }
  trace?.(tag, `connect(${target}) = 0`);
  return new LibcDatagramSocket(socket, family, tag, { peer, trace });
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
  onPeer?: (peer: PeerAddress) => void;
  /**
   * A server's choice: a datagram that cannot be sent is reported here and
   * dropped, instead of failing the relay.
   */
  onSendError?: (error: unknown, peer: PeerAddress) => void;
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
 * await client.closed; // out of the epoll set, its helper thread gone
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
  #peer?: PeerAddress;
  #peerKnown = Promise.withResolvers<void>();
  #pending?: Promise<[number, PeerAddress]>;
  #pendingBuf?: Uint8Array;
  #linger?: number;
  #wake = Promise.withResolvers<void>();
  #closed = false;
  #sessions = new Map<string, PeerSession>();
  #peerAddrs = new Map<string, PeerAddress>();

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
    return this.#peer ? formatPeer(this.#peer) : this.socket.address;
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
      const waits: Promise<"quiet" | "woken" | [number, PeerAddress]>[] = [
        pending,
        this.#wake.promise.then(() => "woken" as const),
      ];
      if (this.#linger !== undefined) {
        waits.push(
          new Promise((resolve) => (timer = setTimeout(() => resolve("quiet"), this.#linger))),
        );
      }
      let result: "quiet" | "woken" | [number, PeerAddress];
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
        if (!this.#peer || !samePeer(this.#peer, from)) {
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
  #session(peer: PeerAddress): [PeerSession | undefined, boolean] {
    if (!this.#options.perPeer) return [undefined, false];
    const key = formatPeer(peer);
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
  async #greet(peer: PeerAddress, session: PeerSession): Promise<void> {
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
