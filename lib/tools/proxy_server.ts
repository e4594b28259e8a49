/**
 * The proxy server's side of one client: read its request — SOCKS5,
 * SOCKS4/4a, HTTP CONNECT, or a plain HTTP request in absolute form, told
 * apart by the first byte — authenticate it, check its target against the
 * rules after resolving it (so a name cannot smuggle a denied address),
 * connect, and answer as the protocol says. What happens next (the relay)
 * is the transfer engine's; `cli/proxy.ts` runs it.
 *
 * Whatever the client sent past its request (a TLS ClientHello right after
 * CONNECT, a request body) is given back to the client connection
 * ({@linkcode Connection.unread}) so that the relay forwards it.
 *
 * @module
 */

import { concat, writeAll } from "../base/bytes.ts";
import { cidrContains, cidrWithin, parseCidr, reachedAddresses } from "../net/cidr.ts";
import type { Cidr } from "../net/cidr.ts";
import type { Connection } from "../net/conn.ts";
import type { Stream } from "../net/stream.ts";
import { directDialer } from "../net/dial.ts";
import { SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, isIPv4, isIPv6 } from "../net/ip.ts";
import { headerEnd } from "../protocols/proxy.ts";
import { resolve } from "../net/resolve.ts";
import type { Lookup } from "../net/resolve.ts";
import {
  decodeSocks5Address,
  encodeSocks5Address,
  HandshakeEof,
  readAtLeast,
  SOCKS4,
  SOCKS5,
  untilAborted,
} from "../protocols/socks.ts";
import type { TraceFn } from "../engine/trace.ts";
import type { Duplex } from "../engine/relay.ts";
import { BodyFraming, OneRequest } from "../protocols/http_body.ts";

/** The protocols a client may speak to the proxy. */
export type ProxyProtocol = "socks5" | "socks4" | "socks4a" | "http-connect" | "http";

/** One `--allow-target` / `--deny-target` rule: a host part and a port range, either optional. */
export interface TargetRule {
  /** As written. */
  text: string;
  /** An address range. */
  cidr?: Cidr;
  /** A host name (lower case); `*.example.com` matches its subdomains. */
  name?: string;
  /** The ports it covers, inclusive. */
  ports?: [number, number];
}

/** Which targets the proxy may reach. */
export interface TargetRules {
  /** When any is given, a target must match one. */
  allow: TargetRule[];
  /** A target that matches one is refused. */
  deny: TargetRule[];
  /**
   * Refused unless an `--allow-target` address rule that lies inside one of
   * them names the target: {@linkcode LOCAL_TARGETS} when the proxy listens
   * beyond loopback.
   */
  local?: TargetRule[];
}

/**
 * What a proxy that listens beyond loopback refuses unless `--allow-target`
 * names it: the local host (loopback, and the unspecified addresses, which
 * connect to it) and link-local addresses (`169.254.169.254`, a cloud's
 * metadata service, is one).
 */
export const LOCAL_TARGETS: readonly string[] = [
  "127.0.0.0/8",
  "::1",
  "0.0.0.0/8",
  "::",
  "169.254.0.0/16",
  "fe80::/10",
];

/**
 * Parses a target rule: `10.0.0.0/8`, `127.0.0.1`, `[::1]`, `example.com`,
 * `*.example.com`, any of them with `:PORT` or `:FROM-TO`, or `:PORTS`
 * alone (any host).
 *
 * @example Usage
 * ```ts
 * import { parseTargetRule } from "./proxy_server.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseTargetRule("*.example.com:8000-8100").ports, [8000, 8100]);
 * assert.equal(parseTargetRule("[::1]:22").cidr?.prefix, 128);
 * assert.equal(parseTargetRule(":25").name, undefined);
 * assert.throws(() => parseTargetRule("host:99999"), /--allow-target\/--deny-target/);
 * ```
 */
