/**
 * The endpoint grammar: one parser, one formatter. The schemes come from the
 * transport table (`transports.ts`); what follows a scheme is `host:port`
 * or a socket path, as its row says.
 *
 * ```
 * 8888                    port only (the host depends on the role)
 * host:8888  1.2.3.4:80   TCP, the default scheme
 * [::1]:8888              IPv6 literal in brackets
 * host:http               a service name from /etc/services for the port
 * tcp://host:port         explicit scheme; also udp://, tls://
 * tcp:host:port  tcp:8888 the socat / wait-on spelling of the same
 * unix:/path/to.sock      Unix-domain stream socket (unix:///path also accepted)
 * ```
 *
 * A scheme sockit does not know is reported as one (`unknown scheme "ftp"`),
 * whether written `ftp://host:21` or `ftp:host:21`.
 *
 * @module
 */

import { UsageError } from "../base/errors.ts";
import { isIPv4, isIPv6 } from "./ip.ts";
import { servicePort } from "./services.ts";
import { DEFAULT_SCHEME, formatAuthority, TRANSPORTS } from "./transports.ts";

/** A scheme of the transport table (`tcp`, `udp`, `tls`, `unix`, …). */
export type Scheme = string;

/** An endpoint whose address is a host and port (`tcp`, `udp`, `tls`). */
export interface NetEndpoint {
  /** The scheme. */
  transport: Scheme;
  /**
   * Host name or IP literal (IPv6 without brackets). Absent for the port-only
   * form, whose host depends on the role (see `hostOf` in `transports.ts`).
   */
  hostname?: string;
  /**
   * Port, 0–65535. Port 0 on a listening endpoint asks the OS for a free
   * port. For `ip://host/protocol`, the IP protocol number (1–255).
   */
  port: number;
  /** For `ws://`: the request target, path and query (`/chat?room=1`). */
  resource?: string;
}

/** An endpoint whose address is a socket path (`unix`). */
export interface PathEndpoint {
  /** The scheme. */
  transport: Scheme;
  /** File system path of the socket. */
  path: string;
}

/** Any endpoint sockit can listen on or connect to. */
export type Endpoint = NetEndpoint | PathEndpoint;

/** Which side of the socket call sequence an endpoint is used for. */
export type Role = "listen" | "connect";

/** The longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const MAX_UNIX_PATH_BYTES = 107;

const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$/;

function fail(input: string, reason: string): never {
  throw new UsageError(`cannot parse endpoint ${JSON.stringify(input)}: ${reason}`);
}

function parsePort(input: string, text: string): number {
  if (text === "") fail(input, "missing port");
  if (!/^\d+$/.test(text)) {
    const service = servicePort(text);
    if (service !== undefined) return service;
    fail(input, `invalid port ${JSON.stringify(text)} (not a number or a service name)`);
  }
  const port = Number(text);
  if (port > 65535) fail(input, "port out of range");
  return port;
}

/** `host/protocol` (`ip://`): a host (IPv6 in brackets or bare) and an IP protocol number 1–255. */
function parseHostProtocol(input: string, rest: string, transport: Scheme): NetEndpoint {
  const slash = rest.lastIndexOf("/");
  if (slash === -1) {
    fail(input, "missing protocol: expected host/protocol, e.g. ip://127.0.0.1/253");
  }
  let host = rest.slice(0, slash);
  const protocol = rest.slice(slash + 1);
  if (!/^\d+$/.test(protocol) || Number(protocol) < 1 || Number(protocol) > 255) {
    fail(input, `invalid IP protocol ${JSON.stringify(protocol)} (a number 1–255)`);
  }
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") fail(input, "missing host");
  if (!isIPv6(host) && !isIPv4(host) && !HOST_NAME.test(host)) {
    fail(input, `invalid host ${JSON.stringify(host)}`);
  }
  return { transport, hostname: host, port: Number(protocol) };
}

/**
 * `host[:port][/path][?query]` (`ws://`): a host and port (the row's default
 * port when none is written), then the request target.
 */
