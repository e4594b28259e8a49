/**
 * `sockit echo ENDPOINT`: an echo server that keeps accepting — the fixture
 * CI scripts start on port 0 and find through the `listening` event. Each
 * client is relayed into itself: a connection, or a datagram listener's
 * peer (one sender), whose datagrams so go back to it.
 *
 * @module
 */

import { formatEndpoint, requireEndpoint } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { exitCodeOf } from "../base/errors.ts";
import { serve } from "../engine/server.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { LIFETIME_FLAG, SERVER_FLAGS, TRAFFIC_FLAGS } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import { SERVER_SECTIONS } from "./sections.ts";
import type { ParsedGroups } from "./groups.ts";
import { openServer, serveOptions } from "./serve.ts";
import { familyFlag, oneEndpoint, serverLimits } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/** Parsed options of `sockit echo`. */
export interface EchoCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to listen (with `--tls` applied). */
  endpoint: Endpoint;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** The options of the endpoint's groups (TLS, WebSocket, socket options, multicast, …). */
  groups: ParsedGroups;
}

/** `sockit echo`. */
export const echoCommand: Command<EchoCommandOptions> = {
  name: "echo",
  noStdout: true,
  summary: "an echo server for TCP, Unix, TLS and UDP; keeps accepting",
  usage: "[options] ENDPOINT",
  description: `An echo server: every byte a client sends comes back to it. Keeps accepting,
clients at once. A client that half-closes gets all its data back, then EOF.
UDP: every datagram goes back to its sender.`,
  sections: [{
    title: "ENDPOINT",
    lines: [
      "0                  127.0.0.1, a free port (see -v / --json)",
      "[::1]:7            IPv6",
      "unix:/tmp/echo.sock",
      "udp://127.0.0.1:0",
      "tls://127.0.0.1:0  TLS (--cert/--key, or an ephemeral certificate)",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        ...SERVER_FLAGS,
        ["idle-timeout", "close a connection after DUR without data"],
        LIFETIME_FLAG,
        "ipv4",
        "ipv6",
      ],
    },
    ...SERVER_SECTIONS,
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    'sockit echo 0 --json 2> events.jsonl &   # a fixture; read the port from "listening"',
    "sockit echo udp://127.0.0.1:9999 -v",
  ],
  endpoints(positionals) {
    const endpoint = oneEndpoint(positionals);
    requireEndpoint(endpoint, { role: "listen" }, "echo", positionals[0]);
    return [{ endpoint, role: "listen", text: positionals[0] }];
  },
  partner: "itself",
  serves: true,
  parse({ values, globals, endpoints: [at] }) {
    return {
      ...globals,
      endpoint: at.endpoint,
      groups: at.groups,
      family: familyFlag(values, at.endpoint),
      ...serverLimits(values),
    };
  },
  run: runEcho,
  deadline: (options) => options.lifetime,
};

/**
 * Runs `sockit echo` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runEcho(parseCommand(echoCommand, ["0", "-v"]), ctx);
 * ```
 */
export async function runEcho(options: EchoCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "echo");
  const endpoint = options.endpoint;
  try {
    using listener = await openServer(
      endpoint,
      { family: options.family, groups: options.groups },
      reporter,
    );
    await serve(
      listener,
      (conn) =>
        transfer(conn, conn, {
          signal: ctx.signal,
          idleTimeout: options.idleTimeout,
          halfClose: [true, false],
          bufferSize: SERVER_BUFFER,
          events: reporter,
          report: (err) => reporter.warnFailure(err),
        }),
      serveOptions(options, ctx, reporter),
    );
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "echo", formatEndpoint(endpoint));
  }
}