export function parseTargetRule(text: string): TargetRule {
  const fail = (why: string): never => {
    throw new UsageError(`--allow-target/--deny-target ${JSON.stringify(text)}: ${why}`);
  };
  let host = text;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracket) [, host, portText] = bracket;
  else if ((text.match(/:/g) ?? []).length === 1) [host, portText] = text.split(":");
  const rule: TargetRule = { text };
  if (portText !== undefined) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(portText);
    if (!m) fail("expected :PORT or :FROM-TO after the host");
    const from = Number(m![1]);
    const to = Number(m![2] ?? m![1]);
    if (from < 1 || to > 65535 || to < from) fail("ports are 1–65535, ranges ascending");
    rule.ports = [from, to];
  }
  if (host !== "") {
    if (isIPv4(host.split("/")[0]) || isIPv6(host.split("/")[0])) {
      try {
        rule.cidr = parseCidr(host);
      } catch (err) {
        fail((err as Error).message);
      }
    } else if (/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(host)) {
      rule.name = host.toLowerCase();
    } else fail("not an address, a range or a host name");
  } else if (!rule.ports) fail("empty rule");
  return rule;
}

function ruleMatches(rule: TargetRule, name: string, address: string, port: number): boolean {
  if (rule.ports && (port < rule.ports[0] || port > rule.ports[1])) return false;
  if (rule.cidr) return cidrContains(rule.cidr, address);
  if (rule.name) {
    const asked = name.toLowerCase().replace(/\.$/, "");
    return rule.name.startsWith("*.") ? asked.endsWith(rule.name.slice(1)) : asked === rule.name;
  }
  return true;
}

/**
 * Why the rules refuse `address` (resolved from `name`) at `port`, or
 * `undefined` when they allow it. The address is checked in every form it
 * reaches ({@linkcode reachedAddresses}): `0.0.0.0` and `::` as the local
 * host (`127.0.0.1` and `::1`), `::ffff:a.b.c.d` and the other IPv6 forms
 * that carry an IPv4 address as that address too. A deny of any form
 * refuses; an allow list must admit every form.
 *
 * @example Usage
 * ```ts
 * import { parseTargetRule, targetRefusal } from "./proxy_server.ts";
 * import assert from "node:assert/strict";
 *
 * const rules = { allow: [], deny: [parseTargetRule("127.0.0.0/8")] };
 * assert.match(targetRefusal(rules, "localhost", "127.0.0.1", 80)!, /denied by --deny-target 127\.0\.0\.0\/8/);
 * assert.equal(targetRefusal(rules, "example.com", "93.184.215.14", 80), undefined);
 * ```
 */
export function targetRefusal(
  rules: TargetRules,
  name: string,
  address: string,
  port: number,
): string | undefined {
  const forms = reachedAddresses(address);
  const via = (form: string) => (form === forms[0] ? "" : ` (${address} reaches ${form})`);
  for (const form of forms) {
    const denied = rules.deny.find((r) => ruleMatches(r, name, form, port));
    if (denied) return `denied by --deny-target ${denied.text}${via(form)}`;
  }
  for (const form of forms) {
    const local = rules.local?.find((r) => ruleMatches(r, name, form, port));
    const named = local &&
      rules.allow.some((r) =>
        r.cidr && cidrWithin(r.cidr, local.cidr!) && ruleMatches(r, name, form, port)
      );
    if (local && !named) {
      return `denied by default: ${local.text}${via(form)} is local and the proxy listens ` +
        "beyond loopback (an --allow-target address opens it)";
    }
  }
  const allowed = (form: string) => rules.allow.some((r) => ruleMatches(r, name, form, port));
  if (rules.allow.length && !forms.every(allowed)) return "not in any --allow-target";
  return undefined;
}

/** Options of {@linkcode acceptProxyRequest}. */
export interface ProxyServerOptions {
  /** Users and their passwords (`--auth`); none: no authentication. */
  users?: Map<string, string>;
  /** `--allow-target` / `--deny-target`. */
  targets?: TargetRules;
  /** Give up connecting to a target after this many ms (default 10 s). */
  connectTimeout?: number;
  /** The client's request must be in within this many ms (default {@linkcode REQUEST_TIMEOUT}). */
  requestTimeout?: number;
  /**
   * Called once the request is in (before resolving and connecting): the
   * end of the phase a silent client could hold a `--max-conns` slot in.
   */
  onRequest?: () => void;
  /**
   * Called when a plain HTTP client sends more after its request (a
   * pipelined second request), which is dropped: one request per connection.
   */
  onDropped?: (bytes: number) => void;
  /** Resolve target names to IPv4 or IPv6 only. */
  family?: 4 | 6;
  /** Stops everything (the server's signal). */
  signal: AbortSignal;
  /** Prints each socket call (`--trace`). */
  trace?: TraceFn;
  /** The resolver; the system's by default. */
  lookup?: Lookup;
}

