/**
 * traceroute: UDP probes with a growing TTL (IP_TTL / IPV6_UNICAST_HOPS),
 * and the ICMP errors they cause read from a raw ICMP socket — "time
 * exceeded" from each router on the way, "port unreachable" from the
 * destination itself. A reply is matched to its probe by the UDP ports that
 * the error quotes. Any "unreachable" ends the trace, as with traceroute(8);
 * only one from the destination means it was reached. The command's lines
 * are `cli/traceroute.ts`.
 *
 * @module
 */

import { ICMP4, ICMP6, parseIcmp } from "../protocols/icmp.ts";
import { familyOf, isDenied, probeAddress, RawSocket, rawSocketDenied } from "../net/raw.ts";
import type { TraceFn } from "../engine/trace.ts";
import { C } from "../sys/constants.ts";

/** Options of {@linkcode traceroute}. */
export interface TracerouteOptions {
  /** The last TTL tried. Default 30. */
  maxHops?: number;
  /** The first TTL tried. Default 1. */
  firstHop?: number;
  /** Probes per hop. Default 3. */
  queries?: number;
  /** Milliseconds to wait for the answer to one probe. Default 5000. */
  probeTimeout?: number;
  /** The first destination port; each probe uses the next. Default 33434. */
  port?: number;
  /** Bytes of UDP data in each probe. Default 32 (traceroute's 60-byte IPv4 packets). */
  size?: number;
  /** Stops tracing. */
  signal?: AbortSignal;
  /** Prints each socket call (`--trace`). */
  trace?: TraceFn;
  /** Called once per hop, when its probes are done. */
  onHop?: (hop: Hop) => void;
}

/** One probe's outcome. */
export interface Probe {
  /** Who answered; absent when nobody did in time. */
  from?: string;
  /** The round trip, when answered. */
  rttMs?: number;
  /** `!H`, `!N`, `!P`, `!X`…: an unreachable other than the destination's port, as traceroute marks it. */
  mark?: string;
}

/** One hop: its TTL and its probes. */
export interface Hop {
  /** The TTL of its probes (1 for the first hop). */
  ttl: number;
  /** Each probe's outcome, in the order sent. */
  probes: Probe[];
}

/** The result of a trace. */
export interface TracerouteResult {
  /**
   * Whether the destination answered (its "port unreachable", as a rule).
   * An unreachable from a router on the way (`!H`, `!N`, `!X`…) ends the
   * trace but is not the destination answering.
   */
  reached: boolean;
  /** The hops tried. */
  hops: Hop[];
  /** The unreachable that ended the trace: its hop, who sent it, its mark (none for a port). */
  endedBy?: { ttl: number; from: string; mark?: string };
}

/** traceroute's marks for an ICMP unreachable code (IPv4, IPv6). */
function unreachableMark(family: 4 | 6, code: number): string | undefined {
  if (family === 4) {
    return ({ 0: "!N", 1: "!H", 2: "!P", 4: "!F", 5: "!S", 9: "!X", 10: "!X", 13: "!X" } as Record<
      number,
      string
    >)[code] ?? (code === 3 ? undefined : `!<${code}>`);
  }
  return ({ 0: "!N", 1: "!X", 3: "!H" } as Record<number, string>)[code] ??
    (code === 4 ? undefined : `!<${code}>`);
}

/**
 * Traces the route to `host` (an IP literal). Needs a raw ICMP socket
 * (root or CAP_NET_RAW): it throws the 126 error naming them otherwise.
 * The unspecified address (`0.0.0.0`, `::`) is the local host, an
 * IPv4-mapped IPv6 address the IPv4 address ({@linkcode probeAddress}).
 *
 * @example Usage
 * ```ts ignore
 * const { reached, hops } = await traceroute("127.0.0.1", { queries: 1 });
 * ```
 */
export async function traceroute(
  host: string,
  options: TracerouteOptions = {},
): Promise<TracerouteResult> {
  const address = probeAddress(host);
  // Received and quoted addresses are written without a zone.
  const bare = address.split("%")[0];
  const family = familyOf(address);
  const maxHops = options.maxHops ?? 30;
  const queries = options.queries ?? 3;
  const probeTimeout = options.probeTimeout ?? 5000;
  const size = options.size ?? 32;
  let port = options.port ?? 33434;
  let icmp: RawSocket;
  try {
    icmp = RawSocket.open({
      family,
      protocol: family === 6 ? C.IPPROTO_ICMPV6 : C.IPPROTO_ICMP,
      trace: options.trace,
    });
  } catch (err) {
    if (isDenied(err)) throw rawSocketDenied("traceroute", address, false);
    throw err;
  }
  await using _icmp = icmp;
  icmp.filterIcmp(
    family === 4
      ? [ICMP4.UNREACHABLE, ICMP4.TIME_EXCEEDED]
      : [ICMP6.UNREACHABLE, ICMP6.TIME_EXCEEDED],
  );
  await using udp = RawSocket.open({
    family,
    protocol: C.IPPROTO_UDP,
    type: "dgram",
    trace: options.trace,
  });
  const payload = new Uint8Array(size);
  const buf = new Uint8Array(2048);
  const hops: Hop[] = [];
  let reached = false;
  let endedBy: TracerouteResult["endedBy"];
  let localPort = 0;
  for (let ttl = options.firstHop ?? 1; ttl <= maxHops && !endedBy; ttl++) {
    if (options.signal?.aborted) break;
    udp.setTtl(ttl);
    const hop: Hop = { ttl, probes: [] };
    for (let q = 0; q < queries && !options.signal?.aborted; q++) {
      const probePort = port++;
      if (port > 65535) port = options.port ?? 33434;
      const sentAt = icmp.now();
      udp.sendTo(payload, address, probePort);
      localPort ||= udp.local().port;
      const deadline = performance.now() + probeTimeout;
      const probe: Probe = {};
      for (;;) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        const message = await icmp.receiveMessage(buf, left, options.signal);
        if (!message) break;
        const reply = parseIcmp(family, buf.subarray(0, message.length), family === 4);
        const quoted = reply?.quoted;
        if (
          !quoted || quoted.protocol !== 17 || quoted.sourcePort !== localPort ||
          quoted.destinationPort !== probePort || quoted.destination !== bare
        ) continue;
        probe.from = message.from;
        probe.rttMs = Number((message.receivedNs ?? icmp.now()) - sentAt) / 1e6;
        if (reply.kind === "unreachable") {
          const mark = unreachableMark(family, reply.code);
          if (mark) probe.mark = mark;
          endedBy ??= { ttl, from: message.from, ...mark ? { mark } : {} };
          if (message.from === bare) reached = true;
        }
        break;
      }
      hop.probes.push(probe);
    }
    hops.push(hop);
    options.onHop?.(hop);
  }
  return { reached, hops, ...endedBy ? { endedBy } : {} };
}
