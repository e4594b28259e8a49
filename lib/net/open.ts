/**
 * Opening endpoints through the opener its scheme registers
 * (`transports.ts`, loaded on first use): {@linkcode connect} a stream
 * (through its dialer chain, with retries and a deadline), {@linkcode listen}
 * for streams, or {@linkcode openDatagram} for a datagram socket — and what
 * commands use, whatever the endpoint's kind: {@linkcode connectPeer} (a
 * stream, or a datagram socket talking to the endpoint) and
 * {@linkcode listenPeers} (a stream listener, or a datagram listener that
 * hands out a peer per sender). Nothing here knows a scheme by name.
 *
 * @module
 */

import { connectAddress, formatEndpoint, hostOf, transportOf } from "./address.ts";
import type { Endpoint, Role } from "./address.ts";
import type { Connection } from "./conn.ts";
import type { Stream } from "./stream.ts";
import { nextConnectionId } from "./conn.ts";
import type { DatagramSide, DatagramSocket } from "./datagram.ts";
import type { DatagramListener, FollowOptions } from "./datagram_listener.ts";
import { Deadline } from "../engine/deadline.ts";
import { dialWithRetry, directDialer } from "./dial.ts";
import type { DialContext, Dialer, DialTarget } from "./dial.ts";
import { type SockitError, TimeoutError, UsageError } from "../base/errors.ts";
import { formatDuration } from "../base/format.ts";
import type { Listener } from "./listener.ts";
import type { Lookup } from "./resolve.ts";
import { schemePrefix } from "./schemes.ts";
import type { SchemeDescriptor } from "./schemes.ts";
import type { TraceFn } from "../engine/trace.ts";
import { datagramOpener, streamOpener } from "./transports.ts";
import type { GroupOptions, OpenOptions } from "./transports.ts";

export { connectAddress } from "./address.ts";

/**
 * What a dialer is given for `endpoint`: its host (the role's default for
 * the port-only form) and port, or its path.
 *
 * @example Usage
 * ```ts
 * import { dialTarget } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(dialTarget({ form: "host-port", scheme: "tcp", port: 80 }, "connect", 6), { host: "::1", port: 80 });
 * ```
 */
export function dialTarget(endpoint: Endpoint, role: Role, family?: 4 | 6): DialTarget {
  if ("path" in endpoint) return { path: endpoint.path, abstract: endpoint.abstract };
  if (!("port" in endpoint)) {
    throw new UsageError(`${formatEndpoint(endpoint)}: not an endpoint to dial`);
  }
  return { host: hostOf(endpoint, role, family), port: endpoint.port };
}

/**
 * The deadline of connecting to `address` (and, for a command, of the whole
 * session): after `ms` its signal aborts with `connect ADDRESS: timed out
 * after …` (exit 124).
 *
 * @example Usage
 * ```ts
 * import { connectDeadline } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * using deadline = connectDeadline(5, "127.0.0.1:80");
 * await new Promise((resolve) => deadline.signal.addEventListener("abort", resolve));
 * assert.match(String(deadline.signal.reason), /connect 127\.0\.0\.1:80: timed out after 5 ms/);
 * ```
 */
export function connectDeadline(
  ms: number | undefined,
  address: string,
  parent?: AbortSignal,
): Deadline {
  return new Deadline(
    ms,
    () => new TimeoutError(`timed out after ${formatDuration(ms!)}`, { op: "connect", address }),
    parent,
  );
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Restrict name resolution to IPv4 (`4`) or IPv6 (`6`), as `-4`/`-6`. */
  family?: 4 | 6;
  /** Give up connecting after this many ms (all attempts together): exit 124. */
  timeout?: number;
  /** Attempts after the first one fails (`--retry N`). */
  retry?: number;
  /** Pause between attempts in ms (default 1000). */
  retryDelay?: number;
  /**
   * Cancels connecting; the promise rejects with `signal.reason`. A
   * command's deadline is such a signal (its reason a `TimeoutError`).
   */
  signal?: AbortSignal;
  /** Prints each socket operation (`--trace`). */
  trace?: TraceFn;
  /** Called when an address fails and another is tried, or before a retry. */
  onAttemptFailed?: (address: string, error: SockitError, willRetry: boolean) => void;
  /** The resolver; the system's by default. */
  lookup?: Lookup;
  /**
   * The first link of the chain (default: the direct dialer). A tunnel's
   * dialer may go here; the row's own layers (TLS, …) are added on top.
   */
  base?: Dialer<Connection>;
  /** The options of the endpoint's option groups (only groups its row takes). */
  groups?: GroupOptions;
}

