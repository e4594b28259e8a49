/**
 * `sockit proxy [LISTEN]`: a SOCKS5, SOCKS4/4a and HTTP proxy server on one
 * port. Each client's request is read and checked by `lib/proxy_server.ts`;
 * the tunnel then runs through the one transfer engine (half-close each
 * way, counters, idle timeout), as `forward`'s connections do.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, requireEndpoint } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { exitCodeOf, toSockitError, UsageError } from "../base/errors.ts";
import { cidrContains, parseCidr } from "../net/cidr.ts";
import { formatHost } from "../net/ip.ts";
import {
  acceptProxyRequest,
  LOCAL_TARGETS,
  parseAuthFile,
  parseTargetRule,
  parseUsers,
  ProxyRefusal,
  REQUEST_TIMEOUT,
} from "../tools/proxy_server.ts";
import type { TargetRules } from "../tools/proxy_server.ts";
import { serve } from "../engine/server.ts";
import { SERVER_BUFFER, transfer } from "../engine/transfer.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import { LIFETIME_FLAG, SERVER_FLAGS, TRAFFIC_FLAGS } from "./flags.ts";
import type { GlobalOptions } from "./flags.ts";
import type { ParsedGroups } from "./groups.ts";
import { SERVER_SOCKET_SECTION } from "./sections.ts";
import { openStreamServer, serveOptions } from "./serve.ts";
import { familyFlag, serverLimits } from "./values.ts";
import type { ServerLimits } from "./values.ts";

/** Where `sockit proxy` listens by default. */
export const DEFAULT_PROXY_LISTEN = "127.0.0.1:1080";

/** Parsed options of `sockit proxy`. */
export interface ProxyCommandOptions extends GlobalOptions, ServerLimits {
  /** Where to accept. */
  listen: Endpoint;
  /** The options of the listener's groups (`--reuseport`, `--nodelay`, `--keepalive`, `--ttl`). */
  groups: ParsedGroups;
  /** `--auth` and `--auth-file` users (read when the server starts). */
  auth: string[];
  /** `--auth-file`. */
  authFile?: string;
  /** `--allow-target` / `--deny-target`. */
  targets: TargetRules;
  /** Give up connecting to a target after this many ms. */
  connectTimeout: number;
  /** A client's request must be in within this many ms. */
  requestTimeout: number;
  /** `-4` / `-6` for target names. */
  family?: 4 | 6;
}

/** `sockit proxy`. */
export const proxyCommand: Command<ProxyCommandOptions> = {
  name: "proxy",
  noStdout: true,
  summary: "a SOCKS5, SOCKS4/4a and HTTP proxy server on one port",
  usage: "[options] [LISTEN]",
  description: `A proxy server on LISTEN (default ${DEFAULT_PROXY_LISTEN}, loopback unless a host is
given). One port speaks SOCKS5 (no authentication, or username/password with --auth),
SOCKS4 and SOCKS4a, HTTP CONNECT, and plain HTTP proxying of absolute-URI requests
(GET http://host/path), told apart by the first bytes. Targets are resolved by the
proxy and checked against --allow-target/--deny-target after resolving. A refused
request gets its protocol's refusal (SOCKS5 reply 2, SOCKS4 0x5B, HTTP 403/407).
0.0.0.0 and :: are the local host to the rules. Listening beyond loopback, local
and link-local targets (127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10) are refused
unless an --allow-target address names them. Keeps running until SIGINT/SIGTERM.`,
  flags: [
    {
      title: "Options",
      flags: [
        "auth",
        "auth-file",
        "allow-target",
        "deny-target",
        ["connect-timeout", "give up connecting to a target after DUR (default 10s)"],
        "request-timeout",
        ...SERVER_FLAGS,
        ["idle-timeout", "close a tunnel after DUR without data either way"],
        LIFETIME_FLAG,
        ["ipv4", "resolve target names to IPv4 only"],
        ["ipv6", "resolve target names to IPv6 only"],
      ],
    },
    SERVER_SOCKET_SECTION,
    { title: "Traffic", flags: TRAFFIC_FLAGS },
  ],
  examples: [
    "sockit proxy -v",
    "sockit proxy 127.0.0.1:8080 --auth alice:s3cret --deny-target 10.0.0.0/8",
    "curl --socks5-hostname 127.0.0.1:1080 http://example.com/",
    "curl -x http://127.0.0.1:1080 http://example.com/",
  ],
  endpoints(positionals) {
    if (positionals.length > 1) {
      throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
    }
    const text = positionals[0] ?? DEFAULT_PROXY_LISTEN;
    const endpoint = parseEndpoint(text);
    requireEndpoint(endpoint, { role: "listen", kind: "stream" }, "proxy", text);
    return [{ endpoint, role: "listen", text }];
  },
  partner: "endpoint",
  serves: true,
  parse({ values, globals, endpoints: [at] }) {
    const auth = values.auth ?? [];
    parseUsers(auth);
    return {
      ...globals,
      listen: at.endpoint,
      groups: at.groups,
      auth,
      authFile: values["auth-file"],
      targets: {
        allow: (values["allow-target"] ?? []).map(parseTargetRule),
        deny: (values["deny-target"] ?? []).map(parseTargetRule),
      },
      connectTimeout: values["connect-timeout"] ?? 10_000,
      requestTimeout: values["request-timeout"] ?? REQUEST_TIMEOUT,
      ...serverLimits(values),
      family: familyFlag(values),
    };
  },
  run: runProxy,
  deadline: (options) => options.lifetime,
};

