/**
 * `sockit nc …`: OpenBSD netcat's command line mapped onto sockit's
 * commands, so that `alias nc='sockit nc'` keeps scripts working. The
 * options are read getopt-style (`-lvp 8080`, `-w3`, options anywhere);
 * a listen or a client becomes `listen`/`connect` options, `-z` becomes a
 * scan with netcat's silence on stdout and its `-v` lines. An nc option that
 * sockit does not do is refused by name.
 *
 * @module
 */

import { parseEndpoint, pathEndpoint, schemeFor, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { exitCodeOf, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import { formatHost, ipFamily } from "../net/ip.ts";
import { proxyDialer } from "../protocols/proxy.ts";
import { parseProxyUrl } from "../protocols/proxy_options.ts";
import type { ProxySpec } from "../protocols/proxy_options.ts";
import { resolve } from "../net/resolve.ts";
import { parsePorts, scan, scanUdp } from "../tools/scan.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import { runConnect } from "./connect.ts";
import type { ConnectCommandOptions } from "./connect.ts";
import type { CommandContext } from "./context.ts";
import type { GlobalOptions } from "./flags.ts";
import { EXEC_GRACE, runListen } from "./listen.ts";
import type { ListenCommandOptions } from "./listen.ts";
import { sourceAddress, sourceFamily, sourceFor } from "../net/socket_options.ts";
import { scanSource } from "./scan.ts";
import type { SourceAddress } from "../net/tcp_libc.ts";

/** nc's options that take a value. */
const WITH_VALUE = new Set([..."IiMmOPpqsTVWwXx"]);

/** nc's switches. */
const SWITCHES = new Set([..."46CDdFhklNnrStUuvz"]);

/** What sockit does not do of nc, and why (or what instead). */
const REFUSED: Record<string, string> = {
  D: "socket debugging",
  F: "passing the socket to stdout's fd",
  I: "TCP receive buffer sizes",
  i: "delays between lines (-i)",
  M: "TTL on the socket (comes with --ttl)",
  m: "a minimum TTL",
  O: "TCP send buffer sizes",
  r: "random port order",
  S: "TCP MD5 signatures",
  T: "TOS and keywords",
  t: "telnet negotiation",
  V: "routing tables",
  W: "a limit on received packets",
};

/** The parsed nc command line. */
export interface NcOptions extends GlobalOptions {
  /** What to do. */
  mode: "listen" | "connect" | "scan";
  /** Listen or connect here. */
  endpoint?: Endpoint;
  /** `-z`: the host and ports to scan (`-u`: UDP). */
  scan?: { host: string; ports: number[]; udp?: boolean };
  /** `-k`. */
  keepOpen: boolean;
  /** `-w SECS` in ms. */
  wait?: number;
  /** `-q SECS` in ms. */
  quit?: number;
  /** `-N`. */
  shutdown: boolean;
  /** `-d`. */
  noStdin: boolean;
  /** `-C`. */
  crlf: boolean;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** `-n`: addresses only, no names. */
  numeric: boolean;
  /** `-s ADDR` / `-p PORT` of a client (`-s PATH` with `-U -u`): where it binds first. */
  source?: SourceAddress;
  /** `-x` (with `-X`, `-P`): the proxy to connect through. */
  proxy?: ProxySpec;
}

/** getopt: switches (and clusters of them), options with values, positionals anywhere. */
function getopt(argv: string[]): { opts: Map<string, string | true>; positionals: string[] } {
  const opts = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const c = arg[j];
      if (REFUSED[c]) {
        throw new UsageError(`nc option -${c} is not supported by sockit nc (${REFUSED[c]})`);
      }
      if (WITH_VALUE.has(c)) {
        const value = j + 1 < arg.length ? arg.slice(j + 1) : argv[++i];
        if (value === undefined) throw new UsageError(`nc option -${c} needs a value`);
        opts.set(c, value);
        break;
      }
      if (!SWITCHES.has(c)) throw new UsageError(`unknown nc option -${c}`);
      opts.set(c, true);
    }
  }
  return { opts, positionals };
}

/** nc's seconds (`-w 3`, `-q 1`) in ms. */
function seconds(option: string, value: string | true | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d+(\.\d+)?$/.test(value)) {
    throw new UsageError(
      `nc option -${option} needs a number of seconds, not ${JSON.stringify(value)}`,
    );
  }
  return Number(value) * 1000;
}

