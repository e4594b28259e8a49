/**
 * The `proxy` option group: `--proxy URL` (SOCKS5, SOCKS5h, SOCKS4/4a,
 * HTTP CONNECT), declared, and the URL parsed. Small on purpose: reading
 * the flag loads no proxy code (`proxy.ts` dials through the proxy).
 *
 * @module
 */

import { UsageError } from "../base/errors.ts";
import { formatHost } from "../net/ip.ts";
import type { OptionGroup } from "../net/option_group.ts";

/** The proxy protocols `--proxy` speaks. */
export type ProxyScheme = "socks4" | "socks4a" | "socks5" | "socks5h" | "http";

/** A parsed `--proxy` URL. */
export interface ProxySpec {
  /** The protocol. */
  scheme: ProxyScheme;
  /** The proxy's host (IPv6 without brackets). */
  host: string;
  /** The proxy's port (default 1080 for SOCKS, 3128 for HTTP, as ncat). */
  port: number;
  /** User name (percent-decoded), if any. */
  username?: string;
  /** Password (percent-decoded), if any. */
  password?: string;
  /** The URL for messages, the password masked. */
  text: string;
}

const DEFAULT_PORTS: Record<ProxyScheme, number> = {
  socks4: 1080,
  socks4a: 1080,
  socks5: 1080,
  socks5h: 1080,
  http: 3128,
};

/**
 * Parses a `--proxy` URL: `socks5://[user:pass@]host[:port]`, `socks5h://`,
 * `socks4://`, `socks4a://`, `http://`; credentials are percent-decoded;
 * IPv6 literals in brackets.
 *
 * @example Usage
 * ```ts
 * import { parseProxyUrl } from "./proxy_options.ts";
 * import assert from "node:assert/strict";
 *
 * const spec = parseProxyUrl("socks5h://al%40ice:s3cr%3At@[::1]:9050");
 * assert.deepEqual(
 *   [spec.scheme, spec.host, spec.port, spec.username, spec.password, spec.text],
 *   ["socks5h", "::1", 9050, "al@ice", "s3cr:t", "socks5h://al%40ice:***@[::1]:9050"],
 * );
 * assert.equal(parseProxyUrl("http://proxy.example").port, 3128);
 * assert.throws(() => parseProxyUrl("ftp://x:1"), /unknown proxy scheme "ftp"/);
 * assert.throws(() => parseProxyUrl("socks5://u:s3cret@h:99999"), /"socks5:\/\/u:\*\*\*@h:99999"/);
 * ```
 */
export function parseProxyUrl(text: string): ProxySpec {
  const fail = (why: string): never => {
    throw new UsageError(`option --proxy ${JSON.stringify(maskUrlPassword(text))}: ${why}`);
  };
  const m = /^([a-z0-9]+):\/\//i.exec(text);
  if (!m) fail("expected a URL such as socks5h://127.0.0.1:1080 or http://proxy:3128");
  const scheme = m![1].toLowerCase();
  if (scheme === "https") {
    fail("a TLS connection to the proxy (https://) is not supported: use http://");
  }
  if (!(scheme in DEFAULT_PORTS)) {
    fail(`unknown proxy scheme "${scheme}" (socks5, socks5h, socks4, socks4a, http)`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail("not a valid URL");
  }
  if (url.pathname !== "" && url.pathname !== "/" || url.search || url.hash) {
    fail("a proxy URL has no path, query or fragment");
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) fail("missing host");
  const port = url.port === "" ? DEFAULT_PORTS[scheme as ProxyScheme] : Number(url.port);
  if (port === 0) fail("port 0");
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = url.username ? decodeURIComponent(url.username) : undefined;
    password = url.password ? decodeURIComponent(url.password) : undefined;
  } catch {
    fail("bad percent-encoding in the credentials");
  }
  if ((username?.length ?? 0) > 255 || (password?.length ?? 0) > 255) {
    fail("user name and password are at most 255 bytes each");
  }
  const auth = url.username ? `${url.username}${url.password ? ":***" : ""}@` : "";
  return {
    scheme: scheme as ProxyScheme,
    host,
    port,
    username,
    password,
    text: `${scheme}://${auth}${formatHost(host)}:${port}`,
  };
}

/**
 * A URL as it may be shown: whatever lies between the first `:` after
 * `scheme://` and the last `@` (the password, however malformed the rest)
 * becomes `***`.
 *
 * @example Usage
 * ```ts
 * import { maskUrlPassword } from "./proxy_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(maskUrlPassword("http://u:p@ss/w@d@proxy:3128"), "http://u:***@proxy:3128");
 * assert.equal(maskUrlPassword("socks5://proxy:1080"), "socks5://proxy:1080");
 * ```
 */
export function maskUrlPassword(text: string): string {
  const from = text.indexOf("://") + 3;
  const at = text.lastIndexOf("@");
  if (from < 3 || at < from) return text;
  const colon = text.indexOf(":", from);
  return colon === -1 || colon > at ? text : `${text.slice(0, colon + 1)}***${text.slice(at)}`;
}

/** The flag of the group. */
export const PROXY_SPECS = {
  proxy: {
    type: "string",
    value: "URL",
    help: "reach the target through a proxy: socks5://, socks5h:// (the proxy resolves names), " +
      "socks4://, socks4a://, http:// (CONNECT); credentials as user:pass@ (never from the " +
      "environment)",
    parse: parseProxyUrl,
  },
} as const;

/** `proxy`: the proxy a client reaches its target through (a TCP stream to a host and port). */
export const PROXY_GROUP: OptionGroup<ProxySpec> = {
  name: "proxy",
  title: "Options",
  role: "connect",
  flags: ["proxy"],
  specs: PROXY_SPECS,
  parse: (values) => (values as { proxy?: ProxySpec }).proxy,
};
