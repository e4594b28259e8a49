/**
 * The scheme table: one descriptor per endpoint scheme, as data — what kind
 * of socket it is, how its address is written, how TLS applies, its
 * defaults, and which option groups it takes. The grammar (`address.ts`)
 * reads only this; commands ask the descriptors what they need to know of
 * an endpoint instead of naming schemes. How a scheme connects and listens
 * lives above, in its own module (`transports.ts` loads it when it is first
 * opened), so that reading an endpoint loads no socket code.
 *
 * Adding a transport is one row here, one opener module and its entry in
 * `transports.ts`.
 *
 * @module
 */

/** A scheme of the table (`tcp`, `udp`, `tls`, `unix`, …). */
export type Scheme = string;

/** Which side of the socket call sequence an endpoint is used for. */
export type Role = "listen" | "connect";

/** Byte stream or datagrams. */
export type Kind = "stream" | "datagram";

/**
 * How a scheme's address is written: `host:port`, `host/protocol` (an IP
 * protocol number), a URL (`host[:port]/path?query`), or a socket path.
 */
export type AddressForm = "host-port" | "host-protocol" | "url" | "path";

/** How TLS applies to a transport. */
export type TlsSupport =
  /** Always TLS (`tls://`). */
  | "always"
  /** `--tls` turns it into the named scheme (`tcp` → `tls`). */
  | { upgrade: Scheme }
  /** Not at all; the text says why. */
  | { unsupported: string };

/**
 * The option groups a scheme takes (names only; each group is declared by
 * the module that owns it, with its flags): `tls-client` and `tls-server`
 * (the TLS flags of each side: rows that speak TLS, which `--tls` makes of
 * the rows it upgrades), `websocket`, `socket` (TCP options: `--nodelay`,
 * `--keepalive`, `--ttl`), `reuseport` (a server's `--reuseport`), `source`
 * (a client's `--source`), `multicast`, `broadcast`, `proxy` (a client's
 * `--proxy`).
 */
export type GroupName =
  | "tls-client"
  | "tls-server"
  | "websocket"
  | "socket"
  | "reuseport"
  | "source"
  | "multicast"
  | "broadcast"
  | "proxy";

/** One row of the table. */
export interface SchemeDescriptor {
  /** The scheme as written (`tcp`, `udp`, `tls`, `unix`). */
  readonly scheme: Scheme;
  /** Byte stream or datagrams. */
  readonly kind: "stream" | "datagram";
  /** What follows the scheme. */
  readonly address: AddressForm;
  /**
   * An IP socket (AF_INET/AF_INET6): its host names are resolved, and
   * `-4`/`-6` apply. Otherwise a local (Unix-domain) one.
   */
  readonly inet: boolean;
  /** How TLS applies. */
  readonly tls: TlsSupport;
  /** The scheme this one is a layer over (`ws` over `tcp`): the socket's own protocol. */
  readonly over?: Scheme;
  /**
   * The host of the port-only form, per role (IP rows): `loopback` is the
   * loopback address (`127.0.0.1`, or `::1` with `-6`); `localhost` is the
   * name, or the loopback address of the family with `-4`/`-6`.
   */
  readonly defaultHost?: Readonly<Record<Role, "loopback" | "localhost">>;
  /** The port when none is written (`url` rows: 80 for `ws://`, 443 for `wss://`). */
  readonly defaultPort?: number;
  /** How an endpoint is written, for help texts (`tcp://host:port`). */
  readonly syntax: string;
  /** One line for help texts. */
  readonly summary: string;
  /** The option groups it takes. */
  readonly groups: readonly GroupName[];
}

/** Listen on loopback, connect to localhost. */
const LOOPBACK = { listen: "loopback", connect: "localhost" } as const;

/** The groups of a TCP stream: socket options, `--reuseport`, `--source`, `--proxy`. */
const TCP_GROUPS = ["socket", "reuseport", "source", "proxy"] as const;

/** The groups of TLS, on the rows that speak it. */
const TLS_GROUPS = ["tls-client", "tls-server"] as const;