/** A client's request, as asked. */
export interface ProxyRequest {
  /** The protocol it spoke. */
  protocol: ProxyProtocol;
  /** The target host as asked (a name or an address). */
  host: string;
  /** The target port. */
  port: number;
  /** The authenticated user, if any. */
  user?: string;
}

/** A request that was served: the tunnel to the target is open. */
export interface Proxied {
  /** What the client asked for. */
  request: ProxyRequest;
  /** The target's address, as connected. */
  address: string;
  /**
   * The target, as the relay is to use it: the connection, or for a plain
   * HTTP request the connection behind a filter that passes that one
   * request (head and body) and drops whatever the client sends after it.
   */
  target: Duplex;
}

/** A request that was refused (the client has had the protocol's refusal). */
export class ProxyRefusal extends Error {
  /** What the client asked for, when it got that far. */
  readonly request?: ProxyRequest;

  /** A refusal of `request` for `reason`. */
  constructor(reason: string, request?: ProxyRequest) {
    super(reason);
    this.name = "ProxyRefusal";
    this.request = request;
  }
}

/**
 * How long a client may take to send its whole request, by default: short,
 * so that clients which connect and say nothing free their slots soon.
 */
export const REQUEST_TIMEOUT = 5_000;

/** The largest request header (HTTP) or message (SOCKS) the proxy reads. */
const MAX_REQUEST = 16 * 1024;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Reads the client's request, answers it and, when it is allowed, connects
 * its target: resolves to the tunnel; rejects with a
 * {@linkcode ProxyRefusal} (after the protocol's refusal has been sent) or
 * with the error that stopped it (the client went away, timed out).
 *
 * @example Usage
 * ```ts ignore
 * const { request, target } = await acceptProxyRequest(client, { signal });
 * await transfer(client, target, { signal });
 * ```
 */
export async function acceptProxyRequest(
  client: Stream,
  options: ProxyServerOptions,
): Promise<Proxied> {
  const timeout = options.requestTimeout ?? REQUEST_TIMEOUT;
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(timeout)]);
  // Only the request is under the request timeout; connecting has its own.
  let request: Awaited<ReturnType<typeof readRequest>>;
  try {
    request = await untilAborted(
      signal,
      { close: () => client.close() },
      readRequest(client, options),
    );
  } catch (err) {
    if (err instanceof ProxyRefusal || options.signal.aborted) throw err;
    if (signal.aborted) throw new ProxyRefusal(`no complete request within ${timeout} ms`);
    if (err instanceof HandshakeEof) {
      throw new ProxyRefusal("closed before its request was complete");
    }
    throw err;
  }
  options.onRequest?.();
  const { ask, answer, leftover, forTarget, framing } = request;
  const refuse = async (kind: Refusal, reason: string): Promise<never> => {
    await answer.refuse(kind).catch(() => {});
    throw new ProxyRefusal(reason, ask);
  };
  // Resolve, then check every address: a name must not reach a denied address.
  let addresses: string[];
  try {
    addresses = await resolve(ask.host, {
      op: "connect",
      address: `${formatHost(ask.host)}:${ask.port}`,
      family: options.family,
      lookup: options.lookup,
    });
  } catch (err) {
    return await refuse("unreachable", toSockitError(err, "resolve", ask.host).reason);
  }
  const rules = options.targets ?? { allow: [], deny: [] };
  const allowed = addresses.filter((a) => !targetRefusal(rules, ask.host, a, ask.port));
  if (!allowed.length) {
    return await refuse("denied", targetRefusal(rules, ask.host, addresses[0], ask.port)!);
  }
  const connectSignal = AbortSignal.any([
    options.signal,
    AbortSignal.timeout(options.connectTimeout ?? 10_000),
  ]);
  let target: Connection | undefined;
  let lastError: unknown;
  const dial = directDialer();
  for (const address of allowed) {
    try {
      target = await dial({ host: address, port: ask.port }, {
        id: client.id,
        signal: connectSignal,
        trace: options.trace,
      });
      break;
    } catch (err) {
      lastError = err;
      if (connectSignal.aborted) break;
    }
  }
  if (!target) {
    if (options.signal.aborted) throw options.signal.reason;
    const timedOut = connectSignal.aborted;
    const reason = timedOut
      ? `connecting timed out after ${options.connectTimeout ?? 10_000} ms`
      : toSockitError(lastError, "connect", `${formatHost(ask.host)}:${ask.port}`).reason;
    return await refuse(timedOut ? "timeout" : refusalOf(lastError), `target: ${reason}`);
  }
  try {
    await answer.granted(target);
  } catch (err) {
    target.close();
    throw err;
  }
  // A rewritten request head goes first, through the relay, so that it is counted.
  // (A layer that cannot take bytes back — a WebSocket — does not get them.)
  client.unread?.(forTarget ? concat(forTarget, leftover) : leftover);
  const side = framing
    ? new OneRequest(target, forTarget!.length, framing, options.onDropped)
    : target;
  return { request: ask, address: target.remoteAddress, target: side };
}

