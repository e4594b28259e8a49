/**
 * `sockit wait ENDPOINT… [-- CMD ARGS…]`: block until every endpoint accepts
 * connections (or, with `--reverse`, refuses them), then optionally run a
 * command — what CI scripts use wait-on and wait-for-it for.
 *
 * @module
 */

import os from "node:os";
import { parseEndpoint, requireEndpoint } from "../net/address.ts";
import {
  exitCodeOf,
  SockitError,
  TimeoutError,
  toSockitError,
  UsageError,
} from "../base/errors.ts";
import { checkRunPermission } from "../tools/exec.ts";
import { formatDuration, jsonLine } from "../base/format.ts";
import type { HttpRequest } from "../protocols/http.ts";
import { parseHttpUrl } from "../protocols/http.ts";
import { waitFor } from "../tools/wait.ts";
import type { StatusSet, WaitResult, WaitTarget } from "../tools/wait.ts";
import type { Command } from "./command.ts";
import { makeReporter } from "./command.ts";
import type { CommandContext } from "./context.ts";
import type { GlobalOptions } from "./flags.ts";
import type { Reporter } from "./report.ts";
import { tlsClientOptions } from "./tls_flags.ts";
import type { Pattern } from "../engine/pattern.ts";
import { compilePatterns, familyFlag } from "./values.ts";
import type { CommandEndpoint } from "./groups.ts";
import { proxyDialer } from "../protocols/proxy.ts";
import { PROXY_GROUP } from "../protocols/proxy_options.ts";
import type { ProxySpec } from "../protocols/proxy_options.ts";
import { TLS_CLIENT_GROUP } from "../protocols/tls_options.ts";
import type { TlsClientFlags } from "../protocols/tls_options.ts";

/** Parsed options of `sockit wait`. */
export interface WaitCommandOptions extends GlobalOptions {
  /** What to wait for: endpoints, URLs, files. */
  targets: WaitTarget[];
  /** Give up after this many ms (0: no limit). */
  timeout: number;
  /** Try each target this often (ms). */
  interval: number;
  /** The limit of one attempt (ms). */
  attemptTimeout?: number;
  /** Wait until the targets are not ready instead. */
  reverse: boolean;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** HTTP: method and headers. */
  request: HttpRequest;
  /** HTTP: accepted statuses. */
  status?: StatusSet;
  /** HTTP: the body must match. */
  body?: Pattern;
  /** HTTPS: TLS client flags. */
  tls?: TlsClientFlags;
  /** The command to run once everything is ready. */
  command?: string[];
  /** `--proxy`: reach TCP and HTTP targets through this proxy. */
  proxy?: ProxySpec;
}

/** A positional as a target: a URL, a file, or an endpoint. */
function waitTarget(text: string): WaitTarget {
  if (/^(https?|http\+unix):\/\//i.test(text)) {
    parseHttpUrl(text); // checks it
    return { url: text };
  }
  const file = /^file:(?:\/\/(?=\/))?(.+)$/.exec(text);
  if (file) return { file: file[1] };
  const endpoint = parseEndpoint(text);
  requireEndpoint(endpoint, { role: "connect", kind: "stream", plain: true }, "wait", text);
  return endpoint;
}

/** `--header 'Name: value'`. */
function headerFlag(text: string): [string, string] {
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s*(.*)$/.exec(text);
  if (!m) throw new UsageError(`option --header needs 'Name: value', not ${JSON.stringify(text)}`);
  return [m[1], m[2]];
}

