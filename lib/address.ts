/**
 * The endpoint grammar (DESIGN §2): one parser, one formatter.
 *
 * ```
 * 8888                    port only
 * host:8888  1.2.3.4:80   TCP (the default scheme)
 * [::1]:8888              IPv6 literal in brackets
 * tcp://host:port         explicit TCP
 * udp://host:port         UDP
 * tls://host:port         TLS over TCP
 * unix:/path/to.sock      Unix-domain stream socket (unix:///path also accepted)
 * ```
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** The transports an endpoint can name. */
export type Transport = "tcp" | "udp" | "tls" | "unix";

/** An IP endpoint: `tcp`, `udp` or `tls`. */
export interface NetEndpoint {
  /** The transport. */
  transport: "tcp" | "udp" | "tls";
  /**
   * Host name or IP literal (IPv6 without brackets). Absent for the port-only
   * form, whose host depends on the command (see {@linkcode hostOf}).
   */
  hostname?: string;
  /** Port, 0–65535. Port 0 on a listening endpoint asks the OS for a free port. */
  port: number;
}

/** A Unix-domain stream socket endpoint. */
export interface UnixEndpoint {
  /** Always `unix`. */
  transport: "unix";
  /** File system path of the socket. */
  path: string;
}

/** Any endpoint sockit can listen on or connect to. */
export type Endpoint = NetEndpoint | UnixEndpoint;

/** The longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const MAX_UNIX_PATH_BYTES = 107;

const SCHEMES = ["tcp", "udp", "tls"] as const;
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function fail(input: string, reason: string): never {
  throw new UsageError(`Cannot parse endpoint ${JSON.stringify(input)}: ${reason}`);
}

/**
 * Whether `text` is an IPv4 literal in dotted-quad form.
 *
 * @example Usage
 * ```ts
 * import { isIPv4 } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert(isIPv4("127.0.0.1"));
 * assert(!isIPv4("256.0.0.1"));
 * ```
 */
export function isIPv4(text: string): boolean {
  const m = IPV4.exec(text);
  return m !== null &&
    m.slice(1).every((part) => Number(part) <= 255 && String(Number(part)) === part);
}

/**
 * Whether `text` is an IPv6 literal (without brackets; a `%zone` suffix is allowed).
 *
 * @example Usage
 * ```ts
 * import { isIPv6 } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert(isIPv6("::1"));
 * assert(isIPv6("::ffff:127.0.0.1"));
 * assert(!isIPv6("1:2:3"));
 * ```
 */
export function isIPv6(text: string): boolean {
  const zone = text.indexOf("%");
  const addr = zone === -1 ? text : text.slice(0, zone);
  if (zone !== -1 && !/^[A-Za-z0-9_.-]+$/.test(text.slice(zone + 1))) return false;
  if (!/^[0-9A-Fa-f:.]+$/.test(addr) || !addr.includes(":")) return false;
  let head = addr;
  let groups = 0;
  const lastColon = addr.lastIndexOf(":");
  const tail = addr.slice(lastColon + 1);
  if (tail.includes(".")) {
    if (!isIPv4(tail)) return false;
    // Keep "::" whole ("::1.2.3.4"); otherwise drop the colon before the IPv4 part.
    head = addr.slice(0, lastColon + 1);
    if (!head.endsWith("::")) head = head.slice(0, -1);
    groups += 2;
  }
  const halves = head.split("::");
  if (halves.length > 2) return false;
  const parts = halves.map((h) => (h === "" ? [] : h.split(":")));
  for (const part of parts) {
    for (const group of part) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return false;
      groups++;
    }
  }
  return halves.length === 2 ? groups <= 7 : groups === 8;
}

function parsePort(input: string, text: string): number {
  if (text === "") fail(input, "missing port");
  if (!/^\d+$/.test(text)) fail(input, `invalid port ${JSON.stringify(text)}`);
  const port = Number(text);
  if (port > 65535) fail(input, "port out of range");
  return port;
}

function parseHostPort(
  input: string,
  rest: string,
  transport: NetEndpoint["transport"],
): NetEndpoint {
  if (rest === "") fail(input, "missing host and port");
  if (/^\d+$/.test(rest)) return { transport, port: parsePort(input, rest) };
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close === -1) fail(input, "unbalanced brackets");
    const host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (host.includes("[") || after.includes("[") || after.includes("]")) {
      fail(input, "unbalanced brackets");
    }
    if (!isIPv6(host)) fail(input, `invalid IPv6 address ${JSON.stringify(host)}`);
    if (after === "") fail(input, "missing port");
    if (!after.startsWith(":")) fail(input, `unexpected ${JSON.stringify(after)} after "]"`);
    return { transport, hostname: host, port: parsePort(input, after.slice(1)) };
  }
  if (rest.includes("]")) fail(input, "unbalanced brackets");
  const colon = rest.lastIndexOf(":");
  if (colon === -1) fail(input, "missing port");
  const host = rest.slice(0, colon);
  if (host.includes(":")) {
    fail(input, "an IPv6 address must be in brackets, as in [::1]:8888");
  }
  if (host === "") fail(input, 'missing host before ":"');
  if (!HOST_NAME.test(host) || host.includes("..")) {
    fail(input, `invalid host ${JSON.stringify(host)}`);
  }
  if (/^[\d.]+$/.test(host) && !isIPv4(host)) {
    fail(input, `invalid IPv4 address ${JSON.stringify(host)}`);
  }
  return { transport, hostname: host, port: parsePort(input, rest.slice(colon + 1)) };
}