/** A port given to nc: a number (0 to listen on any free port) or a service name. */
function port(text: string | undefined, what: string): number {
  if (text === undefined) throw new UsageError(`nc: missing ${what}`);
  if (/^\d+$/.test(text) && Number(text) <= 65535) return Number(text);
  const [p] = parsePorts(text);
  return p;
}

/**
 * nc's proxy options as a proxy: `-x host[:port]`, `-X 4|5|connect` (default
 * 5: SOCKS5 with names resolved by the proxy, as nc sends them; 4: SOCKS4,
 * resolved here; connect: HTTP CONNECT), `-P user` (a user name without a
 * password: nc would prompt for one on a terminal, which sockit does not).
 */
function ncProxy(opts: Map<string, string | true>): ProxySpec | undefined {
  const address = opts.get("x");
  const protocol = opts.get("X");
  const user = opts.get("P");
  if (address === undefined) {
    if (protocol !== undefined || user !== undefined) {
      throw new UsageError("nc options -X and -P need -x proxy_address[:port]");
    }
    return undefined;
  }
  const scheme = { "4": "socks4", "5": "socks5h", connect: "http" }[String(protocol ?? "5")];
  if (!scheme) {
    throw new UsageError(`nc -X ${JSON.stringify(protocol)}: expected 4, 5 or connect`);
  }
  const text = String(address);
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ??
    (/^[^:]+(?::\d+)?$/.test(text) ? /^([^:]+)(?::(\d+))?$/.exec(text) : /^(.+)()$/.exec(text));
  const [, host, portText] = m!;
  const auth = typeof user === "string" ? `${encodeURIComponent(user)}@` : "";
  return parseProxyUrl(`${scheme}://${auth}${formatHost(host)}${portText ? `:${portText}` : ""}`);
}

/**
 * Parses an nc command line (without `nc`).
 *
 * @example Usage
 * ```ts
 * import { parseNcArgs } from "./nc.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseNcArgs(["-lvp", "8080"]).endpoint, { form: "host-port", scheme: "tcp", port: 8080 });
 * assert.equal(parseNcArgs(["-zv", "127.0.0.1", "20-30"]).scan?.ports.length, 11);
 * assert.throws(() => parseNcArgs(["-t", "h", "23"]), /-t is not supported by sockit nc/);
 * ```
 */