/** `sockit wait`. */
export const waitCommand: Command<WaitCommandOptions> = {
  name: "wait",
  summary: "block until endpoints, URLs or files are ready (or gone); then run a command",
  usage: "[options] TARGET… [-- CMD ARGS…]",
  description: `Block until every target is ready, then exit 0 — or run CMD and exit with its
status. An endpoint is ready when it accepts a connection (a host name: any of its addresses);
an http:// or https:// URL when a request (GET by default) answers with a 2xx status after
following redirects; a file: when it exists. Each target is tried once per interval, each
attempt within its own limit. On timeout, exit 124 and name each target that never came up,
with the last error or status seen. One result line per target goes to stdout as it is settled
(to stderr when a command follows, so that the command's output stays its own).`,
  sections: [{
    title: "TARGET",
    lines: [
      "5432 (localhost)   db:5432   [::1]:8080   tcp:db:5432   unix:/run/app.sock",
      "http://127.0.0.1:3000/health   https://localhost:8443/   http+unix://%2Frun%2Fapp.sock/up",
      "file:/tmp/ready",
    ],
  }],
  flags: [
    {
      title: "Options",
      flags: [
        ["timeout", "give up after DUR (default 30s; 0: no limit)"],
        "interval",
        "attempt-timeout",
        ["reverse", "wait until the targets are not ready (refused, gone, another status)"],
        ["proxy", "reach TCP and HTTP targets through a proxy (socks5://, socks5h://, http://, …)"],
        ["ipv4", "resolve host names to IPv4 only"],
        ["ipv6", "resolve host names to IPv6 only"],
      ],
      groups: [PROXY_GROUP],
    },
    { title: "HTTP", flags: ["status", "method", "header", "body"] },
    {
      title: "TLS (https:// targets)",
      flags: [
        "cacert",
        "servername",
        "insecure",
        ["cert", "present this client certificate (PEM, with --key): mutual TLS"],
        ["key", "the private key of --cert"],
        "alpn",
      ],
    },
  ],
  output: ["verbose", "quiet", "json", "color", "help"],
  outputHelp: {
    quiet: "no result lines (only the exit status)",
    json: "results as JSON lines",
    verbose: "more on stderr",
  },
  examples: [
    "sockit wait db:5432 redis:6379 --timeout 60s",
    "sockit wait http://127.0.0.1:8080/health -- npm test",
    "sockit wait https://localhost:8443/ --cacert ca.pem --status 2xx,401",
    "sockit wait file:/tmp/ready --timeout 10s",
    "sockit wait --reverse 127.0.0.1:8080 --timeout 10s",
  ],
  passThrough: true,
  endpoints(positionals) {
    if (positionals.length === 0) {
      throw new UsageError("missing target (e.g. sockit wait 127.0.0.1:5432)");
    }
    // What a proxy would be asked to reach: each endpoint, and each URL's server.
    return positionals.flatMap((text): CommandEndpoint[] => {
      const target = waitTarget(text);
      if ("file" in target) return [];
      const endpoint = "url" in target ? parseHttpUrl(target.url).endpoint : target;
      return [{ endpoint, role: "connect", text }];
    });
  },
  parse({ values, given, positionals, globals, endpoints }, command) {
    const targets = positionals.map(waitTarget);
    // An address of the other family than -4/-6 is a usage error before any target is tried.
    for (const { endpoint } of endpoints) {
      if ("hostname" in endpoint) familyFlag(values, endpoint);
    }
    if (command !== undefined && command.length === 0) {
      throw new UsageError("nothing after -- to run");
    }
    const interval = values.interval ?? 250;
    if (interval <= 0) throw new UsageError("option --interval must be more than 0");
    const http = targets.some((t) => "url" in t);
    const httpFlag = (["status", "method", "header", "body"] as const).find((n) => given.has(n));
    if (httpFlag && !http) {
      throw new UsageError(`option --${httpFlag} needs an http:// or https:// URL`);
    }
    const https = targets.some((t) => "url" in t && /^https:/i.test(t.url));
    const tlsFlag = (["cacert", "servername", "insecure", "alpn", "cert", "key"] as const).find((
      n,
    ) => given.has(n));
    if (tlsFlag && !https) throw new UsageError(`option --${tlsFlag} needs an https:// URL`);
    return {
      ...globals,
      proxy: values.proxy,
      targets,
      timeout: values.timeout ?? 30_000,
      interval,
      attemptTimeout: values["attempt-timeout"],
      reverse: values.reverse === true,
      family: familyFlag(values),
      request: {
        method: values.method,
        headers: (values.header ?? []).map(headerFlag),
      },
      status: values.status,
      body: values.body,
      // An https:// target's TLS options (they do not depend on which one).
      tls: https
        ? TLS_CLIENT_GROUP.parse(values, {
          endpoint: parseHttpUrl("https://localhost/").endpoint,
          role: "connect",
          endpoints: [],
          partner: "stdio",
        })
        : undefined,
      command,
    };
  },
  run: runWait,
};

