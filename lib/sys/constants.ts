/**
 * The numbers of the Linux system interface that sockit uses, in one place:
 * address families, socket types and flags, option levels and names, errno
 * values, `poll`/`epoll`/`fcntl`/`splice` flags. Pure data (no FFI): the
 * workers built from function source get this object interpolated
 * (`worker.ts`), so no number is typed twice.
 *
 * The values are Linux's (`asm-generic`, the same on x86-64 and arm64).
 *
 * @example Usage
 * ```ts
 * import { C } from "./constants.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(C.EAGAIN, 11);
 * assert.equal(C.SOL_SOCKET, 1);
 * ```
 *
 * @module
 */

/** Linux's values of the constants sockit passes to and reads from the C library. */
export const C = {
  // Address families.
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  // Socket types and their flags.
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_RAW: 3,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  // Protocols, and option levels (a protocol's number is its level).
  IPPROTO_IP: 0,
  IPPROTO_ICMP: 1,
  IPPROTO_TCP: 6,
  IPPROTO_UDP: 17,
  IPPROTO_IPV6: 41,
  IPPROTO_ICMPV6: 58,
  SOL_SOCKET: 1,
  SOL_RAW: 255,
  // SOL_SOCKET options.
  SO_ERROR: 4,
  SO_BROADCAST: 6,
  SO_KEEPALIVE: 9,
  SO_REUSEPORT: 15,
  SO_TIMESTAMPNS: 35,
  // IPPROTO_TCP options.
  TCP_NODELAY: 1,
  TCP_KEEPIDLE: 4,
  TCP_KEEPINTVL: 5,
  TCP_KEEPCNT: 6,
  // IPPROTO_IP options.
  IP_TTL: 2,
  IP_RECVTTL: 12,
  IP_MULTICAST_TTL: 33,
  IP_MULTICAST_LOOP: 34,
  IP_ADD_MEMBERSHIP: 35,
  // IPPROTO_IPV6 options.
  IPV6_UNICAST_HOPS: 16,
  IPV6_MULTICAST_HOPS: 18,
  IPV6_MULTICAST_LOOP: 19,
  IPV6_ADD_MEMBERSHIP: 20,
  IPV6_RECVHOPLIMIT: 51,
  IPV6_HOPLIMIT: 52,
  // SOL_RAW / IPPROTO_ICMPV6 filters.
  ICMP_FILTER: 1,
  ICMP6_FILTER: 1,
  // send/recv flags, shutdown.
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
  SHUT_WR: 1,
  SHUT_RDWR: 2,
  // errno values.
  EPERM: 1,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  ENFILE: 23,
  EMFILE: 24,
  ENODEV: 19,
  EPROTO: 71,
  EADDRNOTAVAIL: 99,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EINPROGRESS: 115,
  // poll(2) events.
  POLLIN: 0x1,
  POLLOUT: 0x4,
  // epoll(7).
  EPOLLIN: 0x1,
  EPOLLOUT: 0x4,
  EPOLLERR: 0x8,
  EPOLLHUP: 0x10,
  EPOLLRDHUP: 0x2000,
  EPOLLONESHOT: 1 << 30,
  EPOLL_CTL_ADD: 1,
  EPOLL_CTL_DEL: 2,
  EPOLL_CTL_MOD: 3,
  EPOLL_CLOEXEC: 0o2000000,
  EFD_NONBLOCK: 0o4000,
  EFD_CLOEXEC: 0o2000000,
  // open(2), fcntl(2).
  O_RDONLY: 0,
  O_RDWR: 2,
  O_ACCMODE: 3,
  O_CLOEXEC: 0o2000000,
  F_GETFL: 3,
  F_SETPIPE_SZ: 1031,
  F_GETPIPE_SZ: 1032,
  // splice(2).
  SPLICE_F_MOVE: 1,
  SPLICE_F_NONBLOCK: 2,
  // clock_gettime(2).
  CLOCK_REALTIME: 0,
} as const;

/** The type of {@linkcode C}: what a worker body receives. */
export type Constants = typeof C;
