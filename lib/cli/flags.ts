/**
 * Every command-line flag, declared once: its type, its short form, the
 * placeholder of its value and its help text. Commands list the flags they
 * take (by name, in groups); parsing and help are generated from these
 * declarations, so a flag a command does not list is an unknown option for
 * it, and the help cannot drift from what is accepted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../base/errors.ts";

/** One flag. */
export interface FlagSpec {
  /** `boolean` for switches, `string` for options with a value. */
  type: "boolean" | "string";
  /** One-character alias. */
  short?: string;
  /** Whether the flag may be given more than once (values are collected in order). */
  multiple?: boolean;
  /** The placeholder of the value in help (`DUR`, `N`, `PEM`). */
  value?: string;
  /**
   * A switch that may carry a value as `--name=VALUE` (never as the next
   * word): its value is `true`, or the text after `=`.
   */
  optional?: true;
  /** What it does, for help (one sentence or two). */
  help: string;
}

/** Every flag sockit has, by long name. */
export const FLAGS = {
  // Output: every command.
  verbose: {
    type: "boolean",
    short: "v",
    help: "events on stderr: listening, connections, closes",
  },
  quiet: { type: "boolean", short: "q", help: "no warnings or events" },
  json: { type: "boolean", help: "events (or results) as one JSON object per line" },
  trace: { type: "boolean", help: "socket calls on stderr, as the system calls they make" },
  color: { type: "string", value: "WHEN", help: "auto, always or never (NO_COLOR is honoured)" },
  help: { type: "boolean", short: "h", help: "this help" },
  // Seeing the traffic: relaying commands.
  stats: {
    type: "boolean",
    help: "bytes each way, duration, rate of each connection (and totals)",
  },
  hex: {
    type: "boolean",
    help: "hex dump of every chunk each way on stderr (> sent, < received)",
  },
  "hex-file": {
    type: "string",
    value: "PATH",
    help: "the hex dump into PATH instead (needs --allow-write)",
  },
  progress: { type: "boolean", help: "a refreshing status line, when stderr is a terminal" },
  output: {
    type: "string",
    short: "o",
    value: "FILE",
    help: "a plain transcript of the payload both ways into FILE, as it moves (ncat -o; needs " +
      "--allow-write)",
  },
  append: { type: "boolean", help: "with --output: add to FILE instead of replacing it" },
  // Payload.
  send: {
    type: "string",
    multiple: true,
    value: "TEXT",
    help:
      "send TEXT instead of stdin, then half-close (escapes: \\r \\n \\t \\0 \\e \\\\ \\xHH); " +
      "repeatable, in order with --expect and --send-file: a dialogue",
  },
  "send-file": {
    type: "string",
    multiple: true,
    value: "PATH",
    help: "send the file instead of stdin, then half-close (repeatable, in order)",
  },
  expect: {
    type: "string",
    multiple: true,
    value: "REGEX",
    help: "wait until the received text matches (JavaScript regular expression, ^ and $ match " +
      "at line ends) before the next --send; after the last one matches, exit 0. Exit 1 if the " +
      "peer closes first (naming the step), 124 at --timeout",
  },
  "send-only": {
    type: "boolean",
    help: "never read the socket: send the input, half-close, done (ncat --send-only)",
  },
  crlf: {
    type: "boolean",
    help: "send the input's line ends (LF) as CRLF, for SMTP or HTTP by hand (nc -C)",
  },
  "recv-only": {
    type: "boolean",
    help: "never read stdin and send nothing: print what arrives until the peer closes (nc -d)",
  },
  // Time.
  timeout: {
    type: "string",
    value: "DUR",
    help: "limit for connecting and for the whole session (exit 124)",
  },
  "idle-timeout": {
    type: "string",
    value: "DUR",
    help: "end after DUR without data either way (exit 124)",
  },
  "connect-timeout": {
    type: "string",
    value: "DUR",
    help: "give up connecting to TARGET after DUR (default 10s)",
  },
  retry: { type: "string", value: "N", help: "try N more times when connecting fails" },
  "retry-delay": { type: "string", value: "DUR", help: "pause between attempts (default 1s)" },
  interval: {
    type: "string",
    short: "i",
    value: "DUR",
    help: "try each target this often (default 250ms)",
  },
  "attempt-timeout": {
    type: "string",
    value: "DUR",
    help: "limit of one attempt, so that one that hangs cannot eat the timeout (default 5s)",
  },
  // HTTP (wait).
  status: {
    type: "string",
    value: "LIST",
    help: "statuses that count as ready: codes and classes, e.g. 200,204 or 2xx,3xx (default 2xx)",
  },
  method: { type: "string", value: "METHOD", help: "the request method (default GET)" },
  header: {
    type: "string",
    short: "H",
    multiple: true,
    value: "'K: V'",
    help: "send this request header (repeatable)",
  },
  body: { type: "string", value: "REGEX", help: "the response body must match too" },
  // Sessions.
  "no-half-close": { type: "boolean", help: "keep the write side open after end of stdin" },
  "keep-open": {
    type: "boolean",
    short: "k",
    help:
      "keep accepting, clients at once: what each sends goes to stdout, stdin goes to every client",
  },
  exec: {
    type: "string",
    value: "'PROG ARGS'",
    help:
      "wire each connection to a new child (no shell); the child gets SOCKIT_REMOTE_ADDR/_PORT, " +
      "SOCKIT_LOCAL_ADDR/_PORT, SOCKIT_PROTO in its environment (needs --allow-run)",
  },
  "sh-exec": { type: "string", value: "'CMD'", help: "the same through /bin/sh -c" },
  grace: {
    type: "string",
    value: "DUR",
    help: "after a client's end of input, how long a silent --exec child may take before it is " +
      "ended, with a warning (default 1s; 0: until it exits) — socat's -t",
  },
  "stall-timeout": {
    type: "string",
    value: "DUR",
    help: "with --broker: a member with more than 256 KiB waiting for it for DUR (or 16 MiB at " +
      "once) is dropped; the others never wait for it (default 5s; 0: never dropped, and the " +
      "others wait)",
  },
  broker: {
    type: "boolean",
    help:
      "relay between all connected clients (each client's bytes go to every other client); implies -k",
  },
  reverse: {
    type: "boolean",
    help: "wait until the endpoints refuse connections (a service stopped)",
  },
  concurrency: {
    type: "string",
    value: "N",
    help: "probes in flight at once (default 512 through libc with --allow-ffi, else 200)",
  },
  // Servers.
  "max-conns": {
    type: "string",
    value: "N",
    help: "at most N clients at once; more are closed at once",
  },
  allow: {
    type: "string",
    multiple: true,
    value: "CIDR",
    help: "accept only clients in these ranges (repeatable)",
  },
  deny: {
    type: "string",
    multiple: true,
    value: "CIDR",
    help: "refuse clients in these ranges (repeatable)",
  },
  // WebSocket.
  binary: {
    type: "boolean",
    help: "WebSocket: each read is one binary message, messages are written as bytes " +
      "(default: text, one line = one message)",
  },
  protocol: {
    type: "string",
    multiple: true,
    value: "NAME",
    help: "WebSocket subprotocol: offered (client) or accepted (server); repeatable",
  },
  origin: { type: "string", value: "URL", help: "WebSocket: the Origin header to send" },
  "close-delay": {
    type: "string",
    value: "DUR",
    help: "WebSocket: after the input ends, send Close once the peer has been quiet DUR " +
      "(default 250ms; 0: at once)",
  },
  "ping-interval": { type: "string", value: "DUR", help: "WebSocket: send a ping every DUR" },
  "ping-timeout": {
    type: "string",
    value: "DUR",
    help: "WebSocket: fail when no pong came DUR after a ping",
  },
  "max-message": {
    type: "string",
    value: "BYTES",
    help: "WebSocket: refuse a message over BYTES with close code 1009 (default 64 MiB)",
  },
  udp: {
    type: "boolean",
    short: "u",
    help: "a UDP scan: closed when ICMP refuses a probe, open|filtered when nothing does " +
      "(open when a reply comes); needs --allow-ffi",
  },
  // Socket options.
  nodelay: { type: "boolean", help: "TCP_NODELAY: send small writes at once (no Nagle delay)" },
  keepalive: {
    type: "boolean",
    optional: true,
    value: "IDLE[,INTERVAL,COUNT]",
    help: "SO_KEEPALIVE: the kernel probes an idle connection; with =IDLE,INTERVAL,COUNT " +
      "(durations, a count) also TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (through libc: " +
      "--allow-ffi), else the system's timings",
  },
  source: {
    type: "string",
    value: "ADDR[:PORT]",
    help: "connect from this local address and/or port (:PORT alone; [v6]:PORT): nc's -s and " +
      "-p; for a unixgram: client, the path to bind (unixgram:PATH)",
  },
  "multicast-join": {
    type: "string",
    multiple: true,
    value: "GROUP[@IFADDR]",
    help: "join this multicast group (IP_ADD_MEMBERSHIP), on the interface with IFADDR " +
      "(default: the system's choice); repeatable",
  },
  "multicast-ttl": {
    type: "string",
    value: "N",
    help: "IP_MULTICAST_TTL of the datagrams sent to a group (default 1: this network)",
  },
  "multicast-loop": {
    type: "boolean",
    optional: true,
    value: "on|off",
    help: "IP_MULTICAST_LOOP: whether this host's own members hear what is sent to a group " +
      "(the system's default: on)",
  },
  broadcast: {
    type: "boolean",
    help: "SO_BROADCAST: may send to a broadcast address (Deno's UDP sockets always may; " +
      "accepted for socat's users)",
  },
  reuseport: {
    type: "boolean",
    help: "SO_REUSEPORT: servers may share the port; the kernel spreads the clients",
  },
  // Proxies.
  proxy: {
    type: "string",
    value: "URL",
    help: "reach the target through a proxy: socks5://, socks5h:// (the proxy resolves names), " +
      "socks4://, socks4a://, http:// (CONNECT); credentials as user:pass@ (never from the " +
      "environment)",
  },
  // The proxy server.
  auth: {
    type: "string",
    multiple: true,
    value: "USER:PASS",
    help: "require this user and password (SOCKS5 username/password, HTTP Basic); repeatable",
  },
  "auth-file": {
    type: "string",
    value: "PATH",
    help:
      "users and passwords, one user:pass a line (# comments); a file without users is an error",
  },
  "allow-target": {
    type: "string",
    multiple: true,
    value: "RULE",
    help: "only these targets: CIDR, address, host name (*.example.com), each with :PORT or " +
      ":FROM-TO, or :PORTS alone; checked after resolving (repeatable)",
  },
  "deny-target": {
    type: "string",
    multiple: true,
    value: "RULE",
    help: "refuse these targets (same forms; repeatable); wins over --allow-target",
  },
  "request-timeout": {
    type: "string",
    value: "DUR",
    help: "close a client whose request is not complete after DUR (default 5s)",
  },
  // ICMP: ping and traceroute.
  count: { type: "string", short: "c", value: "N", help: "stop after N echo requests" },
  deadline: {
    type: "string",
    short: "w",
    value: "DUR",
    help: "stop after DUR, whatever is outstanding",
  },
  "reply-timeout": {
    type: "string",
    short: "W",
    value: "DUR",
    help: "wait this long for replies after the last request (default 10s)",
  },
  size: {
    type: "string",
    short: "s",
    value: "BYTES",
    help: "bytes of data in each request (default 56; 84 on the wire with the headers)",
  },
  ttl: { type: "string", short: "t", value: "N", help: "the TTL (IPv4) or hop limit (IPv6) sent" },
  socket: {
    type: "string",
    value: "KIND",
    help: "raw (root or CAP_NET_RAW), dgram (a ping group) or auto: raw, else dgram (default)",
  },
  queries: {
    type: "string",
    short: "q",
    value: "N",
    help: "probes per hop (default 3)",
  },
  numeric: {
    type: "boolean",
    short: "n",
    help: "print addresses as numbers (sockit always does; accepted for traceroute's users)",
  },
  "max-hops": { type: "string", short: "m", value: "N", help: "give up after N hops (default 30)" },
  "probe-timeout": {
    type: "string",
    short: "w",
    value: "DUR",
    help: "wait this long for the answer to each probe (default 5s)",
  },
  port: {
    type: "string",
    short: "p",
    value: "PORT",
    help: "the first UDP destination port, +1 per probe (default 33434)",
  },
  // Addresses.
  ipv4: {
    type: "boolean",
    short: "4",
    help: "IPv4 only: resolve names to IPv4; port-only binds 127.0.0.1",
  },
  ipv6: {
    type: "boolean",
    short: "6",
    help: "IPv6 only: resolve names to IPv6; port-only binds ::1",
  },
  // TLS.
  tls: { type: "boolean", help: "speak TLS (as with a tls:// endpoint)" },
  cert: {
    type: "string",
    value: "PEM",
    help: "the certificate of a TLS server (with --key); without them an ephemeral self-signed " +
      "certificate (localhost, 127.0.0.1, ::1) is made and its SHA-256 fingerprint printed with -v / --json",
  },
  key: { type: "string", value: "PEM", help: "the private key of --cert" },
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
  },
  insecure: { type: "boolean", help: "do not verify the server's certificate" },
  alpn: {
    type: "string",
    multiple: true,
    value: "PROTO",
    help: "offer or accept this ALPN protocol (repeatable)",
  },
} as const satisfies Record<string, FlagSpec>;