/** Every scheme sockit knows, in the order help lists them. */
export const SCHEMES = {
  tcp: {
    scheme: "tcp",
    kind: "stream",
    address: "host-port",
    inet: true,
    tls: { upgrade: "tls" },
    defaultHost: LOOPBACK,
    syntax: "tcp://host:port",
    summary: "TCP (the default scheme)",
    groups: TCP_GROUPS,
  },
  tls: {
    scheme: "tls",
    kind: "stream",
    address: "host-port",
    inet: true,
    tls: "always",
    defaultHost: LOOPBACK,
    syntax: "tls://host:port",
    summary: "TLS over TCP",
    groups: [...TLS_GROUPS, ...TCP_GROUPS],
  },
  ws: {
    scheme: "ws",
    kind: "stream",
    address: "url",
    inet: true,
    tls: { upgrade: "wss" },
    over: "tcp",
    defaultHost: LOOPBACK,
    defaultPort: 80,
    syntax: "ws://host:port/path",
    summary: "WebSocket: a layer over TCP (ws://host:port/path)",
    groups: ["websocket", ...TCP_GROUPS],
  },
  wss: {
    scheme: "wss",
    kind: "stream",
    address: "url",
    inet: true,
    tls: "always",
    over: "tls",
    defaultHost: LOOPBACK,
    defaultPort: 443,
    syntax: "wss://host:port/path",
    summary: "WebSocket over TLS",
    groups: ["websocket", ...TLS_GROUPS, ...TCP_GROUPS],
  },
  udp: {
    scheme: "udp",
    kind: "datagram",
    address: "host-port",
    inet: true,
    tls: { unsupported: "TLS over UDP (DTLS) is not supported" },
    defaultHost: LOOPBACK,
    syntax: "udp://host:port",
    summary: "UDP",
    groups: ["reuseport", "source", "multicast", "broadcast"],
  },
  ip: {
    scheme: "ip",
    kind: "datagram",
    address: "host-protocol",
    inet: true,
    tls: { unsupported: "TLS over raw IP is not supported" },
    defaultHost: LOOPBACK,
    syntax: "ip://host/proto",
    summary: "raw IP datagrams of one protocol (SOCK_RAW: root)",
    groups: [],
  },
  unixgram: {
    scheme: "unixgram",
    kind: "datagram",
    address: "path",
    inet: false,
    tls: { unsupported: "TLS over a Unix datagram socket is not supported" },
    syntax: "unixgram:/path",
    summary: "Unix-domain datagram socket (needs --allow-ffi)",
    groups: ["source"],
  },
  unix: {
    scheme: "unix",
    kind: "stream",
    address: "path",
    inet: false,
    tls: { unsupported: "TLS over a Unix socket is not supported (Deno's TLS is TCP only)" },
    syntax: "unix:/path",
    summary: "Unix-domain stream socket",
    groups: [],
  },
} as const satisfies Readonly<Record<string, SchemeDescriptor>>;

/** The name of a row of {@linkcode SCHEMES}. */
export type SchemeName = keyof typeof SCHEMES;

/** The scheme of an endpoint written without one (`host:port`, `8888`). */
export const DEFAULT_SCHEME: SchemeName = "tcp";

/**
 * The row of a scheme, or `undefined` for one sockit does not know.
 *
 * @example Usage
 * ```ts
 * import { schemeNamed } from "./schemes.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(schemeNamed("udp")?.kind, "datagram");
 * assert.equal(schemeNamed("constructor"), undefined);
 * ```
 */
export function schemeNamed(name: string): SchemeDescriptor | undefined {
  return Object.hasOwn(SCHEMES, name) ? SCHEMES[name as SchemeName] : undefined;
}

/**
 * How a scheme is written before its address (`tcp://`, `unix:`).
 *
 * @example Usage
 * ```ts
 * import { schemePrefix, SCHEMES } from "./schemes.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(schemePrefix(SCHEMES.udp), "udp://");
 * assert.equal(schemePrefix(SCHEMES.unix), "unix:");
 * ```
 */
export function schemePrefix(row: SchemeDescriptor): string {
  return row.address === "path" ? `${row.scheme}:` : `${row.scheme}://`;
}
