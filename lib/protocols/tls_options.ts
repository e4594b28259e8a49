/**
 * The TLS option groups: `tls-client` (`--cacert`, `--servername`,
 * `--insecure`, a client certificate, `--alpn`) and `tls-server` (`--cert`,
 * `--key`, `--client-ca`, `--alpn`, `--handshake-timeout`) — their flags,
 * declared, and what they make of the values: file names, read when the
 * command runs. The rows that speak TLS take them; `--tls` makes such a row
 * of one that can be upgraded (`tcp` → `tls`).
 *
 * @module
 */

import { duration } from "../base/flag.ts";
import { UsageError } from "../base/errors.ts";
import { withTls } from "../net/address.ts";
import type { OptionGroup } from "../net/option_group.ts";

/** Parsed client-side TLS flags (files not read yet). */
export interface TlsClientFlags {
  /** `--cacert` files. */
  cacert: string[];
  /** `--servername`. */
  serverName?: string;
  /** `--insecure`. */
  insecure: boolean;
  /** `--alpn`. */
  alpn?: string[];
  /** `--cert`: a client certificate file (with `key`). */
  cert?: string;
  /** `--key`. */
  key?: string;
}

/** Parsed server-side TLS flags (files not read yet). */
export interface TlsServerFlags {
  /** `--cert` file (with `--key`), or none for an ephemeral certificate. */
  cert?: string;
  /** `--key` file. */
  key?: string;
  /** `--alpn`. */
  alpn?: string[];
  /** `--client-ca`: ask every client for a certificate signed by one of these. */
  clientCa?: string[];
}

/** `--servername NAME`: a host name. */
function hostName(text: string, name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(text)) {
    throw new UsageError(`option --${name} needs a host name, not ${JSON.stringify(text)}`);
  }
  return text;
}

/** The TLS flags. */
export const TLS_SPECS = {
  tls: { type: "boolean", help: "speak TLS (as with a tls:// endpoint)" },
  cert: {
    type: "string",
    value: "PEM",
    help: "the certificate of a TLS server (with --key); without them an ephemeral self-signed " +
      "certificate (localhost, 127.0.0.1, ::1) is made and its SHA-256 fingerprint printed with -v / --json",
    depends: ["key"],
  },
  key: { type: "string", value: "PEM", help: "the private key of --cert", depends: ["cert"] },
  "client-ca": {
    type: "string",
    multiple: true,
    value: "PEM",
    help: "ask every client for a certificate signed by this CA and refuse those without one " +
      "(repeatable): mutual TLS",
  },
  "handshake-timeout": {
    type: "string",
    value: "DUR",
    help: "close a TLS client that has not finished its handshake after DUR (default 10s; 0: no " +
      "limit); while one holds a --max-conns slot, a newcomer waits for it instead of being refused",
    parse: duration,
  },
  cacert: {
    type: "string",
    multiple: true,
    value: "PEM",
    help: "trust this certificate too (repeatable; added to the system roots)",
  },
  servername: {
    type: "string",
    value: "NAME",
    help: "verify (and send as SNI) NAME instead of the host dialled",
    parse: hostName,
  },
  insecure: { type: "boolean", help: "do not verify the server's certificate" },
  alpn: {
    type: "string",
    multiple: true,
    value: "PROTO",
    help: "offer or accept this ALPN protocol (repeatable)",
  },
} as const;

type Values = {
  tls?: boolean;
  cert?: string;
  key?: string;
  "client-ca"?: string[];
  cacert?: string[];
  servername?: string;
  insecure?: boolean;
  alpn?: string[];
};

/** `--tls`: the endpoint's row with TLS (a usage error where TLS cannot go). */
function applyTls(
  endpoint: Parameters<typeof withTls>[0],
  values: Readonly<Record<string, unknown>>,
  text: string,
) {
  return (values as Values).tls === true ? withTls(endpoint, text) : endpoint;
}

/** `tls-client`: how a client verifies its server, and the certificate it presents if asked. */
export const TLS_CLIENT_GROUP: OptionGroup<TlsClientFlags> = {
  name: "tls-client",
  title: "TLS",
  role: "connect",
  via: "tls",
  flags: [
    "tls",
    "cacert",
    "servername",
    "insecure",
    ["cert", "present this client certificate (PEM, with --key) to a server that asks: mutual TLS"],
    ["key", "the private key of --cert"],
    "alpn",
  ],
  specs: TLS_SPECS,
  apply: applyTls,
  parse(values) {
    const v = values as Values;
    return {
      cert: v.cert,
      key: v.key,
      cacert: v.cacert ?? [],
      serverName: v.servername,
      insecure: v.insecure === true,
      alpn: v.alpn?.length ? v.alpn : undefined,
    };
  },
};

/** `tls-server`: the certificate a server presents, and the client certificates it asks for. */
export const TLS_SERVER_GROUP: OptionGroup<TlsServerFlags> = {
  name: "tls-server",
  title: "TLS",
  role: "listen",
  via: "tls",
  flags: ["tls", "cert", "key", "client-ca", "alpn", "handshake-timeout"],
  specs: TLS_SPECS,
  apply: applyTls,
  parse(values) {
    const v = values as Values;
    const clientCa = v["client-ca"] ?? [];
    return {
      cert: v.cert,
      key: v.key,
      alpn: v.alpn?.length ? v.alpn : undefined,
      ...(clientCa.length ? { clientCa } : {}),
    };
  },
};