/** The name of a flag. */
export type FlagName = keyof typeof FLAGS;

/** A flag a command takes, with its own help text where its meaning differs there. */
export type FlagUse = FlagName | [FlagName, string];

/** Flags in a group of a command's help (`Options`, `TLS`, `Output`). */
export interface FlagGroup {
  /** The heading. */
  title: string;
  /** The flags, in the order shown. */
  flags: FlagUse[];
}

/** The output flags every command takes. */
export const OUTPUT_FLAGS: FlagName[] = ["verbose", "quiet", "json", "trace", "color", "help"];

/** The limits every server takes (the idle timeout, whose meaning varies, is listed by each). */
export const SERVER_FLAGS: FlagUse[] = ["max-conns", "allow", "deny"];

/** `--timeout` where it limits the whole command (servers, ping, traceroute). */
export const LIFETIME_FLAG: FlagUse = [
  "timeout",
  "stop after DUR: close what is open, end every session, exit 124 (default: no limit)",
];

/** The flags that show the traffic, for every command that relays. */
export const TRAFFIC_FLAGS: FlagUse[] = [
  "stats",
  "hex",
  "hex-file",
  "output",
  "append",
  "progress",
];

/** The name of a flag use. */
export function flagName(use: FlagUse): FlagName {
  return typeof use === "string" ? use : use[0];
}