/**
 * The options of the groups `row` takes; options given for a group it does
 * not take are a usage error (they would do nothing).
 */
function rowGroups(
  row: SchemeDescriptor,
  groups: GroupOptions | undefined,
  where: string,
): GroupOptions {
  for (const [name, value] of Object.entries(groups ?? {})) {
    if (value !== undefined && !(row.groups as readonly string[]).includes(name)) {
      throw new UsageError(`${where}: ${schemePrefix(row)} takes no ${name} options`);
    }
  }
  return groups ?? {};
}

/**
 * Connects to a stream endpoint through its row's dialer chain. A host
 * name is resolved and its addresses are tried one by one until one
 * accepts; with `retry`, the whole round is repeated after `retryDelay`.
 * Rejects with a {@linkcode SockitError} (a {@linkcode TimeoutError} when
 * `timeout` expires).
 *
 * @example Usage
 * ```ts
 * import { connect } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using conn = await connect({ form: "host-port", scheme: "tcp", hostname: "127.0.0.1", port: listener.addr.port });
 * assert.equal(conn.remoteAddress, `127.0.0.1:${listener.addr.port}`);
 * listener.close();
 * ```
 */
export async function connect(
  endpoint: Endpoint,
  options: ConnectOptions = {},
): Promise<Stream> {
  const address = connectAddress(endpoint, options.family);
  const row = transportOf(endpoint);
  // The row says what it is before its module is loaded.
  const opener = row.kind === "stream" ? await streamOpener(endpoint) : undefined;
  if (!opener) {
    throw new UsageError(`${address}: ${schemePrefix(row)} is not a stream to connect to`);
  }
  const groups = rowGroups(row, options.groups, address);
  using deadline = connectDeadline(options.timeout, address, options.signal);
  const ctx: DialContext = {
    id: nextConnectionId(),
    signal: deadline.signal,
    trace: options.trace,
    family: options.family,
    lookup: options.lookup,
    onAttemptFailed: options.onAttemptFailed,
  };
  const dialer = opener.dialer(options.base ?? directDialer(), endpoint, groups);
  return await dialWithRetry(dialer, dialTarget(endpoint, "connect", options.family), ctx, {
    retry: options.retry,
    retryDelay: options.retryDelay,
    address,
  });
}

/**
 * Binds and listens on a stream endpoint. The port-only form binds
 * loopback; port 0 asks the OS for a free port (see `Listener.address`).
 *
 * @example Usage
 * ```ts
 * import { listen } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * using listener = await listen({ form: "host-port", scheme: "tcp", port: 0 });
 * assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
 * ```
 */
export async function listen(endpoint: Endpoint, options: OpenOptions = {}): Promise<Listener> {
  const row = transportOf(endpoint);
  const opener = row.kind === "stream" ? await streamOpener(endpoint) : undefined;
  if (!opener) {
    throw new UsageError(
      `${schemePrefix(row)}: a ${row.kind} socket does not listen for connections`,
    );
  }
  const groups = rowGroups(row, options.groups, formatEndpoint(endpoint));
  return await opener.listen(endpoint, { ...options, groups });
}

