/**
 * TLS options on the command line: the client side (`--tls`, `--cacert`,
 * `--servername`, `--insecure`, `--alpn`) of `connect` and `forward`'s
 * target, and the server side (`--tls`, `--cert`, `--key`, `--alpn`) of
 * `listen`, `echo` and `forward`'s listener.
 *
 * @module
 */

import { formatEndpoint, isTls, schemeList, transportOf, withTls } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { SockitError, UsageError } from "../base/errors.ts";
import type { ServerTls } from "../net/listener.ts";
import {
  certificateInfo,
  ephemeralCertificate,
  loadCaCerts,
  loadCertificate,
} from "../protocols/tls.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import type { FlagUse, FlagValues } from "./flags.ts";
import { durationFlag } from "./values.ts";
import type { Reporter } from "./report.ts";

/** The client-side TLS flags. */
export const TLS_CLIENT_FLAGS: FlagUse[] = [
  "tls",
  "cacert",
  "servername",
  "insecure",
  ["cert", "present this client certificate (PEM, with --key) to a server that asks: mutual TLS"],
  ["key", "the private key of --cert"],
  "alpn",
];

/** The server-side TLS flags. */
export const TLS_SERVER_FLAGS: FlagUse[] = [
  "tls",
  "cert",
  "key",
  "client-ca",
  "alpn",
  "handshake-timeout",
];

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
  /** `--handshake-timeout` in ms (0: no limit); absent: the default. */
  handshakeTimeout?: number;
  /** `--cert`: a client certificate file (with `key`). */
  cert?: string;
  /** `--key`. */
  key?: string;
}

/** Parsed server-side TLS flags. */
export interface TlsServerFlags {
  /** `--cert` file (with `--key`), or none for an ephemeral certificate. */
  cert?: string;
  /** `--key` file. */
  key?: string;
  /** `--alpn`. */
  alpn?: string[];
  /** `--handshake-timeout` in ms (0: no limit); absent: the default. */
  handshakeTimeout?: number;
  /** `--client-ca`: ask every client for a certificate signed by one of these. */
  clientCa?: string[];
}

const list = (values: FlagValues, name: string) => (values[name] as string[] | undefined) ?? [];

/**
 * The endpoint with `--tls` applied, and whether it speaks TLS; TLS flags
 * given for an endpoint that does not are a usage error.
 */
function applyTls(
  endpoint: Endpoint,
  values: FlagValues,
  tlsOnly: string[],
): { endpoint: Endpoint; tls: boolean } {
  const applied = values.tls === true ? withTls(endpoint, formatEndpoint(endpoint)) : endpoint;
  const tls = isTls(applied);
  const stray = tlsOnly.find((name) => values[name] !== undefined && values[name] !== false);
  if (!tls && stray) {
    throw new UsageError(
      `option --${stray} needs TLS: a ${
        schemeList((row) => row.tls === "always")
      } endpoint, or --tls`,
    );
  }
  return { endpoint: applied, tls };
}

/**
 * The client TLS flags for `endpoint` (with `--tls` applied to it), or no
 * flags when it does not speak TLS.
 *
 * @example Usage
 * ```ts
 * import { tlsClientFlags } from "./tls_flags.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * const { flags } = tlsClientFlags({ servername: "localhost" }, parseEndpoint("tls://127.0.0.1:443"));
 * assert.equal(flags?.serverName, "localhost");
 * assert.throws(() => tlsClientFlags({ insecure: true }, parseEndpoint("80")), /needs TLS/);
 * ```
 */
export function tlsClientFlags(
  values: FlagValues,
  endpoint: Endpoint,
): { endpoint: Endpoint; flags?: TlsClientFlags } {
  const applied = applyTls(endpoint, values, [
    "cacert",
    "servername",
    "insecure",
    "alpn",
    "cert",
    "key",
  ]);
  if (!applied.tls) return { endpoint: applied.endpoint };
  const serverName = values.servername as string | undefined;
  if (serverName !== undefined && !/^[A-Za-z0-9_.-]+$/.test(serverName)) {
    throw new UsageError(
      `option --servername needs a host name, not ${JSON.stringify(serverName)}`,
    );
  }
  const alpn = list(values, "alpn");
  const cert = values.cert as string | undefined;
  const key = values.key as string | undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("options --cert and --key go together");
  }
  return {
    endpoint: applied.endpoint,
    flags: {
      cert,
      key,
      cacert: list(values, "cacert"),
      serverName,
      insecure: values.insecure === true,
      alpn: alpn.length ? alpn : undefined,
    },
  };
}