/** Parsed option values, by long name. */
export type FlagValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Options every command accepts. */
export interface GlobalOptions {
  /** `-v`: connection events on stderr. */
  verbose: boolean;
  /** `-q`: no warnings or events. */
  quiet: boolean;
  /** `--json`: events as JSON lines. */
  json: boolean;
  /** `--trace`: socket operations as system calls. */
  trace: boolean;
  /** `--stats`: bytes, duration and rate per connection, totals for servers. */
  stats: boolean;
  /** `--hex`: a hex dump of the traffic on stderr. */
  hex: boolean;
  /** `--hex-file PATH`: the hex dump goes to this file instead (implies `--hex`). */
  hexFile?: string;
  /** `-o/--output FILE`: a transcript of the payload. */
  output?: string;
  /** `--append`: add to the transcript. */
  append?: boolean;
  /** `--progress`: a refreshing status line on a terminal. */
  progress: boolean;
  /** `--color auto|always|never`. */
  color: "auto" | "always" | "never";
}

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags {
  /** Option values by long name. */
  values: FlagValues;
  /** The options with values, in the order given (`--send`/`--expect` dialogues). */
  sequence: Array<{ name: string; value: string }>;
  /** Arguments that are not options, in order. */
  positionals: string[];
  /** The global options. */
  globals: GlobalOptions;
}

