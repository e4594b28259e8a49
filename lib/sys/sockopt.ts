/**
 * Socket options as data (socat's `optdesc` idea): each option sockit sets
 * is one row — its level and name, how its value is encoded, how `--trace`
 * writes it, the flag that asks for it, and the call a Deno connection has
 * for it, if any — and {@linkcode applySocketOptions} is the one function
 * that sets a list of them on a socket.
 *
 * @module
 */

import { errnoError, toSockitError } from "../base/errors.ts";
import { formatIPv6, ipv6Groups } from "../net/ip.ts";
import { C } from "./constants.ts";
import { acquireLibc, ffiAvailable, lastErrno, releaseLibc } from "./libc.ts";

/** How a value of type `V` goes to `setsockopt` and into a trace line. */
interface Codec<V> {
  /** The bytes of `optval`. */
  encode(value: V): Uint8Array;
  /** The value as `--trace` writes it. */
  text(value: V): string;
}

/** A C `int`. */
const int: Codec<number> = {
  encode: (value) => new Uint8Array(new Int32Array([value]).buffer),
  text: (value) => String(value),
};

/** A C `int` that is 0 or 1. */
const flag: Codec<boolean> = {
  encode: (value) => int.encode(value ? 1 : 0),
  text: (value) => (value ? "1" : "0"),
};

/** An IPv4 group and the address of the interface to join it on. */
export interface Membership4 {
  /** The group (`239.1.2.3`). */
  group: string;
  /** The interface's address (`0.0.0.0`: the system's choice). */
  iface: string;
}

/** An IPv6 group and the index of the interface to join it on. */
export interface Membership6 {
  /** The group (`ff02::1:3`). */
  group: string;
  /** The interface's index (0: the system's choice). */
  index: number;
}

const ipv4Bytes = (address: string) => address.split(".").map(Number);

/** `struct ip_mreq`: the group, then the interface's address. */
const mreq4: Codec<Membership4> = {
  encode: ({ group, iface }) => new Uint8Array([...ipv4Bytes(group), ...ipv4Bytes(iface)]),
  text: ({ group, iface }) => `${group}@${iface}`,
};

/** `struct ipv6_mreq`: the group, then the interface's index. */
const mreq6: Codec<Membership6> = {
  encode: ({ group, index }) => {
    const buf = new Uint8Array(20);
    const view = new DataView(buf.buffer);
    ipv6Groups(group).forEach((g, i) => view.setUint16(2 * i, g, false));
    view.setUint32(16, index, true);
    return buf;
  },
  text: ({ group, index }) => `${formatIPv6(ipv6Groups(group))}@${index}`,
};

/** ICMP_FILTER: a 32-bit mask of the ICMP types (0–31) to drop; the value lists those to pass. */
const icmpFilter: Codec<number[]> = {
  encode: (pass) => {
    let mask = 0xffffffff;
    for (const t of pass) mask &= ~(1 << t);
    return new Uint8Array(new Uint32Array([mask >>> 0]).buffer);
  },
  text: (pass) => pass.join("|"),
};

/** ICMP6_FILTER: 256 bits, a set bit drops that type; the value lists those to pass. */
const icmp6Filter: Codec<number[]> = {
  encode: (pass) => {
    const bits = new Uint32Array(8).fill(0xffffffff);
    for (const t of pass) bits[t >> 5] &= ~(1 << (t & 31));
    return new Uint8Array(bits.buffer);
  },
  text: (pass) => pass.join("|"),
};

/** One row of the table. */
interface OptionDesc<V> extends Codec<V> {
  /** `setsockopt`'s level. */
  level: number;
  /** `setsockopt`'s option name. */
  name: number;
  /** The flag that asks for it (for messages). */
  flag?: string;
  /** The call a Deno TCP connection has for it (no descriptor needed). */
  deno?: "setNoDelay" | "setKeepAlive";
}

