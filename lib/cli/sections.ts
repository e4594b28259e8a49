/**
 * The help sections of the option groups, by the part a command plays: a
 * client's (`connect`), a server's (`listen`, `echo`), a forwarder's
 * (`forward`: a server towards its clients, a client towards its target).
 * A command takes the groups of its sections; which endpoints take a group
 * is the scheme table's to say, so a command names neither the groups nor
 * the transports (a new group is a line here).
 *
 * @module
 */

import {
  CLIENT_SOCKET_FLAGS,
  REUSEPORT_GROUP,
  SERVER_SOCKET_FLAGS,
  SOCKET_GROUP,
  SOURCE_GROUP,
} from "../net/socket_options.ts";
import { BROADCAST_GROUP, MULTICAST_FLAGS, MULTICAST_GROUP } from "../net/udp_options.ts";
import { TLS_CLIENT_GROUP, TLS_SERVER_GROUP } from "../protocols/tls_options.ts";
import { WEBSOCKET_GROUP } from "../protocols/websocket_options.ts";
import { groupSection } from "./flags.ts";
import type { FlagGroup, FlagUse } from "./flags.ts";

/** A server's socket options: `--reuseport`, and those of each accepted connection. */
export const SERVER_SOCKET_SECTION: FlagGroup = groupSection(REUSEPORT_GROUP, {
  flags: SERVER_SOCKET_FLAGS,
  groups: [SOCKET_GROUP],
});

/** The option groups of a client (`connect`), in the order help shows them. */
export const CLIENT_SECTIONS: readonly FlagGroup[] = [
  groupSection(TLS_CLIENT_GROUP),
  groupSection(WEBSOCKET_GROUP),
  groupSection(SOURCE_GROUP, { flags: CLIENT_SOCKET_FLAGS, groups: [SOCKET_GROUP] }),
  groupSection({
    title: "UDP multicast and broadcast",
    flags: ["multicast-ttl", "multicast-loop"],
    groups: [MULTICAST_GROUP],
  }, BROADCAST_GROUP),
];

/** The option groups of a server (`listen`, `echo`), in the order help shows them. */
export const SERVER_SECTIONS: readonly FlagGroup[] = [
  groupSection(TLS_SERVER_GROUP),
  groupSection(WEBSOCKET_GROUP),
  SERVER_SOCKET_SECTION,
  groupSection(MULTICAST_GROUP),
];

/**
 * The option groups of a forwarder, which serves its clients and is a
 * client of its target: `tls`, its TLS flags (with what each means for
 * which side), and `source`, its `--source` as it helps it.
 */
export function forwarderSections(
  tls: Omit<FlagGroup, "groups">,
  source: FlagUse,
): FlagGroup[] {
  return [
    { ...tls, groups: [TLS_SERVER_GROUP, TLS_CLIENT_GROUP] },
    groupSection(WEBSOCKET_GROUP),
    groupSection(SERVER_SOCKET_SECTION, {
      flags: [source],
      groups: [SOURCE_GROUP],
    }),
    groupSection({
      title: "UDP multicast and broadcast",
      flags: MULTICAST_FLAGS,
      groups: [MULTICAST_GROUP],
    }, BROADCAST_GROUP),
  ];
}
