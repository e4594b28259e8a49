/**
 * Unix-domain datagram sockets (`unixgram:/path`, `unixgram:@name`) through
 * libc: Deno's own (`listenDatagram` with `unixpacket`) cannot send while a
 * receive is pending ("socket already in use"), which a relay always has.
 * `listen` binds the path; `connect` binds a temporary path of its own (so
 * that the peer can answer, as `nc -U -u` does), removed when the socket
 * closes, and hears its target only. A peer is a Unix address (its path, or
 * an abstract name; empty for an unbound sender, which cannot be answered).
 * Waits are in the one epoll set (`sys/epoll.ts`). Needs `--allow-ffi`
 * (Linux).
 *
 * @module
 */

import type { DatagramSocket, PeerAddress } from "./datagram.ts";
import { formatPeer, RECEIVE_BUFFER } from "./datagram.ts";
import { SockitError, toSockitError } from "../base/errors.ts";
import { C } from "../sys/constants.ts";
import { READABLE } from "../sys/epoll.ts";
import { ffiAvailable, lastError } from "../sys/libc.ts";
import {
  decodeSockaddr,
  encodeSockaddr,
  SOCKADDR_SIZE,
  type UnixAddress,
} from "../sys/sockaddr.ts";
import { LibcSocket } from "../sys/socket.ts";
import { formatUnixName } from "./ip.ts";
import type { UnixName } from "./ip.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

let lastId = 0;

/** A socket name as a socket address. */
function unixAddress(name: UnixName): UnixAddress {
  return { family: "local", path: name.path, abstract: name.abstract };
}

class UnixDatagramSocket implements DatagramSocket {
  readonly tag: string;
  readonly address: string;
  readonly localAddress: UnixAddress;
  readonly maxDatagram = RECEIVE_BUFFER;
  #sock: LibcSocket;
  #peer?: UnixAddress;
  #trace?: TraceFn;
  #from = new Uint8Array(SOCKADDR_SIZE);
  #fromLength = new Uint32Array(1);

  constructor(
    sock: LibcSocket,
    name: UnixName,
    tag: string,
    options: { peer?: UnixName; removeDir?: string; trace?: TraceFn },
  ) {
    this.#sock = sock;
    this.localAddress = unixAddress(name);
    this.tag = tag;
    this.address = `unixgram:${formatUnixName(name)}`;
    this.#peer = options.peer === undefined ? undefined : unixAddress(options.peer);
    this.#trace = options.trace;
    sock.onClose(() => removeFiles(name, options.removeDir));
  }

