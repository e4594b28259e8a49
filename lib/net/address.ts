/**
 * The endpoint grammar: one parser, one formatter, and what an endpoint
 * means, read from its scheme's descriptor (`schemes.ts`): its host per
 * role, whether a command can use it, its TLS form. What follows a scheme
 * is written as its row's address form says: `host:port`, `host/protocol`,
 * a URL, or a socket path.
 *
 * ```
 * 8888                    port only (the host depends on the role)
 * host:8888  1.2.3.4:80   TCP, the default scheme
 * [::1]:8888              IPv6 literal in brackets
 * host:http               a service name from /etc/services for the port
 * tcp://host:port         explicit scheme; also udp://, tls://
 * tcp:host:port  tcp:8888 the socat / wait-on spelling of the same
 * unix:/path/to.sock      Unix-domain stream socket (unix:///path also accepted)
 * unix:@name              a Linux abstract socket (no file)
 * ```
 *
 * A scheme sockit does not know is reported as one (`unknown scheme "ftp"`),
 * whether written `ftp://host:21` or `ftp:host:21`.
 *
 * This module loads no socket code: parsing an endpoint opens nothing.
 *
 * @module
 */

import { UsageError } from "../base/errors.ts";
import { formatHost, formatUnixName, isIPv4, isIPv6, parseUnixName } from "./ip.ts";
import { servicePort } from "./services.ts";
import { DEFAULT_SCHEME, schemeNamed, schemePrefix, SCHEMES } from "./schemes.ts";
import type { AddressForm, Kind, Role, Scheme, SchemeDescriptor } from "./schemes.ts";

export type { Role, Scheme } from "./schemes.ts";

/** An endpoint whose address is a host and port (`tcp`, `udp`, `tls`). */
export interface HostPortEndpoint {
  /** The address form. */
  form: "host-port";
  /** The scheme. */
  scheme: Scheme;
  /**
   * Host name or IP literal (IPv6 without brackets). Absent for the port-only
   * form, whose host depends on the role (see {@linkcode hostOf}).
   */
  hostname?: string;
  /** Port, 0–65535. Port 0 on a listening endpoint asks the OS for a free port. */
  port: number;
}

/** An endpoint whose address is a host and an IP protocol number (`ip://host/253`). */
export interface HostProtocolEndpoint {
  /** The address form. */
  form: "host-protocol";
  /** The scheme. */
  scheme: Scheme;
  /** Host name or IP literal (IPv6 without brackets). */
  hostname?: string;
  /** The IP protocol number, 1–255. */
  protocol: number;
}

/** An endpoint written as a URL (`ws://host:port/path?query`). */
export interface UrlEndpoint {
  /** The address form. */
  form: "url";
  /** The scheme. */
  scheme: Scheme;
  /** Host name or IP literal (IPv6 without brackets). */
  hostname?: string;
  /** Port, 0–65535: the row's default when none is written. */
  port: number;
  /** The request target, path and query (`/chat?room=1`); absent when none is written. */
  resource?: string;
}

/** An endpoint whose address is a socket path (`unix`, `unixgram`). */
export interface PathEndpoint {
  /** The address form. */
  form: "path";
  /** The scheme. */
  scheme: Scheme;
  /** The file system path, or an abstract socket's name (without its `@`). */
  path: string;
  /** A Linux abstract socket, written `@name` (no file; `\0name` to the kernel). */
  abstract: boolean;
}

/** An endpoint whose address is an IP host (every form but a path). */
export type NetEndpoint = HostPortEndpoint | HostProtocolEndpoint | UrlEndpoint;

