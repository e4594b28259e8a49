/**
 * Real servers from Debian for STARTTLS tests, each started by the test as
 * its own process: postfix (SMTP), dovecot (IMAP, POP3, LMTP), vsftpd (FTP
 * AUTH TLS), prosody (XMPP), PostgreSQL (SSLRequest), slapd (LDAP StartTLS)
 * and InspIRCd (IRC STARTTLS). Each runs in the foreground in a session of
 * its own (`setsid`), from a temporary directory that holds its
 * configuration, data and log, listening on 127.0.0.1 on a free port, with
 * the certificate and key the test gives — or, with `{ tls: false }`,
 * without TLS, so that a client meets a server that does not offer the
 * upgrade. No system service, no file under /etc and no fixed port is
 * touched, so a system instance of the same server (on its default port)
 * and other fixtures running at the same time do not matter.
 *
 * ```ts ignore
 * await using smtp = await startSmtp(localhostCertificate(dir));
 * // openssl s_client -connect 127.0.0.1:${smtp.port} -starttls smtp …
 * ```
 *
 * The start resolves once the server answers its protocol on the port (a
 * greeting, or a reply to a first request for the protocols whose server
 * speaks second), within 15 s, or fails quoting the server's log. `stop()`
 * (or leaving the `await using` scope) signals the server, ends whatever of
 * its session is left, by PID, and removes the directory.
 *
 * @module
 */

import { decoder, encoder, freePort, requireTool, writeAll } from "./helpers.ts";

/** The protocols `openssl s_client -starttls` speaks that these fixtures serve. */
export type StarttlsProtocol =
  | "smtp"
  | "lmtp"
  | "imap"
  | "pop3"
  | "ftp"
  | "xmpp"
  | "postgres"
  | "ldap"
  | "irc";

/** Every protocol, in the order tests use. */
export const STARTTLS_PROTOCOLS: readonly StarttlsProtocol[] = [
  "smtp",
  "lmtp",
  "imap",
  "pop3",
  "ftp",
  "xmpp",
  "postgres",
  "ldap",
  "irc",
];

/**
 * The server's TLS: the certificate file (PEM: the leaf, then any
 * intermediates) and its key, as `localhostCertificate(dir)` returns them;
 * or `{ tls: false }` for a server that does not offer the upgrade.
 */
export type FixtureTls = { readonly cert: string; readonly key: string } | { readonly tls: false };

/** A running server. `await using` stops it. */
export interface StarttlsServer extends AsyncDisposable {
  /** The protocol it speaks. */
  readonly protocol: StarttlsProtocol;
  /** The server program ("postfix master", "dovecot", "vsftpd", …). */
  readonly program: string;
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** The PID of its main process (the leader of its own session). */
  readonly pid: number;
  /** Its temporary directory: configuration, data, log. */
  readonly dir: string;
  /** Milliseconds from the start (preparing the directory included) until it answered. */
  readonly startMs: number;
  /** Whether it offers the upgrade. */
  readonly tls: boolean;
  /** What it has logged so far (its log files and its stdout/stderr). */
  log(): string;
  /** Stops it (once; later calls wait for the first) and removes its directory. */
  stop(): Promise<void>;
}

/** The account the mail fixtures (IMAP, POP3, LMTP) accept. */
export const MAIL_USER = "sockit";
/** Its password (any user is accepted with it). */
export const MAIL_PASSWORD = "secret";

/** The XMPP domain prosody serves (`openssl s_client -xmpphost`). */
export const XMPP_DOMAIN = "localhost";

/** How long a server has to answer after it was started. */
const START_TIMEOUT_MS = 15_000;
/** How long a server has to exit after it was signalled, before it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** At most this much of a server's stdout/stderr is kept. */
const OUTPUT_LIMIT = 1 << 20;

// ---------------------------------------------------------------------------
// Talking to a server in plaintext.

/** One step of a plaintext dialogue: what to send (if anything), then what to wait for. */
export interface Step {
  /** Sent as is (a string as UTF-8). */
  readonly send?: string | Uint8Array;
  /**
   * Matched against what came since the previous step's match, each byte as
   * one character (latin1), so binary replies match too.
   */
  readonly expect: RegExp;
}

/**
 * Connects to 127.0.0.1:`port`, runs the steps in order and returns each
 * step's match. Fails naming the step and quoting what came when the
 * connection closes first or `timeoutMs` passes.
 *
 * @example Usage
 * ```ts ignore
 * const [greeting, ehlo] = await talk(port, [
 *   { expect: /^220 .*\r\n/ },
 *   { send: "EHLO test\r\n", expect: /^250 .*\r\n/m },
 * ]);
 * ```
 */