/** Why a request was refused, in the terms each protocol can say. */
type Refusal = "denied" | "auth" | "refused" | "unreachable" | "timeout" | "bad" | "unsupported";

/** How to answer a client in its own protocol. */
interface Answer {
  /** The tunnel is open to `target`. */
  granted(target: Connection): Promise<void>;
  /** The request is refused. */
  refuse(kind: Refusal): Promise<void>;
}

/** The refusal for a connect error. */
function refusalOf(err: unknown): Refusal {
  const name = (err as Error)?.name ?? "";
  const code = (err as { code?: string })?.code ?? "";
  if (name === "ConnectionRefused" || code === "ECONNREFUSED") return "refused";
  return "unreachable";
}

/** What a parsed request gives. */
interface ParsedRequest {
  ask: ProxyRequest;
  answer: Answer;
  /** Client bytes past the request: given back to the client connection for the relay. */
  leftover: Uint8Array;
  /** Bytes for the target before the relay starts (a rewritten HTTP request head). */
  forTarget?: Uint8Array;
  /** A plain HTTP request's body framing: what of the client's bytes is that request's. */
  framing?: BodyFraming;
}

async function readRequest(
  client: Stream,
  options: ProxyServerOptions,
): Promise<ParsedRequest> {
  const first = await readAtLeast(client, 1, new Uint8Array(0));
  if (first[0] === SOCKS5.VERSION) return await socks5Request(client, first, options);
  if (first[0] === SOCKS4.VERSION) return await socks4Request(client, first, options);
  return await httpRequest(client, first, options);
}

/** Reads until `need(buffer)` gives a length, or the request limit. */
async function readUntil(
  client: Stream,
  buffer: Uint8Array,
  need: (b: Uint8Array) => number | undefined,
): Promise<[Uint8Array, number]> {
  for (;;) {
    const n = need(buffer);
    if (n !== undefined) {
      buffer = await readAtLeast(client, n, buffer);
      return [buffer, n];
    }
    if (buffer.length > MAX_REQUEST) throw new ProxyRefusal("request too large");
    buffer = await readAtLeast(client, buffer.length + 1, buffer);
  }
}

