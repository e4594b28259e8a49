/**
 * Raw IP sockets (SOCK_RAW) and ICMP datagram sockets through libc: Deno
 * has no API for either. One class serves `ping` (ICMP echo), `traceroute`
 * (reading the ICMP errors its probes cause) and `ip://` endpoints (the
 * datagrams of one IP protocol).
 *
 * Receiving never blocks the event loop: a `recvmsg(MSG_DONTWAIT)` first
 * (on loopback the reply is usually queued already), else a wait in the one
 * epoll set (`sys/epoll.ts`), then `recvmsg` again. Each message comes with
 * the kernel's receive time (SO_TIMESTAMPNS) and its TTL or hop limit where
 * the socket reports one. `errno` is read right after each synchronous call
 * that failed.
 *
 * @module
 */

import { errnoError, SockitError, UsageError } from "../base/errors.ts";
import { formatHost, formatIPv6, ipv6Groups, isIPv6 } from "./ip.ts";
import { C } from "../sys/constants.ts";
import { READABLE } from "../sys/epoll.ts";
import { lastError, withLibc } from "../sys/libc.ts";
import { decodeSockaddr, encodeInet, type InetAddress, inetAddress } from "../sys/sockaddr.ts";
import { domainOf, LibcSocket } from "../sys/socket.ts";
import { applySocketOptions, type Setting, SocketOptionError } from "../sys/sockopt.ts";
import type { DatagramSocket, PeerAddress } from "./datagram.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

/** Names of the IP protocols sockit's traces and messages mention. */
const PROTOCOL_NAMES: Record<number, string> = {
  0: "0",
  [C.IPPROTO_ICMP]: "IPPROTO_ICMP",
  [C.IPPROTO_UDP]: "IPPROTO_UDP",
  [C.IPPROTO_ICMPV6]: "IPPROTO_ICMPV6",
};

/** The largest payload of a raw IPv4 / IPv6 datagram (65535 minus the IP header). */
export const MAX_RAW_PAYLOAD = { 4: 65515, 6: 65535 } as const;

/** Options of {@linkcode RawSocket.open}. */
export interface RawSocketOptions {
  /** IPv4 or IPv6. */
  family: 4 | 6;
  /** The IP protocol number (1 ICMP, 58 ICMPv6, 253 for experiments…). */
  protocol: number;
  /**
   * `raw` (SOCK_RAW: root or CAP_NET_RAW) or `dgram` (an ICMP datagram
   * socket, for ICMP echo only: a group in `net.ipv4.ping_group_range`).
   * Default `raw`.
   */
  type?: "raw" | "dgram";
  /** Prints each call (`--trace`). */
  trace?: TraceFn;
  /** The tag of its trace lines (default `R1`, `R2`, …). */
  tag?: string;
}

/** One message as {@linkcode RawSocket.receiveMessage} returns it. */
export interface RawMessage {
  /** Its length in the buffer. */
  length: number;
  /** The sender's address. */
  from: string;
  /** The TTL / hop limit it arrived with, where the socket reports it. */
  ttl?: number;
  /** The kernel's receive time, nanoseconds of CLOCK_REALTIME. */
  receivedNs?: bigint;
}

let lastRawId = 0;

/**
 * A raw IP socket or an ICMP datagram socket.
 *
 * @example Usage
 * ```ts ignore
 * // As root (or with CAP_NET_RAW) and --allow-ffi:
 * await using socket = RawSocket.open({ family: 4, protocol: 1 });
 * socket.sendTo(echoRequest(4, 1, 1, 56), "127.0.0.1");
 * const buf = new Uint8Array(1500);
 * const message = await socket.receiveMessage(buf, 1000);
 * ```
 */
export class RawSocket implements DatagramSocket, Disposable, AsyncDisposable {
  /** The tag of its trace lines. */
  readonly tag: string;
  /** IPv4 or IPv6. */
  readonly family: 4 | 6;
  /** Its IP protocol. */
  readonly protocol: number;
  /** SOCK_RAW or an ICMP datagram socket. */
  readonly type: "raw" | "dgram";
  /** The largest payload it sends. */
  readonly maxDatagram: number;
  #sock: LibcSocket;
  #trace?: TraceFn;
  #name = new Uint8Array(28);
  #iov = new BigUint64Array(2);
  #control = new Uint8Array(256);
  #msghdr = new Uint8Array(56);
  #peer?: string;
  /** The address bound to (undefined: any). */
  #bound?: string;
  /** Connected: whether its own datagrams can come back to it (its peer is its own address). */
  #peerIsSelf = false;
  #sentToLoopback: { data: Uint8Array; at: number }[] = [];
  #lastTo?: { host: string; port: number; sa: Uint8Array };
  #clock = new BigInt64Array(2);