/** Any endpoint sockit can listen on or connect to. */
export type Endpoint = NetEndpoint | PathEndpoint;

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
function parseHostProtocol(input: string, rest: string, scheme: Scheme): HostProtocolEndpoint {
  const slash = rest.lastIndexOf("/");
  if (slash === -1) {
    fail(input, `missing protocol: expected host/protocol, e.g. ${scheme}://127.0.0.1/253`);
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
  return { form: "host-protocol", scheme, hostname: host, protocol: Number(protocol) };
}

/**
 * `host[:port][/path][?query]` (`ws://`): a host and port (the row's default
 * port when none is written), then the request target.
 */
function parseUrl(input: string, rest: string, row: SchemeDescriptor): UrlEndpoint {
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
  const { hostname, port } = parseHostPort(
    input,
    hasPort ? authority : `${authority}:${row.defaultPort ?? 80}`,
    row.scheme,
  );
  return {
    form: "url",
    scheme: row.scheme,
    ...(hostname !== undefined ? { hostname } : {}),
    port,
    ...(resource ? { resource } : {}),
  };
}

function parseHostPort(input: string, rest: string, scheme: Scheme): HostPortEndpoint {
  const form = "host-port";
  if (rest === "") fail(input, "missing host and port");
  if (/\s/.test(rest)) fail(input, "contains whitespace");
  if (/^\d+$/.test(rest)) return { form, scheme, port: parsePort(input, rest) };
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
    return { form, scheme, hostname: host, port: parsePort(input, after.slice(1)) };
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
  return { form, scheme, hostname: host, port: parsePort(input, rest.slice(colon + 1)) };
}

function checkPath(input: string, scheme: Scheme, path: string): PathEndpoint {
  if (path === "") fail(input, `empty ${scheme} socket path`);
  if (new TextEncoder().encode(path).length > MAX_UNIX_PATH_BYTES) {
    fail(input, `${scheme} socket path longer than ${MAX_UNIX_PATH_BYTES} bytes`);
  }
  // `@name` is read here, once: what follows has the name and the flag.
  return { form: "path", scheme, ...parseUnixName(path) };
}

function parsePath(input: string, scheme: Scheme, rest: string): PathEndpoint {
  let path = rest;
  if (path.startsWith("//")) {
    path = path.slice(2);
    if (path !== "" && !path.startsWith("/")) {
      fail(input, `expected ${scheme}:/path or ${scheme}:///path`);
    }
  }
  return checkPath(input, scheme, path);
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
 * assert.deepEqual(parseEndpoint("[::1]:8888"), { form: "host-port", scheme: "tcp", hostname: "::1", port: 8888 });
 * assert.deepEqual(parseEndpoint("tcp:db:5432"), { form: "host-port", scheme: "tcp", hostname: "db", port: 5432 });
 * assert.deepEqual(parseEndpoint("unix:@app"), { form: "path", scheme: "unix", path: "app", abstract: true });
 * assert.deepEqual(parseEndpoint("ip://10.0.0.1/253"), { form: "host-protocol", scheme: "ip", hostname: "10.0.0.1", protocol: 253 });
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
    const row = schemeNamed(name);
    const rest = input.slice(m[0].length);
    switch (row?.address) {
      case "path":
        return parsePath(input, name, input.slice(m[1].length + 1));
      case "url":
        if (!m[2]) fail(input, `expected ${name}://host[:port]/path`);
        return parseUrl(input, rest, row);
      case "host-protocol":
        if (!m[2]) fail(input, `expected ${name}://host/protocol`);
        return parseHostProtocol(input, rest, name);
      case "host-port":
        return parseHostPort(input, rest, name);
    }
    // `word:rest` is a host and port unless it can only be a scheme: `//`
    // follows, a path follows, or more colons follow a word that is no
    // IPv6 group (`ftp:host:21`, `sctp:/x`).
    const pathLike = rest.startsWith("/") || parseUnixName(rest).abstract;
    const moreColons = rest.includes(":") && /[^0-9a-f]/i.test(m[1]);
    if (m[2] || pathLike || moreColons) {
      fail(input, `unknown scheme "${name}" (known: ${Object.keys(SCHEMES).join(", ")})`);
    }
  }
  return parseHostPort(input, input, DEFAULT_SCHEME);
}

/**
 * The endpoint of a socket path with a path scheme (`http+unix://` names its
 * socket so): checked as the grammar checks `unix:PATH`.
 *
 * @example Usage
 * ```ts
 * import { pathEndpoint } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(pathEndpoint("unix", "@app"), { form: "path", scheme: "unix", path: "app", abstract: true });
 * ```
 */
