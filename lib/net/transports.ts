/**
 * The transport table: one row per endpoint scheme, in the spirit of socat's
 * address table and Go's `RegisterDialerType`. A row says what kind of
 * socket the scheme is (stream or datagram), what its address looks like
 * (`host:port` or a path), whether TLS applies, which host the port-only
 * form means per role, and how it connects and listens. The grammar
 * (`address.ts`) takes its schemes from here; commands ask for what they
 * need of an endpoint ({@linkcode requireEndpoint}) instead of naming
 * schemes; `open.ts` does the connecting and listening by looking up the row.
 *
 * Adding a transport is one module (its dialer, listener or socket) plus
 * one row here.
 *
 * @module
 */

import type { Endpoint, NetEndpoint, PathEndpoint, Role } from "./address.ts";
import type { SocketOptions } from "./conn.ts";
import { bindDatagram, connectDatagram } from "./datagram.ts";
import type { DatagramSocket, MulticastOptions } from "./datagram.ts";
import { nodeTlsDialer, tlsDialer, unixDialer } from "./dial.ts";
import type { Dialer } from "./dial.ts";
import { SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, ipFamily } from "./ip.ts";
import { listenTcp, listenUnix } from "./listener.ts";
import type { Listener, ListenerOptions } from "./listener.ts";
import { isDenied, RawSocket, rawSocketDenied, requireRawSockets } from "./raw.ts";
import { resolve } from "./resolve.ts";
import { bindUnixDatagram, connectUnixDatagram } from "./unixgram.ts";
import { websocketDialer, websocketListener } from "../protocols/websocket_transport.ts";
import type { WebSocketClientOptions, WebSocketServerOptions } from "../protocols/websocket.ts";
import type { Lookup } from "./resolve.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";

/** How TLS applies to a transport. */
export type TlsSupport =
  /** Always TLS (`tls://`). */
  | "always"
  /** `--tls` turns it into the named scheme (`tcp` → `tls`). */
  | { upgrade: string }
  /** Not at all; the text says why. */
  | { unsupported: string };

/** How a transport's address is written. */
export type AddressForm = "host-port" | "path" | "host-protocol" | "url";

/** What the dialers of a row may use. */
export interface DialerOptions {
  /** TLS client settings (`--cacert`, `--servername`, `--insecure`, `--alpn`). */
  tls?: TlsClientOptions;
  /** WebSocket settings, for `ws://` and `wss://` (the request target is the endpoint's). */
  websocket?: WebSocketClientOptions;
  /** The client's socket options: with `source`, the TCP socket is node's, so TLS is node's too. */
  socket?: SocketOptions;
}

/** What a row's listener and datagram socket may use. */
export interface OpenOptions extends ListenerOptions {
  /** WebSocket settings, for a `ws://` or `wss://` listener. */
  websocket?: WebSocketServerOptions;
  /** For the port-only form or a host name: IPv4 (`4`) or IPv6 (`6`). */
  family?: 4 | 6;
  /** The resolver for host names (tests inject one). */
  lookup?: Lookup;
  /** UDP multicast settings. */
  multicast?: MulticastOptions;
  /** SO_BROADCAST for a UDP client (`--broadcast`). */
  broadcast?: boolean;
}

/** One row of the table. */
export interface Transport {
  /** The scheme as written (`tcp`, `udp`, `tls`, `unix`). */
  readonly scheme: string;
  /** Byte stream or datagrams. */
  readonly kind: "stream" | "datagram";
  /**
   * What follows the scheme: `host:port`, a socket path, or `host/protocol`
   * (an IP protocol number, carried in the endpoint's `port` field).
   */
  readonly address: AddressForm;
  /** How TLS applies. */
  readonly tls: TlsSupport;
  /** One line for help texts. */
  readonly summary: string;
  /** The host of the port-only form, per role (host-port rows). */
  readonly defaultHost?: Record<Role, (family?: 4 | 6) => string>;
  /** The port when none is written (`url` rows: 80 for `ws://`, 443 for `wss://`). */
  readonly defaultPort?: number;
  /** Streams: the dialer chain on top of `base` (the direct dialer, or a proxy). */
  dialer?(base: Dialer, options: DialerOptions): Dialer;
  /** Streams: bind and listen. */
  listen?(endpoint: Endpoint, options: OpenOptions): Promise<Listener>;
  /** Datagrams: a socket bound for `listen`, or talking to one peer for `connect`. */
  datagram?(endpoint: Endpoint, role: Role, options: OpenOptions): Promise<DatagramSocket>;
}

