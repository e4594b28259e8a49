/**
 * IP literals and socket addresses as text: which family a literal is,
 * brackets around IPv6 hosts, and how Deno's addresses are printed. The
 * checks accept what `node:net`'s `isIP` accepts (tests compare the two);
 * they are written here because loading `node:net` costs ~20 ms of every
 * start. IPv4-mapped IPv6 addresses are unwrapped where peers are compared
 * (see `cidr.ts`).
 *
 * @module
 */

import { schemePrefix, SCHEMES } from "./schemes.ts";

const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);
const GROUP = /^[0-9a-fA-F]{1,4}$/;
const ZONE = /^[0-9a-zA-Z.:-]+$/;

/**
 * Whether `text` is an IPv4 literal in dotted-quad form (no leading zeros).
 *
 * @example Usage
 * ```ts
 * import { isIPv4 } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert(isIPv4("127.0.0.1"));
 * assert(!isIPv4("256.0.0.1"));
 * ```
 */
export function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

/**
 * Whether `text` is an IPv6 literal (without brackets; a `%zone` suffix is allowed).
 *
 * @example Usage
 * ```ts
 * import { isIPv6 } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert(isIPv6("::1"));
 * assert(isIPv6("::ffff:127.0.0.1"));
 * assert(!isIPv6("1:2:3"));
 * ```
 */
export function isIPv6(text: string): boolean {
  const percent = text.indexOf("%");
  if (percent !== -1 && !ZONE.test(text.slice(percent + 1))) return false;
  const body = percent === -1 ? text : text.slice(0, percent);
  const lastColon = body.lastIndexOf(":");
  if (lastColon === -1) return false;
  // A dotted IPv4 tail stands for the last two groups.
  let head = body;
  let room = 8;
  const last = body.slice(lastColon + 1);
  if (last.includes(".")) {
    if (!isIPv4(last)) return false;
    room = 6;
    head = body.slice(0, lastColon + 1);
    if (!head.endsWith("::")) head = head.slice(0, -1);
  }
  const gap = head.indexOf("::");
  if (gap !== -1 && head.indexOf("::", gap + 1) !== -1) return false;
  const parts = (part: string) => (part === "" ? [] : part.split(":"));
  const valid = (groups: string[]) => groups.every((g) => GROUP.test(g));
  if (gap === -1) {
    const all = parts(head);
    return all.length === room && valid(all);
  }
  const front = parts(head.slice(0, gap));
  const back = parts(head.slice(gap + 2));
  return front.length + back.length < room && valid(front) && valid(back);
}

/**
 * The family of an IP literal, or `undefined` for a host name.
 *
 * @example Usage
 * ```ts
 * import { ipFamily } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(ipFamily("::1"), 6);
 * assert.equal(ipFamily("localhost"), undefined);
 * ```
 */
export function ipFamily(text: string): 4 | 6 | undefined {
  return isIPv4(text) ? 4 : isIPv6(text) ? 6 : undefined;
}

/**
 * Formats a host for use before `:port`: IPv6 literals get brackets.
 *
 * @example Usage
 * ```ts
 * import { formatHost } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatHost("::1"), "[::1]");
 * assert.equal(formatHost("localhost"), "localhost");
 * ```
 */
export function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

/**
 * Formats an address Deno reports (`conn.remoteAddr`, `listener.addr`).
 * An unnamed Unix peer is `unix:(unnamed)`; an abstract one is `unix:@name`.
 *
 * @example Usage
 * ```ts
 * import { formatAddr } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatAddr({ transport: "tcp", hostname: "::1", port: 80 }), "[::1]:80");
 * assert.equal(formatAddr({ transport: "unix", path: "/tmp/s" }), "unix:/tmp/s");
 * ```
 */
export function formatAddr(addr: Deno.Addr): string {
  // A Unix stream address is written as the `unix` row writes its endpoints.
  if ("path" in addr) return `${schemePrefix(SCHEMES.unix)}${printablePath(addr.path)}`;
  if ("hostname" in addr) return `${formatHost(addr.hostname)}:${addr.port}`;
  return `vsock:${addr.cid}:${addr.port}`;
}