/** Every socket option sockit sets, by the name `--trace` gives it. */
export const SOCKET_OPTIONS = {
  SO_REUSEPORT: { level: C.SOL_SOCKET, name: C.SO_REUSEPORT, flag: "--reuseport", ...flag },
  SO_BROADCAST: { level: C.SOL_SOCKET, name: C.SO_BROADCAST, flag: "--broadcast", ...flag },
  SO_KEEPALIVE: {
    level: C.SOL_SOCKET,
    name: C.SO_KEEPALIVE,
    flag: "--keepalive",
    deno: "setKeepAlive",
    ...flag,
  },
  SO_TIMESTAMPNS: { level: C.SOL_SOCKET, name: C.SO_TIMESTAMPNS, ...flag },
  TCP_NODELAY: {
    level: C.IPPROTO_TCP,
    name: C.TCP_NODELAY,
    flag: "--nodelay",
    deno: "setNoDelay",
    ...flag,
  },
  TCP_KEEPIDLE: { level: C.IPPROTO_TCP, name: C.TCP_KEEPIDLE, flag: "--keepalive", ...int },
  TCP_KEEPINTVL: { level: C.IPPROTO_TCP, name: C.TCP_KEEPINTVL, flag: "--keepalive", ...int },
  TCP_KEEPCNT: { level: C.IPPROTO_TCP, name: C.TCP_KEEPCNT, flag: "--keepalive", ...int },
  IP_TTL: { level: C.IPPROTO_IP, name: C.IP_TTL, flag: "--ttl", ...int },
  IPV6_UNICAST_HOPS: { level: C.IPPROTO_IPV6, name: C.IPV6_UNICAST_HOPS, flag: "--ttl", ...int },
  IP_RECVTTL: { level: C.IPPROTO_IP, name: C.IP_RECVTTL, ...flag },
  IPV6_RECVHOPLIMIT: { level: C.IPPROTO_IPV6, name: C.IPV6_RECVHOPLIMIT, ...flag },
  IP_MULTICAST_TTL: {
    level: C.IPPROTO_IP,
    name: C.IP_MULTICAST_TTL,
    flag: "--multicast-ttl",
    ...int,
  },
  IP_MULTICAST_LOOP: {
    level: C.IPPROTO_IP,
    name: C.IP_MULTICAST_LOOP,
    flag: "--multicast-loop",
    ...flag,
  },
  IPV6_MULTICAST_HOPS: {
    level: C.IPPROTO_IPV6,
    name: C.IPV6_MULTICAST_HOPS,
    flag: "--multicast-ttl",
    ...int,
  },
  IPV6_MULTICAST_LOOP: {
    level: C.IPPROTO_IPV6,
    name: C.IPV6_MULTICAST_LOOP,
    flag: "--multicast-loop",
    ...flag,
  },
  IP_ADD_MEMBERSHIP: {
    level: C.IPPROTO_IP,
    name: C.IP_ADD_MEMBERSHIP,
    flag: "--multicast-join",
    ...mreq4,
  },
  IPV6_ADD_MEMBERSHIP: {
    level: C.IPPROTO_IPV6,
    name: C.IPV6_ADD_MEMBERSHIP,
    flag: "--multicast-join",
    ...mreq6,
  },
  ICMP_FILTER: { level: C.SOL_RAW, name: C.ICMP_FILTER, ...icmpFilter },
  ICMP6_FILTER: { level: C.IPPROTO_ICMPV6, name: C.ICMP6_FILTER, ...icmp6Filter },
} as const satisfies Record<string, OptionDesc<never>>;

/** The name of an option in {@linkcode SOCKET_OPTIONS}. */
export type OptionName = keyof typeof SOCKET_OPTIONS;

/** The value an option takes. */
export type OptionValue<N extends OptionName> = Parameters<typeof SOCKET_OPTIONS[N]["encode"]>[0];

/** One option and its value: what {@linkcode applySocketOptions} sets. */
export type Setting = { [N in OptionName]: readonly [N, OptionValue<N>] }[OptionName];

/** Where options are set. */
export interface OptionTarget {
  /** The descriptor, when it is known (a libc socket). */
  fd?: number;
  /** Looks the descriptor up, for an option that needs one (a Deno connection's). */
  findFd?(): number | undefined;
  /** Deno's call for TCP_NODELAY. */
  setNoDelay?(on: boolean): void;
  /** Deno's call for SO_KEEPALIVE. */
  setKeepAlive?(on: boolean): void;
}

