/**
 * ICMP echo (ping) over a raw socket, or an ICMP datagram socket where the
 * system allows one: the sending schedule, matching replies and ICMP errors
 * to the requests they answer, round-trip times from the kernel's receive
 * timestamps, and the totals. The command's lines are `cli/ping.ts`.
 *
 * @module
 */

import { SockitError, UsageError } from "../base/errors.ts";
import {
  checksum,
  describeIcmp,
  echoRequest,
  ICMP4,
  ICMP6,
  ipv4HeaderLength,
  parseIcmp,
} from "../protocols/icmp.ts";
import { familyOf, isDenied, probeAddress, RawSocket, rawSocketDenied } from "../net/raw.ts";
import type { TraceFn } from "../engine/trace.ts";
import { C } from "../sys/constants.ts";

/** The shortest interval without a raw socket, as iputils allows a user (a flood needs privileges). */
export const USER_INTERVAL_FLOOR_MS = 2;

/**
 * The receive buffer: room for the largest datagram (an IPv4 packet, or an
 * ICMPv6 message, is at most 65535 bytes), so that a reply longer than the
 * request is read, and reported, whole.
 */
const RECEIVE_BUFFER = 65536;

/** Which kind of ICMP socket was used. */
export type IcmpSocketKind = "raw" | "dgram";

/** Options of {@linkcode ping}. */
export interface PingOptions {
  /** Echo requests to send. Default: no limit (until the deadline or the signal). */
  count?: number;
  /** Milliseconds between requests. Default 1000. 0: the next as soon as a reply comes (or 10 ms). */
  interval?: number;
  /** Milliseconds to wait for replies after the last request. Default 10000. */
  timeout?: number;
  /** Milliseconds after which ping stops, whatever is outstanding. Default: none. */
  deadline?: number;
  /** Bytes of data after the 8-byte ICMP header. Default 56. */
  size?: number;
  /** TTL (IPv4) or hop limit (IPv6) of the requests. Default: the system's. */
  ttl?: number;
  /** `raw`, `dgram`, or `auto` (raw, else an ICMP datagram socket). Default `auto`. */
  socket?: "auto" | IcmpSocketKind;
  /** Stops pinging; the totals are still returned. */
  signal?: AbortSignal;
  /** Prints each socket call (`--trace`). */
  trace?: TraceFn;
  /** Called for each event as it happens. */
  onEvent?: (event: PingEvent) => void;
}

/** What happened, in order. */
export type PingEvent =
  | {
    type: "start";
    /** Where the requests go (`127.0.0.1` for `0.0.0.0`, the IPv4 address of `::ffff:a.b.c.d`). */
    address: string;
    family: 4 | 6;
    socket: IcmpSocketKind;
    size: number;
    id: number;
  }
  | {
    type: "reply";
    seq: number;
    from: string;
    bytes: number;
    ttl?: number;
    rttMs: number;
    duplicate: boolean;
    /**
     * The ICMP checksum is wrong (a raw IPv4 socket; the kernel drops such
     * replies before an ICMP datagram socket or an ICMPv6 socket sees them).
     * Not counted as received, as iputils does (`(BAD CHECKSUM!)`).
     */
    badChecksum?: true;
  }
  | {
    type: "error";
    seq: number;
    from: string;
    icmpType: number;
    code: number;
    message: string;
  };

/** Round-trip times in milliseconds. */
export interface RttSummary {
  /** The shortest. */
  minMs: number;
  /** The mean. */
  avgMs: number;
  /** The longest. */
  maxMs: number;
  /** Mean deviation as iputils computes it: sqrt(mean of squares − square of mean). */
  mdevMs: number;
}

/** The totals of a ping. */
export interface PingSummary {
  /** Echo requests sent. */
  transmitted: number;
  /** Requests answered by an echo reply (duplicates not counted). */
  received: number;
  /** ICMP errors (time exceeded, unreachable) that answered requests. */
  errors: number;
  /** Replies that came again for an answered request. */
  duplicates: number;
  /** Echo replies with a wrong checksum (iputils' `+N corrupted`), not counted as received. */
  corrupted: number;
  /** From the first request to the end. */
  elapsedMs: number;
  /** Present when a reply came. */
  rtt?: RttSummary;
}