/**
 * A Unix socket's name in parts: a file system path, or a Linux abstract
 * name (no file; the kernel forgets it with its last descriptor), without
 * the `@` sockit writes before it or the NUL the kernel puts there.
 */
export interface UnixName {
  /** The path, or the abstract name; `""` for an unnamed socket. */
  path: string;
  /** A Linux abstract name. */
  abstract: boolean;
}

/**
 * A Unix socket name as sockit writes it (`@name`: abstract), in parts. This
 * and {@linkcode formatUnixName} are the one place that reads and writes
 * the `@`; {@linkcode kernelPath} and {@linkcode kernelName} the kernel's
 * leading NUL.
 *
 * @example Usage
 * ```ts
 * import { parseUnixName } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseUnixName("@app"), { path: "app", abstract: true });
 * assert.deepEqual(parseUnixName("/run/app.sock"), { path: "/run/app.sock", abstract: false });
 * ```
 */
export function parseUnixName(text: string): UnixName {
  return text.startsWith("@")
    ? { path: text.slice(1), abstract: true }
    : { path: text, abstract: false };
}

/**
 * A Unix socket name as sockit writes it: the path, or `@name`.
 *
 * @example Usage
 * ```ts
 * import { formatUnixName } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatUnixName({ path: "app", abstract: true }), "@app");
 * ```
 */
export function formatUnixName(name: UnixName): string {
  return name.abstract ? `@${name.path}` : name.path;
}

/**
 * The path as Deno's calls take it: an abstract name after a NUL byte.
 *
 * @example Usage
 * ```ts
 * import { kernelPath } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(kernelPath({ path: "app", abstract: true }), "\0app");
 * assert.equal(kernelPath({ path: "/run/app.sock", abstract: false }), "/run/app.sock");
 * ```
 */
export function kernelPath(name: UnixName): string {
  return name.abstract ? `\0${name.path}` : name.path;
}

/**
 * A path as Deno reports it (`\0name` for an abstract one, `null` or `""`
 * for an unnamed socket), in parts.
 *
 * @example Usage
 * ```ts
 * import { kernelName } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(kernelName("\0app"), { path: "app", abstract: true });
 * assert.deepEqual(kernelName(null), { path: "", abstract: false });
 * ```
 */
export function kernelName(path: string | null | undefined): UnixName {
  if (!path) return { path: "", abstract: false };
  return path.startsWith("\0")
    ? { path: path.slice(1), abstract: true }
    : { path, abstract: false };
}

/**
 * A Unix socket path as Deno reports it, as text that can go into messages
 * and environment variables: `(unnamed)` for none, `@name` for an abstract
 * one, other NUL bytes as `\0`.
 *
 * @example Usage
 * ```ts
 * import { printablePath } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(printablePath(null), "(unnamed)");
 * assert.equal(printablePath("\0name"), "@name");
 * ```
 */
export function printablePath(path: string | null | undefined): string {
  if (!path) return "(unnamed)";
  return formatUnixName(kernelName(path)).replaceAll("\0", "\\0");
}

/**
 * The eight 16-bit groups of an IPv6 literal (a `%zone` is ignored).
 *
 * @example Usage
 * ```ts
 * import { ipv6Groups } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(ipv6Groups("::ffff:1.2.3.4"), [0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
 * ```
 */
export function ipv6Groups(address: string): number[] {
  let text = address.split("%")[0];
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const [a, b, c, d] = text.slice(lastColon + 1).split(".").map(Number);
    tail = [(a << 8) | b, (c << 8) | d];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const gap = text.indexOf("::");
  if (gap === -1) return [...parse(text), ...tail];
  const front = parse(text.slice(0, gap));
  const back = [...parse(text.slice(gap + 2)), ...tail];
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/**
 * The canonical text of eight IPv6 groups (RFC 5952: the longest zero run as `::`).
 *
 * @example Usage
 * ```ts
 * import { formatIPv6 } from "./ip.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatIPv6([0, 0, 0, 0, 0, 0, 0, 1]), "::1");
 * assert.equal(formatIPv6([0xfe80, 0, 0, 0, 1, 0, 0, 1]), "fe80::1:0:0:1");
 * ```
 */
export function formatIPv6(groups: number[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best === -1) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}
