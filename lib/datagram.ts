/**
 * UDP sockets for `listen udp://`, `echo udp://` and `connect udp://`.
 *
 * Servers use Deno's datagram API (`Deno.listenDatagram`, which needs
 * `--unstable-net`). A client should learn that nothing listens at the other
 * end: the kernel reports an ICMP "port unreachable" as ECONNREFUSED, but
 * only on a *connected* UDP socket, and Deno offers none (`node:dgram`'s
 * `connect()` only remembers the address). So the client socket is made with
 * libc through FFI — socket(), connect(), send(), poll()+recv() — when
 * `--allow-ffi` is granted; without it, sockit falls back to an unconnected
 * socket that keeps only the target's replies and cannot see refusals.
 *
 * @module
 */

import { formatHost, hostOf, isIPv4, isIPv6 } from "./address.ts";
import type { NetEndpoint } from "./address.ts";
import { SockitError, toSockitError, UsageError } from "./errors.ts";
import { systemLookup } from "./stream.ts";
import type { Lookup } from "./stream.ts";
import { addressFamily, failedCall } from "./trace.ts";
import type { TraceFn } from "./trace.ts";

/** The largest UDP payload over IPv4 and over IPv6. */
export const MAX_DATAGRAM = { 4: 65507, 6: 65527 } as const;

/** A receive buffer that no datagram overflows (Deno truncates silently). */
export const RECEIVE_BUFFER = 65536;

/** A UDP socket, bound or connected. */
export interface DatagramSocket {
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
}

function formatNet(addr: Deno.NetAddr): string {
  return `${formatHost(addr.hostname)}:${addr.port}`;
}

function needUnstableNet(): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new SockitError("UDP needs Deno's datagram API, which is behind --unstable-net", {
      op: "udp",
      hint:
        "deno.json sets it: run from the project directory (or with --config), or pass --unstable-net",
    });
  }
}

/** A datagram socket from `Deno.listenDatagram`. */
class BoundSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  #conn: Deno.DatagramConn;
  #trace?: TraceFn;
  #tag: string;
  #closed = false;

  constructor(conn: Deno.DatagramConn, family: 4 | 6, tag: string, trace?: TraceFn) {
    this.#conn = conn;
    this.address = formatNet(conn.addr as Deno.NetAddr);
    this.maxDatagram = MAX_DATAGRAM[family];
    this.#trace = trace;
    this.#tag = tag;
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    const [data, from] = await this.#conn.receive(buf);
    const addr = from as Deno.NetAddr;
    this.#trace?.(this.#tag, `recvfrom(${buf.length}) = ${data.length} ${formatNet(addr)}`);
    return [data.length, addr];
  }

  async send(data: Uint8Array, to?: Deno.NetAddr): Promise<number> {
    if (!to) throw new Error("a bound datagram socket needs an address to send to");
    try {
      const n = await this.#conn.send(data, to);
      this.#trace?.(this.#tag, `sendto(${data.length}, ${formatNet(to)}) = ${n}`);
      return n;
    } catch (err) {
      this.#trace?.(this.#tag, `sendto(${data.length}, ${formatNet(to)}) = ${failedCall(err)}`);
      throw err;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#trace?.(this.#tag, "close()");
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

let lastSocketId = 0;

/** Options of {@linkcode bindDatagram} and {@linkcode connectDatagram}. */
export interface DatagramOptions {
  /** For the port-only form or a host name: IPv4 (`4`) or IPv6 (`6`). */
  family?: 4 | 6;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** The resolver for host names. */
  lookup?: Lookup;
}

/**
 * Binds a UDP socket (port 0: any free port) with `Deno.listenDatagram`.
 *
 * @example Usage
 * ```ts
 * import { bindDatagram } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * const sock = bindDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * assert.match(sock.address, /^127\.0\.0\.1:\d+$/);
 * sock.close();
 * ```
 */
export function bindDatagram(endpoint: NetEndpoint, options: DatagramOptions = {}): DatagramSocket {
  needUnstableNet();
  const hostname = hostOf(endpoint, "listen", options.family);
  const family = isIPv6(hostname) ? 6 : 4;
  const tag = `U${++lastSocketId}`;
  const requested = `${formatHost(hostname)}:${endpoint.port}`;
  options.trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  try {
    const conn = Deno.listenDatagram({ transport: "udp", hostname, port: endpoint.port });
    options.trace?.(tag, `bind(${requested}) = 0`);
    return new BoundSocket(conn, family, tag, options.trace);
  } catch (err) {
    options.trace?.(tag, `bind(${requested}) = ${failedCall(err)}`);
    throw toSockitError(err, "listen", `udp://${requested}`);
  }
}

// ---- a connected socket through libc -----------------------------------------

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ERROR = 4;
const POLLIN = 1;
const MSG_DONTWAIT = 0x40;
const ERRNO: Record<number, string> = {
  111: "ConnectionRefused",
  90: "EMSGSIZE",
  101: "NetworkUnreachable",
  113: "HostUnreachable",
  11: "EAGAIN",
};

const LIBC_SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];
let libc: Libc | undefined;

function openLibc(): Libc {
  libc ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  return libc;
}

function errno(c: Libc): number {
  const ptr = c.__errno_location();
  return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
}

/** An OS error number as the Deno error sockit maps elsewhere. */
function osError(code: number): Error {
  const name = ERRNO[code];
  const Ctor = name
    ? (Deno.errors as unknown as Record<string, ErrorConstructor>)[name]
    : undefined;
  if (Ctor) return new Ctor(`os error ${code}`);
  const err = new Error(
    name === "EMSGSIZE" ? "Message too long (os error 90)" : `os error ${code}`,
  );
  (err as { code?: string }).code = name;
  return err;
}

function sockaddr(hostname: string, port: number): Uint8Array {
  if (isIPv4(hostname)) {
    const buf = new Uint8Array(16);
    const view = new DataView(buf.buffer);
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, port, false);
    hostname.split(".").forEach((part, i) => (buf[4 + i] = Number(part)));
    return buf;
  }
  const buf = new Uint8Array(28);
  const view = new DataView(buf.buffer);
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, port, false);
  const groups = expandIPv6(hostname);
  groups.forEach((g, i) => view.setUint16(8 + 2 * i, g, false));
  return buf;
}