export async function talk(
  port: number,
  steps: readonly Step[],
  timeoutMs = 5_000,
): Promise<RegExpMatchArray[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      conn.close();
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    close();
  }, timeoutMs);
  const matches: RegExpMatchArray[] = [];
  let text = "";
  try {
    const buf = new Uint8Array(16384);
    for (const [i, step] of steps.entries()) {
      if (step.send !== undefined) {
        await writeAll(conn, typeof step.send === "string" ? encoder.encode(step.send) : step.send);
      }
      for (;;) {
        const match = text.match(step.expect);
        if (match) {
          matches.push(match);
          text = text.slice((match.index ?? 0) + match[0].length);
          break;
        }
        let n: number | null = null;
        try {
          n = await conn.read(buf);
        } catch (error) {
          if (!timedOut) throw error;
        }
        if (n === null) {
          const why = timedOut
            ? `nothing matching within ${timeoutMs} ms`
            : "the connection closed";
          throw new Error(
            `127.0.0.1:${port} step ${i + 1} (${step.expect}): ${why}; got ${JSON.stringify(text)}`,
          );
        }
        for (const byte of buf.subarray(0, n)) text += String.fromCharCode(byte);
      }
    }
    return matches;
  } finally {
    clearTimeout(timer);
    close();
  }
}

/** The bytes of a PostgreSQL SSLRequest (length 8, code 80877103). */
export const PG_SSL_REQUEST: Uint8Array = new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]);

/**
 * The bytes of a PostgreSQL StartupMessage (protocol 3.0) for user and
 * database `postgres`; a server that trusts the client answers
 * AuthenticationOk (`R`, length 8, 0) — once it accepts connections, not
 * while it is starting up.
 */
export const PG_STARTUP: Uint8Array = (() => {
  const body = encoder.encode("user\0postgres\0database\0postgres\0\0");
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setUint32(0, out.length);
  new DataView(out.buffer).setUint32(4, 196608);
  out.set(body, 8);
  return out;
})();

/** The bytes of an LDAP StartTLS extended request (message 1, OID 1.3.6.1.4.1.1466.20037). */
export const LDAP_STARTTLS_REQUEST: Uint8Array = (() => {
  const oid = encoder.encode("1.3.6.1.4.1.1466.20037");
  const request = [0x77, oid.length + 2, 0x80, oid.length, ...oid];
  return new Uint8Array([0x30, request.length + 3, 0x02, 0x01, 0x01, ...request]);
})();

/** An LDAP ExtendedResponse; group 1 is its resultCode (one byte; 0 is success). */
export const LDAP_EXTENDED_RESPONSE: RegExp =
  // deno-lint-ignore no-control-regex -- BER bytes, matched as latin1
  /\x30[\s\S]{1,4}?\x02\x01\x01\x78(?:[\x00-\x7f]|\x81[\s\S]|\x82[\s\S]{2})\x0a\x01([\s\S])/;

/** The opening of an XMPP client stream to `XMPP_DOMAIN`. */
export const XMPP_STREAM_OPEN = `<?xml version='1.0'?><stream:stream to='${XMPP_DOMAIN}' ` +
  `xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

/** The first exchange that proves each server is up and speaking its protocol. */
const READY: Record<StarttlsProtocol, Step> = {
  smtp: { expect: /^220 .*\r\n/m },
  lmtp: { expect: /^220 .*\r\n/m },
  imap: { expect: /^\* OK .*\r\n/m },
  pop3: { expect: /^\+OK .*\r\n/m },
  ftp: { expect: /^220 .*\r\n/m },
  xmpp: { send: XMPP_STREAM_OPEN, expect: /<\/stream:features>/ },
  // AuthenticationOk.
  // deno-lint-ignore no-control-regex -- the protocol is binary
  postgres: { send: PG_STARTUP, expect: /^R\x00\x00\x00\x08\x00\x00\x00\x00/ },
  ldap: { send: LDAP_STARTTLS_REQUEST, expect: LDAP_EXTENDED_RESPONSE },
  irc: { send: "CAP LS 302\r\n", expect: /CAP \* LS .*\r\n/ },
};

// ---------------------------------------------------------------------------
// Running a server.

/** A system user's uid and gid, from /etc/passwd. */
function account(user: string): { uid: number; gid: number } {
  for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
    const fields = line.split(":");
    if (fields[0] === user) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error(`no user "${user}" on this machine: is its server's package installed?`);
}

/** `setpriv` arguments that run the rest of a command line as `user`. */
function asUser(user: string): string[] {
  return [requireTool("setpriv"), `--reuid=${user}`, `--regid=${user}`, "--init-groups"];
}

