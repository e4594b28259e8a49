/**
 * The listener bootstrap every server command shares (`listen`, `echo`,
 * `forward`, `proxy`): what the endpoint's option groups need first (a TLS
 * certificate from `--cert/--key` or made for the run, …), bind and listen
 * — a stream listener, or a datagram listener that hands out a peer per
 * sender — (a failure in the words of the group that caused it), and the
 * `listening` event with the real bound address.
 *
 * @module
 */

import type { Endpoint } from "../net/address.ts";
import type { FollowOptions } from "../net/datagram_listener.ts";
import type { Listener } from "../net/listener.ts";
import { listen, listenPeers } from "../net/open.ts";
import type { ListenPeersOptions } from "../net/open.ts";
import type { Client, ServeOptions, ServerListener } from "../engine/server.ts";
import type { CommandContext } from "./context.ts";
import { prepareGroups } from "./groups.ts";
import type { ParsedGroups } from "./groups.ts";
import type { ServerLimits } from "./values.ts";
import type { Reporter } from "./report.ts";

/** Options of {@linkcode openServer}. */
export interface OpenServerOptions {
  /** `-4`/`-6` for the port-only form or a host name. */
  family?: 4 | 6;
  /** The options of the endpoint's groups. */
  groups?: ParsedGroups;
  /**
   * A server of one session bridged to stdio (`listen` without `-k`): a
   * datagram listener hands it what every sender sends (see
   * `ListenPeersOptions.follow`).
   */
  follow?: FollowOptions;
}

/**
 * Opens the listening socket of a server command — for a stream endpoint,
 * or a datagram one (a peer per sender) — and announces it.
 *
 * @example Usage
 * ```ts ignore
 * using listener = await openServer(endpoint, { family: 4 }, reporter);
 * ```
 */
export async function openServer(
  endpoint: Endpoint,
  options: OpenServerOptions,
  reporter: Reporter,
): Promise<ServerListener<Client>> {
  return await open(endpoint, options, reporter, listenPeers);
}

/**
 * {@linkcode openServer} for a server of streams only (`proxy`): the
 * listener with its Deno address.
 *
 * @example Usage
 * ```ts ignore
 * using listener = await openStreamServer(endpoint, { family: 4 }, reporter);
 * ```
 */
export async function openStreamServer(
  endpoint: Endpoint,
  options: OpenServerOptions,
  reporter: Reporter,
): Promise<Listener> {
  return await open(endpoint, options, reporter, listen);
}

async function open<L extends { address: string; scheme: string }>(
  endpoint: Endpoint,
  options: OpenServerOptions,
  reporter: Reporter,
  listenOn: (endpoint: Endpoint, options: ListenPeersOptions) => Promise<L>,
): Promise<L> {
  const { groups, explain } = await prepareGroups(options.groups ?? {}, {
    reporter,
    role: "listen",
  });
  let listener: L;
  try {
    listener = await listenOn(endpoint, {
      family: options.family,
      trace: reporter.traceFn,
      groups,
      follow: options.follow,
      onStaleSocket: (path) => reporter.info(`removed stale socket file ${path}`),
      onWarning: (text) => reporter.warning(text),
    });
  } catch (err) {
    throw explain(err);
  }
  reporter.listening(listener.address, listener.scheme);
  return listener;
}

/**
 * How a server command runs its accept loop: the limits it was given,
 * events to the reporter, the context's signal, and a handler that fails
 * as the command's error.
 *
 * @example Usage
 * ```ts ignore
 * await serve(listener, handler, serveOptions(options, ctx, reporter));
 * ```
 */
export function serveOptions(
  limits: ServerLimits,
  ctx: CommandContext,
  reporter: Reporter,
): ServeOptions {
  return {
    events: reporter,
    signal: ctx.signal,
    handshakeTimeout: limits.handshakeTimeout,
    maxConns: limits.maxConns,
    access: limits.access,
    report: (err) => reporter.fail(err),
  };
}