  private constructor(sock: LibcSocket, options: RawSocketOptions, tag: string) {
    this.#sock = sock;
    this.family = options.family;
    this.protocol = options.protocol;
    this.type = options.type ?? "raw";
    this.tag = tag;
    this.#trace = options.trace;
    this.maxDatagram = MAX_RAW_PAYLOAD[options.family];
    const hdr = new DataView(this.#msghdr.buffer);
    hdr.setBigUint64(0, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#name))), true);
    hdr.setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#iov))), true);
    hdr.setBigUint64(24, 1n, true);
    hdr.setBigUint64(
      32,
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#control))),
      true,
    );
  }

  /**
   * Opens a socket: `socket()`, then the options that make each message
   * carry its receive time and TTL. Throws the system's error (with its
   * `errno`: `PermissionDenied` when the socket type is not allowed).
   */
  static open(options: RawSocketOptions): RawSocket {
    const tag = options.tag ?? `R${++lastRawId}`;
    const type = options.type ?? "raw";
    const call = `socket(${options.family === 6 ? "AF_INET6" : "AF_INET"}, ${
      type === "raw" ? "SOCK_RAW" : "SOCK_DGRAM"
    }, ${PROTOCOL_NAMES[options.protocol] ?? options.protocol})`;
    let sock: LibcSocket;
    try {
      sock = LibcSocket.open(
        domainOf(options.family),
        type === "raw" ? C.SOCK_RAW : C.SOCK_DGRAM,
        options.protocol,
      );
    } catch (err) {
      options.trace?.(tag, `${call} = ${failedCall(err)}`);
      throw err;
    }
    options.trace?.(tag, `${call} = ${sock.fd}`);
    const socket = new RawSocket(sock, options, tag);
    try {
      socket.#set([
        ["SO_TIMESTAMPNS", true],
        ...(options.family === 6
          ? [["IPV6_RECVHOPLIMIT", true] as const]
          : type === "dgram"
          ? [["IP_RECVTTL", true] as const]
          : []),
      ]);
    } catch (err) {
      socket.close();
      throw err;
    }
    return socket;
  }

