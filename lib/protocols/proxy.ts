/**
 * `--proxy URL`: a dialer that reaches its target through a proxy — SOCKS5
 * (names resolved here, or by the proxy with `socks5h://`), SOCKS4/4a, or
 * HTTP CONNECT — in the manner of Go's `x/net/proxy`: it wraps the dialer
 * that reaches the proxy, and the row's own layers (TLS to the target) go
 * on top of it, so `tls://host:443` through a proxy verifies `host`.
 *
 * Bytes the proxy sends after its reply belong to the session and are
 * given back to the connection ({@linkcode Connection.unread}), never
 * dropped.
 *
 * @module
 */

import { writeAll } from "../base/bytes.ts";
import { Connection } from "../net/conn.ts";
import type { DialContext, Dialer, DialTarget } from "../net/dial.ts";
import { directDialer, targetText } from "../net/dial.ts";
import { SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, isIPv4, isIPv6 } from "../net/ip.ts";
import { resolve } from "../net/resolve.ts";
import {
  encodeSocks5Address,
  HandshakeEof,
  readAtLeast,
  SOCKS4,
  SOCKS4_REPLIES,
  SOCKS5,
  SOCKS5_METHODS,
  SOCKS5_REPLIES,
  untilAborted,
} from "./socks.ts";
import type { ProxySpec } from "./proxy_options.ts";

export { maskUrlPassword, parseProxyUrl } from "./proxy_options.ts";
export type { ProxyScheme, ProxySpec } from "./proxy_options.ts";

/** A failure of the proxy itself or of the handshake with it (exit 1). */
function proxyError(spec: ProxySpec, target: string, reason: string, code = "EPROXY"): SockitError {
  return new SockitError(reason, {
    op: "connect",
    address: `${target} through ${spec.text}`,
    code,
  });
}

/**
 * A dialer that reaches its target through the proxy `spec`; `inner`
 * reaches the proxy (the direct dialer by default). The connection it gives
 * is the tunnel, named after the target.
 *
 * @example Usage
 * ```ts ignore
 * const dial = proxyDialer(parseProxyUrl("socks5h://127.0.0.1:1080"));
 * using conn = await dial({ host: "example.com", port: 80 }, ctx);
 * ```
 */
export function proxyDialer(
  spec: ProxySpec,
  inner: Dialer<Connection> = directDialer(),
): Dialer<Connection> {
  return async (target: DialTarget, ctx: DialContext) => {
    if ("path" in target) {
      throw new UsageError(
        `${targetText(target)}: a proxy reaches host:port targets, not Unix sockets`,
      );
    }
    const named = targetText(target);
    let proxy: Connection;
    try {
      proxy = await inner({ host: spec.host, port: spec.port }, ctx);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      const e = toSockitError(err, "connect", `${formatHost(spec.host)}:${spec.port}`);
      throw new SockitError(`the proxy: ${e.reason}`, {
        op: "connect",
        address: `${named} through ${spec.text}`,
        code: e.code,
        cause: err,
      });
    }
    try {
      const surplus = await untilAborted(ctx.signal, proxy, handshake(spec, proxy, target, ctx));
      const tunnel = Connection.from(proxy.conn, {
        id: ctx.id,
        trace: ctx.trace,
        remoteAddress: named,
      });
      tunnel.unread(surplus);
      return tunnel;
    } catch (err) {
      proxy.close();
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (err instanceof HandshakeEof) {
        throw proxyError(
          spec,
          named,
          `the proxy closed the connection during the ${spec.scheme} handshake`,
        );
      }
      if (err instanceof SockitError || err instanceof UsageError) throw err;
      throw proxyError(
        spec,
        named,
        `the proxy: ${toSockitError(err, "connect", spec.text).reason}`,
      );
    }
  };
}

