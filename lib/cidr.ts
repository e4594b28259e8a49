/**
 * `--allow CIDR` / `--deny CIDR`: which peers a server accepts. IPv4 and
 * IPv6 ranges; an IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`) is matched as
 * the IPv4 address it carries.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "./ip.ts";
import { UsageError } from "./errors.ts";

/** A parsed address range. */
export interface Cidr {
  /** The text as given, for messages. */
  text: string;
  /** 4 or 6. */
  family: 4 | 6;
  /** The network address as a big integer. */
  network: bigint;
  /** Prefix length in bits. */
  prefix: number;
}

function ipv4ToBigInt(address: string): bigint {
  return address.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function ipv6ToBigInt(address: string): bigint {
  const zone = address.indexOf("%");
  let text = zone === -1 ? address : address.slice(0, zone);
  // An embedded IPv4 tail ("::ffff:1.2.3.4") is the last two groups.
  let tail: bigint[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = ipv4ToBigInt(text.slice(lastColon + 1));
    tail = [v4 >> 16n, v4 & 0xffffn];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => BigInt(`0x${g}`)));
  const gap = text.indexOf("::");
  let groups: bigint[];
  if (gap === -1) groups = [...parse(text), ...tail];
  else {
    const front = parse(text.slice(0, gap));
    const back = [...parse(text.slice(gap + 2)), ...tail];
    groups = [...front, ...Array<bigint>(8 - front.length - back.length).fill(0n), ...back];
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/**
 * The address as (family, integer), with IPv4-mapped IPv6 turned into IPv4.
 * Returns `undefined` for something that is not an IP literal.
 *
 * @example Usage
 * ```ts
 * import { ipToBigInt } from "./cidr.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(ipToBigInt("::ffff:127.0.0.1"), [4, 0x7f000001n]);
 * assert.deepEqual(ipToBigInt("::1"), [6, 1n]);
 * ```
 */
export function ipToBigInt(address: string): [4 | 6, bigint] | undefined {
  if (isIPv4(address)) return [4, ipv4ToBigInt(address)];
  if (!isIPv6(address)) return undefined;
  const value = ipv6ToBigInt(address);
  if (value >> 32n === 0xffffn) return [4, value & 0xffffffffn];
  return [6, value];
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
 * assert.deepEqual(parseCidr("10.0.0.0/8").prefix, 8);
 * assert.throws(() => parseCidr("10.0.0.0/33"), /prefix/);
 * ```
 */
export function parseCidr(text: string): Cidr {
  const fail = (reason: string): never => {
    throw new UsageError(`cannot parse CIDR ${JSON.stringify(text)}: ${reason}`);
  };
  const slash = text.indexOf("/");
  const address = slash === -1 ? text : text.slice(0, slash);
  const ip = isIPv4(address)
    ? [4, ipv4ToBigInt(address)] as const
    : isIPv6(address) && !address.includes("%")
    ? [6, ipv6ToBigInt(address)] as const
    : fail("expected an IPv4 or IPv6 address, e.g. 10.0.0.0/8 or fd00::/8");
  const [family, value] = ip;
  const bits = family === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    fail(`prefix must be 0–${bits}`);
  }
  const prefix = Number(prefixText);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
  return { text, family, network: value & mask, prefix };
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
 * assert(!cidrContains(parseCidr("10.0.0.0/8"), "127.0.0.1"));
 * ```
 */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const ip = ipToBigInt(address);
  if (!ip || ip[0] !== cidr.family) return false;
  const bits = cidr.family === 4 ? 32 : 128;
  const shift = BigInt(bits - cidr.prefix);
  return (ip[1] >> shift) === (cidr.network >> shift);
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
 * assert.deepEqual(refusal(rules, "127.0.0.1"), undefined);
 * assert.deepEqual(refusal(rules, "127.0.0.2"), "denied by --deny 127.0.0.2");
 * assert.deepEqual(refusal(rules, "::1"), "not in any --allow range");
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
