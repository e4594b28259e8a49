/**
 * Unix-domain datagram sockets (`unixgram:/path`, `unixgram:@name`) through
 * libc: Deno's own (`listenDatagram` with `unixpacket`) cannot send while a
 * receive is pending ("socket already in use"), which a relay always has.
 * `listen` binds the path; `connect` binds a temporary path of its own (so
 * that the peer can answer, as `nc -U -u` does), removed when the socket
 * closes, and hears its target only. A peer is carried in the address's
 * `hostname` (its path; empty for an unbound sender, which cannot be
 * answered). Needs `--allow-ffi` (Linux).
 *
 * @module
 */

import type { DatagramSocket } from "./datagram.ts";
import { RECEIVE_BUFFER } from "./datagram.ts";
import { errnoError, SockitError, toSockitError } from "../base/errors.ts";
import { acquireLibc, C, ffiAvailable, lastErrno, PolledFd, releaseLibc } from "../sys/libc.ts";
import type { Libc } from "../sys/libc.ts";
import { isAbstract, socketPath } from "./listener.ts";
import { failedCall } from "../engine/trace.ts";
import type { TraceFn } from "../engine/trace.ts";

let lastId = 0;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `struct sockaddr_un` for a path (`@name`: abstract, without the trailing NUL). */
function sockaddrUn(path: string): Uint8Array {
  const bytes = encoder.encode(socketPath(path));
  const out = new Uint8Array(2 + bytes.length + (isAbstract(path) ? 0 : 1));
  new DataView(out.buffer).setUint16(0, C.AF_UNIX, true);
  out.set(bytes, 2);
  return out;
}

/** The path in a `sockaddr_un` of `length` bytes (`@name` for abstract, "" when unnamed). */
function pathOf(addr: Uint8Array, length: number): string {
  if (length <= 2) return "";
  const raw = addr.subarray(2, length);
  if (raw[0] === 0) return `@${decoder.decode(raw.subarray(1))}`;
  const end = raw.indexOf(0);
  return decoder.decode(end === -1 ? raw : raw.subarray(0, end));
}

class UnixDatagramSocket implements DatagramSocket {
  readonly tag: string;
  readonly address: string;
  readonly maxDatagram = RECEIVE_BUFFER;
  #c: Libc;
  #sock: PolledFd;
  #path: string;
  #peer?: string;
  #removeDir?: string;
  #trace?: TraceFn;
  #from = new Uint8Array(110);
  #fromLength = new Uint32Array(1);

  constructor(
    c: Libc,
    fd: number,
    path: string,
    tag: string,
    options: { peer?: string; removeDir?: string; trace?: TraceFn },
  ) {
    this.#c = c;
    this.#sock = new PolledFd(c, fd, () => this.#removeFiles());
    this.#path = path;
    this.tag = tag;
    this.address = `unixgram:${path}`;
    this.#peer = options.peer;
    this.#removeDir = options.removeDir;
    this.#trace = options.trace;
  }

  /** Resolves once the descriptor is closed (and its files removed). */
  get closed(): Promise<void> {
    return this.#sock.closed;
  }