/** Why an option could not be set. */
export class SocketOptionError extends Error {
  /**
   * `failed`: the system refused it (`errno`); `no-ffi`: it goes through
   * libc, which may not be used; `no-fd`: the descriptor was not found.
   */
  readonly kind: "failed" | "no-ffi" | "no-fd";
  /** The option's name (`IP_TTL`). */
  readonly option: OptionName;
  /** The flag that asked for it, when one did. */
  readonly flag?: string;
  /** The system's error number (`failed`). */
  readonly errno?: number;
  /** The errno name: the system's (`EINVAL`), or `ENOTCAPABLE` when libc or the descriptor is missing. */
  readonly code: string;

  /** An error for `option`; `cause` is the system's error when it refused. */
  constructor(
    kind: "failed" | "no-ffi" | "no-fd",
    option: OptionName,
    errno?: number,
  ) {
    const cause = errno === undefined ? undefined : errnoError(errno);
    const flag: string | undefined = (SOCKET_OPTIONS[option] as OptionDesc<never>).flag;
    const why = kind === "failed"
      ? (cause!.message)
      : kind === "no-ffi"
      ? "it goes through libc, which needs --allow-ffi"
      : "the connection's descriptor was not found";
    super(`cannot set ${option}${flag ? ` (${flag})` : ""}: ${why}`, { cause });
    this.name = "SocketOptionError";
    this.kind = kind;
    this.option = option;
    this.flag = flag;
    this.errno = errno;
    this.code = cause ? toSockitError(cause, "setsockopt").code ?? "EFAIL" : "ENOTCAPABLE";
  }
}

/**
 * The trace text of setting an option: `setsockopt(IP_TTL, 7)`.
 *
 * @example Usage
 * ```ts
 * import { optionCall } from "./sockopt.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(optionCall(["IP_ADD_MEMBERSHIP", { group: "239.1.2.3", iface: "0.0.0.0" }]), "setsockopt(IP_ADD_MEMBERSHIP, 239.1.2.3@0.0.0.0)");
 * ```
 */
export function optionCall(setting: Setting): string {
  const [name, value] = setting;
  const desc = SOCKET_OPTIONS[name] as OptionDesc<typeof value>;
  return `setsockopt(${name}, ${desc.text(value)})`;
}

/**
 * Sets `settings` on a socket, in order: each through Deno's own call where
 * the target has one and no descriptor is known, else `setsockopt(2)` on
 * the descriptor (known, or looked up once). `report` hears each call and
 * its failure. The first failure stops it: a {@linkcode SocketOptionError}.
 *
 * @example Usage
 * ```ts
 * import { applySocketOptions } from "./sockopt.ts";
 * import { LibcSocket } from "./socket.ts";
 * import { C } from "./constants.ts";
 * import assert from "node:assert/strict";
 *
 * await using socket = LibcSocket.open(C.AF_INET, C.SOCK_DGRAM, 0);
 * const calls: string[] = [];
 * applySocketOptions(socket, [["SO_REUSEPORT", true], ["IP_TTL", 9]], (call) => calls.push(call));
 * assert.deepEqual(calls, ["setsockopt(SO_REUSEPORT, 1)", "setsockopt(IP_TTL, 9)"]);
 * ```
 */
export function applySocketOptions(
  target: OptionTarget,
  settings: readonly Setting[],
  report?: (call: string, error?: SocketOptionError) => void,
): void {
  let fd = target.fd;
  let looked = fd !== undefined;
  for (const setting of settings) {
    const [name, value] = setting;
    const desc = SOCKET_OPTIONS[name] as OptionDesc<typeof value>;
    const call = optionCall(setting);
    const fail = (error: SocketOptionError): never => {
      report?.(call, error);
      throw error;
    };
    const deno = "deno" in desc ? desc.deno : undefined;
    if (fd === undefined && deno && target[deno]) {
      target[deno]!(value as boolean);
      report?.(call);
      continue;
    }
    if (!looked) {
      looked = true;
      fd = ffiAvailable() ? target.findFd?.() : undefined;
    }
    if (fd === undefined) fail(new SocketOptionError(ffiAvailable() ? "no-fd" : "no-ffi", name));
    const bytes = desc.encode(value);
    const c = acquireLibc();
    try {
      if (c.setsockopt(fd!, desc.level, desc.name, bytes, bytes.length) < 0) {
        fail(new SocketOptionError("failed", name, lastErrno(c)));
      }
    } finally {
      releaseLibc();
    }
    report?.(call);
  }
}
