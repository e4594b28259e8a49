/**
 * ICMP and ICMPv6 packets, as bytes: the Internet checksum, echo requests,
 * and the parsing of what comes back (echo replies, and the errors — time
 * exceeded, destination unreachable — that quote the probe they answer).
 * Pure functions: the sockets are `raw.ts`, the commands `ping.ts` and
 * `traceroute.ts`.
 *
 * @module
 */

import { formatIPv6 } from "../net/ip.ts";
import { C } from "../sys/constants.ts";

/** ICMP (IPv4) message types used here. */
export const ICMP4 = { ECHO_REPLY: 0, UNREACHABLE: 3, ECHO: 8, TIME_EXCEEDED: 11 } as const;

/** ICMPv6 message types used here. */
export const ICMP6 = {
  UNREACHABLE: 1,
  TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAMETER: 4,
  ECHO: 128,
  ECHO_REPLY: 129,
} as const;

/** The IP protocol numbers of the probes that errors may quote. */
const PROTO = { ICMP: C.IPPROTO_ICMP, UDP: C.IPPROTO_UDP, ICMPV6: C.IPPROTO_ICMPV6 } as const;

/**
 * The Internet checksum (RFC 1071): the ones' complement of the ones'
 * complement sum of 16-bit big-endian words.
 *
 * @example Usage
 * ```ts
 * import { checksum } from "./icmp.ts";
 * import assert from "node:assert/strict";
 *
 * // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2: the checksum is its complement.
 * assert.equal(checksum(new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])), 0x220d);
 * ```
 */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * An echo request: type, code 0, checksum, identifier, sequence number, then
 * `size` bytes of data (iputils' pattern: byte i is i mod 256). For ICMPv6
 * the checksum is left 0: the kernel fills it in (it covers a pseudo-header
 * of addresses the sender does not know yet).
 *
 * @example Usage
 * ```ts
 * import { checksum, echoRequest } from "./icmp.ts";
 * import assert from "node:assert/strict";
 *
 * const packet = echoRequest(4, 0x1234, 1, 56);
 * assert.equal(packet.length, 64);
 * assert.equal(packet[0], 8);
 * assert.equal(checksum(packet), 0); // a correct checksum sums to zero
 * ```
 */
export function echoRequest(family: 4 | 6, id: number, seq: number, size: number): Uint8Array {
  const packet = new Uint8Array(8 + size);
  const view = new DataView(packet.buffer);
  packet[0] = family === 4 ? ICMP4.ECHO : ICMP6.ECHO;
  view.setUint16(4, id & 0xffff);
  view.setUint16(6, seq & 0xffff);
  for (let i = 0; i < size; i++) packet[8 + i] = i & 0xff;
  if (family === 4) view.setUint16(2, checksum(packet));
  return packet;
}

/** What an ICMP error quotes of the probe it answers (its IP header and first 8 bytes). */
export interface QuotedProbe {
  /** The probe's IP protocol (1 ICMP, 58 ICMPv6, 17 UDP, …). */
  protocol: number;
  /** Where the probe was going. */
  destination: string;
  /** An echo probe's identifier. */
  id?: number;
  /** An echo probe's sequence number. */
  seq?: number;
  /** A UDP probe's source port. */
  sourcePort?: number;
  /** A UDP probe's destination port. */
  destinationPort?: number;
}

/** One ICMP message as received. */
export interface IcmpMessage {
  /** The message type. */
  type: number;
  /** The message code. */
  code: number;
  /** What it is, for the callers' purposes. */
  kind: "echo-reply" | "echo-request" | "time-exceeded" | "unreachable" | "other";
  /** Echo messages: identifier. */
  id?: number;
  /** Echo messages: sequence number. */
  seq?: number;
  /** The ICMP message's length (header and data, without any IP header). */
  length: number;
  /** The IPv4 header's TTL, when the bytes began with one. */
  ttl?: number;
  /** Errors: the probe they answer. */
  quoted?: QuotedProbe;
}

/** The length of the IPv4 header at the start of `bytes` (IHL × 4), or 0 when it is none. */
export function ipv4HeaderLength(bytes: Uint8Array): number {
  return bytes.length >= 20 && bytes[0] >> 4 === 4 ? (bytes[0] & 0x0f) * 4 : 0;
}

/**
 * Parses an ICMP message (`family` 4) or ICMPv6 message (6). With
 * `withIpHeader`, the bytes start with the IPv4 header, as a raw IPv4
 * socket delivers them (IPv6 raw sockets and ICMP datagram sockets deliver
 * the ICMP message alone). `undefined` for bytes too short to be one.
 *
 * @example Usage
 * ```ts
 * import { echoRequest, parseIcmp } from "./icmp.ts";
 * import assert from "node:assert/strict";
 *
 * const reply = echoRequest(4, 7, 3, 8);
 * reply[0] = 0; // an echo reply is the request with type 0
 * assert.deepEqual(parseIcmp(4, reply, false), { type: 0, code: 0, kind: "echo-reply", id: 7, seq: 3, length: 16 });
 * ```
 */
export function parseIcmp(
  family: 4 | 6,
  bytes: Uint8Array,
  withIpHeader: boolean,
): IcmpMessage | undefined {
  let ttl: number | undefined;
  if (withIpHeader) {
    const ihl = ipv4HeaderLength(bytes);
    if (!ihl) return undefined;
    ttl = bytes[8];
    bytes = bytes.subarray(ihl);
  }
  if (bytes.length < 8) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = bytes[0];
  const code = bytes[1];
  const T = family === 4 ? ICMP4 : ICMP6;
  const message: IcmpMessage = { type, code, kind: "other", length: bytes.length };
  if (ttl !== undefined) message.ttl = ttl;
  if (type === T.ECHO_REPLY || type === T.ECHO) {
    message.kind = type === T.ECHO_REPLY ? "echo-reply" : "echo-request";
    message.id = view.getUint16(4);
    message.seq = view.getUint16(6);
    return message;
  }
  if (type === T.TIME_EXCEEDED || type === T.UNREACHABLE) {
    message.kind = type === T.TIME_EXCEEDED ? "time-exceeded" : "unreachable";
    const quoted = parseQuoted(family, bytes.subarray(8));
    if (quoted) message.quoted = quoted;
  }
  return message;
}

/** The probe quoted by an ICMP error: an IP header, then at least 8 bytes of the probe. */
function parseQuoted(family: 4 | 6, bytes: Uint8Array): QuotedProbe | undefined {
  let protocol: number;
  let destination: string;
  let rest: Uint8Array;
  if (family === 4) {
    const ihl = ipv4HeaderLength(bytes);
    if (!ihl || bytes.length < ihl + 8) return undefined;
    protocol = bytes[9];
    destination = [...bytes.subarray(16, 20)].join(".");
    rest = bytes.subarray(ihl);
  } else {
    if (bytes.length < 48 || bytes[0] >> 4 !== 6) return undefined;
    protocol = bytes[6];
    destination = ipv6Text(bytes.subarray(24, 40));
    rest = bytes.subarray(40);
  }
  const view = new DataView(rest.buffer, rest.byteOffset, rest.byteLength);
  const quoted: QuotedProbe = { protocol, destination };
  if (protocol === PROTO.UDP) {
    quoted.sourcePort = view.getUint16(0);
    quoted.destinationPort = view.getUint16(2);
  } else if (protocol === PROTO.ICMP || protocol === PROTO.ICMPV6) {
    quoted.id = view.getUint16(4);
    quoted.seq = view.getUint16(6);
  }
  return quoted;
}

/** Sixteen bytes of an IPv6 address as canonical text. */
function ipv6Text(bytes: Uint8Array): string {
  return formatIPv6(Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]));
}

