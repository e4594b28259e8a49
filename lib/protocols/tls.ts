/**
 * TLS for `connect tls://`, TLS targets of `forward`, and TLS servers
 * (`listen`/`echo`/`forward` with `tls://` or `--tls`).
 *
 * - Clients verify with Deno's TLS (rustls): against the system's roots,
 *   plus `--cacert` files; `--servername` verifies (and sends as SNI) another
 *   name than the address dialled; failures are explained — unknown issuer,
 *   name mismatch, expired, and rustls's rule that a self-signed server
 *   certificate must not be a CA (CA:FALSE).
 * - `--insecure` skips verification and `--cert/--key` present a client
 *   certificate; Deno's own TLS cannot do either per connection, so those
 *   clients — and every TLS server — go through `node:tls`
 *   (`node_tls.ts`).
 * - Servers load `--cert`/`--key` PEM files, or make an ephemeral
 *   self-signed certificate (ECDSA P-256, CA:FALSE, for localhost,
 *   127.0.0.1 and ::1) with `@peculiar/x509` over WebCrypto, and announce its
 *   SHA-256 fingerprint.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { SockitError, toSockitError } from "../base/errors.ts";

/** Client side options. */
export interface TlsClientOptions {
  /** Extra trust anchors (PEM text), added to the system's roots. */
  caCerts?: string[];
  /** The name to verify and send as SNI, when not the host dialled. */
  serverName?: string;
  /** Do not verify the server's certificate. */
  insecure?: boolean;
  /** A client certificate chain (PEM) to present, with `key` (mutual TLS). */
  cert?: string;
  /** The private key (PEM) of `cert`. */
  key?: string;
  /** ALPN protocols to offer, in order of preference. */
  alpn?: string[];
}

/** A server's certificate and key (PEM text). */
export interface TlsCertificate {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
  /** Whether sockit made it for this run. */
  ephemeral: boolean;
}

/** What `-v` tells about a certificate. */
export interface CertificateInfo {
  /** The subject, e.g. `CN=localhost`. */
  subject: string;
  /** SHA-256 of the DER certificate, `AB:CD:…` as openssl prints it. */
  fingerprint: string;
  /** The names it is valid for (subjectAltName). */
  names?: string;
  /** When it expires. */
  validTo?: string;
}

/**
 * Subject, SHA-256 fingerprint, names and expiry of a PEM certificate (the
 * first of a chain).
 *
 * @example Usage
 * ```ts
 * import { certificateInfo, ephemeralCertificate } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert } = await ephemeralCertificate();
 * const info = certificateInfo(cert);
 * assert.equal(info.subject, "CN=localhost");
 * assert.match(info.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
 * ```
 */
export function certificateInfo(pem: string): CertificateInfo {
  const cert = new X509Certificate(pem);
  return {
    subject: cert.subject.split("\n").join(", "),
    fingerprint: cert.fingerprint256,
    names: cert.subjectAltName ?? undefined,
    validTo: cert.validTo,
  };
}

function readPem(path: string, what: string, marker: RegExp): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw toSockitError(err, "open", path);
  }
  if (!marker.test(text)) {
    throw new SockitError(`no ${what} in it (expected a PEM file)`, {
      op: `load ${what}`,
      address: path,
      code: "EINVAL",
    });
  }
  return text;
}

/**
 * Reads a `--cert` and `--key` pair. Errors name the file and the problem
 * (missing, not PEM, not a certificate, not a key, not matching).
 *
 * @example Usage
 * ```ts
 * import { loadCertificate } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => loadCertificate("/nonexistent.pem", "/nonexistent.key"), /nonexistent\.pem: no such file/);
 * ```
 */
export function loadCertificate(certPath: string, keyPath: string): TlsCertificate {
  const cert = readPem(certPath, "certificate", /-----BEGIN CERTIFICATE-----/);
  const key = readPem(keyPath, "private key", /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new SockitError("the certificate cannot be parsed", {
      op: "load certificate",
      address: certPath,
      code: "EINVAL",
    });
  }
  let publicKey: Uint8Array;
  try {
    publicKey = createPublicKey(createPrivateKey(key)).export({ type: "spki", format: "der" });
  } catch {
    throw new SockitError("no usable private key in it", {
      op: "load key",
      address: keyPath,
      code: "EINVAL",
    });
  }
  const certified = x509.publicKey.export({ type: "spki", format: "der" });
  if (Buffer.compare(publicKey, certified) !== 0) {
    throw new SockitError("the key does not match the certificate", {
      op: "load key",
      address: keyPath,
      code: "EINVAL",
      hint: `--key must be the private key of --cert ${certPath}`,
    });
  }
  return { cert, key, ephemeral: false };
}

/**
 * Reads `--cacert` files (PEM). Errors name the file.
 *
 * @example Usage
 * ```ts
 * import { loadCaCerts } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(loadCaCerts([]), []);
 * assert.throws(() => loadCaCerts(["/nonexistent-ca.pem"]), /nonexistent-ca\.pem: no such file/);
 * ```
 */