function conciseMessage(error: { code?: string; message: string }): string {
  // node names an option `'-k, --keep-open'`: say the long name, as the user may have typed it.
  const quoted = /'(-[^']+)'/.exec(error.message)?.[1] ?? "";
  const option = /--[\w-]+/.exec(quoted)?.[0] ?? /^-[^\s,]+/.exec(quoted)?.[0] ??
    /'(-[^' ]+)/.exec(error.message)?.[1];
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${option ?? error.message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(error.message)) return `option ${option} needs a value`;
      if (/does not take an argument/.test(error.message)) {
        return `option ${option} does not take a value`;
      }
      if (/ambiguous/.test(error.message)) {
        return `option ${option} needs a value (write ${option}=-… for a value starting with "-")`;
      }
      return error.message.split(". ")[0];
    default:
      return error.message.split(". ")[0];
  }
}

/**
 * Parses `argv` with the flags named in `uses`. Options and positionals may
 * come in any order; `--` ends the options. Throws a {@linkcode UsageError}
 * for an unknown option (one the command does not take) or a bad value.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 *
 * const { values, positionals, globals } = parseFlags(["-v", "8888", "--send", "hi"], ["send", "verbose"]);
 * assert.deepEqual([values.send, positionals, globals.verbose], [["hi"], ["8888"], true]);
 * assert.throws(() => parseFlags(["--hex"], ["verbose"]), /unknown option --hex/);
 * ```
 */