/** The users of `--auth` and `--auth-file` (a file without users is an error). */
async function users(options: ProxyCommandOptions): Promise<Map<string, string>> {
  const users = parseUsers(options.auth);
  if (options.authFile !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(options.authFile);
    } catch (err) {
      throw toSockitError(err, "read", options.authFile);
    }
    for (const [user, pass] of parseAuthFile(options.authFile, text)) users.set(user, pass);
  }
  return users;
}

/** Whether a listener's address is loopback (or a Unix socket): reachable from this host only. */
function loopbackOnly(addr: Deno.Addr): boolean {
  if (!("hostname" in addr)) return true;
  return LOOPBACK.some((range) => cidrContains(range, addr.hostname));
}

const LOOPBACK = [parseCidr("127.0.0.0/8"), parseCidr("::1")];

/**
 * Runs `sockit proxy` until a signal; returns 130/143 then.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runProxy(parseCommand(proxyCommand, ["127.0.0.1:0"]), ctx);
 * ```
 */
export async function runProxy(options: ProxyCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "proxy");
  try {
    const accounts = await users(options);
    const portOnly = "port" in options.listen && options.listen.hostname === undefined;
    using listener = await openStreamServer(options.listen, {
      family: portOnly ? options.family : undefined,
      groups: options.groups,
    }, reporter);
    // Beyond loopback, the host's own services and link-local ones (a cloud's
    // metadata) are refused unless --allow-target names them.
    const exposed = !loopbackOnly(listener.addr);
    const targets: TargetRules = exposed
      ? { ...options.targets, local: LOCAL_TARGETS.map(parseTargetRule) }
      : options.targets;
    const { allow, deny } = options.targets;
    const open = accounts.size === 0 && options.access.allow.length === 0;
    if (exposed && open && allow.length === 0 && deny.length === 0) {
      reporter.warning(
        `an open proxy on ${listener.address}: anyone who reaches it may use it ` +
          "(no --auth, no --allow/--allow-target; local and link-local targets are refused)",
      );
    }
    await serve(listener, async (client, slot) => {
      let tunnel;
      slot.opening(true);
      try {
        tunnel = await acceptProxyRequest(client, {
          users: accounts,
          targets,
          connectTimeout: options.connectTimeout,
          requestTimeout: options.requestTimeout,
          family: options.family,
          signal: ctx.signal,
          trace: reporter.traceFn,
          onRequest: () => slot.opening(false),
          onDropped: () =>
            reporter.info(
              `${client.remoteAddress}: bytes after its plain HTTP request dropped (one request a connection)`,
            ),
        });
      } catch (err) {
        client.close();
        if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
        const request = err instanceof ProxyRefusal ? err.request : undefined;
        const reason = err instanceof ProxyRefusal
          ? err.message
          : toSockitError(err, "proxy", client.remoteAddress).reason;
        const asked = request
          ? ` ${request.protocol} ${formatHost(request.host)}:${request.port}`
          : "";
        reporter.event("refused", `refused ${client.remoteAddress}${asked}: ${reason}`, {
          conn: client.id,
          remote: client.remoteAddress,
          ...(request
            ? {
              protocol: request.protocol,
              target: `${formatHost(request.host)}:${request.port}`,
              ...(request.user !== undefined ? { user: request.user } : {}),
            }
            : {}),
          reason,
        });
        reporter.closed(client, {
          sent: 0,
          received: 0,
          durationMs: Math.round(performance.now() - client.openedAt),
          reason,
        });
        return 1;
      }
      const { request, target, address } = tunnel;
      const asked = `${formatHost(request.host)}:${request.port}`;
      reporter.event(
        "proxied",
        `${client.remoteAddress} → ${asked}${
          asked === address ? "" : ` (${address})`
        } by ${request.protocol}${
          request.user !== undefined ? ` as ${JSON.stringify(request.user)}` : ""
        }`,
        {
          conn: client.id,
          remote: client.remoteAddress,
          protocol: request.protocol,
          target: asked,
          address,
          ...(request.user !== undefined ? { user: request.user } : {}),
        },
      );
      return await transfer(client, target, {
        signal: ctx.signal,
        idleTimeout: options.idleTimeout,
        bufferSize: SERVER_BUFFER,
        splice: "bulk",
        otherName: { read: asked, write: asked },
        events: reporter,
        report: (err) => reporter.warnFailure(err),
      });
    }, { ...serveOptions(options, ctx, reporter), handshakeTimeout: options.requestTimeout });
    reporter.totals();
    return exitCodeOf(ctx.signal.reason);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "proxy", formatEndpoint(options.listen));
  }
}