export function pathEndpoint(scheme: Scheme, path: string): PathEndpoint {
  return checkPath(`${scheme}:${path}`, scheme, path);
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
 * assert.equal(formatEndpoint({ form: "host-port", scheme: "udp", hostname: "::1", port: 53 }), "udp://[::1]:53");
 * assert.equal(formatEndpoint({ form: "host-port", scheme: "tcp", port: 8888 }), "8888");
 * ```
 */
export function formatEndpoint(endpoint: Endpoint): string {
  const scheme = endpoint.scheme;
  let written: string;
  switch (endpoint.form) {
    case "path": {
      const path = formatUnixName(endpoint);
      // A path starting with "//" needs the scheme:// form to read back the same.
      return path.startsWith("//") ? `${scheme}://${path}` : `${scheme}:${path}`;
    }
    case "host-protocol":
      written = endpoint.hostname === undefined
        ? String(endpoint.protocol)
        : formatAuthority(endpoint, endpoint.hostname);
      break;
    case "url":
    case "host-port":
      written = endpoint.hostname === undefined
        ? String(endpoint.port)
        : formatAuthority(endpoint, endpoint.hostname);
      if ("resource" in endpoint) written += endpoint.resource ?? "";
  }
  return scheme === DEFAULT_SCHEME ? written : `${scheme}://${written}`;
}

/**
 * The descriptor of an endpoint's scheme (or of a scheme): what kind of
 * socket it is, its address form, its TLS, its option groups.
 *
 * @example Usage
 * ```ts
 * import { transportOf } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(transportOf({ form: "host-port", scheme: "udp", port: 53 }).kind, "datagram");
 * assert.equal(transportOf("unix").address, "path");
 * ```
 */
export function transportOf(endpoint: Endpoint | Scheme): SchemeDescriptor {
  const scheme = typeof endpoint === "string" ? endpoint : endpoint.scheme;
  const row = schemeNamed(scheme);
  if (!row) throw new UsageError(`unknown scheme "${scheme}"`);
  return row;
}

/**
 * The first scheme of the table with this kind and address form (a plain
 * one: not always TLS) — how `nc -u`, `nc -U` or an `http+unix:` URL find
 * theirs.
 *
 * @example Usage
 * ```ts
 * import { schemeFor } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(schemeFor("datagram", "path").scheme, "unixgram");
 * ```
 */
export function schemeFor(kind: Kind, address: AddressForm): SchemeDescriptor {
  const row = Object.values(SCHEMES).find((r: SchemeDescriptor) =>
    r.kind === kind && r.address === address && r.tls !== "always"
  );
  if (!row) throw new UsageError(`no ${kind} scheme is written as ${address}`);
  return row;
}

/**
 * The schemes whose rows `test` accepts, as written before an address and
 * listed for a message: `ws:// or wss://`.
 *
 * @example Usage
 * ```ts
 * import { schemeList } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(schemeList((row) => row.groups.includes("websocket")), "ws:// or wss://");
 * assert.equal(schemeList((row) => row.tls === "always", ", "), "tls://, wss://");
 * ```
 */
export function schemeList(test: (row: SchemeDescriptor) => boolean, separator = " or "): string {
  const prefixes = Object.values(SCHEMES).filter(test).map(schemePrefix);
  if (separator !== " or " || prefixes.length < 2) return prefixes.join(separator);
  return `${prefixes.slice(0, -1).join(", ")} or ${prefixes[prefixes.length - 1]}`;
}

/**
 * The host an IP endpoint means for a role: as given, or for the port-only
 * form the row's default — loopback to listen, `localhost` to connect (the
 * loopback address of the family with `-4`/`-6`).
 *
 * @example Usage
 * ```ts
 * import { hostOf } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(hostOf({ form: "host-port", scheme: "tcp", port: 80 }, "listen"), "127.0.0.1");
 * assert.equal(hostOf({ form: "host-port", scheme: "tcp", port: 80 }, "connect"), "localhost");
 * assert.equal(hostOf({ form: "host-port", scheme: "tcp", port: 80 }, "listen", 6), "::1");
 * ```
 */
export function hostOf(endpoint: Endpoint, role: Role, family?: 4 | 6): string {
  if (endpoint.form !== "path" && endpoint.hostname !== undefined) return endpoint.hostname;
  const defaults = transportOf(endpoint).defaultHost;
  if (!defaults) throw new UsageError(`${endpoint.scheme}: this endpoint has no host`);
  const loopback = family === 6 ? "::1" : "127.0.0.1";
  return defaults[role] === "loopback" || family !== undefined ? loopback : "localhost";
}

/**
 * An IP endpoint's host and port (or protocol) as its address form writes
 * them: `[::1]:80`, or `127.0.0.1/253` for `ip://`.
 *
 * @example Usage
 * ```ts
 * import { formatAuthority } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatAuthority({ form: "host-port", scheme: "tcp", port: 80 }, "::1"), "[::1]:80");
 * assert.equal(formatAuthority({ form: "host-protocol", scheme: "ip", protocol: 253 }, "::1"), "[::1]/253");
 * ```
 */