/** Hands `paths` to `user` (the files of a server that does not run as root). */
function chownTo(user: string, paths: string[]): void {
  const { uid, gid } = account(user);
  for (const path of paths) Deno.chownSync(path, uid, gid);
}

/** The PIDs of the live (not zombie) processes in session `sid`. */
function sessionMembers(sid: number): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid pgrp session …; comm may hold spaces and parentheses.
      const [state, , , session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(session) === sid && state !== "Z") pids.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What a fixture hands the runner once its directory is ready. */
interface Launch {
  /** The server program, for messages. */
  readonly program: string;
  /** The command line; it is run under `setsid`, as its session's leader. */
  readonly argv: string[];
  /** The server's log files (read by `log()`). */
  readonly logs?: string[];
  /**
   * The signal `stop()` sends its main process (SIGTERM unless said); what is
   * left of its session after that is killed.
   */
  readonly stopSignal?: Deno.Signal;
}

/** What every fixture gets to write its configuration with. */
interface Site {
  readonly dir: string;
  readonly port: number;
  /** The certificate and key, copied into the directory, or undefined without TLS. */
  readonly tls?: { cert: string; key: string };
}

class Server implements StarttlsServer {
  readonly protocol: StarttlsProtocol;
  readonly program: string;
  readonly port: number;
  readonly dir: string;
  readonly tls: boolean;
  readonly #child: Deno.ChildProcess;
  readonly #logs: string[];
  readonly #stopSignal: Deno.Signal;
  readonly #drained: Promise<void>;
  #output = "";
  #stopping: Promise<void> | undefined;
  #status: Deno.CommandStatus | undefined;
  startMs = 0;