/**
 * Parses an endpoint. Throws a {@linkcode UsageError} naming the input and the
 * reason when it is malformed.
 *
 * @example Usage
 * ```ts
 * import { parseEndpoint } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseEndpoint("[::1]:8888"), { transport: "tcp", hostname: "::1", port: 8888 });
 * assert.deepEqual(parseEndpoint("unix:/tmp/s.sock"), { transport: "unix", path: "/tmp/s.sock" });
 * assert.throws(() => parseEndpoint("x:99999"), /Cannot parse endpoint "x:99999": port out of range/);
 * ```
 */
export function parseEndpoint(input: string): Endpoint {
  if (input === "") fail(input, "empty endpoint");
  if (input.includes("\0")) fail(input, "contains a NUL byte");
  const lower = input.toLowerCase();
  if (!lower.startsWith("unix:") && /\s/.test(input)) fail(input, "contains whitespace");
  if (lower.startsWith("unix:")) {
    let path = input.slice("unix:".length);
    if (path.startsWith("//")) {
      path = path.slice(2);
      if (path !== "" && !path.startsWith("/")) fail(input, "expected unix:/path or unix:///path");
    }
    if (path === "") fail(input, "empty unix socket path");
    if (new TextEncoder().encode(path).length > MAX_UNIX_PATH_BYTES) {
      fail(input, `unix socket path longer than ${MAX_UNIX_PATH_BYTES} bytes`);
    }
    return { transport: "unix", path };
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(input);
  if (scheme) {
    const name = scheme[1].toLowerCase();
    if (!(SCHEMES as readonly string[]).includes(name)) {
      fail(input, `unknown scheme "${name}" (expected tcp, udp, tls or unix)`);
    }
    return parseHostPort(input, input.slice(scheme[0].length), name as NetEndpoint["transport"]);
  }
  return parseHostPort(input, input, "tcp");
}

/**
 * Formats a host for use before `:port`: IPv6 literals get brackets.
 *
 * @example Usage
 * ```ts
 * import { formatHost } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatHost("::1"), "[::1]");
 * assert.deepEqual(formatHost("localhost"), "localhost");
 * ```
 */
export function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

/**
 * Formats an endpoint in its canonical form; `parseEndpoint(formatEndpoint(e))`
 * gives back `e`.
 *
 * @example Usage
 * ```ts
 * import { formatEndpoint } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatEndpoint({ transport: "udp", hostname: "::1", port: 53 }), "udp://[::1]:53");
 * assert.deepEqual(formatEndpoint({ transport: "tcp", port: 8888 }), "8888");
 * ```
 */
export function formatEndpoint(endpoint: Endpoint): string {
  if (endpoint.transport === "unix") {
    // A path starting with "//" needs the unix:// form to read back the same.
    return endpoint.path.startsWith("//") ? `unix://${endpoint.path}` : `unix:${endpoint.path}`;
  }
  const authority = endpoint.hostname === undefined
    ? String(endpoint.port)
    : `${formatHost(endpoint.hostname)}:${endpoint.port}`;
  return endpoint.transport === "tcp" ? authority : `${endpoint.transport}://${authority}`;
}

/**
 * Formats an address Deno reports (`conn.remoteAddr`, `listener.addr`).
 *
 * @example Usage
 * ```ts
 * import { formatAddr } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(formatAddr({ transport: "tcp", hostname: "::1", port: 80 }), "[::1]:80");
 * assert.deepEqual(formatAddr({ transport: "unix", path: "/tmp/s" }), "unix:/tmp/s");
 * ```
 */
export function formatAddr(addr: Deno.Addr): string {
  if ("path" in addr) return `unix:${addr.path || "(unnamed)"}`;
  if ("hostname" in addr) return `${formatHost(addr.hostname)}:${addr.port}`;
  return `vsock:${addr.cid}:${addr.port}`;
}

/** Which side of the socket call sequence an endpoint is used for. */
export type Role = "listen" | "connect";

/**
 * The host an IP endpoint means for a role: the port-only form listens on
 * loopback (`127.0.0.1`, or `::1` with `-6`) and connects to `localhost`.
 *
 * @example Usage
 * ```ts
 * import { hostOf } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(hostOf({ transport: "tcp", port: 80 }, "listen"), "127.0.0.1");
 * assert.deepEqual(hostOf({ transport: "tcp", port: 80 }, "connect"), "localhost");
 * assert.deepEqual(hostOf({ transport: "tcp", port: 80 }, "listen", 6), "::1");
 * ```
 */
export function hostOf(endpoint: NetEndpoint, role: Role, family?: 4 | 6): string {
  if (endpoint.hostname !== undefined) return endpoint.hostname;
  if (role === "connect") return family === 6 ? "::1" : family === 4 ? "127.0.0.1" : "localhost";
  return family === 6 ? "::1" : "127.0.0.1";
}

/**
 * Refuses an endpoint whose transport a command does not support, with a usage error.
 *
 * @example Usage
 * ```ts
 * import { requireTransport } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => requireTransport({ transport: "udp", port: 53 }, ["tcp", "unix"], "listen"),
 *   /udp:\/\/ is not supported by listen/,
 * );
 * ```
 */
export function requireTransport(
  endpoint: Endpoint,
  supported: readonly Transport[],
  command: string,
): void {
  if (!supported.includes(endpoint.transport)) {
    const prefix = endpoint.transport === "unix" ? "unix:" : `${endpoint.transport}://`;
    throw new UsageError(
      `${formatEndpoint(endpoint)}: ${prefix} is not supported by ${command} ` +
        `(supported: ${supported.map((t) => (t === "unix" ? "unix:" : `${t}://`)).join(", ")})`,
    );
  }
}