async function socks5Request(
  client: Stream,
  got: Uint8Array,
  options: ProxyServerOptions,
): Promise<ParsedRequest> {
  const trace = (call: string) => options.trace?.(client.tag, call);
  [got] = await readUntil(client, got, (b) => (b.length >= 2 ? 2 + b[1] : undefined));
  const methods = [...got.subarray(2, 2 + got[1])];
  got = got.subarray(2 + got[1]);
  const wantAuth = (options.users?.size ?? 0) > 0;
  const method = wantAuth
    ? (methods.includes(SOCKS5.USER_PASS) ? SOCKS5.USER_PASS : SOCKS5.NO_METHOD)
    : (methods.includes(SOCKS5.NO_AUTH) ? SOCKS5.NO_AUTH : SOCKS5.NO_METHOD);
  await writeAll(client, new Uint8Array([SOCKS5.VERSION, method]));
  trace(`socks5 greeting (${methods.join(",")}) = method ${method}`);
  if (method === SOCKS5.NO_METHOD) {
    throw new ProxyRefusal(
      wantAuth
        ? "authentication failed: the client offers no username/password (SOCKS5)"
        : "the client offers no method without authentication (SOCKS5)",
    );
  }
  let user: string | undefined;
  if (method === SOCKS5.USER_PASS) {
    [got] = await readUntil(client, got, (b) => {
      if (b.length < 2) return undefined;
      if (b.length < 3 + b[1]) return undefined;
      return 3 + b[1] + b[2 + b[1]];
    });
    // RFC 1929: VER (1) ULEN UNAME PLEN PASSWD.
    const version = got[0];
    user = decoder.decode(got.subarray(2, 2 + got[1]));
    const pass = decoder.decode(got.subarray(3 + got[1], 3 + got[1] + got[2 + got[1]]));
    got = got.subarray(3 + got[1] + got[2 + got[1]]);
    const ok = version === 1 && options.users!.get(user) === pass;
    await writeAll(client, new Uint8Array([1, ok ? 0 : 1]));
    const who = userText(user, options.users);
    trace(`socks5 username/password (${who}) = ${ok ? "ok" : "refused"}`);
    if (version !== 1) {
      throw new ProxyRefusal(
        `authentication failed: username/password version ${version}, not 1 (SOCKS5, RFC 1929)`,
      );
    }
    if (!ok) throw new ProxyRefusal(`authentication failed for ${who} (SOCKS5)`);
  }
  let address: { host: string; port: number; length: number } | undefined;
  [got] = await readUntil(client, got, (b) => {
    if (b.length < 4) return undefined;
    address = decodeSocks5Address(b, 3);
    if (address?.length === -1) return 4;
    return address ? 3 + address.length : undefined;
  });
  const reply = (code: number, bound?: Deno.NetAddr) =>
    writeAll(
      client,
      new Uint8Array([
        SOCKS5.VERSION,
        code,
        0,
        ...encodeSocks5Address(bound?.hostname ?? "0.0.0.0", bound?.port ?? 0),
      ]),
    );
  if (got[0] !== SOCKS5.VERSION) {
    await reply(1);
    throw new ProxyRefusal(`request version ${got[0]}, not 5 (SOCKS5)`);
  }
  if (got[1] !== SOCKS5.CONNECT || address!.length === -1) {
    const code = got[1] !== SOCKS5.CONNECT ? 7 : 8;
    await reply(code);
    throw new ProxyRefusal(
      code === 7
        ? `command ${got[1]} not supported (SOCKS5: CONNECT only)`
        : "unknown address type",
    );
  }
  const ask: ProxyRequest = { protocol: "socks5", host: address!.host, port: address!.port, user };
  const codes: Record<Refusal, number> = {
    denied: 2,
    auth: 2,
    refused: 5,
    unreachable: 4,
    timeout: 4,
    bad: 1,
    unsupported: 7,
  };
  return {
    ask,
    leftover: got.subarray(3 + address!.length),
    answer: {
      granted: async (target) => {
        await reply(0, target.conn.localAddr as Deno.NetAddr);
        trace(`socks5 CONNECT ${formatHost(ask.host)}:${ask.port} = succeeded`);
      },
      refuse: async (kind) => {
        await reply(codes[kind]);
        trace(`socks5 CONNECT ${formatHost(ask.host)}:${ask.port} = reply ${codes[kind]}`);
      },
    },
  };
}

