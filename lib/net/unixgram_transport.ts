/**
 * The `unixgram:` transport: a Unix datagram socket bound at the path
 * (`listen`), or talking to it from a path of its own (`connect`; its
 * `--source unixgram:PATH`, else a temporary one).
 *
 * @module
 */

import type { PathEndpoint } from "./address.ts";
import type { DatagramOpener } from "./opener.ts";
import { bindUnixDatagram, connectUnixDatagram } from "./unixgram.ts";

/** `unixgram:/path`: bound at the path, or connected to it. */
export const unixgram: DatagramOpener = {
  datagram: (at, role, options) => {
    const { path } = at as PathEndpoint;
    return Promise.resolve(
      role === "listen"
        ? bindUnixDatagram(path, { trace: options.trace })
        : connectUnixDatagram(path, {
          trace: options.trace,
          bindPath: options.socket?.source?.path,
        }),
    );
  },
};
