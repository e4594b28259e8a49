/**
 * Reading option values: endpoints, durations, counts, address families,
 * regular expressions and the server limits, each with a one-line usage
 * error naming the option when the value is wrong.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, schemeList, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { parseCidr } from "../net/cidr.ts";
import type { AccessRules } from "../net/cidr.ts";
import { parseDuration } from "../base/duration.ts";
import { UsageError } from "../base/errors.ts";
import { decodeEscapes } from "../base/escapes.ts";
import { Pattern } from "../engine/pattern.ts";
import { parseProxyUrl } from "../protocols/proxy.ts";
import type { ProxySpec } from "../protocols/proxy.ts";
import type { WebSocketMode, WebSocketOptions } from "../protocols/websocket.ts";
import { formatHost, ipFamily, isIPv6 } from "../net/ip.ts";
import type { KeepaliveTimings, SocketOptions } from "../net/conn.ts";
import type { MulticastOptions } from "../net/datagram.ts";
import type { SourceAddress } from "../net/tcp_libc.ts";
import { schemeNamed, schemePrefix, SCHEMES } from "../net/schemes.ts";
import type { OptionGroup, SchemeDescriptor } from "../net/schemes.ts";
import type { Step } from "../engine/dialogue.ts";
import { flagName, WEBSOCKET_FLAGS } from "./flags.ts";
import type { FlagValues, ParsedFlags } from "./flags.ts";

/**
 * Exactly one endpoint among the positionals.
 *
 * @example Usage
 * ```ts
 * import { oneEndpoint } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(oneEndpoint(["8888"]), { form: "host-port", scheme: "tcp", port: 8888 });
 * assert.throws(() => oneEndpoint([]), /missing endpoint/);
 * ```
 */
export function oneEndpoint(positionals: string[]): Endpoint {
  if (positionals.length === 0) throw new UsageError("missing endpoint (e.g. 127.0.0.1:8888)");
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  return parseEndpoint(positionals[0]);
}

/**
 * A duration option in ms, or `undefined` when absent. For limits
 * (`noLimitAtZero`), `0` also means no limit.
 *
 * @example Usage
 * ```ts
 * import { durationFlag } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(durationFlag({ timeout: "2s" }, "timeout"), 2000);
 * assert.equal(durationFlag({}, "timeout"), undefined);
 * ```
 */
export function durationFlag(
  values: FlagValues,
  name: string,
  noLimitAtZero = false,
): number | undefined {
  const text = values[name];
  if (typeof text !== "string") return undefined;
  try {
    const ms = parseDuration(text);
    return noLimitAtZero && ms === 0 ? undefined : ms;
  } catch (err) {
    throw new UsageError(`option --${name}: ${(err as Error).message}`);
  }
}

/**
 * A non-negative integer option, or `undefined` when absent.
 *
 * @example Usage
 * ```ts
 * import { countFlag } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(countFlag({ retry: "3" }, "retry"), 3);
 * assert.throws(() => countFlag({ retry: "-1" }, "retry"), /--retry/);
 * ```
 */