export function loadCaCerts(paths: string[]): string[] {
  return paths.map((path) => readPem(path, "certificate", /-----BEGIN CERTIFICATE-----/));
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join("");

/**
 * A self-signed certificate for this run: ECDSA P-256, CA:FALSE (rustls
 * refuses a CA certificate as a server's), for localhost, 127.0.0.1 and
 * ::1, valid for 7 days. Made with `@peculiar/x509` over WebCrypto, loaded
 * only when needed.
 *
 * @example Usage
 * ```ts
 * import { ephemeralCertificate } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert, key, ephemeral } = await ephemeralCertificate();
 * assert.ok(cert.startsWith("-----BEGIN CERTIFICATE-----") && key.includes("PRIVATE KEY") && ephemeral);
 * ```
 */
export async function ephemeralCertificate(): Promise<TlsCertificate> {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(crypto);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: hex(serial),
    name: "CN=localhost",
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 7 * 86_400_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const body = btoa(String.fromCharCode(...pkcs8)).match(/.{1,64}/g)!.join("\n");
  return {
    cert: cert.toString("pem") + "\n",
    key: `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
    ephemeral: true,
  };
}

/**
 * Turns a TLS failure into a reason a user can act on (and a hint).
 *
 * @example Usage
 * ```ts
 * import { tlsFailure } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * const err = tlsFailure(new Deno.errors.InvalidData("invalid peer certificate: UnknownIssuer"), "127.0.0.1:443");
 * assert.match(err.message, /unknown issuer/);
 * ```
 */
export function tlsFailure(error: unknown, address: string): SockitError {
  const message = String((error as Error)?.message ?? error);
  const fail = (reason: string, hint?: string) =>
    new SockitError(reason, { op: "tls", address, code: "ETLS", hint, cause: error });
  if (/CaUsedAsEndEntity/.test(message)) {
    return fail(
      "certificate verification failed: the server's certificate is a CA certificate (CA:TRUE); " +
        "rustls accepts a self-signed server certificate only with CA:FALSE",
      "regenerate it with -addext 'basicConstraints=critical,CA:FALSE' (openssl req -x509 adds CA:TRUE by default)",
    );
  }
  const code = String((error as { code?: string })?.code ?? "");
  if (/peer sent no certificates/i.test(message)) {
    return fail("the client sent no certificate (--client-ca asks every client for one)");
  }
  const refused = /client certificate not accepted: (\S+)/.exec(message);
  if (refused) {
    return fail(`the client's certificate is not signed by a --client-ca CA (${refused[1]})`);
  }
  if (/CertificateRequired|certificate required/i.test(message)) {
    return fail(
      "the server requires a client certificate (--cert/--key)",
      "present one with --cert PEM --key PEM",
    );
  }
  if (
    /UnknownIssuer/.test(message) ||
    /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT/.test(code)
  ) {
    return fail(
      "certificate verification failed: unknown issuer (not signed by a trusted CA)",
      "for a self-signed or private-CA certificate, pass it with --cacert FILE; --insecure skips the check",
    );
  }
  const altname = /Host: (.*?)\.? is not in the cert's altnames: (.*)$/.exec(message);
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" && altname) {
    return fail(
      `certificate verification failed: the certificate is not valid for ${altname[1]} ` +
        `(it is for ${altname[2].replace(/IP Address:|DNS:/g, "")})`,
      "connect by one of those names, or give --servername NAME",
    );
  }
  if (code === "CERT_HAS_EXPIRED") {
    return fail("certificate verification failed: the certificate expired");
  }
  const name = /not valid for name "([^"]*)"; certificate is (?:only )?valid for (.*)$/.exec(
    message,
  );
  if (name) {
    const names = name[2].replace(/DnsName\("([^"]*)"\)/g, "$1").replace(
      /IpAddress\(([^)]*)\)/g,
      "$1",
    );
    return fail(
      `certificate verification failed: name mismatch: not valid for ${
        name[1]
      } (valid for ${names})`,
      "--servername NAME verifies another name than the one dialled",
    );
  }
  if (/NotValidForName/.test(message)) {
    return fail(
      "certificate verification failed: name mismatch",
      "--servername NAME verifies another name",
    );
  }
  if (/expired/i.test(message)) {
    const when = /not valid after (\d+)/.exec(message);
    return fail(
      `certificate verification failed: the certificate expired${
        when ? ` (${new Date(Number(when[1]) * 1000).toISOString()})` : ""
      }`,
    );
  }
  if (/NotValidYet|not valid before/i.test(message)) {
    return fail("certificate verification failed: the certificate is not valid yet");
  }
  if (/NoApplicationProtocol/.test(message)) {
    return fail("no ALPN protocol in common with the peer");
  }
  if (/InvalidContentType|corrupt message/.test(message)) {
    return fail("the peer does not speak TLS");
  }
  if (/UnexpectedEof|unexpected end of file/i.test(message)) {
    return fail("the peer closed the connection during the TLS handshake");
  }
  const plain = toSockitError(error, "tls", address);
  return plain.code && plain.code !== "EFAIL"
    ? plain
    : fail(`TLS failed: ${message.replace(/\s*\(os error \d+\)$/, "")}`);
}