function parseUrl(
  input: string,
  rest: string,
  transport: Scheme,
  defaultPort: number,
): NetEndpoint {
  const bracket = rest.startsWith("[") ? rest.indexOf("]") : -1;
  const cut = rest.slice(bracket + 1).search(/[/?]/);
  const end = cut === -1 ? rest.length : bracket + 1 + cut;
  const authority = rest.slice(0, end);
  let resource = rest.slice(end);
  if (resource.startsWith("?")) resource = `/${resource}`;
  if (/\s/.test(resource)) fail(input, "contains whitespace");
  if (authority === "") fail(input, "missing host");
  const hasPort = authority.startsWith("[")
    ? /\]:[^:]*$/.test(authority)
    : authority.includes(":") || /^\d+$/.test(authority);
  const endpoint = parseHostPort(
    input,
    hasPort ? authority : `${authority}:${defaultPort}`,
    transport,
  );
  return resource ? { ...endpoint, resource } : endpoint;
}

function parseHostPort(input: string, rest: string, transport: Scheme): NetEndpoint {
  if (rest === "") fail(input, "missing host and port");
  if (/\s/.test(rest)) fail(input, "contains whitespace");
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

function parsePath(input: string, scheme: string, rest: string): PathEndpoint {
  let path = rest;
  if (path.startsWith("//")) {
    path = path.slice(2);
    if (path !== "" && !path.startsWith("/")) {
      fail(input, `expected ${scheme}:/path or ${scheme}:///path`);
    }
  }
  if (path === "") fail(input, `empty ${scheme} socket path`);
  if (new TextEncoder().encode(path).length > MAX_UNIX_PATH_BYTES) {
    fail(input, `${scheme} socket path longer than ${MAX_UNIX_PATH_BYTES} bytes`);
  }
  return { transport: scheme, path };
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):(\/\/)?/;

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
 * assert.deepEqual(parseEndpoint("tcp:db:5432"), { transport: "tcp", hostname: "db", port: 5432 });
 * assert.deepEqual(parseEndpoint("unix:/tmp/s.sock"), { transport: "unix", path: "/tmp/s.sock" });
 * assert.throws(() => parseEndpoint("x:99999"), /cannot parse endpoint "x:99999": port out of range/);
 * assert.throws(() => parseEndpoint("ftp://host:21"), /unknown scheme "ftp"/);
 * ```
 */
export function parseEndpoint(input: string): Endpoint {
  if (input === "") fail(input, "empty endpoint");
  if (input.includes("\0")) fail(input, "contains a NUL byte");
  const m = SCHEME.exec(input);
  if (m) {
    const name = m[1].toLowerCase();
    const row = TRANSPORTS[name];
    if (row?.address === "path") return parsePath(input, name, input.slice(m[1].length + 1));
    if (row?.address === "url") {
      if (!m[2]) fail(input, `expected ${name}://host[:port]/path`);
      return parseUrl(input, input.slice(m[0].length), name, row.defaultPort ?? 80);
    }
    if (row?.address === "host-protocol") {
      if (!m[2]) fail(input, `expected ${name}://host/protocol`);
      return parseHostProtocol(input, input.slice(m[0].length), name);
    }
    const rest = input.slice(m[0].length);
    if (row) return parseHostPort(input, rest, name);
    // `word:rest` is a host and port unless it can only be a scheme: `//`
    // follows, a path follows, or more colons follow a word that is no
    // IPv6 group (`ftp:host:21`, `sctp:/x`).
    const pathLike = rest.startsWith("/") || rest.startsWith("@");
    const moreColons = rest.includes(":") && /[^0-9a-f]/i.test(m[1]);
    if (m[2] || pathLike || moreColons) {
      fail(input, `unknown scheme "${name}" (known: ${Object.keys(TRANSPORTS).join(", ")})`);
    }
  }
  return parseHostPort(input, input, DEFAULT_SCHEME);
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
 * assert.equal(formatEndpoint({ transport: "udp", hostname: "::1", port: 53 }), "udp://[::1]:53");
 * assert.equal(formatEndpoint({ transport: "tcp", port: 8888 }), "8888");
 * ```
 */
export function formatEndpoint(endpoint: Endpoint): string {
  if ("path" in endpoint) {
    const scheme = endpoint.transport;
    // A path starting with "//" needs the scheme:// form to read back the same.
    return endpoint.path.startsWith("//")
      ? `${scheme}://${endpoint.path}`
      : `${scheme}:${endpoint.path}`;
  }
  const authority = (endpoint.hostname === undefined ? String(endpoint.port) : formatAuthority(
    TRANSPORTS[endpoint.transport]?.address ?? "host-port",
    endpoint.hostname,
    endpoint.port,
  )) + (endpoint.resource ?? "");
  return endpoint.transport === DEFAULT_SCHEME ? authority : `${endpoint.transport}://${authority}`;
}