  /** Sets options through the table; traced; throws the system's error on failure. */
  #set(settings: Setting[]): void {
    try {
      applySocketOptions(this.#sock, settings, (call, error) => {
        this.#trace?.(this.tag, `${call} = ${error ? failedCall(error) : 0}`);
      });
    } catch (err) {
      throw err instanceof SocketOptionError && err.cause ? err.cause : err;
    }
  }

  /**
   * Lets only these ICMP (ICMPv6) types reach a raw ICMP socket — the
   * kernel drops the rest before they are queued (ICMP_FILTER /
   * ICMP6_FILTER, as iputils does): on loopback a raw socket would
   * otherwise also read every echo request, its own included.
   */
  filterIcmp(types: number[]): void {
    if (this.type !== "raw") return;
    this.#set([this.family === 4 ? ["ICMP_FILTER", types] : ["ICMP6_FILTER", types]]);
  }

  /** Sets the TTL (IPv4) or unicast hop limit (IPv6) of what it sends. */
  setTtl(ttl: number): void {
    this.#set([this.family === 6 ? ["IPV6_UNICAST_HOPS", ttl] : ["IP_TTL", ttl]]);
  }

  /** The socket's own address and port (an ICMP datagram socket's port is its echo identifier). */
  local(): InetAddress {
    const address = this.#sock.address();
    return address && address.family !== "local"
      ? address
      : { family: this.family, address: "", port: 0 };
  }

  /** The local address and protocol, formatted (`127.0.0.1/253`). */
  get address(): string {
    return `${formatHost(this.local().address)}/${this.protocol}`;
  }

  /** Binds it to a local address (`%zone` allowed): only datagrams to that address arrive. */
  bind(host: string): void {
    try {
      // The port field: 0 (an IPv6 raw socket refuses any but 0 or its protocol).
      this.#sock.bind(inetAddress(host, 0));
    } catch (err) {
      this.#trace?.(this.tag, `bind(${host}) = ${failedCall(err)}`);
      throw err;
    }
    this.#bound = host;
    this.#trace?.(this.tag, `bind(${host}) = 0`);
  }

  /** Connects it to a peer: only the peer's datagrams arrive, and `send` goes there. */
  connect(host: string): void {
    // The port field: 0 (an IPv6 raw socket refuses any but 0 or its protocol).
    const errno = this.#sock.connect(inetAddress(host, 0));
    if (errno !== 0) {
      const err = Object.assign(errnoError(errno), { errno });
      this.#trace?.(this.tag, `connect(${host}) = ${failedCall(err)}`);
      throw err;
    }
    this.#peer = host;
    this.#trace?.(this.tag, `connect(${host}) = 0`);
    // Only the peer's datagrams arrive now; its own come from its source address.
    this.#peerIsSelf = this.local().address === host;
  }

  /**
   * Sends one datagram to `host` (`%zone` allowed; synchronously: these
   * sends do not block). `port` only for a UDP socket (a raw socket's is 0).
   * Returns bytes sent.
   */
  sendTo(data: Uint8Array, host: string, port = 0): number {
    if (this.#sock.done) throw new Deno.errors.Interrupted("operation canceled");
    // The same destination each time (ping): encode it once.
    let sa = this.#lastTo?.host === host && this.#lastTo.port === port
      ? this.#lastTo.sa
      : undefined;
    if (!sa) {
      sa = encodeInet(host, port);
      this.#lastTo = { host, port, sa };
    }
    const to = () => port ? `${formatHost(host)}:${port}` : formatHost(host);
    const c = this.#sock.c;
    const n = Number(c.sendto(this.#sock.fd, data, BigInt(data.length), 0, sa, sa.length));
    if (n < 0) {
      const err = lastError(c);
      this.#trace?.(this.tag, `sendto(${data.length}, ${to()}) = ${failedCall(err)}`);
      throw err;
    }
    this.#trace?.(this.tag, `sendto(${data.length}, ${to()}) = ${n}`);
    return n;
  }

  /**
   * Receives one message into `buf`, waiting at most `timeoutMs` (forever
   * when undefined): `null` when none came in time or `signal` was aborted.
   * Rejects with `Interrupted` once the socket is closed.
   */
  async receiveMessage(
    buf: Uint8Array,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<RawMessage | null> {
    const until = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      if (this.#sock.done) throw new Deno.errors.Interrupted("operation canceled");
      if (signal?.aborted) return null;
      const got = this.#recvmsg(buf);
      if (got) return got;
      const left = until - performance.now();
      if (left <= 0) return null;
      try {
        await this.#sock.wait(READABLE, {
          signal,
          timeout: left === Infinity ? undefined : Math.ceil(left),
        });
      } catch (err) {
        if (signal?.aborted && !this.#sock.done) return null;
        throw err;
      }
    }
  }

  /** One `recvmsg(MSG_DONTWAIT)`: the message, or `undefined` when none is queued. */
  #recvmsg(buf: Uint8Array): RawMessage | undefined {
    this.#iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
    this.#iov[1] = BigInt(buf.length);
    const hdr = new DataView(this.#msghdr.buffer);
    hdr.setUint32(8, this.#name.length, true);
    hdr.setBigUint64(40, BigInt(this.#control.length), true);
    hdr.setInt32(48, 0, true);
    const c = this.#sock.c;
    const n = Number(c.recvmsg(this.#sock.fd, this.#msghdr, C.MSG_DONTWAIT));
    if (n < 0) {
      const err = lastError(c);
      if (err.errno === C.EAGAIN || err.errno === C.EINTR) return undefined;
      this.#trace?.(this.tag, `recvmsg(${buf.length}) = ${failedCall(err)}`);
      throw err;
    }
    const name = decodeSockaddr(this.#name);
    const from = name && name.family !== "local" ? name.address : "";
    const message: RawMessage = { length: Math.min(n, buf.length), from };
    this.#readControl(Number(hdr.getBigUint64(40, true)), message);
    this.#trace?.(this.tag, `recvmsg(${buf.length}) = ${n} ${formatHost(from)}`);
    return message;
  }

  /** The ancillary data: receive time, TTL / hop limit. */
  #readControl(length: number, message: RawMessage): void {
    const view = new DataView(this.#control.buffer);
    for (let at = 0; at + 16 <= length;) {
      const size = Number(view.getBigUint64(at, true));
      if (size < 16) break;
      const level = view.getInt32(at + 8, true);
      const type = view.getInt32(at + 12, true);
      if (level === C.SOL_SOCKET && type === C.SO_TIMESTAMPNS) {
        message.receivedNs = view.getBigInt64(at + 16, true) * 1_000_000_000n +
          view.getBigInt64(at + 24, true);
      } else if (
        (level === C.IPPROTO_IP && type === C.IP_TTL) ||
        (level === C.IPPROTO_IPV6 && type === C.IPV6_HOPLIMIT)
      ) {
        message.ttl = view.getInt32(at + 16, true);
      }
      at += (size + 7) & ~7;
    }
  }

  /** The kernel's clock now (for round-trip times against {@linkcode RawMessage.receivedNs}). */
  now(): bigint {
    this.#sock.c.clock_gettime(C.CLOCK_REALTIME, new Uint8Array(this.#clock.buffer));
    return this.#clock[0] * 1_000_000_000n + this.#clock[1];
  }

  /**
   * One datagram's payload for `ip://` (an IPv4 raw socket's IPv4 header
   * removed) and its sender, with this socket's protocol.
   */
  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    for (;;) {
      const message = await this.receiveMessage(buf);
      if (!message) continue;
      let n = message.length;
      if (this.family === 4 && this.type === "raw") {
        const ihl = (buf[0] & 0x0f) * 4;
        buf.copyWithin(0, ihl, n);
        n -= ihl;
      }
      if (this.#ownCopy(message.from, buf.subarray(0, n))) continue;
      return [n, { family: this.family, address: message.from, protocol: this.protocol }];
    }
  }

  /**
   * Whether a datagram is the kernel's copy of one this socket sent over
   * loopback: every raw socket of the protocol gets one, the sender's too,
   * and on loopback it cannot be told from the peer's by its addresses.
   * Each datagram sent to a loopback address is remembered (the latest 64,
   * for 5 s) and its first byte-identical arrival from loopback is dropped;
   * the copy is queued during `sendto`, so it comes before any answer.
   */
  #ownCopy(from: string, data: Uint8Array): boolean {
    if (!this.#sentToLoopback.length || !isLoopback(from)) return false;
    const now = performance.now();
    this.#sentToLoopback = this.#sentToLoopback.filter((s) => now - s.at < 5000);
    const i = this.#sentToLoopback.findIndex((s) =>
      s.data.length === data.length && s.data.every((b, j) => b === data[j])
    );
    if (i === -1) return false;
    this.#sentToLoopback.splice(i, 1);
    return true;
  }

  /** Sends one datagram to `to` (an IP address) or the connected peer. */
  send(data: Uint8Array, to?: PeerAddress): Promise<number> {
    try {
      const host = to && "address" in to ? to.address : this.#peer;
      if (!host) throw new Error("a raw socket needs an address to send to");
      const n = this.sendTo(data, host);
      if (isLoopback(host) && this.#hearsItself(host)) {
        this.#sentToLoopback.push({ data: data.slice(), at: performance.now() });
        if (this.#sentToLoopback.length > 64) this.#sentToLoopback.shift();
      }
      return Promise.resolve(n);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Whether a copy of a datagram sent to `host` comes back to this socket:
   * connected, only when its peer is its own address; else when it is bound
   * to any address or to `host`. (A copy that cannot come must not be
   * waited for: the peer's identical answer would be dropped in its place.)
   */
  #hearsItself(host: string): boolean {
    if (this.#peer !== undefined) return this.#peerIsSelf;
    return this.#bound === undefined || this.#bound === host ||
      this.#bound === "0.0.0.0" || this.#bound === "::";
  }

  /** Closes it; a receive in flight ends with `Interrupted`. */
  close(): void {
    if (this.#sock.close()) this.#trace?.(this.tag, "close()");
  }

  /** Resolves once the descriptor is closed and out of the epoll set. */
  get closed(): Promise<void> {
    return this.#sock.closed;
  }

  /** Closes it (`using socket = …`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes it and waits until it is released (`await using socket = …`). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }
}

/**
 * Throws unless raw sockets can be tried here: Linux (else a usage error,
 * exit 2) with `--allow-ffi` granted (else exit 126 naming the flag).
 *
 * @example Usage
 * ```ts ignore
 * requireRawSockets("ping", "127.0.0.1");
 * ```
 */
export function requireRawSockets(op: string, address: string): void {
  if (Deno.build.os !== "linux") {
    throw new UsageError(`${op}: raw sockets are not supported on this system (Linux only)`);
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new SockitError("raw sockets go through libc, which needs --allow-ffi", {
      op,
      address,
      code: "ENOTCAPABLE",
      exitCode: 126,
      hint: "run with --allow-ffi (deno task start and the compiled binary have it)",
    });
  }
}

/** Reads a small text file through libc (Deno refuses `/proc/sys` even with `--allow-read`). */
export function readSysctl(path: string): string | undefined {
  return withLibc((c) => {
    const fd = c.open(new TextEncoder().encode(`${path}\0`), C.O_RDONLY | C.O_CLOEXEC);
    if (fd < 0) return undefined;
    const buf = new Uint8Array(256);
    const n = Number(c.read(fd, buf, 256n));
    c.close(fd);
    return n < 0 ? undefined : new TextDecoder().decode(buf.subarray(0, n)).trim();
  }, undefined);
}

/**
 * The error for a raw socket the system refused (exit 126): names root,
 * CAP_NET_RAW and, for ping, the ping sysctl with its current value.
 */
export function rawSocketDenied(op: string, address: string, forPing: boolean): SockitError {
  const range = forPing ? readSysctl("/proc/sys/net/ipv4/ping_group_range") : undefined;
  const rangeText = range?.replace(/\s+/, " ");
  return new SockitError(
    forPing
      ? "the system allows neither a raw socket nor an ICMP datagram socket to this user"
      : "the system does not allow raw sockets to this user",
    {
      op,
      address,
      code: "EPERM",
      exitCode: 126,
      hint: forPing
        ? `run as root or with CAP_NET_RAW (setcap cap_net_raw+ep on the binary), or add a group of ` +
          `yours to net.ipv4.ping_group_range (now "${rangeText ?? "unreadable"}")`
        : "run as root or with CAP_NET_RAW (setcap cap_net_raw+ep on the binary)",
    },
  );
}

/** Whether an error from {@linkcode RawSocket.open} means "not allowed". */
export function isDenied(err: unknown): boolean {
  const errno = (err as { errno?: number }).errno;
  return errno === C.EPERM || errno === C.EACCES;
}

/** Whether an address literal is a loopback address (127/8, ::1). */
function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1";
}

/** The IP family of an address literal. */
export function familyOf(address: string): 4 | 6 {
  return isIPv6(address) ? 6 : 4;
}

/**
 * An IP literal as it goes on the wire: an IPv4-mapped IPv6 address
 * (`::ffff:127.0.0.1`) is the IPv4 address it carries — no ICMPv6 message
 * reaches one, and traceroute(8) sends IPv4 there — and other IPv6 text is
 * made canonical, as the addresses of received messages are written.
 *
 * @example Usage
 * ```ts
 * import { unmappedAddress } from "./raw.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(unmappedAddress("::ffff:127.0.0.1"), "127.0.0.1");
 * assert.equal(unmappedAddress("0:0::1"), "::1");
 * assert.equal(unmappedAddress("10.0.0.1"), "10.0.0.1");
 * ```
 */
export function unmappedAddress(address: string): string {
  if (!isIPv6(address)) return address;
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255].join(".");
  }
  const zone = address.indexOf("%");
  return formatIPv6(groups) + (zone === -1 ? "" : address.slice(zone));
}

/**
 * Where ICMP probes for `address` go and where their answers come from:
 * {@linkcode unmappedAddress}, and the unspecified address (`0.0.0.0`, `::`)
 * as the local host (`127.0.0.1`, `::1`) — where the kernel delivers a
 * datagram sent to it, as ping and traceroute(8) find.
 *
 * @example Usage
 * ```ts
 * import { probeAddress } from "./raw.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(probeAddress("0.0.0.0"), "127.0.0.1");
 * assert.equal(probeAddress("::"), "::1");
 * assert.equal(probeAddress("::ffff:0.0.0.0"), "127.0.0.1");
 * ```
 */
export function probeAddress(address: string): string {
  const unmapped = unmappedAddress(address);
  if (unmapped === "0.0.0.0") return "127.0.0.1";
  return unmapped.split("%")[0] === "::" ? "::1" : unmapped;
}