/** Opens the ICMP socket `kind` asks for; `auto` falls back from raw to datagram. */
export function openIcmpSocket(
  address: string,
  kind: "auto" | IcmpSocketKind,
  trace?: TraceFn,
): RawSocket {
  const family = familyOf(address);
  const protocol = family === 6 ? C.IPPROTO_ICMPV6 : C.IPPROTO_ICMP;
  const tries: IcmpSocketKind[] = kind === "auto" ? ["raw", "dgram"] : [kind];
  for (const type of tries) {
    try {
      return RawSocket.open({ family, protocol, type, trace });
    } catch (err) {
      if (!isDenied(err)) throw err;
    }
  }
  throw rawSocketDenied("ping", address, true);
}

/**
 * Pings `host` (an IP literal) and resolves to the totals. The
 * unspecified address (`0.0.0.0`, `::`) is the local host, an IPv4-mapped
 * IPv6 address the IPv4 address ({@linkcode probeAddress}).
 *
 * @example Usage
 * ```ts ignore
 * // As root (or with CAP_NET_RAW, or a ping group) and --allow-ffi:
 * const summary = await ping("127.0.0.1", { count: 3, interval: 200 });
 * console.log(summary.received); // 3
 * ```
 */
export async function ping(host: string, options: PingOptions = {}): Promise<PingSummary> {
  const address = probeAddress(host);
  const family = familyOf(address);
  const count = options.count ?? Infinity;
  const interval = options.interval ?? 1000;
  const timeout = options.timeout ?? 10_000;
  const size = options.size ?? 56;
  await using socket = openIcmpSocket(address, options.socket ?? "auto", options.trace);
  if (interval < USER_INTERVAL_FLOOR_MS && socket.type === "dgram") {
    throw new UsageError(
      `an interval below ${USER_INTERVAL_FLOOR_MS}ms (a flood) needs a raw socket: root or CAP_NET_RAW, as with iputils`,
    );
  }
  socket.filterIcmp(
    family === 4
      ? [ICMP4.ECHO_REPLY, ICMP4.UNREACHABLE, ICMP4.TIME_EXCEEDED]
      : [ICMP6.ECHO_REPLY, ICMP6.UNREACHABLE, ICMP6.TIME_EXCEEDED],
  );
  if (options.ttl !== undefined) socket.setTtl(options.ttl);
  const withHeader = family === 4 && socket.type === "raw";
  // A datagram socket's identifier is its port, given by the kernel at the first send.
  let id = socket.type === "raw" ? (Deno.pid ^ (performance.now() * 1000)) & 0xffff : 0;
  // The send time of each sequence number, and which are answered — as iputils' table: a
  // sequence number is 16 bits, so after 65,535 requests the numbers come round, and sending
  // one again clears its mark (else each reply from then on would count as a duplicate).
  const sent = new Map<number, bigint>();
  const answered = new Uint8Array(0x10000);
  const rtts: number[] = [];
  const summary: PingSummary = {
    transmitted: 0,
    received: 0,
    errors: 0,
    duplicates: 0,
    corrupted: 0,
    elapsedMs: 0,
  };
  const buf = new Uint8Array(RECEIVE_BUFFER);
  const started = performance.now();
  let nextSend = started;
  let lastSend = started;
  const signal = options.signal;
  for (;;) {
    const now = performance.now();
    if (signal?.aborted) break;
    if (options.deadline !== undefined && now - started >= options.deadline) break;
    if (summary.transmitted < count && now >= nextSend) {
      const seq = (summary.transmitted + 1) & 0xffff;
      const packet = echoRequest(family, id, seq, size);
      answered[seq] = 0;
      sent.set(seq, socket.now());
      try {
        socket.sendTo(packet, address);
      } catch (err) {
        throw new SockitError((err as Error).message.replace(/ \(os error \d+\)$/, ""), {
          op: "ping",
          address,
          cause: err,
        });
      }
      if (summary.transmitted === 0) {
        if (socket.type === "dgram") id = socket.local().port;
        options.onEvent?.({ type: "start", address, family, socket: socket.type, size, id });
      }
      summary.transmitted++;
      lastSend = now;
      nextSend = interval > 0 ? nextSend + interval : now + 10;
      continue;
    }
    const outstanding = summary.transmitted - summary.received - summary.errors;
    if (summary.transmitted >= count && (outstanding <= 0 || now - lastSend >= timeout)) break;
    let until = summary.transmitted < count ? nextSend : lastSend + timeout;
    if (options.deadline !== undefined) until = Math.min(until, started + options.deadline);
    const message = await socket.receiveMessage(buf, Math.max(0, until - now), signal);
    if (!message) continue;
    const bytes = buf.subarray(0, message.length);
    const icmp = parseIcmp(family, bytes, withHeader);
    if (!icmp) continue;
    // Only a raw IPv4 socket delivers ICMP the kernel has not checked (its checksum covers the
    // ICMP message alone); ICMPv6 and ICMP datagram sockets never see a bad one.
    const badChecksum = withHeader && checksum(bytes.subarray(ipv4HeaderLength(bytes))) !== 0;
    if (icmp.kind === "echo-reply") {
      if (socket.type === "raw" && icmp.id !== id) continue;
      const seq = icmp.seq!;
      const at = sent.get(seq);
      if (at === undefined) continue;
      const rttMs = Number((message.receivedNs ?? socket.now()) - at) / 1e6;
      const duplicate = !badChecksum && answered[seq] === 1;
      if (badChecksum) summary.corrupted++;
      else if (duplicate) summary.duplicates++;
      else {
        answered[seq] = 1;
        summary.received++;
        rtts.push(rttMs);
      }
      options.onEvent?.({
        type: "reply",
        seq,
        from: message.from,
        bytes: icmp.length,
        ...(icmp.ttl ?? message.ttl) !== undefined ? { ttl: icmp.ttl ?? message.ttl } : {},
        rttMs,
        duplicate,
        ...badChecksum ? { badChecksum } : {},
      });
      if (badChecksum) continue;
      if (interval === 0) nextSend = performance.now();
    } else if (icmp.kind === "time-exceeded" || icmp.kind === "unreachable") {
      const quoted = icmp.quoted;
      if (
        badChecksum || !quoted || quoted.id !== id || quoted.destination !== address.split("%")[0]
      ) continue;
      const seq = quoted.seq!;
      if (!sent.has(seq) || answered[seq] === 1) continue;
      answered[seq] = 1;
      summary.errors++;
      options.onEvent?.({
        type: "error",
        seq,
        from: message.from,
        icmpType: icmp.type,
        code: icmp.code,
        message: describeIcmp(family, icmp.type, icmp.code),
      });
      if (interval === 0) nextSend = performance.now();
    }
  }
  summary.elapsedMs = performance.now() - started;
  if (rtts.length) summary.rtt = rttSummary(rtts);
  return summary;
}

/**
 * Minimum, average, maximum and mean deviation of round-trip times, as
 * iputils prints them.
 *
 * @example Usage
 * ```ts
 * import { rttSummary } from "./ping.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(rttSummary([1, 3]), { minMs: 1, avgMs: 2, maxMs: 3, mdevMs: 1 });
 * ```
 */
export function rttSummary(rtts: number[]): RttSummary {
  const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  const squares = rtts.reduce((a, b) => a + b * b, 0) / rtts.length;
  return {
    minMs: Math.min(...rtts),
    avgMs: avg,
    maxMs: Math.max(...rtts),
    mdevMs: Math.sqrt(Math.max(0, squares - avg * avg)),
  };
}