async function socks4Request(
  client: Stream,
  got: Uint8Array,
  options: ProxyServerOptions,
): Promise<ParsedRequest> {
  // VN CD DSTPORT DSTIP USERID NUL [HOSTNAME NUL]
  let end = 0;
  [got] = await readUntil(client, got, (b) => {
    if (b.length < 9) return undefined;
    const userEnd = b.indexOf(0, 8);
    if (userEnd === -1) return undefined;
    const is4a = b[4] === 0 && b[5] === 0 && b[6] === 0 && b[7] !== 0;
    if (!is4a) return (end = userEnd + 1);
    const nameEnd = b.indexOf(0, userEnd + 1);
    return nameEnd === -1 ? undefined : (end = nameEnd + 1);
  });
  const port = (got[2] << 8) | got[3];
  const userEnd = got.indexOf(0, 8);
  const is4a = got[4] === 0 && got[5] === 0 && got[6] === 0 && got[7] !== 0;
  const host = is4a
    ? decoder.decode(got.subarray(userEnd + 1, end - 1))
    : [...got.subarray(4, 8)].join(".");
  // A user id is free text, and some put user:password in it: shown up to its colon.
  const userId = decoder.decode(got.subarray(8, userEnd));
  const user = userId ? maskSecret(userId) : undefined;
  const ask: ProxyRequest = { protocol: is4a ? "socks4a" : "socks4", host, port, user };
  const reply = (code: number) =>
    writeAll(client, new Uint8Array([0, code, port >> 8, port & 0xff, 0, 0, 0, 0]));
  const trace = (call: string) => options.trace?.(client.tag, call);
  if ((options.users?.size ?? 0) > 0) {
    await reply(SOCKS4.REJECTED);
    throw new ProxyRefusal("authentication required: SOCKS4 carries no password", ask);
  }
  if (got[1] !== SOCKS4.CONNECT) {
    await reply(SOCKS4.REJECTED);
    throw new ProxyRefusal(`command ${got[1]} not supported (SOCKS4: CONNECT only)`, ask);
  }
  return {
    ask,
    leftover: got.subarray(end),
    answer: {
      granted: async () => {
        await reply(SOCKS4.GRANTED);
        trace(`${ask.protocol} CONNECT ${host}:${port} = request granted`);
      },
      refuse: async () => {
        await reply(SOCKS4.REJECTED);
        trace(`${ask.protocol} CONNECT ${host}:${port} = request rejected`);
      },
    },
  };
}

/**
 * Hop-by-hop headers a proxy does not pass on (RFC 9110 §7.6.1), besides
 * those `Connection` names and every `Proxy-*` header.
 */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "te", "trailer", "upgrade"]);

/** A header line as RFC 9112 §5 has it: a token, a colon, the value (no control characters). */
// deno-lint-ignore no-control-regex
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([^\x00-\x08\x0a-\x1f\x7f]*?)[\t ]*$/;