/** Listen on loopback, connect to localhost (or the loopback address of `-4`/`-6`). */
const LOOPBACK: Record<Role, (family?: 4 | 6) => string> = {
  listen: (family) => (family === 6 ? "::1" : "127.0.0.1"),
  connect: (family) => (family === 6 ? "::1" : family === 4 ? "127.0.0.1" : "localhost"),
};

/** The address to bind for an IP endpoint: a name is resolved here only with `-4`/`-6`. */
async function bindHost(endpoint: Endpoint, role: Role, options: OpenOptions): Promise<string> {
  const host = hostOf(endpoint, role, options.family);
  // Without -4/-6, Deno resolves a name as it binds.
  if (options.family === undefined && ipFamily(host) === undefined) return host;
  const [address] = await resolve(host, {
    op: "listen",
    address: `${formatHost(host)}:${(endpoint as NetEndpoint).port}`,
    family: options.family,
    lookup: options.lookup,
  });
  return address;
}

/** The scheme of an endpoint written without one (`host:port`, `8888`). */
export const DEFAULT_SCHEME = "tcp";

/** Every transport sockit knows, by scheme. */
export const TRANSPORTS: Readonly<Record<string, Transport>> = {
  tcp: {
    scheme: "tcp",
    kind: "stream",
    address: "host-port",
    tls: { upgrade: "tls" },
    summary: "TCP (the default scheme)",
    defaultHost: LOOPBACK,
    dialer: (base) => base,
    listen: async (endpoint, options) =>
      listenTcp(await bindHost(endpoint, "listen", options), (endpoint as NetEndpoint).port, {
        ...options,
        scheme: "tcp",
        tls: undefined,
      }),
  },
  tls: {
    scheme: "tls",
    kind: "stream",
    address: "host-port",
    tls: "always",
    summary: "TLS over TCP",
    defaultHost: LOOPBACK,
    // Deno's TLS verifies over a Deno socket; node:tls does what it cannot (--insecure, a client
    // certificate, TLS over the libc socket that --source needs).
    dialer: (base, options) =>
      options.tls?.insecure || options.tls?.cert || options.socket?.source
        ? nodeTlsDialer(base, options.tls ?? {})
        : tlsDialer(base, options.tls ?? {}),
    listen: async (endpoint, options) => {
      const { port } = endpoint as NetEndpoint;
      const host = await bindHost(endpoint, "listen", options);
      if (!options.tls) {
        throw new UsageError(
          `${formatHost(host)}:${port}: a TLS listener needs a certificate and key`,
        );
      }
      return listenTcp(host, port, { ...options, scheme: "tls" });
    },
  },
  ws: {
    scheme: "ws",
    kind: "stream",
    address: "url",
    tls: { upgrade: "wss" },
    summary: "WebSocket: a layer over TCP (ws://host:port/path)",
    defaultHost: LOOPBACK,
    defaultPort: 80,
    dialer: (base, options) => websocketDialer(base, options.websocket ?? { host: "" }),
    listen: async (endpoint, options) =>
      websocketListener(
        listenTcp(await bindHost(endpoint, "listen", options), (endpoint as NetEndpoint).port, {
          ...options,
          scheme: "ws",
          tls: undefined,
        }),
        endpoint,
        options,
      ),
  },
  wss: {
    scheme: "wss",
    kind: "stream",
    address: "url",
    tls: "always",
    summary: "WebSocket over TLS",
    defaultHost: LOOPBACK,
    defaultPort: 443,
    dialer: (base, options) =>
      websocketDialer(TRANSPORTS.tls.dialer!(base, options), options.websocket ?? { host: "" }),
    listen: async (endpoint, options) => {
      const { port } = endpoint as NetEndpoint;
      const host = await bindHost(endpoint, "listen", options);
      if (!options.tls) {
        throw new UsageError(
          `${formatHost(host)}:${port}: a wss:// listener needs a certificate and key`,
        );
      }
      return websocketListener(
        listenTcp(host, port, { ...options, scheme: "wss" }),
        endpoint,
        options,
      );
    },
  },
  udp: {
    scheme: "udp",
    kind: "datagram",
    address: "host-port",
    tls: { unsupported: "TLS over UDP (DTLS) is not supported" },
    summary: "UDP",
    defaultHost: LOOPBACK,
    datagram: async (endpoint, role, options) => {
      const { port } = endpoint as NetEndpoint;
      let socket: DatagramSocket;
      if (role === "listen") {
        socket = bindDatagram(await bindHost(endpoint, role, options), port, options);
      } else {
        const host = hostOf(endpoint, role, options.family);
        const [address] = await resolve(host, {
          op: "connect",
          address: `udp://${formatHost(host)}:${port}`,
          family: options.family,
          lookup: options.lookup,
        });
        socket = connectDatagram(address, port, { ...options, source: options.socket?.source });
      }
      if (!options.multicast) return socket;
      try {
        if (!socket.multicast) {
          throw new SockitError(
            "--multicast-ttl/--multicast-loop on a client go through libc, which needs --allow-ffi",
            { op: "setsockopt", code: "ENOTCAPABLE", exitCode: 126 },
          );
        }
        await socket.multicast(options.multicast);
      } catch (err) {
        socket.close();
        throw err;
      }
      return socket;
    },
  },
  ip: {
    scheme: "ip",
    kind: "datagram",
    address: "host-protocol",
    tls: { unsupported: "TLS over raw IP is not supported" },
    summary: "raw IP datagrams of one protocol (SOCK_RAW: root)",
    defaultHost: LOOPBACK,
    datagram: async (endpoint, role, options) => {
      const { port: protocol } = endpoint as NetEndpoint;
      const text = `ip://${
        formatAuthority("host-protocol", hostOf(endpoint, role, options.family), protocol)
      }`;
      requireRawSockets(role, text);
      const host = role === "listen"
        ? await bindHost(endpoint, role, options)
        : (await resolve(hostOf(endpoint, role, options.family), {
          op: "connect",
          address: text,
          family: options.family,
          lookup: options.lookup,
        }))[0];
      let socket: RawSocket;
      try {
        socket = RawSocket.open({
          family: ipFamily(host) === 6 ? 6 : 4,
          protocol,
          trace: options.trace,
        });
      } catch (err) {
        if (isDenied(err)) throw rawSocketDenied(role, text, false);
        throw toSockitError(err, role, text);
      }
      try {
        if (role === "listen") socket.bind(host);
        else socket.connect(host);
      } catch (err) {
        socket.close();
        throw toSockitError(err, role, text);
      }
      return socket;
    },
  },
  unixgram: {
    scheme: "unixgram",
    kind: "datagram",
    address: "path",
    tls: { unsupported: "TLS over a Unix datagram socket is not supported" },
    summary: "Unix-domain datagram socket (needs --allow-ffi)",
    datagram: (endpoint, role, options) => {
      const { path } = endpoint as PathEndpoint;
      return Promise.resolve(
        role === "listen"
          ? bindUnixDatagram(path, { trace: options.trace })
          : connectUnixDatagram(path, {
            trace: options.trace,
            bindPath: options.socket?.source?.path,
          }),
      );
    },
  },
  unix: {
    scheme: "unix",
    kind: "stream",
    address: "path",
    tls: { unsupported: "TLS over a Unix socket is not supported (Deno's TLS is TCP only)" },
    summary: "Unix-domain stream socket",
    dialer: () => unixDialer,
    listen: (endpoint, options) =>
      listenUnix((endpoint as PathEndpoint).path, { ...options, scheme: "unix" }),
  },
};