export function parseNcArgs(argv: string[]): NcOptions {
  const { opts, positionals } = getopt(argv);
  const has = (c: string) => opts.has(c);
  if (has("4") && has("6")) throw new UsageError("nc options -4 and -6 contradict each other");
  const udp = has("u");
  const unix = has("U");
  // -u: datagrams; -U: a socket path (-U -u: a Unix datagram socket, unixgram:).
  const kind = udp ? "datagram" : "stream";
  const unixScheme = schemeFor(kind, "path").scheme;
  const family = has("4") ? 4 : has("6") ? 6 : undefined;
  const scheme = schemeFor(kind, "host-port").scheme;
  const common = {
    verbose: has("v"),
    quiet: false,
    json: false,
    trace: false,
    stats: false,
    hex: false,
    progress: false,
    color: "auto" as const,
    keepOpen: has("k"),
    wait: seconds("w", opts.get("w")),
    quit: seconds("q", opts.get("q")),
    shutdown: has("N"),
    noStdin: has("d"),
    crlf: has("C"),
    family: family as 4 | 6 | undefined,
    numeric: has("n"),
  };
  const numericHost = (host: string) => {
    if (common.numeric && ipFamily(host) === undefined) {
      throw new UsageError(`nc -n: ${JSON.stringify(host)} is not a numeric address`);
    }
    return host;
  };
  const proxy = ncProxy(opts);
  if (proxy && (has("l") || udp || unix)) {
    throw new UsageError("nc -x: a proxy is for TCP clients (not with -l, -u or -U)");
  }
  // A client's -s ADDR and -p PORT: where it binds before it connects (-U -u: its own path).
  const sourceText = opts.get("s") as string | undefined;
  const sourcePort = opts.get("p") as string | undefined;
  const bare = sourceText?.replace(/^\[(.*)\]$/, "$1");
  const ipSource = (target: Endpoint) =>
    bare === undefined && sourcePort === undefined ? undefined : sourceFor(
      sourceAddress(
        `${bare === undefined ? "" : formatHost(bare)}${
          sourcePort === undefined ? "" : `:${port(sourcePort, "port")}`
        }`,
      ),
      target,
    );
  if (has("z")) {
    if (has("l")) throw new UsageError("nc options -l and -z do not mix");
    const [host, ...ports] = positionals;
    if (!host || ports.length === 0) throw new UsageError("nc -z needs a host and ports");
    if (udp && proxy) throw new UsageError("nc -zu: a proxy tunnels TCP, not UDP");
    if (sourcePort !== undefined) {
      throw new UsageError(
        "nc -z -p: a scan probes many ports at once, so it takes no source port",
      );
    }
    return {
      ...common,
      mode: "scan",
      proxy,
      source: scanSource(
        sourceText === undefined ? undefined : sourceAddress(formatHost(bare!)),
        proxy !== undefined,
      ),
      scan: { host: numericHost(host), ports: parsePorts(ports.join(",")), udp },
    };
  }
  if (has("k") && !has("l")) throw new UsageError("nc option -k needs -l");
  if (has("l")) {
    if (unix) {
      if (positionals.length !== 1) throw new UsageError("nc -lU needs a socket path");
      return {
        ...common,
        mode: "listen",
        endpoint: pathEndpoint(unixScheme, positionals[0]),
      };
    }
    const given = opts.get("p");
    let host: string | undefined;
    let p: number;
    if (typeof given === "string") {
      if (positionals.length > 1) {
        throw new UsageError("nc -l -p PORT takes at most a host besides");
      }
      host = positionals[0] ?? bare;
      p = port(given, "port");
    } else {
      if (positionals.length === 0 || positionals.length > 2) {
        throw new UsageError("nc -l needs a port (nc -l [host] port)");
      }
      host = positionals.length === 2 ? positionals[0] : bare;
      p = port(positionals[positionals.length - 1], "port");
    }
    return {
      ...common,
      mode: "listen",
      endpoint: host === undefined ? { form: "host-port", scheme, port: p } : {
        form: "host-port",
        scheme,
        hostname: numericHost(host.replace(/^\[(.*)\]$/, "$1")),
        port: p,
      },
    };
  }
  if (unix) {
    if (positionals.length !== 1) throw new UsageError("nc -U needs a socket path");
    if (has("p")) throw new UsageError("nc -p: a Unix socket has no port");
    if (sourceText !== undefined && !udp) {
      throw new UsageError("nc -s: a Unix stream client binds no path (only -U -u does)");
    }
    return {
      ...common,
      mode: "connect",
      endpoint: pathEndpoint(unixScheme, positionals[0]),
      ...(sourceText !== undefined ? { source: { path: sourceText } } : {}),
    };
  }

  if (positionals.length !== 2) throw new UsageError("nc needs a host and a port (nc host port)");
  const [host, portText] = positionals;
  const hostname = numericHost(host.replace(/^\[(.*)\]$/, "$1"));
  // A port range as a client (nc host 20-30) tries them in turn, as nc does; sockit takes the first.
  const endpoint = parseEndpoint(`${scheme}://${formatHost(hostname)}:${port(portText, "port")}`);
  return { ...common, mode: "connect", proxy, source: ipSource(endpoint), endpoint };
}