/** Why a header line is refused, in words. */
function badHeaderLine(line: string): string {
  if (/^[\t ]/.test(line)) return "a folded header line (obs-fold)";
  if (/^[^:\s]+[\t ]+:/.test(line)) return "whitespace before the colon of a header";
  if (!line.includes(":")) return "a header line without a colon";
  if (/^[^:]*[^!#$%&'*+.^_`|~0-9A-Za-z-][^:]*:/.test(line)) return "a bad header name";
  return "a control character in a header value";
}

async function httpRequest(
  client: Stream,
  got: Uint8Array,
  options: ProxyServerOptions,
): Promise<ParsedRequest> {
  const trace = (call: string) => options.trace?.(client.tag, call);
  const respond = (status: string, extra = "") =>
    writeAll(
      client,
      encoder.encode(
        `HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`,
      ),
    );
  let end = -1;
  while ((end = headerEnd(got)) === -1) {
    if (got.length > MAX_REQUEST) {
      await respond("431 Request Header Fields Too Large").catch(() => {});
      throw new ProxyRefusal("request header over 16 KiB");
    }
    got = await readAtLeast(client, got.length + 1, got);
  }
  const head = decoder.decode(got.subarray(0, end));
  const leftover = got.subarray(end + 4);
  const [requestLine, ...headerLines] = head.split("\r\n");
  const bad = async (why: string): Promise<never> => {
    await respond("400 Bad Request").catch(() => {});
    throw new ProxyRefusal(why);
  };
  // A lone CR or LF ends a line for some parsers and not for others: a way to
  // slip a header past the proxy (RFC 9112 §2.2 lets a recipient refuse it).
  if (/[\r\n]/.test(requestLine) || headerLines.some((line) => /[\r\n]/.test(line))) {
    return await bad("a bare CR or LF in the request header (lines end in CRLF)");
  }
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d\.\d)$/.exec(requestLine);
  if (!m) return await bad(`not a proxy request: ${JSON.stringify(requestLine.slice(0, 60))}`);
  const [, method, target, version] = m;
  const headers: [string, string][] = [];
  for (const line of headerLines) {
    const h = HEADER_LINE.exec(line);
    if (!h) return await bad(badHeaderLine(line));
    headers.push([h[1], h[2]]);
  }
  const all = (name: string) => headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
  const header = (name: string) => all(name)[0];
  let host: string;
  let port: number;
  let forTarget: Uint8Array | undefined;
  let framing: BodyFraming | undefined;
  const connect = method.toUpperCase() === "CONNECT";
  if (connect) {
    const a = /^(?:\[([^\]]+)\]|([^:/]+)):(\d+)$/.exec(target);
    if (!a || Number(a[3]) < 1 || Number(a[3]) > 65535) {
      return await bad(`CONNECT needs host:port, not ${JSON.stringify(target)}`);
    }
    host = a[1] ?? a[2];
    port = Number(a[3]);
  } else {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return await bad(`not a proxy request (origin-form ${JSON.stringify(target.slice(0, 60))})`);
    }
    if (url.protocol !== "http:") {
      return await bad(
        `only http:// URLs are proxied as requests (use CONNECT for ${url.protocol})`,
      );
    }
    host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    port = url.port ? Number(url.port) : 80;
    // The body's end, as the origin will find it (RFC 9112 §6.3); anything
    // ambiguous is refused rather than guessed.
    const lengths = all("content-length");
    const codings = all("transfer-encoding").join(",").split(",").map((c) => c.trim().toLowerCase())
      .filter(Boolean);
    if (codings.length) {
      if (lengths.length) return await bad("both Transfer-Encoding and Content-Length");
      if (version === "1.0") return await bad("Transfer-Encoding in an HTTP/1.0 request");
      if (codings.at(-1) !== "chunked") {
        return await bad("a Transfer-Encoding that does not end in chunked");
      }
      framing = new BodyFraming("chunked");
    } else if (lengths.length) {
      if (new Set(lengths).size > 1 || !/^\d{1,15}$/.test(lengths[0])) {
        return await bad(`a bad Content-Length (${JSON.stringify(lengths.join(", "))})`);
      }
      framing = new BodyFraming(Number(lengths[0]));
    } else framing = new BodyFraming(0);
    // Origin form to the target, hop-by-hop and Proxy-* headers dropped, one
    // request per connection.
    const named = new Set(
      all("connection").join(",").split(",").map((s) => s.trim().toLowerCase()).filter(Boolean),
    );
    const kept = headers.filter(([k]) => {
      const name = k.toLowerCase();
      return !HOP_BY_HOP.has(name) && !named.has(name) && !name.startsWith("proxy-") &&
        name !== "host";
    });
    const lines = [
      `${method} ${url.pathname}${url.search} HTTP/${version}`,
      `Host: ${url.host}`,
      ...kept.map(([k, v]) => `${k}: ${v}`),
      "Connection: close",
    ];
    forTarget = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  }
  const ask: ProxyRequest = { protocol: connect ? "http-connect" : "http", host, port };
  if ((options.users?.size ?? 0) > 0) {
    const credentials = /^Basic +(\S+)$/i.exec(header("proxy-authorization") ?? "")?.[1];
    let user: string | undefined;
    let pass: string | undefined;
    try {
      const text = credentials
        ? new TextDecoder().decode(
          Uint8Array.from(atob(credentials), (c) => c.charCodeAt(0)),
        )
        : undefined;
      if (text?.includes(":")) {
        [user, pass] = [text.slice(0, text.indexOf(":")), text.slice(text.indexOf(":") + 1)];
      }
    } catch {
      // Not base64: no credentials.
    }
    if (user === undefined || options.users!.get(user) !== pass) {
      await respond(
        "407 Proxy Authentication Required",
        'Proxy-Authenticate: Basic realm="sockit"\r\n',
      )
        .catch(() => {});
      throw new ProxyRefusal(
        user === undefined
          ? "authentication required: no Proxy-Authorization (HTTP Basic)"
          : `authentication failed for ${userText(user, options.users)} (HTTP Basic)`,
        ask,
      );
    }
    ask.user = user;
  }
  const statuses: Record<Refusal, string> = {
    denied: "403 Forbidden",
    auth: "407 Proxy Authentication Required",
    refused: "502 Bad Gateway",
    unreachable: "502 Bad Gateway",
    timeout: "504 Gateway Timeout",
    bad: "400 Bad Request",
    unsupported: "501 Not Implemented",
  };
  const what = `${connect ? "CONNECT" : method} ${formatHost(host)}:${port}`;
  return {
    ask,
    leftover,
    forTarget,
    framing,
    answer: {
      granted: async () => {
        if (connect) {
          await writeAll(client, encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
        }
        trace(`http ${what} = ${connect ? "200 Connection established" : "forwarded"}`);
      },
      refuse: async (kind) => {
        await respond(statuses[kind]);
        trace(`http ${what} = ${statuses[kind]}`);
      },
    },
  };
}