  constructor(protocol: StarttlsProtocol, site: Site, launch: Launch) {
    this.protocol = protocol;
    this.port = site.port;
    this.dir = site.dir;
    this.tls = site.tls !== undefined;
    this.program = launch.program;
    this.#logs = launch.logs ?? [];
    this.#stopSignal = launch.stopSignal ?? "SIGTERM";
    this.#child = new Deno.Command(requireTool("setsid"), {
      args: launch.argv,
      cwd: site.dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child.status.then((status) => this.#status = status);
    this.#drained = Promise.all([this.#drain(this.#child.stdout), this.#drain(this.#child.stderr)])
      .then(() => {});
  }

  get pid(): number {
    return this.#child.pid;
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const text = new TextDecoder();
    for await (const chunk of stream) {
      if (this.#output.length < OUTPUT_LIMIT) this.#output += text.decode(chunk, { stream: true });
    }
  }

  log(): string {
    const parts: string[] = [];
    for (const path of this.#logs) {
      try {
        parts.push(`--- ${path}\n${Deno.readTextFileSync(path)}`);
      } catch {
        // Not written (yet).
      }
    }
    if (this.#output !== "") parts.push(`--- stdout/stderr\n${this.#output}`);
    return parts.join("\n");
  }

  /** Waits until the server answers its protocol (START_TIMEOUT_MS at most). */
  async ready(started: number): Promise<void> {
    const deadline = started + START_TIMEOUT_MS;
    let last = "";
    for (;;) {
      if (this.#status !== undefined) {
        await this.#drained;
        throw new Error(this.#failure(`exited with ${this.#status.code} before it answered`));
      }
      try {
        await talk(this.port, [READY[this.protocol]], 2_000);
        this.startMs = Date.now() - started;
        return;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      // Some servers (prosody) stay up without the port they could not bind.
      if (this.portTaken()) throw new Error(this.#failure(`could not bind its port (${last})`));
      if (Date.now() > deadline) {
        throw new Error(
          this.#failure(`did not answer within ${START_TIMEOUT_MS / 1000} s (${last})`),
        );
      }
      await delay(50);
    }
  }

  #failure(what: string): string {
    const tail = this.log().trimEnd().split("\n").slice(-40).join("\n") || "(nothing)";
    return `${this.protocol} fixture: ${this.program} on 127.0.0.1:${this.port} ${what}; its log:\n${tail}`;
  }

  /**
   * Whether the failure of a start was the port being taken meanwhile (then
   * it is retried): the server said so, or it exited and something else
   * holds the port (postfix's master logs nothing before its log service
   * runs).
   */
  portTaken(): boolean {
    if (
      /address already in use|could not bind|failed to (bind|open server port)|errno=98/i.test(
        this.log(),
      )
    ) {
      return true;
    }
    if (this.#status === undefined) return false;
    try {
      Deno.listen({ hostname: "127.0.0.1", port: this.port }).close();
      return false;
    } catch (error) {
      return error instanceof Deno.errors.AddrInUse;
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const sid = this.#child.pid;
    try {
      this.#child.kill(this.#stopSignal);
    } catch {
      // Already exited.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    if (!exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
      await this.#child.status;
    }
    // Children that outlive the main process (worker processes, a session in
    // progress) are still in its session: end them, by PID.
    for (let i = 0; i < 40; i++) {
      const left = sessionMembers(sid);
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone meanwhile.
        }
      }
      await delay(50);
    }
    await this.#drained;
    await Deno.remove(this.dir, { recursive: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Makes the directory, writes the configuration (`prepare`), starts the
 * server and waits for it to answer; a start that lost its port to another
 * process is retried on a new port (3 tries).
 */
async function start(
  protocol: StarttlsProtocol,
  tls: FixtureTls,
  prepare: (site: Site) => Launch | Promise<Launch>,
): Promise<StarttlsServer> {
  for (let attempt = 1;; attempt++) {
    const started = Date.now();
    // In /tmp: PostgreSQL's socket path in it must stay short.
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: `sockit-${protocol}-` });
    // Servers that drop root (or never have it) reach their files through it.
    await Deno.chmod(dir, 0o755);
    let site: Site = { dir, port: freePort() };
    if ("cert" in tls) {
      await Deno.mkdir(`${dir}/tls`, { mode: 0o755 });
      await Deno.copyFile(tls.cert, `${dir}/tls/cert.pem`);
      await Deno.copyFile(tls.key, `${dir}/tls/key.pem`);
      await Deno.chmod(`${dir}/tls/cert.pem`, 0o644);
      await Deno.chmod(`${dir}/tls/key.pem`, 0o600);
      site = { ...site, tls: { cert: `${dir}/tls/cert.pem`, key: `${dir}/tls/key.pem` } };
    }
    let server: Server;
    try {
      server = new Server(protocol, site, await prepare(site));
    } catch (error) {
      await Deno.remove(dir, { recursive: true });
      throw error;
    }
    try {
      await server.ready(started);
      return server;
    } catch (error) {
      const retry = attempt < 3 && server.portTaken();
      await server.stop();
      if (!retry) throw error;
    }
  }
}

function lines(...text: string[]): string {
  return text.join("\n") + "\n";
}

// ---------------------------------------------------------------------------
// Certificates.

/**
 * A CA chain made with openssl in a directory of its own: a root, an
 * intermediate, and a leaf for localhost (SANs localhost and 127.0.0.1,
 * serverAuth), all EC P-256, valid 30 days. A server given `cert` sends the
 * leaf and the intermediate, so a client that trusts only `ca` verifies it
 * only if the server sends its chain. `Symbol.dispose` removes the directory.
 */
export interface CaChain extends Disposable {
  readonly dir: string;
  /** The root CA certificate: the client's CA file. */
  readonly ca: string;
  /** The intermediate CA certificate. */
  readonly intermediate: string;
  /** The leaf alone. */
  readonly leaf: string;
  /** The leaf, then the intermediate: the server's certificate file. */
  readonly cert: string;
  /** The leaf's key. */
  readonly key: string;
}

function openssl(args: string[], cwd: string): void {
  const out = new Deno.Command(requireTool("openssl"), {
    args,
    cwd,
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (!out.success) throw new Error(`openssl ${args.join(" ")}: ${decoder.decode(out.stderr)}`);
}

/**
 * Makes a root → intermediate → leaf chain (see `CaChain`).
 *
 * @example Usage
 * ```ts ignore
 * using chain = makeCaChain();
 * await using imap = await startImap(chain);
 * // openssl s_client -starttls imap -CAfile ${chain.ca} … verifies
 * ```
 */
export function makeCaChain(): CaChain {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "sockit-ca-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  try {
    openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "root.key",
      "-out",
      "root.pem",
      "-days",
      "30",
      "-subj",
      "/CN=sockit test root",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ], dir);
    Deno.writeTextFileSync(
      `${dir}/ext.cnf`,
      lines(
        "[ca]",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "keyUsage=critical,keyCertSign,cRLSign",
        "[leaf]",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
      ),
    );
    const sign = (name: string, subject: string, issuer: string, section: string) => {
      openssl(
        ["req", "-new", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject],
        dir,
      );
      openssl([
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${issuer}.pem`,
        "-CAkey",
        `${issuer}.key`,
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-extensions",
        section,
        "-out",
        `${name}.pem`,
      ], dir);
    };
    sign("intermediate", "/CN=sockit test intermediate", "root", "ca");
    sign("leaf", "/CN=localhost", "intermediate", "leaf");
    Deno.writeTextFileSync(
      `${dir}/chain.pem`,
      Deno.readTextFileSync(`${dir}/leaf.pem`) + Deno.readTextFileSync(`${dir}/intermediate.pem`),
    );
  } catch (error) {
    Deno.removeSync(dir, { recursive: true });
    throw error;
  }
  return {
    dir,
    ca: `${dir}/root.pem`,
    intermediate: `${dir}/intermediate.pem`,
    leaf: `${dir}/leaf.pem`,
    cert: `${dir}/chain.pem`,
    key: `${dir}/leaf.key`,
    [Symbol.dispose]() {
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

// ---------------------------------------------------------------------------
// The servers.

/**
 * postfix's `master` (smtpd and the services behind it) for SMTP with
 * STARTTLS (`smtpd_tls_security_level = may`). Mail it accepts is
 * discarded.
 *
 * @example Usage
 * ```ts ignore
 * await using smtp = await startSmtp(localhostCertificate(dir));
 * ```
 */
export function startSmtp(tls: FixtureTls): Promise<StarttlsServer> {
  requireTool("postfix");
  return start("smtp", tls, async ({ dir, port, tls }) => {
    const postconf = requireTool("postconf");
    const out = await new Deno.Command(postconf, { args: ["-dh", "daemon_directory"] }).output();
    const daemons = decoder.decode(out.stdout).trim();
    const etc = `${dir}/etc`;
    const queue = `${dir}/queue`;
    await Deno.mkdir(etc);
    // The queue as `postfix check` makes it: root owns the top and pid/,
    // the mail owner the rest.
    await Deno.mkdir(`${queue}/pid`, { recursive: true });
    const owned = ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming"]
      .concat(["maildrop", "private", "public", "saved", "trace"]).map((d) => `${queue}/${d}`);
    for (const path of [...owned, `${dir}/data`]) await Deno.mkdir(path, { mode: 0o700 });
    chownTo("postfix", [...owned, `${dir}/data`]);
    await Deno.writeTextFile(
      `${etc}/main.cf`,
      lines(
        "compatibility_level = 3.6",
        `queue_directory = ${queue}`,
        `data_directory = ${dir}/data`,
        `maillog_file_prefixes = ${dir}`,
        `maillog_file = ${dir}/maillog`,
        "myhostname = localhost",
        "mydestination = localhost",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mynetworks = 127.0.0.0/8",
        "alias_maps =",
        "alias_database =",
        "smtpd_relay_restrictions = permit_mynetworks, reject",
        "default_transport = discard",
        "local_transport = discard",
        "relay_transport = discard",
        ...(tls
          ? [
            "smtpd_tls_security_level = may",
            `smtpd_tls_cert_file = ${tls.cert}`,
            `smtpd_tls_key_file = ${tls.key}`,
            "smtpd_tls_loglevel = 1",
          ]
          : ["smtpd_tls_security_level = none"]),
      ),
    );
    // master.cf: the SMTP listener and the services it talks to, none chrooted.
    await Deno.writeTextFile(
      `${etc}/master.cf`,
      lines(
        `127.0.0.1:${port} inet n - n - - smtpd`,
        "postlog unix-dgram n - n - 1 postlogd",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "proxymap unix - - n - - proxymap",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
      ),
    );
    // postfix will not read a configuration file written within the last
    // second (it waits for it to settle, up to 2 s): date them back.
    const past = new Date(Date.now() - 10_000);
    for (const file of ["main.cf", "master.cf"]) await Deno.utime(`${etc}/${file}`, past, past);
    return {
      program: "postfix master",
      argv: [`${daemons}/master`, "-c", etc],
      logs: [`${dir}/maillog`],
    };
  });
}

/** dovecot's configuration for one protocol, its listener on `port`. */
async function dovecot(protocol: "imap" | "pop3" | "lmtp", site: Site): Promise<Launch> {
  const { dir, port, tls } = site;
  const binary = `/usr/lib/dovecot/${protocol}`;
  try {
    await Deno.stat(binary);
  } catch {
    throw new Error(
      `MISSING TOOL: this test needs ${binary} (Debian package dovecot-${protocol}d; deno task peers installs it)`,
    );
  }
  await Deno.mkdir(`${dir}/home`);
  chownTo("dovecot", [`${dir}/home`]);
  const listener: Record<typeof protocol, string[]> = {
    imap: [
      "service imap-login {",
      `  inet_listener imap {\n    port = ${port}\n  }`,
      "  inet_listener imaps {\n    port = 0\n  }",
      "}",
    ],
    pop3: [
      "service pop3-login {",
      `  inet_listener pop3 {\n    port = ${port}\n  }`,
      "  inet_listener pop3s {\n    port = 0\n  }",
      "}",
    ],
    lmtp: ["service lmtp {", `  inet_listener lmtp {\n    port = ${port}\n  }`, "}"],
  };
  await Deno.writeTextFile(
    `${dir}/dovecot.conf`,
    lines(
      `base_dir = ${dir}/run`,
      `state_dir = ${dir}/state`,
      `log_path = ${dir}/dovecot.log`,
      `instance_name = sockit-${protocol}-${port}`,
      "hostname = localhost",
      // No statistics: no process waits for the stats service.
      "stats_writer_socket_path =",
      `protocols = ${protocol}`,
      "listen = 127.0.0.1",
      ...(tls
        ? [`ssl = yes`, `ssl_cert = <${tls.cert}`, `ssl_key = <${tls.key}`]
        : ["ssl = no", "disable_plaintext_auth = no"]),
      "default_internal_user = dovecot",
      "default_internal_group = dovecot",
      "default_login_user = dovenull",
      "first_valid_uid = 1",
      "passdb {",
      "  driver = static",
      `  args = password=${MAIL_PASSWORD}`,
      "}",
      "userdb {",
      "  driver = static",
      `  args = uid=dovecot gid=dovecot home=${dir}/home/%u`,
      "}",
      "mail_location = maildir:~/Maildir",
      "lmtp_save_to_detail_mailbox = no",
      ...listener[protocol],
    ),
  );
  return {
    program: "dovecot",
    argv: [requireTool("dovecot"), "-F", "-c", `${dir}/dovecot.conf`],
    logs: [`${dir}/dovecot.log`],
    // A clean stop takes dovecot's master a second, and 5 s when a process
    // it has just started is still reading its configuration; nothing of
    // its state is kept, so it is killed.
    stopSignal: "SIGKILL",
  };
}

/**
 * dovecot for IMAP with STARTTLS (plaintext LOGIN only after it: dovecot's
 * default), any user with password `MAIL_PASSWORD`.
 *
 * @example Usage
 * ```ts ignore
 * await using imap = await startImap(localhostCertificate(dir));
 * ```
 */
export function startImap(tls: FixtureTls): Promise<StarttlsServer> {
  return start("imap", tls, (site) => dovecot("imap", site));
}

/**
 * dovecot for POP3 with STLS (USER/PASS only after it), any user with
 * password `MAIL_PASSWORD`.
 *
 * @example Usage
 * ```ts ignore
 * await using pop3 = await startPop3(localhostCertificate(dir));
 * ```
 */
export function startPop3(tls: FixtureTls): Promise<StarttlsServer> {
  return start("pop3", tls, (site) => dovecot("pop3", site));
}

/**
 * dovecot's LMTP server with STARTTLS; it delivers to a Maildir in its
 * directory for any recipient.
 *
 * @example Usage
 * ```ts ignore
 * await using lmtp = await startLmtp(localhostCertificate(dir));
 * ```
 */
export function startLmtp(tls: FixtureTls): Promise<StarttlsServer> {
  return start("lmtp", tls, (site) => dovecot("lmtp", site));
}

/**
 * vsftpd with AUTH TLS (`ssl_enable=YES`), anonymous login (any password)
 * into an empty, read-only root.
 *
 * @example Usage
 * ```ts ignore
 * await using ftp = await startFtp(localhostCertificate(dir));
 * ```
 */
export function startFtp(tls: FixtureTls): Promise<StarttlsServer> {
  return start("ftp", tls, async ({ dir, port, tls }) => {
    // vsftpd wants its chroot (and the anonymous root) owned by root, not writable.
    await Deno.mkdir(`${dir}/empty`, { mode: 0o755 });
    await Deno.writeTextFile(
      `${dir}/vsftpd.conf`,
      lines(
        "listen=YES",
        "listen_ipv6=NO",
        "listen_address=127.0.0.1",
        `listen_port=${port}`,
        "background=NO",
        "anonymous_enable=YES",
        `anon_root=${dir}/empty`,
        "local_enable=NO",
        "write_enable=NO",
        `secure_chroot_dir=${dir}/empty`,
        "seccomp_sandbox=NO",
        "xferlog_enable=YES",
        "log_ftp_protocol=YES",
        "dual_log_enable=NO",
        `vsftpd_log_file=${dir}/vsftpd.log`,
        ...(tls
          ? [
            "ssl_enable=YES",
            "allow_anon_ssl=YES",
            `rsa_cert_file=${tls.cert}`,
            `rsa_private_key_file=${tls.key}`,
            // vsftpd 3.0.3's default is DES-CBC3-SHA alone, which OpenSSL 3 no longer offers.
            "ssl_ciphers=HIGH",
            "require_ssl_reuse=NO",
          ]
          : ["ssl_enable=NO"]),
      ),
    );
    return {
      program: "vsftpd",
      // vsftpd writes its fatal errors ("500 OOPS: could not bind …") to
      // descriptor 0, the control connection of inetd mode: make that stderr.
      argv: ["/bin/sh", "-c", 'exec "$0" "$@" 0>&2', requireTool("vsftpd"), `${dir}/vsftpd.conf`],
      logs: [`${dir}/vsftpd.log`],
    };
  });
}

/**
 * prosody for XMPP client connections on `XMPP_DOMAIN`, STARTTLS required
 * (`c2s_require_encryption`); it runs as the `prosody` user.
 *
 * @example Usage
 * ```ts ignore
 * await using xmpp = await startXmpp(localhostCertificate(dir));
 * ```
 */
export function startXmpp(tls: FixtureTls): Promise<StarttlsServer> {
  return start("xmpp", tls, async ({ dir, port, tls }) => {
    await Deno.mkdir(`${dir}/data`);
    const q = (s: string) => JSON.stringify(s);
    const ssl = tls ? `{ certificate = ${q(tls.cert)}, key = ${q(tls.key)} }` : "";
    await Deno.writeTextFile(
      `${dir}/prosody.cfg.lua`,
      lines(
        `pidfile = ${q(`${dir}/prosody.pid`)}`,
        `data_path = ${q(`${dir}/data`)}`,
        `log = { { levels = { min = "info" }, to = "console" } }`,
        `interfaces = { "127.0.0.1" }`,
        `c2s_ports = { ${port} }`,
        "c2s_direct_tls_ports = { }",
        "legacy_ssl_ports = { }",
        "s2s_ports = { }",
        "component_ports = { }",
        "http_ports = { }",
        "https_ports = { }",
        `modules_enabled = { ${tls ? `"tls", ` : ""}"saslauth", "disco", "ping", "posix" }`,
        `modules_disabled = { "s2s", "offline" }`,
        `c2s_require_encryption = ${tls ? "true" : "false"}`,
        `authentication = "internal_plain"`,
        `storage = "internal"`,
        ...(tls ? [`ssl = ${ssl}`] : []),
        `VirtualHost ${q(XMPP_DOMAIN)}`,
        ...(tls ? [`  ssl = ${ssl}`] : []),
      ),
    );
    const files = [dir, `${dir}/data`, `${dir}/prosody.cfg.lua`];
    if (tls) files.push(`${dir}/tls`, tls.cert, tls.key);
    chownTo("prosody", files);
    return {
      program: "prosody",
      // A clean stop takes prosody 1 to 2 s; nothing of its state is kept.
      stopSignal: "SIGKILL",
      argv: [
        ...asUser("prosody"),
        requireTool("prosody"),
        "-F",
        "--config",
        `${dir}/prosody.cfg.lua`,
      ],
    };
  });
}

/** The newest PostgreSQL server's bin directory (Debian keeps it off PATH, under its version). */
function postgresBin(): string {
  const versions: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      try {
        Deno.statSync(`/usr/lib/postgresql/${entry.name}/bin/postgres`);
        versions.push(Number(entry.name));
      } catch {
        // A client-only version.
      }
    }
  } catch {
    // Not installed there.
  }
  if (versions.length > 0) return `/usr/lib/postgresql/${Math.max(...versions)}/bin`;
  const onPath = requireTool("postgres");
  return onPath.slice(0, onPath.lastIndexOf("/"));
}

/** The PostgreSQL client of the same version as the server (`psql`). */
export function psqlPath(): string {
  return `${postgresBin()}/psql`;
}

/**
 * PostgreSQL (`initdb`, then `postgres` as the `postgres` user) with
 * `ssl = on`; user `postgres`, trusted from 127.0.0.1 without a password.
 * Answers an SSLRequest with `S` (`N` without TLS).
 *
 * @example Usage
 * ```ts ignore
 * await using pg = await startPostgres(localhostCertificate(dir));
 * ```
 */
export function startPostgres(tls: FixtureTls): Promise<StarttlsServer> {
  return start("postgres", tls, async ({ dir, port, tls }) => {
    const bin = postgresBin();
    chownTo("postgres", tls ? [dir, `${dir}/tls`, tls.cert, tls.key] : [dir]);
    const initdb = await new Deno.Command(asUser("postgres")[0], {
      args: [
        ...asUser("postgres").slice(1),
        `${bin}/initdb`,
        "-D",
        `${dir}/data`,
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!initdb.success) {
      throw new Error(
        `postgres fixture: initdb failed:\n${decoder.decode(initdb.stdout)}${
          decoder.decode(initdb.stderr)
        }`,
      );
    }
    const settings = [
      "listen_addresses=127.0.0.1",
      `unix_socket_directories=${dir}`,
      "fsync=off",
      "logging_collector=off",
      `ssl=${tls ? "on" : "off"}`,
      ...(tls ? [`ssl_cert_file=${tls.cert}`, `ssl_key_file=${tls.key}`] : []),
    ];
    return {
      program: "postgres",
      argv: [
        ...asUser("postgres"),
        `${bin}/postgres`,
        "-D",
        `${dir}/data`,
        "-p",
        String(port),
        ...settings.flatMap((s) => ["-c", s]),
      ],
      // Fast shutdown: SIGTERM would wait for every client to leave.
      stopSignal: "SIGINT",
    };
  });
}

/**
 * slapd (OpenLDAP) with StartTLS, no database: the root DSE answers
 * anonymous searches.
 *
 * @example Usage
 * ```ts ignore
 * await using ldap = await startLdap(localhostCertificate(dir));
 * ```
 */
export function startLdap(tls: FixtureTls): Promise<StarttlsServer> {
  return start("ldap", tls, async ({ dir, port, tls }) => {
    await Deno.writeTextFile(
      `${dir}/slapd.conf`,
      lines(
        "include /etc/ldap/schema/core.schema",
        `pidfile ${dir}/slapd.pid`,
        `argsfile ${dir}/slapd.args`,
        ...(tls ? [`TLSCertificateFile ${tls.cert}`, `TLSCertificateKeyFile ${tls.key}`] : []),
      ),
    );
    return {
      program: "slapd",
      argv: [
        requireTool("slapd"),
        "-d",
        "stats",
        "-h",
        `ldap://127.0.0.1:${port}/`,
        "-f",
        `${dir}/slapd.conf`,
      ],
    };
  });
}

/**
 * InspIRCd 3 with its `starttls` module (GnuTLS), the IRCv3 `tls`
 * capability; it runs as the `irc` user. Hostname lookups are off, so the
 * first line a client gets is the answer to its own command.
 *
 * @example Usage
 * ```ts ignore
 * await using irc = await startIrc(localhostCertificate(dir));
 * ```
 */
export function startIrc(tls: FixtureTls): Promise<StarttlsServer> {
  return start("irc", tls, async ({ dir, port, tls }) => {
    await Deno.writeTextFile(
      `${dir}/inspircd.conf`,
      lines(
        `<server name="irc.localhost" description="sockit STARTTLS fixture" network="sockit">`,
        `<admin name="sockit" nick="sockit" email="sockit@localhost">`,
        `<bind address="127.0.0.1" port="${port}" type="clients">`,
        `<connect allow="*" resolvehostnames="no" fakelag="no" timeout="60" pingfreq="120" ` +
          `hardsendq="262144" softsendq="8192" recvq="8192" localmax="1000" globalmax="1000">`,
        `<log method="file" type="*" level="default" target="${dir}/inspircd.log">`,
        `<pid file="${dir}/inspircd.pid">`,
        `<module name="cap">`,
        ...(tls
          ? [
            `<module name="ssl_gnutls">`,
            `<sslprofile name="starttls" provider="gnutls" certfile="${tls.cert}" ` +
            `keyfile="${tls.key}" dhfile="" hash="sha256" requestclientcert="no">`,
            `<module name="starttls">`,
            `<starttls provider="starttls">`,
          ]
          : []),
      ),
    );
    chownTo("irc", tls ? [dir, `${dir}/tls`, tls.cert, tls.key] : [dir]);
    return {
      program: "inspircd",
      argv: [
        ...asUser("irc"),
        requireTool("inspircd"),
        "--nofork",
        `--config=${dir}/inspircd.conf`,
      ],
      logs: [`${dir}/inspircd.log`],
    };
  });
}

/** Each protocol's fixture. */
export const STARTTLS_SERVERS: Readonly<
  Record<StarttlsProtocol, (tls: FixtureTls) => Promise<StarttlsServer>>
> = {
  smtp: startSmtp,
  lmtp: startLmtp,
  imap: startImap,
  pop3: startPop3,
  ftp: startFtp,
  xmpp: startXmpp,
  postgres: startPostgres,
  ldap: startLdap,
  irc: startIrc,
};