export function formatAuthority(endpoint: NetEndpoint, host: string): string {
  return endpoint.form === "host-protocol"
    ? `${formatHost(host)}/${endpoint.protocol}`
    : `${formatHost(host)}:${endpoint.port}`;
}

/**
 * The address a connection to `endpoint` is reported under: the host as
 * given (or `localhost` for the port-only form) and port, the scheme first
 * for datagrams, or the socket path.
 *
 * @example Usage
 * ```ts
 * import { connectAddress } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(connectAddress({ form: "host-port", scheme: "tcp", port: 8888 }), "localhost:8888");
 * assert.equal(connectAddress({ form: "host-port", scheme: "udp", hostname: "::1", port: 53 }), "udp://[::1]:53");
 * assert.equal(connectAddress({ form: "path", scheme: "unix", path: "/s", abstract: false }), "unix:/s");
 * ```
 */
export function connectAddress(endpoint: Endpoint, family?: 4 | 6): string {
  const row = transportOf(endpoint);
  if (endpoint.form === "path") return `${schemePrefix(row)}${formatUnixName(endpoint)}`;
  const authority = formatAuthority(endpoint, hostOf(endpoint, "connect", family));
  return row.kind === "datagram" ? `${schemePrefix(row)}${authority}` : authority;
}

/** What a command needs of an endpoint. */
export interface EndpointNeeds {
  /** It connects to the endpoint, or listens on it (every scheme does both). */
  role: Role;
  /** Only this kind of socket (default: either). */
  kind?: "stream" | "datagram";
  /** Only this address form (e.g. `host-port` for `scan`). */
  address?: AddressForm;
  /** Not a transport that is always TLS (`wait` checks that a port accepts, no more). */
  plain?: boolean;
}

/** Whether a row does what a command needs. */
function serves(row: SchemeDescriptor, needs: EndpointNeeds): boolean {
  if (needs.kind && row.kind !== needs.kind) return false;
  if (needs.address && row.address !== needs.address) return false;
  return !(needs.plain && row.tls === "always");
}

/**
 * Refuses, with a usage error that lists what would do, an endpoint whose
 * transport cannot do what the command needs.
 *
 * @example Usage
 * ```ts
 * import { requireEndpoint } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => requireEndpoint({ form: "host-port", scheme: "udp", port: 53 }, { role: "listen", kind: "stream" }, "forward", "udp://53"),
 *   /udp:\/\/ is not supported by forward \(supported: tcp:\/\/, tls:\/\/, ws:\/\/, wss:\/\/, unix:\)/,
 * );
 * ```
 */
export function requireEndpoint(
  endpoint: Endpoint,
  needs: EndpointNeeds,
  command: string,
  text: string,
): SchemeDescriptor {
  const row = transportOf(endpoint);
  if (serves(row, needs)) return row;
  throw new UsageError(
    `${text}: ${schemePrefix(row)} is not supported by ${command} (supported: ${
      schemeList((r) => serves(r, needs), ", ")
    })`,
  );
}

/**
 * The endpoint with TLS applied, for `--tls`: `tcp` becomes `tls`; a
 * transport without TLS is a usage error saying why. `tls://` stays.
 *
 * @example Usage
 * ```ts
 * import { withTls } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(withTls({ form: "host-port", scheme: "tcp", port: 443 }, "443"), { form: "host-port", scheme: "tls", port: 443 });
 * assert.throws(() => withTls({ form: "path", scheme: "unix", path: "/s", abstract: false }, "unix:/s"), /TLS over a Unix socket/);
 * ```
 */
export function withTls<E extends Endpoint>(endpoint: E, text: string): E {
  const tls = transportOf(endpoint).tls;
  if (tls === "always") return endpoint;
  if ("unsupported" in tls) throw new UsageError(`${text}: ${tls.unsupported}`);
  return { ...endpoint, scheme: tls.upgrade };
}

/**
 * Whether an endpoint speaks TLS.
 *
 * @example Usage
 * ```ts
 * import { isTls } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isTls({ form: "host-port", scheme: "tls", port: 443 }));
 * ```
 */
export function isTls(endpoint: Endpoint): boolean {
  return transportOf(endpoint).tls === "always";
}