/**
 * A datagram socket for `endpoint`: bound to it (`listen`), or talking to
 * it (`connect`).
 *
 * @example Usage
 * ```ts
 * import { openDatagram } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * const sock = await openDatagram({ form: "host-port", scheme: "udp", hostname: "127.0.0.1", port: 0 }, "listen");
 * assert.match(sock.address, /^127\.0\.0\.1:\d+$/);
 * sock.close();
 * ```
 */
export async function openDatagram(
  endpoint: Endpoint,
  role: Role,
  options: OpenOptions = {},
): Promise<DatagramSocket> {
  const row = transportOf(endpoint);
  const opener = row.kind === "datagram" ? await datagramOpener(endpoint) : undefined;
  if (!opener) {
    throw new UsageError(
      `${connectAddress(endpoint, options.family)}: ${
        schemePrefix(row)
      } is a stream, not datagrams`,
    );
  }
  const groups = rowGroups(row, options.groups, formatEndpoint(endpoint));
  return await opener.datagram(endpoint, role, { ...options, groups });
}

/** Options of {@linkcode connectPeer}: {@linkcode connect}'s, and a datagram socket's. */
export interface ConnectPeerOptions extends ConnectOptions {
  /** Told what the socket cannot do as it was made (an unconnected one sees no refusals). */
  onNote?: (text: string) => void;
}

/**
 * Connects to `endpoint`, whatever its kind: a stream through
 * {@linkcode connect}, or a datagram socket talking to it, as a
 * {@linkcode DatagramSide} named as the endpoint was.
 *
 * @example Usage
 * ```ts
 * import { connectPeer } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * const server = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const port = (server.addr as Deno.NetAddr).port;
 * using peer = await connectPeer({ form: "host-port", scheme: "udp", hostname: "127.0.0.1", port });
 * assert.equal(peer.remoteAddress, `udp://127.0.0.1:${port}`);
 * server.close();
 * ```
 */
export async function connectPeer(
  endpoint: Endpoint,
  options: ConnectPeerOptions = {},
): Promise<Stream | DatagramSide> {
  if (transportOf(endpoint).kind === "stream") return await connect(endpoint, options);
  const socket = await openDatagram(endpoint, "connect", {
    family: options.family,
    lookup: options.lookup,
    trace: options.trace,
    groups: options.groups,
  });
  const { DatagramSide } = await import("./datagram.ts");
  const side = new DatagramSide(socket, {
    op: "connect",
    peerName: connectAddress(endpoint, options.family),
  });
  if (side.note) options.onNote?.(side.note);
  return side;
}

/** Options of {@linkcode listenPeers}: {@linkcode listen}'s, and a datagram listener's. */
export interface ListenPeersOptions extends OpenOptions {
  /** A datagram listener's warnings (datagrams dropped). */
  onWarning?: (text: string) => void;
  /**
   * A server of one session bridged to one place (`listen` without `-k`):
   * a datagram listener hands it what every sender sends, and it answers
   * the latest (see `DatagramListenerOptions.follow`). Streams: nothing.
   */
  follow?: FollowOptions;
}

/**
 * Listens on `endpoint`, whatever its kind: a stream listener through
 * {@linkcode listen}, or a {@linkcode DatagramListener} on a datagram
 * socket bound to it, handing out a peer per sender.
 *
 * @example Usage
 * ```ts
 * import { listenPeers } from "./open.ts";
 * import assert from "node:assert/strict";
 *
 * using listener = await listenPeers({ form: "host-port", scheme: "udp", hostname: "127.0.0.1", port: 0 });
 * assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
 * ```
 */
export async function listenPeers(
  endpoint: Endpoint,
  options: ListenPeersOptions = {},
): Promise<Listener | DatagramListener> {
  const row = transportOf(endpoint);
  if (row.kind === "stream") return await listen(endpoint, options);
  const socket = await openDatagram(endpoint, "listen", options);
  const { DatagramListener } = await import("./datagram_listener.ts");
  return new DatagramListener(socket, {
    scheme: row.scheme,
    prefix: schemePrefix(row),
    onWarning: options.onWarning,
    follow: options.follow,
  });
}