/**
 * The row of an endpoint (or of a scheme).
 *
 * @example Usage
 * ```ts
 * import { transportOf } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(transportOf({ transport: "udp", port: 53 }).kind, "datagram");
 * ```
 */
export function transportOf(endpoint: Endpoint | string): Transport {
  const scheme = typeof endpoint === "string" ? endpoint : endpoint.transport;
  const row = TRANSPORTS[scheme];
  if (!row) throw new UsageError(`unknown scheme "${scheme}"`);
  return row;
}

/**
 * The host an IP endpoint means for a role: as given, or for the port-only
 * form the row's default — loopback to listen, `localhost` to connect (the
 * loopback address of the family with `-4`/`-6`).
 *
 * @example Usage
 * ```ts
 * import { hostOf } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(hostOf({ transport: "tcp", port: 80 }, "listen"), "127.0.0.1");
 * assert.equal(hostOf({ transport: "tcp", port: 80 }, "connect"), "localhost");
 * assert.equal(hostOf({ transport: "tcp", port: 80 }, "listen", 6), "::1");
 * ```
 */
export function hostOf(endpoint: Endpoint, role: Role, family?: 4 | 6): string {
  if ("hostname" in endpoint && endpoint.hostname !== undefined) return endpoint.hostname;
  const defaults = transportOf(endpoint).defaultHost;
  if (!defaults) throw new UsageError(`${endpoint.transport}: this endpoint has no host`);
  return defaults[role](family);
}