/** `sockit nc`. */
export const ncCommand: Command<NcOptions> = {
  name: "nc",
  summary: "OpenBSD netcat's command line, mapped onto the commands above",
  usage: "[-46CdklNnUuvz] [-p port] [-q secs] [-w secs] [-X proto] [-x addr[:port]] [host] [port]",
  description: `Runs an OpenBSD nc command line with sockit, so that alias nc='sockit nc' keeps
scripts working. Options may be clustered (-lvp 8080) and come anywhere. Like nc, a client
keeps its write side open at the end of input unless -N is given. Unlike nc, -l listens on
127.0.0.1 unless a host is given (write 0.0.0.0 for every interface). nc options that sockit
does not do (-t, -i, -r, -T, …) are refused by name.`,
  sections: [{
    title: "nc options",
    lines: [
      "-l [host] port, -l -p port    listen (sockit listen); -k keeps accepting (-k)",
      "host port                     connect (sockit connect); -u UDP, -U a Unix socket path",
      "-z host port…                 scan ports (ranges like 20-30); -v says each result",
      "-w secs                       give up connecting after secs (a scan: per port)",
      "-q secs                       after the end of input, quit once the peer is quiet secs",
      "-N                            shut down the write side at the end of input",
      "-d                            do not read stdin (--recv-only)",
      "-C                            send line ends as CRLF (--crlf)",
      "-4, -6, -n, -v                IPv4/IPv6 only, numeric addresses only, verbose",
      "-x host[:port] [-X 4|5|connect] [-P user]   through a SOCKS4, SOCKS5 or HTTP CONNECT proxy",
    ],
  }],
  flags: [],
  output: ["help"],
  examples: [
    "sockit nc -l 8080 > upload.bin",
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockit nc -N example.com 80",
    "sockit nc -zv 127.0.0.1 20-25",
    "echo ping | sockit nc -u -w1 127.0.0.1 53",
  ],
  parse() {
    throw new Error("sockit nc parses its own command line");
  },
  parseArgv: parseNcArgs,
  run: runNc,
};

/**
 * Runs `sockit nc`.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runNc(parseNcArgs(["-zv", "127.0.0.1", "22"]), ctx);
 * ```
 */
export async function runNc(options: NcOptions, ctx: CommandContext): Promise<number> {
  if (options.mode === "scan") return await ncScan(options, ctx);
  if (options.mode === "listen") {
    const listen: ListenCommandOptions = {
      ...options,
      endpoint: options.endpoint!,
      access: { allow: [], deny: [] },
      keepOpen: options.keepOpen,
      broker: false,
      grace: EXEC_GRACE,
      sendOnly: false,
      recvOnly: options.noStdin,
      noHalfClose: !options.shutdown,
      crlf: options.crlf,
      groups: {},
    };
    return await runListen(listen, ctx);
  }
  const connect: ConnectCommandOptions = {
    ...options,
    endpoint: options.endpoint!,
    sendOnly: false,
    recvOnly: options.noStdin,
    noHalfClose: !options.shutdown,
    crlf: options.crlf,
    connectTimeout: options.wait,
    // UDP: nc waits for replies until -w (sockit's default reply wait otherwise).
    idleTimeout: transportOf(options.endpoint!).kind === "datagram" ? options.wait : undefined,
    quitAfterInput: options.quit,
    groups: {
      ...(options.source ? { source: options.source } : {}),
      ...(options.proxy ? { proxy: options.proxy } : {}),
    },
    family: sourceFamily(options.source, options.family),
  };
  return await runConnect(connect, ctx);
}

/** `nc -z`: nothing on stdout; with -v, nc's lines on stderr; exit 0 when a port is open. */
async function ncScan(options: NcOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "nc");
  const { host, ports, udp } = options.scan!;
  try {
    if (udp) {
      // nc -zu: "succeeded" for every port that did not refuse (open or open|filtered).
      const [address] = await resolve(host, { op: "nc", family: options.family });
      const found = await scanUdp(address, ports, {
        timeout: options.wait,
        signal: ctx.signal,
        source: options.source,
      });
      if (options.verbose) {
        for (const r of found) {
          reporter.verbatim(`Connection to ${host} ${r.port} port [udp/*] succeeded!\n`);
        }
      }
      return found.length > 0 ? 0 : 1;
    }
    const [address] = options.proxy
      ? [host]
      : await resolve(host, { op: "nc", family: options.family });
    const open = await scan(address, ports, {
      timeout: options.wait,
      signal: ctx.signal,
      dialer: options.proxy ? proxyDialer(options.proxy) : undefined,
      source: options.source,
    });
    if (options.verbose) {
      const openPorts = new Set(open.map((r) => r.port));
      for (const port of ports) {
        reporter.verbatim(
          openPorts.has(port)
            ? `Connection to ${host} ${port} port [tcp/*] succeeded!\n`
            : `nc: connect to ${host} port ${port} (tcp) failed: Connection refused\n`,
        );
      }
    }
    return open.length > 0 ? 0 : 1;
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    if (err instanceof SockitError || err instanceof UsageError) return reporter.fail(err);
    return reporter.fail(toSockitError(err, "nc", host));
  }
}