/** Runs the proxy protocol on `proxy`; resolves to the bytes read past the reply. */
function handshake(
  spec: ProxySpec,
  proxy: Connection,
  target: { host: string; port: number },
  ctx: DialContext,
): Promise<Uint8Array> {
  switch (spec.scheme) {
    case "socks5":
    case "socks5h":
      return socks5(spec, proxy, target, ctx);
    case "socks4":
    case "socks4a":
      return socks4(spec, proxy, target, ctx);
    default:
      return httpConnect(spec, proxy, target, ctx);
  }
}

/** The address to put in a request: resolved here unless the proxy is to resolve it. */
async function requestHost(
  spec: ProxySpec,
  target: { host: string; port: number },
  ctx: DialContext,
  family?: 4 | 6,
): Promise<string> {
  const byProxy = spec.scheme === "socks5h" || spec.scheme === "socks4a";
  if (byProxy || isIPv4(target.host) || isIPv6(target.host)) return target.host;
  const [address] = await resolve(target.host, {
    op: "connect",
    address: targetText(target),
    family: family ?? ctx.family,
    lookup: ctx.lookup,
  });
  return address;
}

async function socks5(
  spec: ProxySpec,
  proxy: Connection,
  target: { host: string; port: number },
  ctx: DialContext,
): Promise<Uint8Array> {
  const conn = proxy.conn;
  const named = targetText(target);
  const trace = (call: string) => ctx.trace?.(`#${ctx.id}`, call);
  const methods: number[] = spec.username !== undefined
    ? [SOCKS5.NO_AUTH, SOCKS5.USER_PASS]
    : [SOCKS5.NO_AUTH];
  await writeAll(conn, new Uint8Array([SOCKS5.VERSION, methods.length, ...methods]));
  let got = await readAtLeast(conn, 2, new Uint8Array(0));
  const offered = methods.map((m) => SOCKS5_METHODS[m]).join(", ");
  if (got[0] !== SOCKS5.VERSION) {
    throw proxyError(
      spec,
      named,
      `the proxy does not speak SOCKS5 (it answered version ${got[0]})`,
    );
  }
  const method = got[1];
  trace(`socks5 greeting (${offered}) = ${SOCKS5_METHODS[method] ?? `method ${method}`}`);
  got = got.subarray(2);
  if (method === SOCKS5.NO_METHOD || !methods.includes(method)) {
    throw proxyError(
      spec,
      named,
      spec.username === undefined
        ? "authentication failed: the proxy wants credentials (it accepts none of: no authentication); " +
          "give them in the URL, socks5://user:pass@host:port"
        : `authentication failed: the proxy accepts none of the offered methods (${offered})`,
      "EAUTH",
    );
  }
  if (method === SOCKS5.USER_PASS) {
    const user = new TextEncoder().encode(spec.username ?? "");
    const pass = new TextEncoder().encode(spec.password ?? "");
    await writeAll(conn, new Uint8Array([1, user.length, ...user, pass.length, ...pass]));
    got = await readAtLeast(conn, 2, got);
    const ok = got[1] === 0;
    trace(
      `socks5 username/password (user ${JSON.stringify(spec.username)}) = ${ok ? "ok" : "refused"}`,
    );
    if (!ok) {
      throw proxyError(
        spec,
        named,
        `authentication failed: the proxy refused user ${
          JSON.stringify(spec.username)
        } (username/password)`,
        "EAUTH",
      );
    }
    got = got.subarray(2);
  }
  const host = await requestHost(spec, target, ctx);
  await writeAll(
    conn,
    new Uint8Array([SOCKS5.VERSION, SOCKS5.CONNECT, 0, ...encodeSocks5Address(host, target.port)]),
  );
  got = await readAtLeast(conn, 5, got);
  const length = 4 +
    (got[3] === SOCKS5.ATYP_IPV4 ? 4 : got[3] === SOCKS5.ATYP_IPV6 ? 16 : 1 + got[4]) + 2;
  got = await readAtLeast(conn, length, got);
  const reply = got[1];
  trace(
    `socks5 CONNECT ${formatHost(host)}:${target.port} = ${
      SOCKS5_REPLIES[reply] ?? `reply ${reply}`
    }`,
  );
  if (reply !== 0) {
    throw proxyError(
      spec,
      named,
      `the proxy could not connect: ${
        SOCKS5_REPLIES[reply] ?? "unknown reply"
      } (SOCKS5 reply ${reply})`,
      reply === 5 ? "ECONNREFUSED" : "ETUNNEL",
    );
  }
  return got.subarray(length);
}

