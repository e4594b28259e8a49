/**
 * The option groups of sockets: `socket` (TCP options of a connection:
 * `--nodelay`, `--keepalive[=IDLE,INTERVAL,COUNT]`, `--ttl`), `reuseport`
 * (a server's `--reuseport`) and `source` (a client's `--source`: an
 * address and/or port, or a Unix datagram client's own path) — their flags,
 * declared, and what they make of the values. Which rows take them is the
 * scheme table's to say (`schemes.ts`).
 *
 * @module
 */

import { count } from "../base/flag.ts";
import { parseDuration } from "../base/duration.ts";
import { UsageError } from "../base/errors.ts";
import { formatEndpoint, transportOf } from "./address.ts";
import type { Endpoint } from "./address.ts";
import type { KeepaliveTimings, SocketOptions } from "./conn.ts";
import { formatHost, ipFamily } from "./ip.ts";
import type { FlagUse, OptionGroup } from "./option_group.ts";
import { schemeNamed, schemePrefix, SCHEMES } from "./schemes.ts";
import type { SchemeDescriptor } from "./schemes.ts";
import type { SourceAddress } from "./tcp_libc.ts";

/**
 * `IDLE[,INTERVAL,COUNT]` of `--keepalive=…`: durations (a bare number is
 * seconds) in whole seconds, and a count.
 *
 * @example Usage
 * ```ts
 * import { keepaliveTimings } from "./socket_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(keepaliveTimings("30s,5,3"), { idle: 30, interval: 5, count: 3 });
 * assert.throws(() => keepaliveTimings("1,2"), /IDLE or IDLE,INTERVAL,COUNT/);
 * ```
 */
export function keepaliveTimings(text: string): KeepaliveTimings {
  const parts = text.split(",");
  const seconds = (part: string, what: string) => {
    const ms = parseDuration(part);
    if (ms < 1000 || ms > 32767_000) {
      throw new UsageError(`option --keepalive: ${what} must be 1s to 32767s, not ${part}`);
    }
    return Math.round(ms / 1000);
  };
  if (parts.length !== 1 && parts.length !== 3) {
    throw new UsageError(
      `option --keepalive takes IDLE or IDLE,INTERVAL,COUNT (--keepalive=60,10,5), not ${
        JSON.stringify(text)
      }`,
    );
  }
  if (parts.length === 1) return { idle: seconds(parts[0], "IDLE") };
  const count = Number(parts[2]);
  if (!/^\d+$/.test(parts[2]) || count < 1 || count > 127) {
    throw new UsageError(`option --keepalive: COUNT must be 1–127, not ${parts[2]}`);
  }
  return { idle: seconds(parts[0], "IDLE"), interval: seconds(parts[1], "INTERVAL"), count };
}

/** A local (Unix-domain) scheme whose clients bind a `--source` path. */
function isLocalSource(row: SchemeDescriptor): boolean {
  return !row.inet && row.groups.includes("source");
}

/** The local scheme a `--source` value is written in (`unixgram:PATH`), if any. */
function localSource(text: string): SchemeDescriptor | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
  const row = m ? schemeNamed(m[1].toLowerCase()) : undefined;
  return row && isLocalSource(row) ? row : undefined;
}

/** How a source was written, for messages. */
function sourceText(source: SourceAddress): string {
  if (source.path !== undefined) {
    const local = Object.values(SCHEMES).find(isLocalSource);
    return `${local ? schemePrefix(local) : ""}${source.path}`;
  }
  if (source.port === undefined) return source.host ?? "";
  return `${source.host === undefined ? "" : formatHost(source.host)}:${source.port}`;
}

/**
 * `--source ADDR[:PORT]`, `:PORT`, `[v6]:PORT`, or `unixgram:PATH` (a
 * path written as an endpoint of a local scheme whose clients bind one).
 *
 * @example Usage
 * ```ts
 * import { sourceAddress } from "./socket_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(sourceAddress("127.0.0.2:4000"), { host: "127.0.0.2", port: 4000 });
 * assert.deepEqual(sourceAddress(":4000"), { port: 4000 });
 * assert.deepEqual(sourceAddress("::1"), { host: "::1" });
 * assert.throws(() => sourceAddress("example.com"), /an IP address/);
 * ```
 */
export function sourceAddress(text: string): SourceAddress {
  const local = localSource(text);
  if (local) {
    const prefix = schemePrefix(local);
    const path = text.slice(prefix.length);
    if (!path) throw new UsageError(`option --source ${prefix} needs a path`);
    return { path };
  }
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]*):(\d+)$/.exec(text) ??
    /^(.*)()$/.exec(text)!;
  const host = m[1] || undefined;
  const port = m[2] ? Number(m[2]) : undefined;
  if (host !== undefined && ipFamily(host) === undefined) {
    throw new UsageError(
      `option --source needs an IP address (ADDR[:PORT]), not ${JSON.stringify(text)}`,
    );
  }
  if (port !== undefined && port > 65535) {
    throw new UsageError(`option --source: port ${port} is out of range`);
  }
  if (host === undefined && port === undefined) {
    throw new UsageError(
      `option --source needs ADDR, ADDR:PORT or :PORT, not ${JSON.stringify(text)}`,
    );
  }
  return { ...(host ? { host } : {}), ...(port !== undefined ? { port } : {}) };
}

/**
 * A `--source` checked against the client's `target`: a path only for a
 * local scheme that binds one, an address only for an IP target, and of
 * the target's family when the target is an address.
 *
 * @example Usage
 * ```ts
 * import { sourceFor } from "./socket_options.ts";
 * import assert from "node:assert/strict";
 *
 * const target = { form: "host-port", scheme: "tcp", hostname: "::1", port: 9 } as const;
 * assert.throws(() => sourceFor({ host: "127.0.0.1" }, target), /is IPv4, the target \[::1\]:9 IPv6/);
 * ```
 */