/** What a command needs of an endpoint. */
export interface EndpointNeeds {
  /** It connects to the endpoint, or listens on it. */
  role: Role;
  /** Only this kind of socket (default: either). */
  kind?: "stream" | "datagram";
  /** Only these address forms (e.g. `host-port` for `scan`). */
  address?: AddressForm;
  /** Not a transport that is always TLS (`wait` checks that a port accepts, no more). */
  plain?: boolean;
}

/** Whether a row does what a command needs. */
function serves(row: Transport, needs: EndpointNeeds): boolean {
  if (needs.kind && row.kind !== needs.kind) return false;
  if (needs.address && row.address !== needs.address) return false;
  if (needs.plain && row.tls === "always") return false;
  if (row.kind === "datagram") return row.datagram !== undefined;
  return needs.role === "listen" ? row.listen !== undefined : row.dialer !== undefined;
}

/**
 * A host and port (or protocol) as an address form writes them:
 * `[::1]:80`, or `127.0.0.1/253` for `ip://`.
 *
 * @example Usage
 * ```ts
 * import { formatAuthority } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatAuthority("host-port", "::1", 80), "[::1]:80");
 * assert.equal(formatAuthority("host-protocol", "::1", 253), "[::1]/253");
 * ```
 */
export function formatAuthority(form: AddressForm, host: string, port: number): string {
  return `${formatHost(host)}${form === "host-protocol" ? "/" : ":"}${port}`;
}

/** How a scheme is written before its address (`tcp://`, `unix:`). */
export function schemePrefix(row: Transport): string {
  return row.address === "path" ? `${row.scheme}:` : `${row.scheme}://`;
}

/**
 * Refuses, with a usage error that lists what would do, an endpoint whose
 * transport cannot do what the command needs.
 *
 * @example Usage
 * ```ts
 * import { requireEndpoint } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => requireEndpoint({ transport: "udp", port: 53 }, { role: "listen", kind: "stream" }, "forward", "udp://53"),
 *   /udp:\/\/ is not supported by forward \(supported: tcp:\/\/, tls:\/\/, ws:\/\/, wss:\/\/, unix:\)/,
 * );
 * ```
 */
export function requireEndpoint(
  endpoint: Endpoint,
  needs: EndpointNeeds,
  command: string,
  text: string,
): Transport {
  const row = transportOf(endpoint);
  if (serves(row, needs)) return row;
  const supported = Object.values(TRANSPORTS).filter((r) => serves(r, needs)).map(schemePrefix);
  throw new UsageError(
    `${text}: ${schemePrefix(row)} is not supported by ${command} (supported: ${
      supported.join(", ")
    })`,
  );
}

/**
 * The endpoint with TLS applied, for `--tls`: `tcp` becomes `tls`; a
 * transport without TLS is a usage error saying why. `tls://` stays.
 *
 * @example Usage
 * ```ts
 * import { withTls } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(withTls({ transport: "tcp", port: 443 }, "443"), { transport: "tls", port: 443 });
 * assert.throws(() => withTls({ transport: "unix", path: "/s" }, "unix:/s"), /TLS over a Unix socket/);
 * ```
 */
export function withTls<E extends Endpoint>(endpoint: E, text: string): E {
  const tls = transportOf(endpoint).tls;
  if (tls === "always") return endpoint;
  if ("unsupported" in tls) throw new UsageError(`${text}: ${tls.unsupported}`);
  return { ...endpoint, transport: tls.upgrade };
}

/**
 * Whether an endpoint speaks TLS.
 *
 * @example Usage
 * ```ts
 * import { isTls } from "./transports.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isTls({ transport: "tls", port: 443 }));
 * ```
 */
export function isTls(endpoint: Endpoint): boolean {
  return transportOf(endpoint).tls === "always";
}