  async receive(buf: Uint8Array): Promise<[number, Deno.NetAddr]> {
    for (;;) {
      if (this.#sock.done) throw new Deno.errors.Interrupted("operation canceled");
      this.#fromLength[0] = this.#from.length;
      const n = Number(
        this.#c.recvfrom(
          this.#sock.fd,
          buf,
          BigInt(buf.length),
          C.MSG_DONTWAIT,
          this.#from,
          new Uint8Array(this.#fromLength.buffer),
        ),
      );
      if (n >= 0) {
        const path = pathOf(this.#from, this.#fromLength[0]);
        this.#trace?.(this.tag, `recvfrom(${buf.length}) = ${n} unixgram:${path || "(unnamed)"}`);
        // A connected side hears only its target.
        if (this.#peer !== undefined && path !== this.#peer) continue;
        return [n, { transport: "udp", hostname: path, port: 0 }];
      }
      const errno = lastErrno(this.#c);
      if (errno !== C.EAGAIN && errno !== C.EINTR) {
        throw toSockitError(errnoError(errno), "recv", this.address);
      }
      await this.#sock.wait(100);
    }
  }

  send(data: Uint8Array, to?: Deno.NetAddr): Promise<number> {
    const path = to?.hostname ?? this.#peer;
    if (!path) {
      return Promise.reject(
        new SockitError("the sender has no address (an unbound socket): it cannot be answered", {
          op: "send",
          address: "unixgram:(unnamed)",
          code: "EDESTADDRREQ",
        }),
      );
    }
    const sa = sockaddrUn(path);
    const n = Number(this.#c.sendto(this.#sock.fd, data, BigInt(data.length), 0, sa, sa.length));
    if (n < 0) {
      const err = errnoError(lastErrno(this.#c));
      this.#trace?.(this.tag, `sendto(${data.length}, unixgram:${path}) = ${failedCall(err)}`);
      return Promise.reject(toSockitError(err, "send", `unixgram:${path}`));
    }
    this.#trace?.(this.tag, `sendto(${data.length}, unixgram:${path}) = ${n}`);
    return Promise.resolve(n);
  }

  formatPeer(addr: Deno.NetAddr): string {
    return addr.hostname || "(unnamed)";
  }

  close(): void {
    if (this.#sock.close()) this.#trace?.(this.tag, "close()");
  }

  /** Removes the socket's file (not an abstract one's) and the client's temporary directory. */
  #removeFiles(): void {
    if (!isAbstract(this.#path)) {
      try {
        Deno.removeSync(this.#path);
      } catch {
        // Gone already.
      }
    }
    if (this.#removeDir) {
      try {
        Deno.removeSync(this.#removeDir);
      } catch {
        // Not empty or gone: leave it.
      }
    }
  }
}

/** socket(AF_UNIX, SOCK_DGRAM) + bind(path), traced. */
function open(path: string, tag: string, trace?: TraceFn): [Libc, number] {
  if (!ffiAvailable()) {
    throw new SockitError("Unix datagram sockets go through libc, which needs --allow-ffi", {
      op: "bind",
      address: `unixgram:${path}`,
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
  const c = acquireLibc();
  const fd = c.socket(C.AF_UNIX, C.SOCK_DGRAM | C.SOCK_CLOEXEC, 0);
  trace?.(tag, `socket(AF_UNIX, SOCK_DGRAM) = ${fd}`);
  if (fd < 0) {
    const err = errnoError(lastErrno(c));
    releaseLibc();
    throw toSockitError(err, "bind", `unixgram:${path}`);
  }
  const sa = sockaddrUn(path);
  if (c.bind(fd, sa, sa.length) < 0) {
    const err = errnoError(lastErrno(c));
    trace?.(tag, `bind(unixgram:${path}) = ${failedCall(err)}`);
    c.close(fd);
    releaseLibc();
    throw toSockitError(err, "bind", `unixgram:${path}`);
  }
  trace?.(tag, `bind(unixgram:${path}) = 0`);
  return [c, fd];
}

/**
 * Binds a Unix datagram socket at `path` (`@name`: abstract) for `listen`;
 * the file is removed when it closes.
 *
 * @example Usage
 * ```ts ignore
 * const socket = bindUnixDatagram("/tmp/log.sock");
 * ```
 */
export function bindUnixDatagram(path: string, options: { trace?: TraceFn } = {}): DatagramSocket {
  const tag = `G${++lastId}`;
  const [c, fd] = open(path, tag, options.trace);
  return new UnixDatagramSocket(c, fd, path, tag, options);
}

/**
 * A Unix datagram socket talking to `target`: bound to a temporary path of
 * its own (or to `bindPath`, `--source unixgram:PATH`), removed when it
 * closes.
 *
 * @example Usage
 * ```ts ignore
 * const socket = connectUnixDatagram("/dev/log");
 * ```
 */
export function connectUnixDatagram(
  target: string,
  options: { trace?: TraceFn; bindPath?: string } = {},
): DatagramSocket {
  const tag = `G${++lastId}`;
  if (options.bindPath !== undefined) {
    const [c, fd] = open(options.bindPath, tag, options.trace);
    return new UnixDatagramSocket(c, fd, options.bindPath, tag, { ...options, peer: target });
  }
  const dir = Deno.makeTempDirSync({ prefix: "sockit-" });
  const path = `${dir}/client.sock`;
  let opened: [Libc, number];
  try {
    opened = open(path, tag, options.trace);
  } catch (err) {
    Deno.removeSync(dir, { recursive: true });
    throw err;
  }
  return new UnixDatagramSocket(opened[0], opened[1], path, tag, {
    ...options,
    peer: target,
    removeDir: dir,
  });
}