export function sourceFor(source: SourceAddress, target: Endpoint): SourceAddress {
  const row = transportOf(target);
  if (source.path !== undefined) {
    if (!isLocalSource(row)) {
      const locals = Object.values(SCHEMES).filter(isLocalSource).map(schemePrefix);
      throw new UsageError(
        `option --source ${sourceText(source)} is for a ${locals.join(" or ")} target`,
      );
    }
    return source;
  }
  if (!row.inet) {
    const paths = Object.values(SCHEMES).filter(isLocalSource).map((r) =>
      `${schemePrefix(r)}PATH for ${schemePrefix(r)}`
    );
    throw new UsageError(
      `option --source is for IP targets (and ${paths.join(", ")}), not ${schemePrefix(row)}`,
    );
  }
  const literal = "hostname" in target && target.hostname ? ipFamily(target.hostname) : undefined;
  if (source.host && literal && ipFamily(source.host) !== literal) {
    throw new UsageError(
      `option --source ${sourceText(source)} is IPv${ipFamily(source.host)}, the target ${
        formatEndpoint(target)
      } IPv${literal}`,
    );
  }
  return source;
}

/**
 * The address family for resolving a client's target: `-4`/`-6`, else the
 * family of its `--source` address (none for a port alone); the two must
 * agree.
 *
 * @example Usage
 * ```ts
 * import { sourceFamily } from "./socket_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(sourceFamily({ host: "::1" }, undefined), 6);
 * assert.equal(sourceFamily({ port: 4000 }, 4), 4);
 * assert.throws(() => sourceFamily({ host: "::1" }, 4), /IPv6, but -4/);
 * ```
 */
export function sourceFamily(
  source: SourceAddress | undefined,
  family: 4 | 6 | undefined,
): 4 | 6 | undefined {
  const own = source?.host ? ipFamily(source.host) : undefined;
  if (own && family && own !== family) {
    throw new UsageError(`option --source ${source!.host} is IPv${own}, but -${family} was given`);
  }
  return family ?? own;
}

/** The flags of the socket groups. */
export const SOCKET_SPECS = {
  nodelay: { type: "boolean", help: "TCP_NODELAY: send small writes at once (no Nagle delay)" },
  keepalive: {
    type: "boolean",
    optional: true,
    value: "IDLE[,INTERVAL,COUNT]",
    help: "SO_KEEPALIVE: the kernel probes an idle connection; with =IDLE,INTERVAL,COUNT " +
      "(durations, a count) also TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (through libc: " +
      "--allow-ffi), else the system's timings",
    parse: keepaliveTimings,
  },
  ttl: {
    type: "string",
    short: "t",
    value: "N",
    help: "the TTL (IPv4) or hop limit (IPv6) sent",
    parse: count({ min: 1, max: 255 }),
  },
  source: {
    type: "string",
    value: "ADDR[:PORT]",
    help: "connect from this local address and/or port (:PORT alone; [v6]:PORT): nc's -s and " +
      "-p; for a unixgram: client, the path to bind (unixgram:PATH)",
    parse: sourceAddress,
  },
  reuseport: {
    type: "boolean",
    help: "SO_REUSEPORT: servers may share the port; the kernel spreads the clients",
  },
} as const;

type Values = {
  nodelay?: boolean;
  keepalive?: true | KeepaliveTimings;
  ttl?: number;
  source?: SourceAddress;
  reuseport?: boolean;
};

/** TCP options of a client's connection. */
export const CLIENT_SOCKET_FLAGS: readonly FlagUse[] = [
  "nodelay",
  "keepalive",
  ["ttl", "IP_TTL / IPV6_UNICAST_HOPS of the connection's packets (through libc: --allow-ffi)"],
];

/** TCP options of a server's accepted connections. */
export const SERVER_SOCKET_FLAGS: readonly FlagUse[] = [
  "nodelay",
  "keepalive",
  ["ttl", "IP_TTL / IPV6_UNICAST_HOPS of each connection's packets (through libc: --allow-ffi)"],
];

/** `socket`: TCP options (`--nodelay`, `--keepalive`, `--ttl`) of each connection. */
export const SOCKET_GROUP: OptionGroup<SocketOptions> = {
  name: "socket",
  title: "Socket options",
  flags: CLIENT_SOCKET_FLAGS,
  specs: {
    nodelay: SOCKET_SPECS.nodelay,
    keepalive: SOCKET_SPECS.keepalive,
    ttl: SOCKET_SPECS.ttl,
  },
  parse(values) {
    const { nodelay, keepalive, ttl } = values as Values;
    if (!nodelay && !keepalive && ttl === undefined) return undefined;
    return {
      nodelay: nodelay === true,
      keepalive: keepalive ?? false,
      ...(ttl !== undefined ? { ttl } : {}),
    };
  },
};

/** `reuseport`: a server's SO_REUSEPORT (`--reuseport`). */
export const REUSEPORT_GROUP: OptionGroup<true> = {
  name: "reuseport",
  title: "Socket options",
  role: "listen",
  flags: ["reuseport"],
  specs: { reuseport: SOCKET_SPECS.reuseport },
  parse: (values) => (values as Values).reuseport ? true : undefined,
};

/** `source`: where a client binds before it connects (`--source`), checked against its target. */
export const SOURCE_GROUP: OptionGroup<SourceAddress> = {
  name: "source",
  title: "Socket options",
  role: "connect",
  flags: ["source"],
  specs: { source: SOCKET_SPECS.source },
  parse(values, { endpoint }) {
    const { source } = values as Values;
    return source && sourceFor(source, endpoint);
  },
};
