/**
 * Test helpers: run the sockit CLI — in this process through its command
 * context (real sockets, stdio in memory), or as a subprocess where only a
 * process shows the behaviour (the command comes from `$SOCKIT`, default
 * `deno run` with the narrow permission flags a user would pass; with
 * `$SOCKIT` set every run is a process, so the same suite checks a binary) —
 * real peers, and checksums.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { concatBytes } from "../lib/cli/context.ts";
import type { CommandContext } from "../lib/cli/context.ts";
import { main } from "../lib/cli/main.ts";
import { SignalInterrupt } from "../lib/base/errors.ts";
import type { Input } from "../lib/engine/stdio.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DENO_CONFIG = new URL("../deno.json", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Permission flags a user passes for TCP. */
export const NET = ["--allow-net"];

/** Permission flags for a Unix socket at `path` (Deno 2.9 needs all three). */
export function unixPerms(path: string): string[] {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  return [`--allow-read=${dir}`, `--allow-write=${dir}`, `--allow-net=unix:${path}`];
}

/** The command prefix under test: `$SOCKIT`, or `deno run` with `perms`. */
export function sockitCommand(perms: string[]): string[] {
  const custom = Deno.env.get("SOCKIT");
  if (custom) return custom.trim().split(/\s+/);
  return [Deno.execPath(), "run", "--no-prompt", `--config=${DENO_CONFIG}`, ...perms, MAIN];
}

/** Whether the suite runs against a compiled binary (permissions baked in). */
export const customCommand = Deno.env.get("SOCKIT") !== undefined;

/** Environment for every child: no update checks, no colour surprises. */
export const CHILD_ENV = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };

/** Options of {@linkcode spawnSockit} and {@linkcode runSockit}. */
export interface SockitRunOptions {
  /** Permission flags (ignored when `$SOCKIT` is set or in-process). */
  perms?: string[];
  /** Bytes for stdin; `"null"` for /dev/null; `"piped"` to write yourself. */
  stdin?: Uint8Array | string | "null" | "piped";
  /** Extra environment (in-process: `NO_COLOR` is honoured). */
  env?: Record<string, string>;
  /** In-process: stdin counts as a terminal (the peer closing ends a session at once). */
  terminal?: boolean;
  /**
   * Run a real process even when the command could run in-process: for
   * what only a process shows (exit at once on a second signal, permission
   * flags, the stdio workers, connection numbers that start at #1, strace).
   */
  process?: boolean;
}

/** What a finished run gives. */
export interface SockitResult {
  /** Exit code. */
  code: number;
  /** Everything on stdout. */
  stdout: Uint8Array;
  /** Everything on stderr. */
  stderr: string;
  /** stdout as text. */
  text: string;
}

/** What a test counts: how many runs were processes and how many in-process. */
export const runCounts = { process: 0, inProcess: 0 };

/** A running sockit, a process or in-process, with its stderr collected as it comes. */
export abstract class SockitRun {
  #stderr = "";
  #ended = false;
  #waiters: Array<() => void> = [];

  /** Where to write stdin (with `stdin: "piped"`). */
  abstract readonly stdin: WritableStream<Uint8Array>;