async function socks4(
  spec: ProxySpec,
  proxy: Connection,
  target: { host: string; port: number },
  ctx: DialContext,
): Promise<Uint8Array> {
  const conn = proxy.conn;
  const named = targetText(target);
  if (isIPv6(target.host)) {
    throw proxyError(spec, named, "SOCKS4 carries IPv4 addresses only: use socks5:// for IPv6");
  }
  const host = await requestHost(spec, target, ctx, 4);
  const user = new TextEncoder().encode(spec.username ?? "");
  const name = isIPv4(host) ? new Uint8Array(0) : new TextEncoder().encode(`${host}\0`);
  // SOCKS4a: the address 0.0.0.1 says "the name follows".
  const ip = isIPv4(host) ? host.split(".").map(Number) : [0, 0, 0, 1];
  await writeAll(
    conn,
    new Uint8Array([
      SOCKS4.VERSION,
      SOCKS4.CONNECT,
      target.port >> 8,
      target.port & 0xff,
      ...ip,
      ...user,
      0,
      ...name,
    ]),
  );
  const got = await readAtLeast(conn, 8, new Uint8Array(0));
  const reply = got[1];
  ctx.trace?.(
    `#${ctx.id}`,
    `${spec.scheme} CONNECT ${host}:${target.port} = ${SOCKS4_REPLIES[reply] ?? `reply ${reply}`}`,
  );
  if (reply !== SOCKS4.GRANTED) {
    throw proxyError(
      spec,
      named,
      `the proxy could not connect: ${SOCKS4_REPLIES[reply] ?? "unknown reply"} (SOCKS4 reply 0x${
        reply.toString(16)
      })`,
      "ETUNNEL",
    );
  }
  return got.subarray(8);
}

async function httpConnect(
  spec: ProxySpec,
  proxy: Connection,
  target: { host: string; port: number },
  ctx: DialContext,
): Promise<Uint8Array> {
  const conn = proxy.conn;
  const named = targetText(target);
  const authority = `${formatHost(target.host)}:${target.port}`;
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (spec.username !== undefined) {
    const token = btoa(
      String.fromCharCode(...new TextEncoder().encode(`${spec.username}:${spec.password ?? ""}`)),
    );
    lines.push(`Proxy-Authorization: Basic ${token}`);
  }
  await writeAll(conn, new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
  let got: Uint8Array = new Uint8Array(0);
  let end = -1;
  while ((end = headerEnd(got)) === -1) {
    if (got.length > 65536) {
      throw proxyError(spec, named, "the proxy's reply header is over 64 KiB");
    }
    got = await readAtLeast(conn, got.length + 1, got);
  }
  const head = new TextDecoder().decode(got.subarray(0, end));
  const status = head.split("\r\n")[0];
  const code = Number(/^HTTP\/\d(?:\.\d)? (\d{3})/.exec(status)?.[1]);
  ctx.trace?.(`#${ctx.id}`, `http CONNECT ${authority} = ${status}`);
  if (!(code >= 200 && code < 300)) {
    if (!code) {
      throw proxyError(
        spec,
        named,
        `the proxy does not speak HTTP (it answered ${JSON.stringify(status.slice(0, 60))})`,
      );
    }
    if (code === 407) {
      const wants = /^proxy-authenticate:\s*(.*)$/im.exec(head)?.[1]?.trim();
      throw proxyError(
        spec,
        named,
        `authentication failed: ${status}${wants ? ` (the proxy wants ${wants})` : ""}`,
        "EAUTH",
      );
    }
    throw proxyError(spec, named, `the proxy could not connect: ${status}`, "ETUNNEL");
  }
  return got.subarray(end + 4);
}

/** Where `\r\n\r\n` starts in `bytes`, or -1. */
export function headerEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}