/**
 * The server TLS flags for `endpoint` (with `--tls` applied to it), or no
 * flags when it does not speak TLS.
 *
 * @example Usage
 * ```ts
 * import { tlsServerFlags } from "./tls_flags.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(tlsServerFlags({ tls: true }, parseEndpoint("0")).flags, { cert: undefined, key: undefined, alpn: undefined });
 * assert.throws(() => tlsServerFlags({ cert: "c.pem" }, parseEndpoint("tls://0")), /--cert and --key go together/);
 * ```
 */
export function tlsServerFlags(
  values: FlagValues,
  endpoint: Endpoint,
): { endpoint: Endpoint; flags?: TlsServerFlags } {
  // A WebSocket server has a handshake too (its upgrade): the flag is its own then.
  const websocket = transportOf(endpoint).groups.includes("websocket");
  const applied = applyTls(endpoint, values, [
    "cert",
    "key",
    "alpn",
    "client-ca",
    ...(websocket ? [] : ["handshake-timeout"]),
  ]);
  if (!applied.tls) return { endpoint: applied.endpoint };
  const cert = values.cert as string | undefined;
  const key = values.key as string | undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("options --cert and --key go together");
  }
  const alpn = list(values, "alpn");
  const clientCa = list(values, "client-ca");
  return {
    endpoint: applied.endpoint,
    flags: {
      cert,
      key,
      alpn: alpn.length ? alpn : undefined,
      ...(clientCa.length ? { clientCa } : {}),
      ...("handshake-timeout" in values
        ? { handshakeTimeout: durationFlag(values, "handshake-timeout") }
        : {}),
    },
  };
}

/** Reads the `--cacert` files and says once that `--insecure` verifies nothing. */
export function tlsClientOptions(flags: TlsClientFlags, reporter: Reporter): TlsClientOptions {
  if (flags.insecure) reporter.warning("--insecure: the server's certificate is not verified");
  const identity = flags.cert !== undefined && flags.key !== undefined
    ? loadCertificate(flags.cert, flags.key)
    : undefined;
  return {
    caCerts: flags.cacert.length ? loadCaCerts(flags.cacert) : undefined,
    serverName: flags.serverName,
    insecure: flags.insecure,
    alpn: flags.alpn,
    cert: identity?.cert,
    key: identity?.key,
  };
}

/**
 * The server's certificate: the `--cert`/`--key` files, or an ephemeral
 * self-signed one; its subject and SHA-256 fingerprint are reported (`-v`).
 */
export async function serverCertificate(
  flags: TlsServerFlags,
  reporter: Reporter,
): Promise<ServerTls> {
  const material = flags.cert !== undefined && flags.key !== undefined
    ? loadCertificate(flags.cert, flags.key)
    : await ephemeralCertificate();
  reporter.certificate(certificateInfo(material.cert), material.ephemeral);
  return {
    cert: material.cert,
    key: material.key,
    alpn: flags.alpn,
    clientCa: flags.clientCa ? loadCaCerts(flags.clientCa) : undefined,
  };
}

/** Explains why Deno would not take a certificate and key (e.g. they do not match). */
export function explainTlsListenError(error: unknown, flags: TlsServerFlags): unknown {
  const message = String((error as Error)?.message ?? "");
  if (/KeyMismatch|keys may not be consistent/.test(message)) {
    return new SockitError("the key does not match the certificate", {
      op: "load key",
      address: flags.key,
      code: "EINVAL",
      hint: `--key must be the private key of --cert ${flags.cert}`,
    });
  }
  if (/No keys found|failed to parse private key/.test(message)) {
    return new SockitError("no usable private key in it", {
      op: "load key",
      address: flags.key,
      code: "EINVAL",
    });
  }
  if (/No certificates found|BadEncoding/.test(message)) {
    return new SockitError("no usable certificate in it", {
      op: "load certificate",
      address: flags.cert,
      code: "EINVAL",
    });
  }
  return error;
}
