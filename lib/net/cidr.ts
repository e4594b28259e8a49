/**
 * `--allow CIDR` / `--deny CIDR`: which peers a server accepts. IPv4 and
 * IPv6 ranges, matched bit by bit. An IPv4-mapped IPv6
 * address (`::ffff:10.1.2.3`) is the IPv4 address it carries — for peers
 * (a dual-stack listener reports IPv4 clients that way) and for ranges
 * alike (`::ffff:127.0.0.0/104` is `127.0.0.0/8`), so that neither form
 * slips past the other.
 *
 * @module
 */

import { UsageError } from "../base/errors.ts";
import { ipv6Groups, isIPv4, isIPv6 } from "./ip.ts";

/** A parsed address range. */
export interface Cidr {
  /** The text as given, for messages. */
  text: string;
  /** 4 or 6 (an IPv4-mapped range is 4). */
  family: 4 | 6;
  /** The address part, normalised (an IPv4-mapped one as IPv4). */
  address: string;
  /** Prefix length in bits (of the normalised family). */
  prefix: number;
  /** The address's bytes (4 or 16), for matching. */
  bytes: Uint8Array;
}

/**
 * An IP literal as (family, address), an IPv4-mapped IPv6 one as the IPv4
 * address it carries; `undefined` for something that is not an IP literal.
 *
 * @example Usage
 * ```ts
 * import { normalizeIp } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(normalizeIp("::ffff:127.0.0.1"), [4, "127.0.0.1"]);
 * assert.deepEqual(normalizeIp("fe80::1%eth0"), [6, "fe80::1"]);
 * ```
 */
export function normalizeIp(text: string): [4 | 6, string] | undefined {
  if (isIPv4(text)) return [4, text];
  if (!isIPv6(text)) return undefined;
  const address = text.split("%")[0];
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [4, [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255].join(".")];
  }
  return [6, address];
}

/**
 * Parses `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
 * Throws a {@linkcode UsageError} naming the input.
 *
 * @example Usage
 * ```ts
 * import { parseCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseCidr("10.0.0.0/8").prefix, 8);
 * assert.equal(parseCidr("::ffff:127.0.0.0/104").family, 4);
 * assert.throws(() => parseCidr("10.0.0.0/33"), /prefix/);
 * ```
 */
export function parseCidr(text: string): Cidr {
  const fail = (reason: string): never => {
    throw new UsageError(`cannot parse CIDR ${JSON.stringify(text)}: ${reason}`);
  };
  const slash = text.indexOf("/");
  const given = slash === -1 ? text : text.slice(0, slash);
  if (given.includes("%") || (!isIPv4(given) && !isIPv6(given))) {
    fail("expected an IPv4 or IPv6 address, e.g. 10.0.0.0/8 or fd00::/8");
  }
  const bits = isIPv4(given) ? 32 : 128;
  const prefixText = slash === -1 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    fail(`prefix must be 0–${bits}`);
  }
  let prefix = Number(prefixText);
  const [family, address] = normalizeIp(given)!;
  if (family === 4 && bits === 128) {
    // An IPv4-mapped range: its first 96 bits say "mapped", the rest is IPv4.
    if (prefix < 96) fail("an IPv4-mapped range (::ffff:a.b.c.d) needs a prefix of 96 or more");
    prefix -= 96;
  }
  return { text, family, address, prefix, bytes: ipBytes(family, address) };
}

/**
 * Whether `address` lies in `cidr`.
 *
 * @example Usage
 * ```ts
 * import { cidrContains, parseCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert(cidrContains(parseCidr("127.0.0.0/8"), "::ffff:127.0.0.1"));
 * assert(cidrContains(parseCidr("::ffff:127.0.0.1/128"), "127.0.0.1"));
 * assert(!cidrContains(parseCidr("10.0.0.0/8"), "127.0.0.1"));
 * ```
 */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const ip = normalizeIp(address);
  if (!ip || ip[0] !== cidr.family) return false;
  const bytes = ipBytes(ip[0], ip[1]);
  const whole = cidr.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & mask) === (cidr.bytes[whole] & mask);
}

