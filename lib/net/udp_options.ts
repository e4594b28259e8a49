/**
 * The option groups of UDP sockets: `multicast` (`--multicast-join`,
 * `--multicast-ttl`, `--multicast-loop`) and `broadcast` (a client's
 * `--broadcast`) — their flags, declared, and what they make of the
 * values. Which rows take them is the scheme table's to say (`schemes.ts`).
 *
 * @module
 */

import { count } from "../base/flag.ts";
import { UsageError } from "../base/errors.ts";
import { transportOf } from "./address.ts";
import type { MulticastOptions } from "./datagram.ts";
import { ipFamily, isIPv6 } from "./ip.ts";
import type { FlagUse, OptionGroup } from "./option_group.ts";

/** Whether `host` is an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast address. */
function isMulticast(host: string): boolean {
  if (ipFamily(host) === 4) return Number(host.split(".")[0]) >> 4 === 14;
  return ipFamily(host) === 6 && /^ff/i.test(host);
}

/** A group to join. */
type Join = NonNullable<MulticastOptions["join"]>[number];

/**
 * `--multicast-join GROUP[@IFADDR]`: a multicast group, and the interface
 * to join it on (IPv4: its address; IPv6: its index).
 *
 * @example Usage
 * ```ts
 * import { multicastJoin } from "./udp_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(multicastJoin("239.1.2.3@127.0.0.1"), { group: "239.1.2.3", iface: "127.0.0.1" });
 * assert.throws(() => multicastJoin("10.0.0.1"), /not a multicast group/);
 * ```
 */
export function multicastJoin(text: string): Join {
  const at = text.lastIndexOf("@");
  const group = at < 0 ? text : text.slice(0, at);
  const iface = at < 0 ? undefined : text.slice(at + 1);
  if (!isMulticast(group)) {
    throw new UsageError(`option --multicast-join: ${group} is not a multicast group address`);
  }
  if (iface !== undefined && (isIPv6(group) ? !/^\d+$/.test(iface) : ipFamily(iface) !== 4)) {
    throw new UsageError(
      `option --multicast-join: after @ comes ${
        isIPv6(group) ? "an interface index" : "the IPv4 address of an interface"
      }, not ${JSON.stringify(iface)}`,
    );
  }
  return { group, ...(iface !== undefined ? { iface } : {}) };
}

/** `--multicast-loop=on|off`. */
function onOff(text: string): boolean {
  if (text !== "on" && text !== "off") {
    throw new UsageError(`option --multicast-loop takes =on or =off, not ${JSON.stringify(text)}`);
  }
  return text === "on";
}

/** The flags of the UDP groups. */
export const UDP_SPECS = {
  "multicast-join": {
    type: "string",
    multiple: true,
    value: "GROUP[@IFADDR]",
    help: "join this multicast group (IP_ADD_MEMBERSHIP), on the interface with IFADDR " +
      "(default: the system's choice); repeatable",
    parse: multicastJoin,
  },
  "multicast-ttl": {
    type: "string",
    value: "N",
    help: "IP_MULTICAST_TTL of the datagrams sent to a group (default 1: this network)",
    parse: count({ min: 0, max: 255 }),
  },
  "multicast-loop": {
    type: "boolean",
    optional: true,
    value: "on|off",
    help: "IP_MULTICAST_LOOP: whether this host's own members hear what is sent to a group " +
      "(the system's default: on)",
    parse: onOff,
  },
  broadcast: {
    type: "boolean",
    help: "SO_BROADCAST: may send to a broadcast address (Deno's UDP sockets always may; " +
      "accepted for socat's users)",
  },
} as const;

type Values = {
  "multicast-join"?: Join[];
  "multicast-ttl"?: number;
  "multicast-loop"?: boolean;
  broadcast?: boolean;
};

/** The multicast flags of a socket that receives (it joins) and sends. */
export const MULTICAST_FLAGS: readonly FlagUse[] = [
  "multicast-join",
  "multicast-ttl",
  "multicast-loop",
];

/**
 * `multicast`: the groups a bound socket joins, and the TTL and loop of
 * what is sent to a group — set on the socket that sends to it: a client's
 * when the command line has one that takes the group (the target of
 * `forward udp:// udp://`), else the listener's, which sets them through
 * a membership (so they come with `--multicast-join` there). A connected
 * socket hears only its peer, so it joins nothing.
 */
export const MULTICAST_GROUP: OptionGroup<MulticastOptions> = {
  name: "multicast",
  title: "UDP multicast",
  flags: MULTICAST_FLAGS,
  specs: {
    "multicast-join": UDP_SPECS["multicast-join"],
    "multicast-ttl": UDP_SPECS["multicast-ttl"],
    "multicast-loop": UDP_SPECS["multicast-loop"],
  },
  parse(values, { role, endpoints }) {
    const v = values as Values;
    const join = role === "listen" ? v["multicast-join"] ?? [] : [];
    const sender = role === "connect" ||
      !endpoints.some((e) =>
        e.role === "connect" && transportOf(e.endpoint).groups.includes("multicast")
      );
    const ttl = sender ? v["multicast-ttl"] : undefined;
    const loop = sender ? v["multicast-loop"] : undefined;
    // A bound socket sets them through a membership (before any socket is made: here).
    if (role === "listen" && !join.length && (ttl !== undefined || loop !== undefined)) {
      throw new UsageError(
        "options --multicast-ttl and --multicast-loop on a server's socket come with --multicast-join",
      );
    }
    if (!join.length && ttl === undefined && loop === undefined) return undefined;
    return {
      ...(join.length ? { join } : {}),
      ...(ttl !== undefined ? { ttl } : {}),
      ...(loop !== undefined ? { loop } : {}),
    };
  },
};

/** `broadcast`: SO_BROADCAST on a client's socket (`--broadcast`). */
export const BROADCAST_GROUP: OptionGroup<true> = {
  name: "broadcast",
  title: "UDP multicast and broadcast",
  role: "connect",
  flags: ["broadcast"],
  specs: { broadcast: UDP_SPECS.broadcast },
  parse: (values) => (values as Values).broadcast ? true : undefined,
};
