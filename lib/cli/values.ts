/**
 * Reading what the flags' declarations cannot say alone: the endpoints
 * among the positionals, `-4`/`-6` against an endpoint, the send/expect
 * dialogue in the order given, the server limits, and patterns compiled —
 * each with a one-line usage error naming the option when it is wrong.
 *
 * @module
 */

import { formatEndpoint, parseEndpoint, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import type { AccessRules } from "../net/cidr.ts";
import { UsageError } from "../base/errors.ts";
import { decodeEscapes } from "../base/escapes.ts";
import type { Pattern } from "../engine/pattern.ts";
import { formatHost, ipFamily } from "../net/ip.ts";
import type { Step } from "../engine/dialogue.ts";
import { parsePattern, patternError } from "./flags.ts";
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
 * Compiles the patterns of an option (loading the linear-time engine); one
 * that RE2 refuses is a usage error naming the option.
 *
 * @example Usage
 * ```ts
 * import { compilePatterns } from "./values.ts";
 * import { parsePattern, patternError } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * const body = parsePattern("ok", "body");
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
    else if (name === "expect") steps.push({ expect: parsePattern(value, "expect") });
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
  /**
   * Most a client may take to set up the listener's layers (a TLS
   * handshake, a WebSocket upgrade), in ms (0: no limit; absent: the default).
   */
  handshakeTimeout?: number;
}

/**
 * Reads `--max-conns`, `--allow`, `--deny`, `--idle-timeout`, `--timeout`
 * (the server's lifetime) and `--handshake-timeout`.
 *
 * @example Usage
 * ```ts
 * import { serverLimits } from "./values.ts";
 * import { parseFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * const { values } = parseFlags(["--max-conns", "2", "--allow", "127.0.0.0/8"], ["max-conns", "allow"]);
 * const limits = serverLimits(values);
 * assert.deepEqual([limits.maxConns, limits.access.allow.length], [2, 1]);
 * ```
 */
export function serverLimits(values: FlagValues): ServerLimits {
  return {
    maxConns: values["max-conns"],
    access: { allow: values.allow ?? [], deny: values.deny ?? [] },
    idleTimeout: values["idle-timeout"],
    lifetime: values.timeout || undefined,
    handshakeTimeout: values["handshake-timeout"],
  };
}