/**
 * Whether the range `inner` lies wholly inside `outer`.
 *
 * @example Usage
 * ```ts
 * import { cidrWithin, parseCidr } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert(cidrWithin(parseCidr("127.0.0.1"), parseCidr("127.0.0.0/8")));
 * assert(!cidrWithin(parseCidr("0.0.0.0/0"), parseCidr("127.0.0.0/8")));
 * ```
 */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix &&
    cidrContains(outer, inner.address);
}

/**
 * The addresses a connection to `address` may reach, each normalised, for
 * checking a destination against rules: the address itself; for the
 * unspecified addresses (`0.0.0.0/8`, `::`, and their IPv4-mapped forms),
 * which connect to the local host, also `127.0.0.1` and `::1`; for an IPv6
 * address that carries an IPv4 one (IPv4-compatible `::a.b.c.d`, NAT64
 * `64:ff9b::a.b.c.d`), also that IPv4 address (and what it reaches). A zone
 * id is dropped. Anything that is not an IP literal is given back as it is.
 *
 * @example Usage
 * ```ts
 * import { reachedAddresses } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(reachedAddresses("::ffff:0.0.0.0"), ["0.0.0.0", "127.0.0.1", "::1"]);
 * assert.deepEqual(reachedAddresses("::"), ["::", "127.0.0.1", "::1"]);
 * assert.deepEqual(reachedAddresses("::1%lo"), ["::1"]);
 * assert.deepEqual(reachedAddresses("::127.0.0.1"), ["::127.0.0.1", "127.0.0.1"]);
 * assert.deepEqual(reachedAddresses("10.1.2.3"), ["10.1.2.3"]);
 * ```
 */
export function reachedAddresses(address: string): string[] {
  const ip = normalizeIp(address);
  if (!ip) return [address];
  const [family, text] = ip;
  if (family === 4) return text.startsWith("0.") ? [text, "127.0.0.1", "::1"] : [text];
  const g = ipv6Groups(text);
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 8)) return [text, "127.0.0.1", "::1"];
  const compatible = zeros(0, 6) && !(g[6] === 0 && g[7] === 1);
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (!compatible && !nat64) return [text];
  const carried = [g[6] >> 8, g[6] & 255, g[7] >> 8, g[7] & 255].join(".");
  return [text, ...reachedAddresses(carried)];
}

/** The bytes of a normalised address: 4 for IPv4, 16 for IPv6. */
function ipBytes(family: 4 | 6, address: string): Uint8Array {
  if (family === 4) return Uint8Array.from(address.split(".").map(Number));
  return Uint8Array.from(ipv6Groups(address).flatMap((g) => [g >> 8, g & 255]));
}

/** `--allow` and `--deny` together. */
export interface AccessRules {
  /** When non-empty, a peer must match one of these. */
  allow: Cidr[];
  /** A peer matching one of these is refused. */
  deny: Cidr[];
}

/**
 * Why a peer is refused, or `undefined` when it may connect. A peer must
 * match an `--allow` (when any is given) and no `--deny`. Unix peers (no IP)
 * pass when no `--allow` is given.
 *
 * @example Usage
 * ```ts
 * import { parseCidr, refusal } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * const rules = { allow: [parseCidr("127.0.0.0/8")], deny: [parseCidr("127.0.0.2")] };
 * assert.equal(refusal(rules, "127.0.0.1"), undefined);
 * assert.equal(refusal(rules, "127.0.0.2"), "denied by --deny 127.0.0.2");
 * assert.equal(refusal(rules, "::1"), "not in any --allow range");
 * ```
 */
export function refusal(rules: AccessRules, address: string | undefined): string | undefined {
  if (rules.allow.length === 0 && rules.deny.length === 0) return undefined;
  if (address === undefined) {
    return rules.allow.length ? "not in any --allow range (not an IP peer)" : undefined;
  }
  const denied = rules.deny.find((c) => cidrContains(c, address));
  if (denied) return `denied by --deny ${denied.text}`;
  if (rules.allow.length && !rules.allow.some((c) => cidrContains(c, address))) {
    return "not in any --allow range";
  }
  return undefined;
}
