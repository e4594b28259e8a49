/**
 * The `unix:` transport: a Unix stream socket, dialled at its path or
 * listened on there (a stale socket file is replaced; `@name` is abstract).
 *
 * @module
 */

import type { PathEndpoint } from "./address.ts";
import { unixDialer } from "./dial.ts";
import { listenUnix } from "./listener.ts";
import type { StreamOpener } from "./opener.ts";

/** `unix:/path`: the Unix dialer (no chain below it); a Unix listener. */
export const unix: StreamOpener = {
  dialer: () => unixDialer,
  listen: (endpoint, options) =>
    listenUnix(endpoint as PathEndpoint, { ...options, scheme: endpoint.scheme }),
};
