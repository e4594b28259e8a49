/**
 * The `unixgram:` transport: a Unix datagram socket bound at the path
 * (`listen`), or talking to it from a path of its own (`connect`; its
 * `--source unixgram:PATH`, else a temporary one).
 *
 * @module
 */

import { pathEndpoint } from "./address.ts";
import type { PathEndpoint } from "./address.ts";
import type { DatagramOpener } from "./opener.ts";
import { bindUnixDatagram, connectUnixDatagram } from "./unixgram.ts";

/** `unixgram:/path`: bound at the path, or connected to it. */
export const unixgram: DatagramOpener = {
  datagram: (at, role, options) => {
    const endpoint = at as PathEndpoint;
    const name = { path: endpoint.path, abstract: endpoint.abstract };
    // `--source unixgram:PATH`: the grammar reads the client's own path too.
    const source = options.groups?.source?.path;
    return Promise.resolve(
      role === "listen"
        ? bindUnixDatagram(name, { trace: options.trace })
        : connectUnixDatagram(name, {
          trace: options.trace,
          bind: source === undefined ? undefined : pathEndpoint(endpoint.scheme, source),
        }),
    );
  },
};