export function countFlag(values: FlagValues, name: string): number | undefined {
  const text = values[name];
  if (typeof text !== "string") return undefined;
  if (!/^\d+$/.test(text) || Number(text) > 1e9) {
    throw new UsageError(`option --${name} needs a whole number, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/**
 * `-4` / `-6`, as in nc; they do not mix with a socket path endpoint.
 *
 * @example Usage
 * ```ts
 * import { familyFlag } from "./values.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(familyFlag({ ipv6: true }, parseEndpoint("80")), 6);
 * assert.equal(familyFlag({}), undefined);
 * assert.throws(() => familyFlag({ ipv4: true }, parseEndpoint("unix:/s")), /do not mix/);
 * assert.throws(
 *   () => familyFlag({ ipv6: true }, parseEndpoint("127.0.0.1:80")),
 *   /127\.0\.0\.1:80: an IPv4 address, but -6 was given/,
 * );
 * ```
 */
export function familyFlag(values: FlagValues, endpoint?: Endpoint): 4 | 6 | undefined {
  if (values.ipv4 && values.ipv6) throw new UsageError("options -4 and -6 contradict each other");
  const family = values.ipv4 ? 4 : values.ipv6 ? 6 : undefined;
  if (family && endpoint && !transportOf(endpoint).inet) {
    throw new UsageError(`options -${family} and ${formatEndpoint(endpoint)} do not mix`);
  }
  // An address of the other family is a mistake found here, before anything is opened.
  const host = endpoint && "hostname" in endpoint ? endpoint.hostname : undefined;
  const literal = host === undefined ? undefined : ipFamily(host);
  if (family && literal && literal !== family) {
    throw new UsageError(
      `${formatHost(host!)}${
        "port" in endpoint! ? `:${endpoint.port}` : ""
      }: an IPv${literal} address, but -${family} was given`,
    );
  }
  return family;
}

/**
 * A regular expression option (`--expect`), or `undefined` when absent.
 *
 * @example Usage
 * ```ts
 * import { regexFlag } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(regexFlag({ expect: "^\\+PONG" }, "expect")?.source, "^\\+PONG");
 * assert.throws(() => regexFlag({ expect: "(" }, "expect"), /invalid regular expression/);
 * assert.throws(() => regexFlag({ expect: "a(?=b)" }, "expect"), /lookaround/);
 * ```
 */
export function regexFlag(values: FlagValues, name: string): Pattern | undefined {
  const text = values[name];
  if (typeof text !== "string") return undefined;
  try {
    return new Pattern(text);
  } catch (err) {
    throw patternError(name, text, err);
  }
}

/** A pattern RE2 refused, as a usage error naming the option. */
function patternError(name: string, text: string, err: unknown): UsageError {
  return new UsageError(
    `option --${name}: invalid regular expression ${JSON.stringify(text)}: ${
      (err as Error).message
    }`,
  );
}

/**
 * Compiles the patterns of an option (loading the linear-time engine); one
 * that RE2 refuses is a usage error naming the option.
 *
 * @example Usage
 * ```ts
 * import { compilePatterns, regexFlag } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * const body = regexFlag({ body: "ok" }, "body")!;
 * await compilePatterns("body", [body]);
 * assert.ok(body.test("all ok"));
 * ```
 */
export async function compilePatterns(name: string, patterns: Pattern[]): Promise<void> {
  for (const pattern of patterns) {
    try {
      await pattern.compile();
    } catch (err) {
      throw patternError(name, pattern.source, err);
    }
  }
}

/**
 * Refuses options that exclude each other when more than one is given.
 *
 * @example Usage
 * ```ts
 * import { exclusive } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => exclusive({ send: "a", "send-file": "b" }, ["send", "send-file"]), /exclude each other/);
 * ```
 */
export function exclusive(values: FlagValues, names: string[]): void {
  const given = names.filter((n) => values[n] !== undefined);
  if (given.length > 1) {
    throw new UsageError(`options ${given.map((n) => `--${n}`).join(" and ")} exclude each other`);
  }
}

/**
 * Refuses flags that do nothing with a transport (`-k` with `udp://`).
 *
 * @example Usage
 * ```ts
 * import { refuseFlags } from "./values.ts";
 * import { transportOf } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => refuseFlags({ "keep-open": true }, ["keep-open"], transportOf("udp")), /--keep-open is not supported with udp:\/\//);
 * ```
 */
export function refuseFlags(values: FlagValues, names: string[], row: SchemeDescriptor): void {
  const given = names.find((n) => values[n] !== undefined);
  if (given) {
    throw new UsageError(`option --${given} is not supported with ${schemePrefix(row)}`);
  }
}

/**
 * The send/expect dialogue given by `--send`, `--send-file` and `--expect`,
 * in the order given; `undefined` when there is none.
 *
 * @example Usage
 * ```ts
 * import { dialogueSteps } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * const steps = dialogueSteps([{ name: "send", value: "PING\\r\\n" }, { name: "expect", value: "^\\+PONG" }]);
 * assert.equal(steps?.length, 2);
 * ```
 */
export function dialogueSteps(sequence: ParsedFlags["sequence"]): Step[] | undefined {
  const steps: Step[] = [];
  for (const { name, value } of sequence) {
    if (name === "send") steps.push({ send: decodeEscapes(value) });
    else if (name === "send-file") steps.push({ sendFile: value });
    else if (name === "expect") steps.push({ expect: regexFlag({ expect: value }, "expect")! });
  }
  return steps.length ? steps : undefined;
}

/** Parsed server limits. */
export interface ServerLimits {
  /** At most this many connections at once. */
  maxConns?: number;
  /** `--allow` / `--deny` ranges. */
  access: AccessRules;
  /** Per-connection idle timeout in ms. */
  idleTimeout?: number;
  /** The whole server's time limit in ms (`--timeout`): then it stops, exit 124. */
  lifetime?: number;
}

/**
 * Reads `--max-conns`, `--allow`, `--deny` and `--idle-timeout`.
 *
 * @example Usage
 * ```ts
 * import { serverLimits } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * const limits = serverLimits({ "max-conns": "2", allow: ["127.0.0.0/8"] });
 * assert.deepEqual([limits.maxConns, limits.access.allow.length], [2, 1]);
 * ```
 */
export function serverLimits(values: FlagValues): ServerLimits {
  const list = (name: string) => ((values[name] as string[] | undefined) ?? []).map(parseCidr);
  const maxConns = countFlag(values, "max-conns");
  if (maxConns === 0) throw new UsageError("option --max-conns needs at least 1");
  return {
    maxConns,
    access: { allow: list("allow"), deny: list("deny") },
    idleTimeout: durationFlag(values, "idle-timeout", true),
    lifetime: durationFlag(values, "timeout", true),
  };
}

/**
 * `--proxy URL`, parsed; only for a stream target that is a host and port
 * (a usage error for a datagram or Unix target).
 *
 * @example Usage
 * ```ts
 * import { proxyFlag } from "./values.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(proxyFlag({ proxy: "socks5h://127.0.0.1:1080" })?.scheme, "socks5h");
 * assert.throws(() => proxyFlag({ proxy: "socks5://p:1" }, parseEndpoint("udp://53")), /udp:\/\/: --proxy tunnels TCP streams/);
 * ```
 */
export function proxyFlag(values: FlagValues, target?: Endpoint): ProxySpec | undefined {
  const text = values.proxy;
  if (typeof text !== "string") return undefined;
  const spec = parseProxyUrl(text);
  if (target && !takes(target, "proxy")) {
    throw new UsageError(
      `${schemePrefix(transportOf(target))}: --proxy tunnels TCP streams to host:port targets (${
        schemeList((row) => row.groups.includes("proxy"), ", ")
      })`,
    );
  }
  return spec;
}

/** The WebSocket flags of a command, as options of both ends. */
export type WebSocketCommandOptions = WebSocketOptions & {
  /** `-H`: headers with a client's upgrade. */
  headers?: [string, string][];
  /** `--origin`. */
  origin?: string;
  /** `--handshake-timeout` for a server's upgrade, in ms. */
  handshakeTimeout?: number;
};

/**
 * The WebSocket flags as options, for endpoints that are `ws://`/`wss://`
 * (`endpoints`); a WebSocket flag with none of them is a usage error.
 * `mode` is the command's default (`--binary` makes it binary).
 *
 * @example Usage
 * ```ts
 * import { websocketFlags } from "./values.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * const ws = parseEndpoint("ws://127.0.0.1:80");
 * assert.equal(websocketFlags({ binary: true }, [ws], "text")?.mode, "binary");
 * assert.throws(() => websocketFlags({ binary: true }, [parseEndpoint("1")], "text"), /needs a ws:\/\//);
 * ```
 */
export function websocketFlags(
  values: FlagValues,
  endpoints: Endpoint[],
  mode: WebSocketMode,
): WebSocketCommandOptions | undefined {
  // `--header` is also HTTP's (wait): only the others say "WebSocket".
  const names = WEBSOCKET_FLAGS.map(flagName).filter((name) => name !== "header");
  const any = endpoints.some((e) => takes(e, "websocket"));
  const given = names.find((n) => values[n] !== undefined);
  if (!any) {
    if (given) {
      throw new UsageError(`option --${given} needs a ${takers("websocket")} endpoint`);
    }
    return undefined;
  }
  const maxMessage = countFlag(values, "max-message");
  if (maxMessage === 0) throw new UsageError("option --max-message needs at least 1");
  const headers = ((values.header as string[] | undefined) ?? []).map((h) => {
    const colon = h.indexOf(":");
    if (colon < 1) {
      throw new UsageError(`option --header needs 'Name: value', not ${JSON.stringify(h)}`);
    }
    return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()] as [string, string];
  });
  return {
    mode: values.binary === true ? "binary" : mode,
    protocols: values.protocol as string[] | undefined,
    origin: values.origin as string | undefined,
    closeDelay: durationFlag(values, "close-delay"),
    pingInterval: durationFlag(values, "ping-interval", true),
    pingTimeout: durationFlag(values, "ping-timeout", true),
    maxMessage,
    headers: headers.length ? headers : undefined,
    noCloseOnEof: values["no-half-close"] === true,
    keepLineEnds: values.crlf === true,
    handshakeTimeout: durationFlag(values, "handshake-timeout"),
  };
}

/**
 * `--nodelay`, `--keepalive[=IDLE,INTERVAL,COUNT]`, `--ttl`, `--reuseport`
 * and a client's `--source` (checked against its `target`) as options.
 *
 * @example Usage
 * ```ts
 * import { socketFlags } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(socketFlags({ nodelay: true }), { socket: { nodelay: true, keepalive: false }, reusePort: false });
 * assert.deepEqual(socketFlags({ keepalive: "30s,5,3" }).socket.keepalive, { idle: 30, interval: 5, count: 3 });
 * ```
 */
export function socketFlags(
  values: FlagValues,
  target?: Endpoint,
): { socket: SocketOptions; reusePort: boolean } {
  const ttl = countFlag(values, "ttl");
  if (ttl !== undefined && (ttl < 1 || ttl > 255)) throw new UsageError("option --ttl needs 1–255");
  const source = sourceFlag(values, target);
  return {
    socket: {
      nodelay: values.nodelay === true,
      keepalive: typeof values.keepalive === "string"
        ? keepaliveTimings(values.keepalive)
        : values.keepalive === true,
      ...(ttl !== undefined ? { ttl } : {}),
      ...(source ? { source } : {}),
    },
    reusePort: values.reuseport === true,
  };
}

/** `IDLE[,INTERVAL,COUNT]`: durations (a bare number is seconds) in whole seconds, and a count. */
function keepaliveTimings(text: string): KeepaliveTimings {
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

/**
 * `--source ADDR[:PORT]`, `:PORT`, `[v6]:PORT`, or `unixgram:PATH` for a
 * unixgram client; the address must be an IP literal of the target's
 * family.
 *
 * @example Usage
 * ```ts
 * import { sourceFlag } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(sourceFlag({ source: "127.0.0.2:4000" }), { host: "127.0.0.2", port: 4000 });
 * assert.deepEqual(sourceFlag({ source: ":4000" }), { port: 4000 });
 * assert.deepEqual(sourceFlag({ source: "::1" }), { host: "::1" });
 * assert.throws(() => sourceFlag({ source: "example.com" }), /an IP address/);
 * ```
 */
export function sourceFlag(values: FlagValues, target?: Endpoint): SourceAddress | undefined {
  const text = values.source;
  if (typeof text !== "string") return undefined;
  const row = target && transportOf(target);
  // A local (Unix-domain) client binds a path, written as an endpoint of its scheme.
  const local = localSource(text);
  if (local) {
    const prefix = schemePrefix(local);
    if (row && row !== local) {
      throw new UsageError(`option --source ${text} is for a ${prefix} target`);
    }
    const path = text.slice(prefix.length);
    if (!path) throw new UsageError(`option --source ${prefix} needs a path`);
    return { path };
  }
  if (row && !(row.inet && row.groups.includes("source"))) {
    const paths = Object.values(SCHEMES).filter(isLocalSource).map((r) =>
      `${schemePrefix(r)}PATH for ${schemePrefix(r)}`
    );
    throw new UsageError(
      `option --source is for IP targets (and ${paths.join(", ")}), not ${schemePrefix(row)}`,
    );
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
  const literal = target && "hostname" in target && target.hostname
    ? ipFamily(target.hostname)
    : undefined;
  if (host && literal && ipFamily(host) !== literal) {
    throw new UsageError(
      `option --source ${text} is IPv${ipFamily(host)}, the target ${
        formatEndpoint(target!)
      } IPv${literal}`,
    );
  }
  return { ...(host ? { host } : {}), ...(port !== undefined ? { port } : {}) };
}

/**
 * The address family for resolving a client's target: `-4`/`-6`, else the
 * family of its `--source` address (none for a port alone); the two must
 * agree.
 *
 * @example Usage
 * ```ts
 * import { sourceFamily } from "./values.ts";
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

/**
 * `--multicast-join GROUP[@IFADDR]`, `--multicast-ttl N` and
 * `--multicast-loop[=off]` as options, or `undefined` when none is given.
 *
 * @example Usage
 * ```ts
 * import { multicastFlags } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(multicastFlags({ "multicast-join": ["239.1.2.3@127.0.0.1"] }), {
 *   join: [{ group: "239.1.2.3", iface: "127.0.0.1" }],
 * });
 * assert.equal(multicastFlags({}), undefined);
 * assert.throws(() => multicastFlags({ "multicast-join": ["10.0.0.1"] }), /not a multicast group/);
 * ```
 */
export function multicastFlags(values: FlagValues): MulticastOptions | undefined {
  const joins = (values["multicast-join"] as string[] | undefined) ?? [];
  const join = joins.map((text) => {
    const at = text.lastIndexOf("@");
    const group = at < 0 ? text : text.slice(0, at);
    const iface = at < 0 ? undefined : text.slice(at + 1);
    if (!isMulticast(group)) {
      throw new UsageError(`option --multicast-join: ${group} is not a multicast group address`);
    }
    if (iface !== undefined && (isIPv6(group) ? !/^\d+$/.test(iface) : ipFamily(iface) !== 4)) {
      throw new UsageError(
        `option --multicast-join: after @ comes ${
          isIPv6(group) ? "an interface index" : "the IPv4 address of an interface"
        }, not ${JSON.stringify(iface)}`,
      );
    }
    return { group, ...(iface !== undefined ? { iface } : {}) };
  });
  const ttl = countFlag(values, "multicast-ttl");
  if (ttl !== undefined && ttl > 255) throw new UsageError("option --multicast-ttl needs 0–255");
  const loopText = values["multicast-loop"];
  if (typeof loopText === "string" && !["on", "off"].includes(loopText)) {
    throw new UsageError(
      `option --multicast-loop takes =on or =off, not ${JSON.stringify(loopText)}`,
    );
  }
  const loop = loopText === undefined ? undefined : loopText !== "off";
  if (!join.length && ttl === undefined && loop === undefined) return undefined;
  return {
    ...(join.length ? { join } : {}),
    ...(ttl !== undefined ? { ttl } : {}),
    ...(loop !== undefined ? { loop } : {}),
  };
}

/** The UDP options of a command: multicast settings and `--broadcast`. */
export interface DatagramFlags {
  /** `--multicast-join`, `--multicast-ttl`, `--multicast-loop`. */
  multicast?: MulticastOptions;
  /** `--broadcast`. */
  broadcast?: boolean;
}

/**
 * The multicast options and `--broadcast`, which only `udp://` endpoints
 * take. A server's socket (`listening`) sets its multicast TTL and loop
 * through a membership: without `--multicast-join` they are a usage error
 * here, before any socket is made.
 *
 * @example Usage
 * ```ts
 * import { datagramFlags } from "./values.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(datagramFlags({ broadcast: true }, [parseEndpoint("udp://255.255.255.255:9")]), { broadcast: true });
 * assert.throws(() => datagramFlags({ broadcast: true }, [parseEndpoint("9")]), /udp:\/\//);
 * assert.throws(
 *   () => datagramFlags({ "multicast-ttl": "2" }, [parseEndpoint("udp://9")], { listening: true }),
 *   /come with --multicast-join/,
 * );
 * ```
 */
export function datagramFlags(
  values: FlagValues,
  endpoints: Endpoint[],
  options: { listening?: boolean } = {},
): DatagramFlags {
  const multicast = multicastFlags(values);
  if (options.listening && multicast && !multicast.join) {
    throw new UsageError(
      "options --multicast-ttl and --multicast-loop on a server's socket come with --multicast-join",
    );
  }
  const broadcast = values.broadcast === true;
  for (
    const [given, group, flag] of [[broadcast, "broadcast", "broadcast"], [
      multicast,
      "multicast",
      "multicast-…",
    ]] as const
  ) {
    if (given && !endpoints.some((e) => takes(e, group))) {
      throw new UsageError(`option --${flag} is for ${takers(group)} endpoints`);
    }
  }
  return { ...(multicast ? { multicast } : {}), ...(broadcast ? { broadcast } : {}) };
}

/** Whether `host` is an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast address. */
function isMulticast(host: string): boolean {
  if (ipFamily(host) === 4) return Number(host.split(".")[0]) >> 4 === 14;
  return ipFamily(host) === 6 && /^ff/i.test(host);
}

/** Whether an endpoint's scheme takes an option group. */
function takes(endpoint: Endpoint, group: OptionGroup): boolean {
  return transportOf(endpoint).groups.includes(group);
}

/** The schemes that take an option group, for a message: `ws:// or wss://`. */
function takers(group: OptionGroup): string {
  return schemeList((row) => row.groups.includes(group));
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