  /** Resolves once the descriptor is closed (and its files removed). */
  get closed(): Promise<void> {
    return this.#sock.closed;
  }

  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    const c = this.#sock.c;
    for (;;) {
      if (this.#sock.done) throw new Deno.errors.Interrupted("operation canceled");
      this.#fromLength[0] = this.#from.length;
      const n = Number(
        c.recvfrom(
          this.#sock.fd,
          buf,
          BigInt(buf.length),
          C.MSG_DONTWAIT,
          this.#from,
          new Uint8Array(this.#fromLength.buffer),
        ),
      );
      if (n >= 0) {
        const decoded = decodeSockaddr(this.#from, this.#fromLength[0]);
        const from: UnixAddress = decoded?.family === "local"
          ? decoded
          : { family: "local", path: "", abstract: false };
        this.#trace?.(this.tag, `recvfrom(${buf.length}) = ${n} unixgram:${formatPeer(from)}`);
        // A connected side hears only its target.
        const peer = this.#peer;
        if (peer && (from.path !== peer.path || from.abstract !== peer.abstract)) continue;
        return [n, from];
      }
      const err = lastError(c);
      if (err.errno !== C.EAGAIN && err.errno !== C.EINTR) {
        throw toSockitError(err, "recv", this.address);
      }
      await this.#sock.wait(READABLE);
    }
  }

  send(data: Uint8Array, to?: PeerAddress): Promise<number> {
    const peer = to?.family === "local" ? to : this.#peer;
    if (!peer || peer.path === "") {
      return Promise.reject(
        new SockitError("the sender has no address (an unbound socket): it cannot be answered", {
          op: "send",
          address: "unixgram:(unnamed)",
          code: "EDESTADDRREQ",
        }),
      );
    }
    const name = `unixgram:${formatPeer(peer)}`;
    let sa: Uint8Array;
    try {
      sa = encodeSockaddr(peer);
    } catch (err) {
      return Promise.reject(toSockitError(err, "send", name));
    }
    const c = this.#sock.c;
    const n = Number(c.sendto(this.#sock.fd, data, BigInt(data.length), 0, sa, sa.length));
    if (n < 0) {
      const err = lastError(c);
      this.#trace?.(this.tag, `sendto(${data.length}, ${name}) = ${failedCall(err)}`);
      return Promise.reject(toSockitError(err, "send", name));
    }
    this.#trace?.(this.tag, `sendto(${data.length}, ${name}) = ${n}`);
    return Promise.resolve(n);
  }

  close(): void {
    if (this.#sock.close()) this.#trace?.(this.tag, "close()");
  }
}

/** Removes a socket's file (not an abstract one's) and a client's temporary directory. */
function removeFiles(name: UnixName, dir?: string): void {
  if (!name.abstract) {
    try {
      Deno.removeSync(name.path);
    } catch {
      // Gone already.
    }
  }
  if (dir) {
    try {
      Deno.removeSync(dir);
    } catch {
      // Not empty or gone: leave it.
    }
  }
}

/** socket(AF_UNIX, SOCK_DGRAM) + bind(name), traced. */
function open(name: UnixName, tag: string, trace?: TraceFn): LibcSocket {
  const path = formatUnixName(name);
  if (!ffiAvailable()) {
    throw new SockitError("Unix datagram sockets go through libc, which needs --allow-ffi", {
      op: "bind",
      address: `unixgram:${path}`,
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
  let sock: LibcSocket;
  try {
    sock = LibcSocket.open(C.AF_UNIX, C.SOCK_DGRAM, 0);
  } catch (err) {
    trace?.(tag, `socket(AF_UNIX, SOCK_DGRAM) = ${failedCall(err)}`);
    throw toSockitError(err, "bind", `unixgram:${path}`);
  }
  trace?.(tag, `socket(AF_UNIX, SOCK_DGRAM) = ${sock.fd}`);
  try {
    sock.bind(unixAddress(name));
  } catch (err) {
    trace?.(tag, `bind(unixgram:${path}) = ${failedCall(err)}`);
    // Not bound: nothing of it to remove.
    sock.close();
    throw toSockitError(err, "bind", `unixgram:${path}`);
  }
  trace?.(tag, `bind(unixgram:${path}) = 0`);
  return sock;
}

/**
 * Binds a Unix datagram socket at a path (or an abstract name) for
 * `listen`; the file is removed when it closes.
 *
 * @example Usage
 * ```ts ignore
 * const socket = bindUnixDatagram({ path: "/tmp/log.sock", abstract: false });
 * ```
 */
export function bindUnixDatagram(
  name: UnixName,
  options: { trace?: TraceFn } = {},
): DatagramSocket {
  const tag = `G${++lastId}`;
  return new UnixDatagramSocket(open(name, tag, options.trace), name, tag, options);
}

/**
 * A Unix datagram socket talking to `target`: bound to a temporary path of
 * its own (or to `bind`, `--source unixgram:PATH`), removed when it closes.
 *
 * @example Usage
 * ```ts ignore
 * const socket = connectUnixDatagram({ path: "/dev/log", abstract: false });
 * ```
 */
export function connectUnixDatagram(
  target: UnixName,
  options: { trace?: TraceFn; bind?: UnixName } = {},
): DatagramSocket {
  const tag = `G${++lastId}`;
  if (options.bind !== undefined) {
    const sock = open(options.bind, tag, options.trace);
    return new UnixDatagramSocket(sock, options.bind, tag, { ...options, peer: target });
  }
  const dir = Deno.makeTempDirSync({ prefix: "sockit-" });
  const path: UnixName = { path: `${dir}/client.sock`, abstract: false };
  let sock: LibcSocket;
  try {
    sock = open(path, tag, options.trace);
  } catch (err) {
    Deno.removeSync(dir, { recursive: true });
    throw err;
  }
  return new UnixDatagramSocket(sock, path, tag, {
    ...options,
    peer: target,
    removeDir: dir,
  });
}