/**
 * An ICMP error in iputils ping's words (`Time to live exceeded`,
 * `Destination Host Unreachable`; for IPv6 `Time exceeded: Hop limit`).
 *
 * @example Usage
 * ```ts
 * import { describeIcmp } from "./icmp.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(describeIcmp(4, 11, 0), "Time to live exceeded");
 * assert.equal(describeIcmp(6, 1, 4), "Destination unreachable: Port unreachable");
 * ```
 */
export function describeIcmp(family: 4 | 6, type: number, code: number): string {
  if (family === 4) {
    if (type === ICMP4.TIME_EXCEEDED) {
      return code === 0 ? "Time to live exceeded" : "Frag reassembly time exceeded";
    }
    if (type === ICMP4.UNREACHABLE) {
      const words = [
        "Destination Net Unreachable",
        "Destination Host Unreachable",
        "Destination Protocol Unreachable",
        "Destination Port Unreachable",
        "Frag needed and DF set",
        "Source Route Failed",
        "Destination Net Unknown",
        "Destination Host Unknown",
        "Source Host Isolated",
        "Destination Net Prohibited",
        "Destination Host Prohibited",
        "Destination Net Unreachable for Type of Service",
        "Destination Host Unreachable for Type of Service",
        "Packet filtered",
      ];
      return words[code] ?? `Dest Unreachable, Bad Code: ${code}`;
    }
    return `Bad ICMP type: ${type}`;
  }
  if (type === ICMP6.TIME_EXCEEDED) {
    return `Time exceeded: ${code === 0 ? "Hop limit" : "Defragmentation failure"}`;
  }
  if (type === ICMP6.UNREACHABLE) {
    const words = [
      "No route",
      "Administratively prohibited",
      "Beyond scope of source address",
      "Address unreachable",
      "Port unreachable",
      "Source address failed ingress/egress policy",
      "Reject route to destination",
    ];
    return `Destination unreachable: ${words[code] ?? `Unknown code ${code}`}`;
  }
  if (type === ICMP6.TOO_BIG) return "Packet too big";
  if (type === ICMP6.PARAMETER) return "Parameter problem";
  return `unknown icmp type: ${type}`;
}