/** The eight 16-bit groups of an IPv6 literal (no zone). */
function expandIPv6(address: string): number[] {
  let text = address.split("%")[0];
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const [a, b, c, d] = text.slice(lastColon + 1).split(".").map(Number);
    tail = [(a << 8) | b, (c << 8) | d];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const gap = text.indexOf("::");
  if (gap === -1) return [...parse(text), ...tail];
  const front = parse(text.slice(0, gap));
  const back = [...parse(text.slice(gap + 2)), ...tail];
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

function readSockaddr(buf: Uint8Array): Deno.NetAddr {
  const view = new DataView(buf.buffer, buf.byteOffset);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === AF_INET) {
    return { transport: "udp", hostname: [...buf.subarray(4, 8)].join("."), port };
  }
  const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false).toString(16));
  const hostname = groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
  return { transport: "udp", hostname, port };
}

/** A UDP socket connected with connect(2): refusals by ICMP are reported. */
class ConnectedSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  #c: Libc;
  #fd: number;
  #peer: Deno.NetAddr;
  #trace?: TraceFn;
  #tag: string;
  #closed = false;
  #polling = false;
  #pollfd = new Uint8Array(8);

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
    this.#tag = tag;
    this.#trace = trace;
    const local = new Uint8Array(28);
    const len = new Uint32Array([28]);
    c.getsockname(fd, local, new Uint8Array(len.buffer));
    this.address = formatNet(readSockaddr(local));
    const view = new DataView(this.#pollfd.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, POLLIN, true);
  }

  /** A pending error (e.g. ECONNREFUSED from an ICMP port unreachable), cleared by reading it. */
  #pendingError(): number {
    const value = new Int32Array(1);
    const len = new Uint32Array([4]);
    this.#c.getsockopt(
      this.#fd,
      SOL_SOCKET,
      SO_ERROR,
      new Uint8Array(value.buffer),
      new Uint8Array(len.buffer),
    );
    return value[0];
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.Interrupted("operation canceled");
      this.#polling = true;
      // poll() runs on a helper thread; a timeout lets close() take effect soon.
      const ready = await this.#c.poll(this.#pollfd, 1n, 200);
      this.#polling = false;
      if (this.#closed) {
        this.#release();
        throw new Deno.errors.Interrupted("operation canceled");
      }
      if (ready <= 0) continue;
      const pending = this.#pendingError();
      if (pending) {
        this.#trace?.(
          this.#tag,
          `recv(${buf.length}) = -1 ${pending === 111 ? "ECONNREFUSED" : pending}`,
        );
        throw osError(pending);
      }
      const n = Number(this.#c.recv(this.#fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n < 0) {
        const code = errno(this.#c);
        if (code === 11) continue;
        this.#trace?.(this.#tag, `recv(${buf.length}) = -1 ${code}`);
        throw osError(code);
      }
      this.#trace?.(this.#tag, `recv(${buf.length}) = ${n}`);
      return [n, this.#peer];
    }
  }

  send(data: Uint8Array): Promise<number> {
    const n = Number(this.#c.send(this.#fd, data, BigInt(data.length), 0));
    if (n < 0) {
      const err = osError(errno(this.#c));
      this.#trace?.(this.#tag, `send(${data.length}) = ${failedCall(err)}`);
      return Promise.reject(err);
    }
    this.#trace?.(this.#tag, `send(${data.length}) = ${n}`);
    return Promise.resolve(n);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#trace?.(this.#tag, "close()");
    // A poll in flight still uses the descriptor: it is closed when that returns.
    if (!this.#polling) this.#release();
  }

  #release(): void {
    if (this.#fd >= 0) this.#c.close(this.#fd);
    this.#fd = -1;
  }
}

/** An unconnected socket that talks to one peer and ignores other senders. */
class PeerSocket implements DatagramSocket {
  readonly address: string;
  readonly maxDatagram: number;
  #inner: DatagramSocket;
  #peer: Deno.NetAddr;

  constructor(inner: DatagramSocket, peer: Deno.NetAddr) {
    this.#inner = inner;
    this.#peer = peer;
    this.address = inner.address;
    this.maxDatagram = inner.maxDatagram;
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

/** Whether connected UDP sockets (and so ICMP refusals) are available. */
export function canConnectDatagram(): boolean {
  return Deno.build.os === "linux" &&
    Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

/**
 * A UDP socket for talking to `endpoint`: connected through libc when
 * `--allow-ffi` is granted (ICMP port unreachable then rejects `receive()`
 * or `send()` with ConnectionRefused), else an unconnected socket that keeps
 * only the peer's datagrams.
 *
 * @example Usage
 * ```ts
 * import { bindDatagram, connectDatagram } from "./datagram.ts";
 * import assert from "node:assert/strict";
 *
 * const server = bindDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const port = Number(server.address.split(":")[1]);
 * const client = await connectDatagram({ transport: "udp", hostname: "127.0.0.1", port });
 * await client.send(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(16);
 * const [n, from] = await server.receive(buf);
 * await server.send(buf.subarray(0, n), from);
 * const [m] = await client.receive(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, m)), "hi");
 * client.close();
 * server.close();
 * ```
 */
export async function connectDatagram(
  endpoint: NetEndpoint,
  options: DatagramOptions = {},
): Promise<DatagramSocket> {
  const host = hostOf(endpoint, "connect", options.family);
  const address = `udp://${formatHost(host)}:${endpoint.port}`;
  let hostname = host;
  if (!isIPv4(host) && !isIPv6(host)) {
    try {
      hostname = (await (options.lookup ?? systemLookup)(host, options.family))[0];
    } catch (err) {
      throw toSockitError(err, "connect", address);
    }
    if (!hostname) {
      throw new SockitError("name not found", { op: "connect", address, code: "ENOTFOUND" });
    }
  } else if (options.family && options.family !== (isIPv4(host) ? 4 : 6)) {
    throw new UsageError(
      `${address}: an IPv${isIPv4(host) ? 4 : 6} address, but -${options.family} was given`,
    );
  }
  const family = isIPv6(hostname) ? 6 : 4;
  const peer: Deno.NetAddr = { transport: "udp", hostname, port: endpoint.port };
  const tag = `U${++lastSocketId}`;
  const trace = options.trace;
  if (!canConnectDatagram()) {
    const bound = bindDatagram({
      transport: "udp",
      hostname: family === 6 ? "::" : "0.0.0.0",
      port: 0,
    }, { trace });
    return new PeerSocket(bound, peer);
  }
  const c = openLibc();
  trace?.(tag, `socket(${addressFamily(hostname)}, SOCK_DGRAM)`);
  const fd = c.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw toSockitError(osError(errno(c)), "connect", address);
  const sa = sockaddr(hostname, endpoint.port);
  if (c.connect(fd, sa, sa.length) < 0) {
    const err = osError(errno(c));
    trace?.(tag, `connect(${formatNet(peer)}) = ${failedCall(err)}`);
    c.close(fd);
    throw toSockitError(err, "connect", address);
  }
  trace?.(tag, `connect(${formatNet(peer)}) = 0`);
  return new ConnectedSocket(c, fd, peer, family, tag, trace);
}