/** A result as a line of text. */
function resultText(result: WaitResult, reverse: boolean): string {
  const state = result.ready
    ? (reverse ? "closed" : "ready")
    : (reverse ? "still open" : "not ready");
  const tries = `${result.attempts} attempt${result.attempts === 1 ? "" : "s"}`;
  const why = result.lastError ? `: ${result.lastError}` : "";
  return `${result.address} ${state} after ${formatDuration(result.elapsedMs)} (${tries})${why}\n`;
}

/**
 * Runs `sockit wait`: 0 when all are ready (or the command's status), 124
 * on timeout.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runWait(parseCommand(waitCommand, ["127.0.0.1:5432"]), ctx);
 * ```
 */
export async function runWait(options: WaitCommandOptions, ctx: CommandContext): Promise<number> {
  using reporter = makeReporter(options, ctx, "wait");
  const encoder = new TextEncoder();
  let results: WaitResult[];
  try {
    if (options.command) checkRunPermission(options.command[0]);
    if (options.body) await compilePatterns("body", [options.body]);
    const tls = options.tls ? tlsClientOptions(options.tls, reporter) : undefined;
    const pending: Promise<number>[] = [];
    results = await waitFor(options.targets, {
      timeout: options.timeout,
      interval: options.interval,
      attemptTimeout: options.attemptTimeout,
      reverse: options.reverse,
      family: options.family,
      base: options.proxy ? proxyDialer(options.proxy) : undefined,
      signal: ctx.signal,
      request: options.request,
      status: options.status,
      body: options.body,
      tls,
      onResult: (result) => {
        if (options.quiet) return;
        const line = options.json
          ? jsonLine("wait", {
            endpoint: result.endpoint,
            address: result.address,
            ready: result.ready,
            reverse: options.reverse,
            elapsedMs: result.elapsedMs,
            attempts: result.attempts,
            lastError: result.lastError ?? null,
            lastStatus: result.lastStatus ?? null,
          })
          : resultText(result, options.reverse);
        // With a command to run, stdout is the command's: wait's own lines go to stderr.
        if (options.command) ctx.stderr.write(line);
        else pending.push(ctx.stdout.write(encoder.encode(line)));
      },
    });
    await Promise.all(pending);
  } catch (err) {
    if (ctx.signal.aborted) return exitCodeOf(ctx.signal.reason);
    return reporter.fail(err, "wait");
  }
  const late = results.filter((r) => !r.ready);
  if (late.length) {
    const names = late.map((r) => `${r.address}${r.lastError ? ` (${r.lastError})` : ""}`).join(
      ", ",
    );
    return reporter.fail(
      new TimeoutError(
        `timed out after ${formatDuration(options.timeout)}; ${
          options.reverse ? "still open" : "not ready"
        }: ${names}`,
        { op: "wait" },
      ),
    );
  }
  if (!options.command) return 0;
  return await runCommand(options.command, ctx, reporter);
}

/** Runs the command after `--` with sockit's stdio; resolves to its exit status. */
async function runCommand(
  argv: string[],
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  await ctx.stdout.flush();
  try {
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const stop = () => child.kill("SIGTERM");
    ctx.signal.addEventListener("abort", stop, { once: true });
    const status = await child.status;
    ctx.signal.removeEventListener("abort", stop);
    // A child killed by a signal exits 128 + its number, as shells report it.
    const signals = os.constants.signals as Record<string, number | undefined>;
    return status.signal ? 128 + (signals[status.signal] ?? 9) : status.code;
  } catch (err) {
    const e = toSockitError(err, "exec", argv[0]);
    if (e.code === "ENOENT") {
      reporter.fail(
        new SockitError("command not found", { op: "exec", address: argv[0], code: "ENOENT" }),
      );
      return 127;
    }
    return reporter.fail(e);
  }
}