/** What a TLS handshake negotiated, for `-v`. */
export interface HandshakeInfo {
  /** The ALPN protocol, if one was agreed. */
  alpn: string | null;
  /** TLS version, when the implementation tells (node:tls does; Deno's TLS does not). */
  version?: string;
  /** Cipher suite, when the implementation tells. */
  cipher?: string;
  /** The peer's certificate, when the implementation tells. */
  peer?: CertificateInfo;
}

/**
 * The peer certificate of a Deno TLS connection: Deno has no public API for
 * it, but its node compatibility layer keeps a hook on the connection; this
 * reads it when present and gives `undefined` otherwise.
 */
function denoPeerCertificate(conn: Deno.TlsConn): CertificateInfo | undefined {
  try {
    for (let proto = Object.getPrototypeOf(conn); proto; proto = Object.getPrototypeOf(proto)) {
      const symbol = Object.getOwnPropertySymbols(proto).find((s) =>
        s.description === "getPeerCertificate"
      );
      if (!symbol) continue;
      const peer = (conn as unknown as Record<symbol, () => Record<string, unknown> | null>)
        [symbol]();
      if (!peer) return undefined;
      const subject = peer.subject as Record<string, string> | undefined;
      return {
        subject: subject ? Object.entries(subject).map(([k, v]) => `${k}=${v}`).join(", ") : "",
        fingerprint: String(peer.fingerprint256 ?? ""),
        names: peer.subjectaltname as string | undefined,
        validTo: peer.valid_to as string | undefined,
      };
    }
  } catch {
    // Not available in this Deno: nothing to show.
  }
  return undefined;
}

/**
 * Upgrades a TCP connection to TLS as a client and completes the handshake,
 * so that a verification failure is reported here. `host` is what was
 * dialled; `options.serverName` overrides it for SNI and verification.
 *
 * Deno's `handshake()` takes no signal and waits for the server's answer
 * for as long as the socket stays open, so a server that accepts and never
 * answers the ClientHello would hold it for good. When `signal` aborts the
 * connection is closed, which settles the handshake, and the promise
 * rejects with `signal.reason`. Whatever fails, `conn` is closed.
 *
 * @example Usage
 * ```ts
 * import { ephemeralCertificate, upgradeClient } from "./tls.ts";
 * import { acceptTls } from "./node_tls.ts";
 * import assert from "node:assert/strict";
 *
 * const { cert, key } = await ephemeralCertificate();
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const accepting = listener.accept().then((raw) => acceptTls(raw, { cert, key }));
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const { conn, info } = await upgradeClient(tcp, "localhost", { caCerts: [cert] });
 * assert.equal(info.alpn, null);
 * (await accepting).conn.close();
 * conn.close();
 *
 * // A server that never answers: the signal ends the handshake.
 * const silent = listener.accept();
 * const stuck = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await assert.rejects(
 *   upgradeClient(stuck, "localhost", {}, AbortSignal.timeout(100)),
 *   { name: "TimeoutError" },
 * );
 * (await silent).close();
 * listener.close();
 * ```
 */
export async function upgradeClient(
  conn: Deno.TcpConn,
  host: string,
  options: TlsClientOptions,
  signal?: AbortSignal,
): Promise<{ conn: Deno.TlsConn; info: HandshakeInfo }> {
  const closeQuietly = (c: Deno.Conn) => {
    try {
      c.close();
    } catch {
      // Closed already.
    }
  };
  if (signal?.aborted) {
    closeQuietly(conn);
    throw signal.reason;
  }
  let tls: Deno.TlsConn;
  try {
    tls = await Deno.startTls(conn, {
      hostname: options.serverName ?? host,
      caCerts: options.caCerts,
      alpnProtocols: options.alpn,
    });
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
  // Closing the connection is the one way to end a pending handshake.
  const onAbort = () => closeQuietly(tls);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const { alpnProtocol } = await tls.handshake();
    if (signal?.aborted) throw signal.reason;
    return { conn: tls, info: { alpn: alpnProtocol, peer: denoPeerCertificate(tls) } };
  } catch (err) {
    closeQuietly(tls);
    throw signal?.aborted ? signal.reason : err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Whether a failure is a TLS one (verification, protocol), which trying
 * again or another address will not fix.
 *
 * @example Usage
 * ```ts
 * import { isTlsFailure, tlsFailure } from "./tls.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isTlsFailure(tlsFailure(new Error("invalid peer certificate: UnknownIssuer"), "h:443")));
 * assert.ok(!isTlsFailure(new Error("connection refused")));
 * ```
 */
export function isTlsFailure(error: unknown): boolean {
  return error instanceof SockitError && error.code === "ETLS";
}