export function parseFlags(argv: string[], uses: readonly FlagUse[]): ParsedFlags {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean }
  > = {};
  const optionalValues: Record<string, string> = {};
  const end = argv.indexOf("--");
  argv = argv.map((arg, i) => {
    const eq = arg.indexOf("=");
    if (!arg.startsWith("--") || eq < 0 || (end >= 0 && i > end)) return arg;
    const name = arg.slice(2, eq);
    const spec = FLAGS[name as keyof typeof FLAGS] as FlagSpec | undefined;
    if (!spec?.optional || !uses.some((use) => flagName(use) === name)) return arg;
    optionalValues[name] = arg.slice(eq + 1);
    return `--${name}`;
  });
  for (const use of uses) {
    const name = flagName(use);
    const spec: FlagSpec = FLAGS[name];
    options[name] = {
      type: spec.type,
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.multiple ? { multiple: true } : {}),
    };
  }
  let parsed: {
    values: FlagValues;
    positionals: string[];
    tokens: Array<{ kind: string; name?: string; value?: string }>;
  };
  try {
    parsed = parseArgs({
      args: argv,
      options,
      allowPositionals: true,
      strict: true,
      tokens: true,
    }) as typeof parsed;
  } catch (err) {
    throw new UsageError(conciseMessage(err as { code?: string; message: string }));
  }
  const values = { ...parsed.values, ...optionalValues };
  const color = (values.color as string | undefined) ?? "auto";
  if (color !== "auto" && color !== "always" && color !== "never") {
    throw new UsageError(
      `option --color must be auto, always or never, not ${JSON.stringify(color)}`,
    );
  }
  if (values.verbose && values.quiet) {
    throw new UsageError("options -v and -q contradict each other");
  }
  return {
    values,
    sequence: parsed.tokens.flatMap((t) =>
      t.kind === "option" && t.name !== undefined && t.value !== undefined
        ? [{ name: t.name, value: t.value }]
        : []
    ),
    positionals: parsed.positionals,
    globals: {
      verbose: values.verbose === true,
      quiet: values.quiet === true,
      json: values.json === true,
      trace: values.trace === true,
      stats: values.stats === true,
      hex: values.hex === true || typeof values["hex-file"] === "string",
      hexFile: values["hex-file"] as string | undefined,
      output: values.output as string | undefined,
      append: values.append === true,
      progress: values.progress === true,
      color,
    },
  };
}

/** The WebSocket flags, for every command that takes a `ws://` endpoint. */
export const WEBSOCKET_FLAGS: FlagUse[] = [
  "binary",
  ["header", "WebSocket client: send this header with the upgrade (repeatable)"],
  "protocol",
  "origin",
  "close-delay",
  "ping-interval",
  "ping-timeout",
  "max-message",
];

/** TCP socket options of a client. */
export const CLIENT_SOCKET_FLAGS: FlagUse[] = [
  "source",
  "nodelay",
  "keepalive",
  ["ttl", "IP_TTL / IPV6_UNICAST_HOPS of the connection's packets (through libc: --allow-ffi)"],
];

/** TCP socket options of a server (its listener, and each accepted connection). */
export const SERVER_SOCKET_FLAGS: FlagUse[] = [
  "reuseport",
  "nodelay",
  "keepalive",
  ["ttl", "IP_TTL / IPV6_UNICAST_HOPS of each connection's packets (through libc: --allow-ffi)"],
];

/** UDP multicast and broadcast options (`udp://` endpoints). */
export const MULTICAST_FLAGS: FlagUse[] = [
  "multicast-join",
  "multicast-ttl",
  "multicast-loop",
  "broadcast",
];
