/**
 * The STARTTLS fixtures of tests/starttls_servers.ts, proven with the
 * reference client: each real server (postfix, dovecot, vsftpd, prosody,
 * PostgreSQL, slapd, InspIRCd) offers the upgrade in plaintext and accepts
 * it, `openssl s_client -starttls PROTO` reaches a TLS session verified
 * against the test's own CA (root → intermediate → leaf; the server sends
 * the leaf and the intermediate), and the protocol works inside it; and the
 * same server started with `{ tls: false }` neither offers the upgrade nor
 * accepts it.
 */

import { assert, assertEquals, assertMatch, assertNotMatch } from "./assert.ts";
import { decoder, encoder, requireTool } from "./helpers.ts";
import {
  type CaChain,
  LDAP_EXTENDED_RESPONSE,
  LDAP_STARTTLS_REQUEST,
  MAIL_PASSWORD,
  MAIL_USER,
  makeCaChain,
  PG_SSL_REQUEST,
  psqlPath,
  STARTTLS_SERVERS,
  type StarttlsProtocol,
  type StarttlsServer,
  type Step,
  talk,
  XMPP_DOMAIN,
  XMPP_STREAM_OPEN,
} from "./starttls_servers.ts";

/** What `openssl s_client` printed, and how it ended. */
interface ClientResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function waitFor(what: () => string, pattern: RegExp, ms: number, done: () => boolean) {
  const deadline = Date.now() + ms;
  while (!pattern.test(what())) {
    if (done() || Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/**
 * `openssl s_client -starttls PROTO`, verifying the server against `ca` for
 * the name localhost; once the session is up, each step's `send` is typed
 * and its `expect` waited for on stdout (5 s each); then stdin closes.
 */
async function sClient(
  protocol: StarttlsProtocol,
  port: number,
  ca: string,
  steps: readonly Step[],
): Promise<ClientResult> {
  const child = new Deno.Command(requireTool("openssl"), {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-starttls",
      protocol,
      ...(protocol === "xmpp" ? ["-xmpphost", XMPP_DOMAIN] : []),
      "-CAfile",
      ca,
      "-verify_return_error",
      "-verify_hostname",
      "localhost",
      "-brief",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  let ended = false;
  const drained = Promise.all([
    (async () => {
      for await (const chunk of child.stdout) stdout += decoder.decode(chunk);
    })(),
    (async () => {
      for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
    })(),
  ]);
  const status = child.status.then((s) => {
    ended = true;
    return s;
  });
  const writer = child.stdin.getWriter();
  try {
    if (await waitFor(() => stderr, /^Verification: OK$/m, 10_000, () => ended)) {
      let from = stdout.length;
      for (const step of steps) {
        if (step.send !== undefined) {
          await writer.write(typeof step.send === "string" ? encoder.encode(step.send) : step.send);
        }
        const seen = () => stdout.slice(from);
        if (!await waitFor(seen, step.expect, 5_000, () => ended)) break;
        const match = seen().match(step.expect)!;
        from += (match.index ?? 0) + match[0].length;
      }
    }
  } finally {
    await writer.close().catch(() => {});
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await status;
    clearTimeout(timer);
    await drained;
  }
  return { code: (await status).code, stdout, stderr };
}

/** Asserts that s_client reached a session verified against the test's CA. */
function assertVerified(result: ClientResult, server: StarttlsServer): void {
  const context = `s_client:\n${result.stderr}\n${result.stdout}\nserver log:\n${server.log()}`;
  assertMatch(result.stderr, /^CONNECTION ESTABLISHED$/m, context);
  assertMatch(result.stderr, /^Verification: OK$/m, context);
  assertMatch(result.stderr, /^Peer certificate: CN = localhost$/m, context);
  assertMatch(result.stderr, /^Protocol version: TLSv1\.[23]$/m, context);
}

/** Each protocol in plaintext: the dialogue up to the offer, and the upgrade request. */
interface Plaintext {
  /** Steps whose last match holds the server's list of offers. */
  readonly offers: readonly Step[];
  /** What in that list is the upgrade. */
  readonly offer: RegExp;
  /** Steps whose last match is the answer to the upgrade request. */
  readonly ask: readonly Step[];
  /** The answer that says "go ahead with TLS". */
  readonly go: RegExp;
  /** The answer of a server without TLS. */
  readonly refused: RegExp;
}

// deno-lint-ignore no-control-regex -- BER: resultCode ENUMERATED 0 (success) ends the match
const LDAP_SUCCESS = /\x0a\x01\x00$/;
// deno-lint-ignore no-control-regex -- any other resultCode
const LDAP_ERROR = /\x0a\x01[^\x00]$/;

const PLAINTEXT: Record<StarttlsProtocol, Plaintext> = {
  smtp: {
    offers: [{ expect: /^220 .*\r\n/m }, {
      send: "EHLO sockit\r\n",
      expect: /^(250-.*\r\n)*250 .*\r\n/m,
    }],
    offer: /^250[ -]STARTTLS\r$/m,
    ask: [{ expect: /^220 .*\r\n/m }, { send: "STARTTLS\r\n", expect: /^\d{3} .*\r\n/m }],
    go: /^220 /,
    refused: /^502 /,
  },
  lmtp: {
    offers: [{ expect: /^220 .*\r\n/m }, {
      send: "LHLO sockit\r\n",
      expect: /^(250-.*\r\n)*250 .*\r\n/m,
    }],
    offer: /^250[ -]STARTTLS\r$/m,
    ask: [{ expect: /^220 .*\r\n/m }, { send: "STARTTLS\r\n", expect: /^\d{3} .*\r\n/m }],
    go: /^220 /,
    refused: /^502 /,
  },
  imap: {
    offers: [{ expect: /^\* OK .*\r\n/m }, {
      send: "a CAPABILITY\r\n",
      expect: /^\* CAPABILITY .*\r\n/m,
    }],
    offer: / STARTTLS[ \r]/,
    ask: [{ expect: /^\* OK .*\r\n/m }, { send: "a STARTTLS\r\n", expect: /^a .*\r\n/m }],
    go: /^a OK /,
    refused: /^a (BAD|NO) /,
  },
  pop3: {
    offers: [{ expect: /^\+OK .*\r\n/m }, {
      send: "CAPA\r\n",
      expect: /^\+OK.*\r\n([^.].*\r\n)*\.\r\n/m,
    }],
    offer: /^STLS\r$/m,
    ask: [{ expect: /^\+OK .*\r\n/m }, { send: "STLS\r\n", expect: /^[-+].*\r\n/m }],
    go: /^\+OK/,
    refused: /^-ERR/,
  },
  ftp: {
    offers: [{ expect: /^220 .*\r\n/m }, {
      send: "FEAT\r\n",
      expect: /^211-(.*\r\n)*?211 .*\r\n/m,
    }],
    offer: /^ AUTH TLS\r$/m,
    ask: [{ expect: /^220 .*\r\n/m }, { send: "AUTH TLS\r\n", expect: /^\d{3} .*\r\n/m }],
    go: /^234 /,
    refused: /^5\d\d /,
  },
  xmpp: {
    offers: [{ send: XMPP_STREAM_OPEN, expect: /<stream:features>.*<\/stream:features>/ }],
    offer: /<starttls xmlns=['"]urn:ietf:params:xml:ns:xmpp-tls['"]/,
    ask: [
      { send: XMPP_STREAM_OPEN, expect: /<\/stream:features>/ },
      {
        send: "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        expect: /<proceed[^>]*\/>|<failure[^>]*\/>|<stream:error>.*<\/stream:error>/,
      },
    ],
    go: /^<proceed xmlns=['"]urn:ietf:params:xml:ns:xmpp-tls['"]\/>$/,
    refused: /^<(failure|stream:error)/,
  },
  postgres: {
    offers: [{ send: PG_SSL_REQUEST, expect: /^[SN]/ }],
    offer: /^S$/,
    ask: [{ send: PG_SSL_REQUEST, expect: /^[SN]/ }],
    go: /^S$/,
    refused: /^N$/,
  },
  ldap: {
    // The root DSE is not needed: the StartTLS request itself says whether TLS is there.
    offers: [{ send: LDAP_STARTTLS_REQUEST, expect: LDAP_EXTENDED_RESPONSE }],
    offer: LDAP_SUCCESS,
    ask: [{ send: LDAP_STARTTLS_REQUEST, expect: LDAP_EXTENDED_RESPONSE }],
    go: LDAP_SUCCESS,
    refused: LDAP_ERROR,
  },
  irc: {
    offers: [{ send: "CAP LS 302\r\n", expect: /CAP \* LS .*\r\n/ }],
    offer: /[: ]tls[ \r]/,
    // The server may ignore an unknown STARTTLS before registration: a PING
    // after it shows which line was answered.
    ask: [{ send: "STARTTLS\r\nPING sockit\r\n", expect: /^:\S+ (670|691|421|451) .*\r\n/m }],
    go: /^:\S+ 670 \* :STARTTLS successful, go ahead with TLS handshake\r\n$/,
    refused: /^:\S+ (691 .*|421 .*STARTTLS.*|451 .*PING.*)\r\n$/,
  },
};

/** What is typed inside the TLS session, and what proves the protocol works there. */
const INSIDE: Partial<Record<StarttlsProtocol, Step[]>> = {
  // No STARTTLS in the EHLO answer inside TLS (RFC 3207 4.2).
  smtp: [{ send: "EHLO sockit\r\n", expect: /^(250-(?!STARTTLS).*\r\n)*250 .*\r\n/m }],
  lmtp: [{ send: "LHLO sockit\r\n", expect: /^(250-(?!STARTTLS).*\r\n)*250 .*\r\n/m }],
  // dovecot takes a plaintext password only inside TLS.
  imap: [{ send: `a LOGIN ${MAIL_USER} ${MAIL_PASSWORD}\r\n`, expect: /^a OK .*\r\n/m }],
  pop3: [
    { send: `USER ${MAIL_USER}\r\n`, expect: /^\+OK.*\r\n/m },
    { send: `PASS ${MAIL_PASSWORD}\r\n`, expect: /^\+OK Logged in\.\r\n/m },
  ],
  ftp: [
    { send: "USER anonymous\r\n", expect: /^331 .*\r\n/m },
    { send: "PASS sockit@\r\n", expect: /^230 .*\r\n/m },
  ],
  // prosody offers PLAIN only inside TLS.
  xmpp: [{ send: XMPP_STREAM_OPEN, expect: /<mechanism>PLAIN<\/mechanism>/ }],
  irc: [
    { send: "NICK sockit\r\nUSER sockit 0 * :sockit\r\n", expect: /^:\S+ 001 sockit .*\r\n/m },
  ],
};

/** The plaintext dialogue's last match: the offers or the answer. */
async function lastMatch(port: number, steps: readonly Step[]): Promise<string> {
  const matches = await talk(port, steps);
  return matches[matches.length - 1][0];
}

/** After s_client: what a protocol's own client does inside TLS (postgres, ldap). */
async function insideWithOwnClient(
  protocol: StarttlsProtocol,
  server: StarttlsServer,
  chain: CaChain,
): Promise<void> {
  if (protocol === "postgres") {
    const out = await new Deno.Command(psqlPath(), {
      args: [
        `host=localhost port=${server.port} user=postgres dbname=postgres ` +
        `sslmode=verify-full sslrootcert=${chain.ca}`,
        "-Atc",
        "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()",
      ],
      env: { PGCONNECT_TIMEOUT: "10" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(
      decoder.decode(out.stdout).trim().replace(/\|TLSv1\.[23]$/, "|TLS"),
      "t|TLS",
      `psql: ${decoder.decode(out.stderr)}\nserver log:\n${server.log()}`,
    );
  }
  if (protocol === "ldap") {
    // -ZZ: StartTLS must succeed (verified against the root) before the search.
    const out = await new Deno.Command(requireTool("ldapsearch"), {
      args: [
        "-x",
        "-ZZ",
        "-H",
        `ldap://127.0.0.1:${server.port}/`,
        "-b",
        "",
        "-s",
        "base",
        "supportedExtension",
      ],
      env: { LDAPCONF: "/dev/null", LDAPTLS_CACERT: chain.ca, LDAPTLS_REQCERT: "demand" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertMatch(
      decoder.decode(out.stdout),
      /^supportedExtension: 1\.3\.6\.1\.4\.1\.1466\.20037$/m,
      `ldapsearch: ${decoder.decode(out.stderr)}\nserver log:\n${server.log()}`,
    );
  }
}

const SERVER_NAMES: Record<StarttlsProtocol, string> = {
  smtp: "postfix",
  lmtp: "dovecot lmtp",
  imap: "dovecot",
  pop3: "dovecot",
  ftp: "vsftpd",
  xmpp: "prosody",
  postgres: "postgresql",
  ldap: "slapd",
  irc: "inspircd",
};

for (const protocol of Object.keys(PLAINTEXT) as StarttlsProtocol[]) {
  const name = SERVER_NAMES[protocol];
  Deno.test(`starttls fixture ${protocol} (${name}): offers and accepts the upgrade; openssl s_client -starttls ${protocol} verifies the chain and the protocol works inside`, async () => {
    using chain = makeCaChain();
    await using server = await STARTTLS_SERVERS[protocol](chain);
    assertEquals(server.tls, true);
    const plain = PLAINTEXT[protocol];
    assertMatch(await lastMatch(server.port, plain.offers), plain.offer, server.log());
    assertMatch(await lastMatch(server.port, plain.ask), plain.go, server.log());

    const result = await sClient(protocol, server.port, chain.ca, INSIDE[protocol] ?? []);
    assertVerified(result, server);
    for (const step of INSIDE[protocol] ?? []) {
      assertMatch(result.stdout, step.expect, `${result.stderr}\n${server.log()}`);
    }
    await insideWithOwnClient(protocol, server, chain);
  });
}

for (const protocol of Object.keys(PLAINTEXT) as StarttlsProtocol[]) {
  const name = SERVER_NAMES[protocol];
  Deno.test(`starttls fixture ${protocol} (${name}) with { tls: false }: neither offers nor accepts the upgrade`, async () => {
    await using server = await STARTTLS_SERVERS[protocol]({ tls: false });
    assertEquals(server.tls, false);
    const plain = PLAINTEXT[protocol];
    assertNotMatch(await lastMatch(server.port, plain.offers), plain.offer, server.log());
    const answer = await lastMatch(server.port, plain.ask);
    assertMatch(answer, plain.refused, server.log());
    assertNotMatch(answer, plain.go);
  });
}

/** The live processes of session `sid` (a fixture's server leads its own session). */
function sessionProcesses(sid: number): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const [state, , , session] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(session) === sid && state !== "Z") count++;
    } catch {
      // Gone meanwhile.
    }
  }
  return count;
}

Deno.test("starttls fixtures: stop ends every process of its server, a client in session included, and nothing else", async () => {
  using chain = makeCaChain();
  // dovecot runs a tree of processes (master, log, config, auth, anvil, imap-login…).
  await using other = await STARTTLS_SERVERS.imap(chain);
  const server = await STARTTLS_SERVERS.imap(chain);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf);
    assertMatch(decoder.decode(buf.subarray(0, n ?? 0)), /^\* OK /);
    assert(sessionProcesses(server.pid) > 1, `dovecot runs ${sessionProcesses(server.pid)}`);
    await server.stop();
    assertEquals(sessionProcesses(server.pid), 0);
    assertEquals(await Deno.stat(server.dir).then(() => true, () => false), false);
    await server.stop(); // A second stop waits for the first, and does nothing.
    // The client's connection ended with the server (after what it had left to say, if anything).
    let ended = false;
    for (let i = 0; i < 10 && !ended; i++) ended = await conn.read(buf).catch(() => null) === null;
    assert(ended, "the connection to the stopped server is still open");
    // The other instance of the same program is untouched.
    assert(sessionProcesses(other.pid) > 1);
    assertMatch(await lastMatch(other.port, PLAINTEXT.imap.offers), PLAINTEXT.imap.offer);
  } finally {
    conn.close();
    await server.stop();
  }
});

Deno.test("starttls fixtures: all of them at once, each program twice (with and without TLS), each answering for itself", async () => {
  using chain = makeCaChain();
  const servers: StarttlsServer[] = [];
  try {
    const protocols = Object.keys(PLAINTEXT) as StarttlsProtocol[];
    const started = await Promise.allSettled(
      protocols.flatMap((p) => [STARTTLS_SERVERS[p](chain), STARTTLS_SERVERS[p]({ tls: false })]),
    );
    for (const result of started) if (result.status === "fulfilled") servers.push(result.value);
    for (const result of started) if (result.status === "rejected") throw result.reason;
    assertEquals(new Set(servers.map((s) => s.port)).size, servers.length);
    for (const server of servers) {
      const plain = PLAINTEXT[server.protocol];
      const offers = await lastMatch(server.port, plain.offers);
      if (server.tls) assertMatch(offers, plain.offer, server.log());
      else assertNotMatch(offers, plain.offer, server.log());
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
});
