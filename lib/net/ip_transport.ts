/**
 * The `ip://` transport: a raw IP socket of one protocol (SOCK_RAW: root),
 * bound to the endpoint's address (`listen`) or connected to it.
 *
 * @module
 */

import { formatEndpoint, hostOf } from "./address.ts";
import type { HostProtocolEndpoint } from "./address.ts";
import { toSockitError } from "../base/errors.ts";
import { ipFamily } from "./ip.ts";
import type { DatagramOpener } from "./opener.ts";
import { isDenied, RawSocket, rawSocketDenied, requireRawSockets } from "./raw.ts";
import { bindHost, resolve } from "./resolve.ts";

/** `ip://host/protocol`: a raw socket bound to the host (`listen`) or connected to it. */
export const ip: DatagramOpener = {
  datagram: async (at, role, options) => {
    const endpoint = at as HostProtocolEndpoint;
    const host = hostOf(endpoint, role, options.family);
    const text = formatEndpoint({ ...endpoint, hostname: host });
    requireRawSockets(role, text);
    const address = role === "listen" ? await bindHost(endpoint, options) : (await resolve(host, {
      op: "connect",
      address: text,
      family: options.family,
      lookup: options.lookup,
    }))[0];
    let socket: RawSocket;
    try {
      socket = RawSocket.open({
        family: ipFamily(address) === 6 ? 6 : 4,
        protocol: endpoint.protocol,
        trace: options.trace,
      });
    } catch (err) {
      if (isDenied(err)) throw rawSocketDenied(role, text, false);
      throw toSockitError(err, role, text);
    }
    try {
      if (role === "listen") socket.bind(address);
      else socket.connect(address);
    } catch (err) {
      socket.close();
      throw toSockitError(err, role, text);
    }
    return socket;
  },
};
