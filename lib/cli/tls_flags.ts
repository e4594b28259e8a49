/**
 * TLS on the command line, when a command runs: the files the TLS groups
 * name read (`--cacert`, a client certificate), a server's certificate
 * loaded or made for the run (and reported with `-v`), `--insecure` said
 * once, and Deno's complaints about a certificate turned into words. The
 * flags themselves are the TLS groups' (`protocols/tls_options.ts`).
 *
 * @module
 */

import { SockitError } from "../base/errors.ts";
import type { ServerTls } from "../net/listener.ts";
import {
  certificateInfo,
  ephemeralCertificate,
  loadCaCerts,
  loadCertificate,
} from "../protocols/tls.ts";
import type { TlsClientOptions } from "../protocols/tls.ts";
import type { TlsClientFlags, TlsServerFlags } from "../protocols/tls_options.ts";
import type { Reporter } from "./report.ts";

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
