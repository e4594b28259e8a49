/**
 * The `udp://` transport: a UDP socket bound to the endpoint (`listen`) or
 * talking to it (`connect`), with its multicast settings applied.
 *
 * @module
 */

import { connectAddress, hostOf } from "./address.ts";
import type { HostPortEndpoint } from "./address.ts";
import { bindDatagram, connectDatagram } from "./datagram.ts";
import type { DatagramSocket } from "./datagram.ts";
import { SockitError } from "../base/errors.ts";
import type { DatagramOpener } from "./opener.ts";
import { bindHost, resolve } from "./resolve.ts";

/** `udp://`: bound (`listen`) or connected (`connect`); multicast settings, then. */
export const udp: DatagramOpener = {
  datagram: async (at, role, options) => {
    const endpoint = at as HostPortEndpoint;
    const groups = options.groups ?? {};
    let socket: DatagramSocket;
    if (role === "listen") {
      socket = bindDatagram(await bindHost(endpoint, options), endpoint.port, {
        trace: options.trace,
        reusePort: groups.reuseport,
      });
    } else {
      const [address] = await resolve(hostOf(endpoint, role, options.family), {
        op: "connect",
        address: connectAddress(endpoint, options.family),
        family: options.family,
        lookup: options.lookup,
      });
      socket = connectDatagram(address, endpoint.port, {
        trace: options.trace,
        source: groups.source,
        broadcast: groups.broadcast,
      });
    }
    if (!groups.multicast) return socket;
    try {
      if (!socket.multicast) {
        throw new SockitError(
          "--multicast-ttl/--multicast-loop on a client go through libc, which needs --allow-ffi",
          { op: "setsockopt", code: "ENOTCAPABLE", exitCode: 126 },
        );
      }
      await socket.multicast(groups.multicast);
    } catch (err) {
      socket.close();
      throw err;
    }
    return socket;
  },
};