  /** Everything on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Adds stderr text (subclasses). */
  protected addStderr(text: string): void {
    this.#stderr += text;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** stderr has ended (subclasses). */
  protected endStderr(): void {
    this.#ended = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Waits until stderr matches `pattern` (or the run ends); returns the match. */
  async waitForStderr(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return await this.#waitFor(() => pattern.exec(this.#stderr), `${pattern}`, timeoutMs);
  }

  /** Waits until `pattern` occurs `count` times on stderr. */
  async waitForCount(pattern: RegExp, count: number, timeoutMs = 15_000): Promise<void> {
    const global = new RegExp(pattern.source, "g");
    await this.#waitFor(
      () => ((this.#stderr.match(global)?.length ?? 0) >= count ? true : null),
      `${count} × ${pattern}`,
      timeoutMs,
    );
  }

  async #waitFor<T>(check: () => T | null, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = check();
      if (m) return m;
      if (this.#ended || Date.now() > deadline) {
        throw new Error(`stderr never showed ${what}; stderr was:\n${this.#stderr}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the listening event (`-v` line or `--json` object); returns the bound port. */
  async listeningPort(): Promise<number> {
    const m = await this.waitForStderr(
      /listening on (?:\[[^\]]+\]|[^\s:]+):(\d+)|"event":"listening".*?"address":"[^"]*:(\d+)"/,
    );
    return Number(m[1] ?? m[2]);
  }

  /** Sends a signal (in-process: stops the command as the signal would). */
  abstract kill(signal?: Deno.Signal): void;

  /** Waits for the end; returns code, stdout and stderr. */
  abstract result(): Promise<SockitResult>;
}

/** A sockit child process. */
export class SockitProcess extends SockitRun {
  readonly child: Deno.ChildProcess;
  readonly stdin: WritableStream<Uint8Array>;
  #stderrDone: Promise<void>;
  #stdout: Promise<Uint8Array>;
  #pipedStdin = false;

  constructor(args: string[], options: SockitRunOptions = {}) {
    super();
    runCounts.process++;
    const [cmd, ...prefix] = sockitCommand(options.perms ?? NET);
    const stdinMode = options.stdin === undefined || options.stdin === "null" ? "null" : "piped";
    const child = new Deno.Command(cmd, {
      args: [...prefix, ...args],
      stdin: stdinMode,
      stdout: "piped",
      stderr: "piped",
      env: { ...CHILD_ENV, ...options.env },
    }).spawn();
    this.child = child;
    this.stdin = stdinMode === "piped" ? child.stdin : new WritableStream();
    this.#pipedStdin = options.stdin === "piped";
    this.#stdout = new Response(child.stdout).bytes();
    this.#stderrDone = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.addStderr(chunk);
      }
      this.endStderr();
    })();
    const input = options.stdin;
    if (input !== undefined && input !== "null" && input !== "piped") {
      const bytes = typeof input === "string" ? encoder.encode(input) : input;
      const writer = child.stdin.getWriter();
      writer.write(bytes).then(() => writer.close()).catch(() => {});
    }
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  async result(): Promise<SockitResult> {
    if (this.#pipedStdin) {
      // A stdin the test kept open ends with the process.
      this.child.status.then(() => this.child.stdin.close()).catch(() => {});
    }
    const [status, stdout] = await Promise.all([this.child.status, this.#stdout]);
    await this.#stderrDone;
    return { code: status.code, stdout, stderr: this.stderr, text: decoder.decode(stdout) };
  }
}

/**
 * Standard input that a test writes to as it goes, as the command sees a
 * pipe: each write is one read(2) (a record for datagrams), end of input
 * when the test closes it.
 */
class PipeInput implements Input {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #cancelled = false;
  #linger = 0;
  #wake?: () => void;

  push(bytes: Uint8Array): void {
    if (bytes.length) this.#chunks.push(bytes.slice());
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async #next(): Promise<Uint8Array | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      if (this.#cancelled && this.#linger <= 0) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arrived = await new Promise<boolean>((resolve) => {
        this.#wake = () => resolve(true);
        if (this.#cancelled) timer = setTimeout(() => resolve(false), this.#linger);
      });
      clearTimeout(timer);
      this.#wake = undefined;
      if (!arrived) return null;
    }
    return this.#chunks[0];
  }

  async read(p: Uint8Array): Promise<number | null> {
    const head = await this.#next();
    if (head === null) return null;
    const n = Math.min(p.length, head.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    return n;
  }

  async readRecord(max: number): Promise<Uint8Array | null> {
    const head = await this.#next();
    if (head === null) return null;
    if (head.length <= max) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(max);
    return head.subarray(0, max);
  }

  cancel(linger = 0): void {
    this.#linger = this.#cancelled ? Math.min(this.#linger, linger) : linger;
    this.#cancelled = true;
    this.#wake?.();
  }
}

/** sockit run in this process, through the command context: real sockets, stdio in memory. */
export class InProcessSockit extends SockitRun {
  readonly stdin: WritableStream<Uint8Array>;
  #stop = new AbortController();
  #done: Promise<SockitResult>;

  constructor(args: string[], options: SockitRunOptions = {}) {
    super();
    runCounts.inProcess++;
    const input = options.stdin;
    const pipe = new PipeInput();
    if (input === undefined || input === "null") pipe.end();
    else if (input !== "piped") {
      pipe.push(typeof input === "string" ? encoder.encode(input) : input);
      pipe.end();
    }
    this.stdin = new WritableStream({
      write: (chunk) => pipe.push(chunk),
      close: () => pipe.end(),
      abort: () => pipe.end(),
    });
    const out: Uint8Array[] = [];
    const ctx: CommandContext = {
      stdin: pipe,
      stdout: {
        write: (p) => (out.push(p.slice()), Promise.resolve(p.length)),
        flush: () => Promise.resolve(),
      },
      stderr: { write: (text) => this.addStderr(text) },
      signal: this.#stop.signal,
      stdinIsTerminal: options.terminal === true,
      noColor: options.env?.NO_COLOR !== undefined || CHILD_ENV.NO_COLOR !== undefined,
    };
    this.#done = main(args, ctx).then((code) => {
      this.endStderr();
      const stdout = concatBytes(out);
      return { code, stdout, stderr: this.stderr, text: decoder.decode(stdout) };
    });
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (signal !== "SIGINT" && signal !== "SIGTERM") {
      throw new Error(`in-process runs take SIGINT and SIGTERM only, not ${signal}`);
    }
    if (!this.#stop.signal.aborted) this.#stop.abort(new SignalInterrupt(signal));
  }

  result(): Promise<SockitResult> {
    return this.#done;
  }
}

/**
 * Starts sockit with `args`: in this process (through the command context)
 * unless `$SOCKIT` names a command to test or `options.process` asks for a
 * real process.
 */
export function spawnSockit(args: string[], options: SockitRunOptions = {}): SockitRun {
  return customCommand || options.process
    ? new SockitProcess(args, options)
    : new InProcessSockit(args, options);
}

/** Runs sockit with `args` to completion (see {@linkcode spawnSockit}). */
export function runSockit(args: string[], options: SockitRunOptions = {}): Promise<SockitResult> {
  return spawnSockit(args, options).result();
}

/** SHA-256 of bytes, hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Random bytes of any size (crypto.getRandomValues takes at most 64 KiB a call). */
export function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

/**
 * The path of a tool the test needs. A missing tool fails the test loudly
 * (it is never skipped); `.ci/run` installs every tool used here.
 */
export function requireTool(name: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const path = `${dir}/${name}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not in this directory.
    }
  }
  throw new Error(
    `MISSING TOOL: this test needs "${name}" on PATH (deno task peers installs it; deno task peers --list shows every peer)`,
  );
}

/** A free TCP port on 127.0.0.1 (nothing listens on it when returned). */
export function freePort(hostname = "127.0.0.1"): number {
  const probe = Deno.listen({ hostname, port: 0 });
  const port = probe.addr.port;
  probe.close();
  return port;
}

/** How many sockets this process has open (from /proc, through `ls`: --allow-run only). */
export async function openSockets(): Promise<number> {
  const out = await new Deno.Command("ls", { args: ["-l", `/proc/${Deno.pid}/fd`] }).output();
  return decoder.decode(out.stdout).split("\n").filter((l) => l.includes("socket:")).length;
}

/**
 * Asserts that this process has no more sockets open than `before`, giving
 * sockets being closed elsewhere (a terminated worker's) up to a second.
 */
export async function assertNoSocketsLeft(before: number, what: string): Promise<void> {
  let after = await openSockets();
  for (let i = 0; i < 20 && after > before; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    after = await openSockets();
  }
  if (after > before) throw new Error(`${after - before} ${what} left open`);
}

/** A fresh temporary directory for Unix sockets (short path). */
export function tempSocketDir(): string {
  return Deno.makeTempDirSync({ dir: "/tmp", prefix: "sockit-" });
}

/** Reads a connection to EOF. */
export async function readAll(conn: Pick<Deno.Conn, "read">): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concatBytes(chunks);
}

/** Writes all of `bytes` to a connection. */
export async function writeAll(conn: Pick<Deno.Conn, "write">, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Asserts a usage error: exit 2 and at most two lines on stderr. */
export function assertUsageError(result: { code: number; stderr: string }, pattern: RegExp): void {
  assert.equal(result.code, 2, `expected exit 2, got ${result.code}; stderr: ${result.stderr}`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.ok(lines.length <= 2, `usage error printed ${lines.length} lines:\n${result.stderr}`);
  assert.match(result.stderr, pattern);
  assert.doesNotMatch(result.stderr, /\bat .*\.ts:\d+|Stack|Uncaught/);
}

/** Deterministic pseudo-random chunks (xorshift32), cheap enough for 256 MiB. */
export function* noise(total: number, chunkSize: number, seed: number): Generator<Uint8Array> {
  let x = seed >>> 0 || 1;
  const chunk = new Uint8Array(chunkSize);
  const words = new Uint32Array(chunk.buffer);
  for (let sent = 0; sent < total; sent += chunkSize) {
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    yield chunk.subarray(0, Math.min(chunkSize, total - sent));
  }
}

/** Whether anything (a file, a socket, a dangling link) is at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export { decoder, encoder };

/**
 * A self-signed certificate for localhost and 127.0.0.1 that rustls takes
 * as a server's (CA:FALSE, serverAuth), made with openssl in `dir`.
 */
export function localhostCertificate(dir: string): { cert: string; key: string } {
  const out = new Deno.Command(requireTool("openssl"), {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-days",
      "30",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=serverAuth",
    ],
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  if (!out.success) throw new Error(decoder.decode(out.stderr));
  return { cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
}

/** Waits until `path` exists (a peer's socket file), 2.5 s at most. */
export async function waitForPath(path: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      Deno.statSync(path);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`${path} never appeared`);
}