/** Text with a colon in it (`user:password` in a SOCKS4 user id) shown up to the colon. */
function maskSecret(text: string): string {
  const colon = text.indexOf(":");
  return colon === -1 ? text : `${text.slice(0, colon)}:***`;
}

/**
 * A user name for messages: a configured user by name; any other name is
 * not shown (a password typed into the user field, or a probe).
 */
function userText(user: string, users?: Map<string, string>): string {
  return users?.has(user) ? `user ${JSON.stringify(user)}` : "an unknown user";
}

/**
 * Parses `--auth user:pass` values into users and passwords. A value is
 * never echoed in the error: it may be a password.
 *
 * @example Usage
 * ```ts
 * import { parseUsers } from "./proxy_server.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseUsers(["alice:s3:cret"]).get("alice"), "s3:cret");
 * assert.throws(() => parseUsers([":s3cret"]), (e: Error) => /user:pass/.test(e.message) && !/s3cret/.test(e.message));
 * ```
 */
export function parseUsers(entries: string[]): Map<string, string> {
  const users = new Map<string, string>();
  for (const entry of entries) {
    const why = userEntryProblem(entry);
    if (why) throw new UsageError(`option --auth needs user:pass: ${why}`);
    const colon = entry.indexOf(":");
    users.set(entry.slice(0, colon), entry.slice(colon + 1));
  }
  return users;
}

/** What is wrong with a `user:pass` entry, or `undefined`. */
function userEntryProblem(entry: string): string | undefined {
  const colon = entry.indexOf(":");
  if (colon === -1) return "no colon in the value";
  if (colon === 0) return "no user name before the colon";
  const bytes = (text: string) => encoder.encode(text).length;
  if (bytes(entry.slice(0, colon)) > 255 || bytes(entry.slice(colon + 1)) > 255) {
    return "user and password are at most 255 bytes each (RFC 1929)";
  }
  return undefined;
}

/**
 * Parses the text of an `--auth-file`: one `user:pass` a line, blank lines
 * and `#` comments skipped. A file without a single user is an error (exit
 * 1, as a certificate file without a certificate): taken as "no users" it
 * would run an open proxy. A bad line is named by its number, never shown.
 *
 * @example Usage
 * ```ts
 * import { parseAuthFile } from "./proxy_server.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseAuthFile("users", "# staff\nbob:hunter2\n").get("bob"), "hunter2");
 * assert.throws(() => parseAuthFile("users", "# nobody yet\n"), /no users in it/);
 * assert.throws(() => parseAuthFile("users", "bob:x\nhunter2\n"), /line 2: not user:pass \(no colon/);
 * ```
 */
export function parseAuthFile(path: string, text: string): Map<string, string> {
  const users = new Map<string, string>();
  const lines = text.split("\n");
  for (const [at, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const why = userEntryProblem(line);
    if (why) {
      throw new SockitError(`line ${at + 1}: not user:pass (${why})`, {
        op: "read users",
        address: path,
        code: "EINVAL",
      });
    }
    const colon = line.indexOf(":");
    users.set(line.slice(0, colon), line.slice(colon + 1));
  }
  if (users.size === 0) {
    throw new SockitError("no users in it (one user:pass a line): the proxy would be open", {
      op: "read users",
      address: path,
      code: "EINVAL",
    });
  }
  return users;
}
