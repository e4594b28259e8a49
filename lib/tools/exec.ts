/**
 * `--exec 'PROG ARGS'` and `--sh-exec 'CMD'`: a child process per
 * connection, its stdin and stdout wired to the connection as one duplex
 * for the relay.
 *
 * Everything the child writes reaches the client before the connection
 * closes (ncat lost the tail of child output for years): the child's output
 * is read to its end and only then is the connection half-closed. A child
 * that stops reading its input (exits early, or closes stdin) does not cut
 * its output short either: further input is discarded.
 *
 * Each child runs in a session of its own (`setsid`, through
 * `Deno.Command`'s `detached`), so its pid is the id of a process group
 * that holds it and every descendant that did not leave it: ending the
 * child signals that whole group, and nothing it started outlives it.
 *
 * @module
 */

import { ExitCode, SockitError, UsageError } from "../base/errors.ts";
import type { DatagramSocket, PeerAddress } from "../net/datagram.ts";
import { formatUnixName, kernelName } from "../net/ip.ts";
import type { UnixName } from "../net/ip.ts";
import type { Duplex } from "../engine/relay.ts";

/**
 * Splits a command line into words like a POSIX shell does for quoting —
 * `'…'`, `"…"`, backslash escapes — without expanding anything.
 *
 * @example Usage
 * ```ts
 * import { splitCommand } from "./exec.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(splitCommand(`tr a-z 'A-Z'`), ["tr", "a-z", "A-Z"]);
 * assert.deepEqual(splitCommand(`printf "%s\\n" it\\'s`), ["printf", "%s\\n", "it's"]);
 * ```
 */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) {
        throw new UsageError(`cannot parse command ${JSON.stringify(text)}: unterminated '`);
      }
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && j + 1 < text.length && '"\\$`'.includes(text[j + 1])) j++;
        word += text[j];
      }
      if (j >= text.length) {
        throw new UsageError(`cannot parse command ${JSON.stringify(text)}: unterminated "`);
      }
      inWord = true;
      i = j;
    } else if (c === "\\") {
      if (i + 1 >= text.length) {
        throw new UsageError(
          `cannot parse command ${JSON.stringify(text)}: a lone "\\" at the end`,
        );
      }
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** How long a child and its descendants have after SIGTERM before they get SIGKILL. */
export const KILL_AFTER = 2000;

/** How often, while ending a child, sockit looks whether its process group is gone. */
const GROUP_POLL = 50;

/**
 * How often sockit looks whether what a child left running when it exited
 * is still there (until the session ends it).
 */
const LEFTOVER_POLL = 1000;

/** Resolves after `ms`, or as soon as `early` settles; leaves no timer behind. */
async function pause(ms: number, early?: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slept = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await (early ? Promise.race([slept, early.then(() => {}, () => {})]) : slept);
  clearTimeout(timer);
}

/** Options of {@linkcode ChildStream}. */
export interface ChildOptions {
  /** Program and arguments. */
  argv: string[];
  /** Extra environment for the child (added to sockit's own). */
  env?: Record<string, string>;
}

/**
 * A child process as a {@linkcode Duplex}: `read()` is its stdout,
 * `write()` its stdin, `closeWrite()` closes its stdin, `close()` ends it
 * and everything it started: SIGTERM to its process group, SIGKILL
 * {@linkcode KILL_AFTER} ms later to what is left. Its stderr is sockit's
 * stderr; it has no controlling terminal (a session of its own).
 *
 * @example Usage
 * ```ts
 * import { ChildStream } from "./exec.ts";
 * import assert from "node:assert/strict";
 *
 * const child = new ChildStream({ argv: ["tr", "a-z", "A-Z"] });
 * await child.write(new TextEncoder().encode("hi"));
 * await child.closeWrite();
 * const buf = new Uint8Array(8);
 * const n = await child.read(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "HI");
 * assert.equal(await child.read(buf), null);
 * await child.status;
 * child.close();
 * ```
 */
export class ChildStream implements Duplex, Disposable {
  /** The running child. */
  readonly process: Deno.ChildProcess;
  /** `exec PROG`, for messages. */
  readonly label: string;
  /** Resolves when the child has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #leftover?: Uint8Array;
  #pending?: Promise<ReadableStreamReadResult<Uint8Array>>;
  #inputGone = false;
  #exited = false;
  #closed = false;
  #linger?: number;
  #cancelled = Promise.withResolvers<void>();
  #endedRunning = false;
  #silenced = false;
  #ending?: Promise<void>;
  #watch?: Promise<void>;
  #groupGone = false;
  #childOnly = false;
  #closeRequested = Promise.withResolvers<void>();

  /** Starts the child. Throws like `Deno.Command.spawn()` (e.g. NotFound, NotCapable). */
  constructor(options: ChildOptions) {
    const [program, ...args] = options.argv;
    this.label = `exec ${program}`;
    this.process = new Deno.Command(program, {
      args,
      env: options.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      // setsid(): a process group (and session) of its own, with the child's pid as its id.
      detached: true,
    }).spawn();
    this.status = this.process.status.then((status) => {
      this.#exited = true;
      this.#watch = this.#watchLeftovers();
      return status;
    });
    this.#reader = this.process.stdout.getReader();
    this.#writer = this.process.stdin.getWriter();
    // A child that closes its stdin makes pending writes fail: that is not an error here.
    this.#writer.closed.catch(() => (this.#inputGone = true));
  }

  /** Reads the child's output (after {@linkcode ChildStream.cancelRead}, until it pauses). */
  async read(p: Uint8Array): Promise<number | null> {
    let chunk = this.#leftover;
    this.#leftover = undefined;
    while (!chunk) {
      const next = this.#pending ??= this.#reader.read();
      // Wait for output; once cancelled, for at most the linger time.
      const cancelled = this.#cancelled.promise.then(() => "cancelled" as const);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const quiet = this.#linger === undefined ? undefined : new Promise<"quiet">((resolve) => {
        timer = setTimeout(() => resolve("quiet"), this.#linger);
      });
      const result = await Promise.race([next, quiet ?? cancelled]);
      clearTimeout(timer);
      if (result === "quiet") {
        this.#silenced = true;
        return null;
      }
      if (result === "cancelled") continue;
      this.#pending = undefined;
      if (result.done) return null;
      chunk = result.value;
    }
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#leftover = chunk.subarray(n);
    return n;
  }

  /**
   * Ends reading once the child's output pauses for `linger` ms (the client
   * has gone: what the child still writes promptly is delivered).
   */
  cancelRead(linger = 0): void {
    // A linger of Infinity (`--grace 0`): read until the child closes its output.
    if (linger === Infinity) return;
    this.#linger = Math.min(this.#linger ?? linger, linger);
    this.#cancelled.resolve();
  }

  /** Writes to the child's input; once the child has stopped reading, input is discarded. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#inputGone) return p.length;
    try {
      // The relay reuses its buffer: hand the stream a copy.
      await this.#writer.write(p.slice());
    } catch {
      this.#inputGone = true;
    }
    return p.length;
  }

  /** Closes the child's input (it sees end of file). */
  async closeWrite(): Promise<void> {
    if (this.#inputGone) return;
    this.#inputGone = true;
    try {
      await this.#writer.close();
    } catch {
      // The child had closed it already.
    }
  }

  /**
   * Whether {@linkcode ChildStream.close} had to end a child that was still
   * running (it may have had more to say).
   */
  get endedRunning(): boolean {
    return this.#silenced && this.#endedRunning;
  }

  /**
   * Ends the child if it still runs, with every process it left in its
   * group (background jobs included), and releases its pipes.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endedRunning = !this.#exited;
    this.#closeRequested.resolve();
    this.#ending = this.#endGroup();
    this.#reader.cancel().catch(() => {});
    if (!this.#inputGone) this.#writer.abort().catch(() => {});
  }

  /**
   * Sends `signal` to the child's process group; false once the group is
   * gone. Where Deno lets sockit signal its child but no process group
   * (`--allow-run=PROG`), to the child alone.
   */
  #signal(signal: Deno.Signal): boolean {
    if (this.#childOnly) {
      if (this.#exited) return false;
      try {
        this.process.kill(signal);
        return true;
      } catch {
        return false;
      }
    }
    if (this.#groupGone) return false;
    try {
      Deno.kill(-this.process.pid, signal);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable) {
        this.#childOnly = true;
        return this.#signal(signal);
      }
      // ESRCH: no process is left in it (EPERM: none that sockit may signal).
      this.#groupGone = true;
      return false;
    }
  }

  /** Whether a process is left in the child's group (one that has exited counts until reaped). */
  #groupAlive(): boolean {
    if (this.#childOnly) return !this.#exited;
    if (this.#groupGone) return false;
    try {
      // Signal 0: the look kill(2) offers, delivering nothing (Deno takes it as a number).
      Deno.kill(-this.process.pid, 0 as unknown as Deno.Signal);
      return true;
    } catch (err) {
      // A runtime that refuses signal 0: SIGCONT does nothing to a running process.
      if (err instanceof TypeError) return this.#signal("SIGCONT");
      if (err instanceof Deno.errors.NotCapable) {
        this.#childOnly = true;
        return !this.#exited;
      }
      this.#groupGone = true;
      return false;
    }
  }

  /**
   * After the child has exited: what it left running in its group keeps the
   * group's id from being given to another process only while it runs, so
   * sockit looks now and then, and never signals the group once it is gone.
   */
  async #watchLeftovers(): Promise<void> {
    while (!this.#closed && this.#groupAlive()) {
      await pause(LEFTOVER_POLL, this.#closeRequested.promise);
    }
  }

  /**
   * SIGTERM to the group (and SIGCONT, so that a stopped process sees it);
   * then, until the group is gone, a look every {@linkcode GROUP_POLL} ms —
   * and SIGKILL to whatever is left {@linkcode KILL_AFTER} ms after the
   * SIGTERM. A process that has exited counts until it is reaped (an
   * orphan's zombie waits for init), so this may take the whole time.
   */
  async #endGroup(): Promise<void> {
    if (!this.#signal("SIGTERM")) return;
    this.#signal("SIGCONT");
    const deadline = Date.now() + KILL_AFTER;
    // The child first: Deno reaps it, and it leaves the group.
    await pause(KILL_AFTER, this.status);
    while (Date.now() < deadline && this.#groupAlive()) {
      await pause(Math.min(GROUP_POLL, deadline - Date.now()));
    }
    this.#signal("SIGKILL");
    await this.status.catch(() => {});
  }

  /**
   * Resolves once the child has exited and, after {@linkcode ChildStream.close},
   * its group has been ended (the relay waits for it after `close()`).
   */
  get released(): Promise<void> {
    const group = () => Promise.all([this.#ending, this.#watch]);
    return this.status.then(group, group).then(() => {}, () => {});
  }

  /** Ends the child and releases its pipes (`using child = …`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Bytes of datagrams a child may have waiting for its stdin before more are dropped. */
export const CHILD_INPUT_QUEUE = 256 * 1024;

/**
 * A child as the far end of a datagram session (`listen udp:// --exec`,
 * socat's `UDP-RECVFROM,fork`): each datagram from the peer is written to
 * the child's stdin as it is, and each read of its stdout (at most
 * `maxDatagram` bytes) is one datagram back. Writes to the child never hold
 * up the caller: they queue (at most {@linkcode CHILD_INPUT_QUEUE} bytes;
 * past that, datagrams are dropped, as UDP drops them, and `send()` rejects
 * once to say so). When the child closes its output, `receive()` rejects
 * and the session ends. `close()` closes the child's input and ends the
 * child `grace` ms later at the latest (at once when `signal` aborts).
 *
 * @example Usage
 * ```ts
 * import { ChildStream, ChildDatagrams } from "./exec.ts";
 * import assert from "node:assert/strict";
 *
 * const child = new ChildDatagrams(new ChildStream({ argv: ["cat"] }), 1472, 100);
 * await child.send(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(8);
 * const [n] = await child.receive(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, n)), "hi");
 * child.close();
 * await child.closed;
 * ```
 */
export class ChildDatagrams implements DatagramSocket {
  /** The trace tag: the child's label. */
  readonly tag: string;
  /** `exec PROG`. */
  readonly address: string;
  /** The largest datagram sent back. */
  readonly maxDatagram: number;
  /** Resolves once the child has exited (and its pipes are released). */
  readonly closed: Promise<void>;
  #child: ChildStream;
  #grace: number;
  #closing = false;
  #writing: Promise<unknown> = Promise.resolve();
  #queued = 0;
  #dropping = false;
  #deadline?: ReturnType<typeof setTimeout>;
  #signal?: AbortSignal;
  #onAbort = () => this.#child.close();

  /**
   * Wraps a running child; `grace` is `--grace` in ms (Infinity: until it
   * exits); `signal` (the command's) ends it at once.
   */
  constructor(child: ChildStream, maxDatagram: number, grace: number, signal?: AbortSignal) {
    this.#child = child;
    this.tag = child.label;
    this.address = child.label;
    this.maxDatagram = maxDatagram;
    this.#grace = grace;
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.closed = child.status.then(() => {}, () => {}).then(() => {
      clearTimeout(this.#deadline);
      signal?.removeEventListener("abort", this.#onAbort);
      // What the child left running in its group ends with it.
      child.close();
      return child.released;
    });
    if (signal?.aborted) child.close();
  }

  /** One read of the child's output, as one datagram from the "peer" (the child). */
  async receive(buf: Uint8Array): Promise<[number, PeerAddress]> {
    const n = await this.#child.read(buf.subarray(0, this.maxDatagram));
    if (n === null) {
      // Its output is over: nothing more to wait for.
      this.#child.close();
      throw new SockitError(this.#closing ? "ended" : "closed its output", {
        op: this.#child.label,
      });
    }
    return [n, { family: "child", pid: this.#child.process.pid }];
  }

  /** Queues one datagram's bytes for the child's input; rejects once when it drops some. */
  send(data: Uint8Array): Promise<number> {
    if (this.#closing) return Promise.resolve(0);
    if (this.#queued + data.length > CHILD_INPUT_QUEUE) {
      if (this.#dropping) return Promise.resolve(0);
      this.#dropping = true;
      return Promise.reject(
        new SockitError(
          `not reading its input: datagrams dropped while ${CHILD_INPUT_QUEUE / 1024} KiB wait`,
          { op: this.#child.label },
        ),
      );
    }
    const copy = data.slice();
    this.#queued += copy.length;
    this.#writing = this.#writing.then(() => this.#child.write(copy)).finally(() => {
      this.#queued -= copy.length;
      if (this.#queued === 0) this.#dropping = false;
    });
    return Promise.resolve(copy.length);
  }

  /** Closes the child's input (after what is queued); ends the child `grace` ms later at most. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#writing.finally(() => this.#child.closeWrite());
    // What it writes promptly still goes back; a child that goes on is ended at the grace.
    this.#child.cancelRead(this.#grace);
    if (Number.isFinite(this.#grace)) {
      this.#deadline = setTimeout(() => this.#child.close(), this.#grace);
      // Cleared when the child exits (or now, if it has already).
      this.closed.then(() => clearTimeout(this.#deadline));
    }
    if (this.#signal?.aborted) this.#child.close();
  }
}

/**
 * Fails with exit 126 unless Deno lets sockit run `program`, so that a
 * missing `--allow-run` is reported when the server starts, not when the
 * first client arrives.
 *
 * @example Usage
 * ```ts
 * import { checkRunPermission } from "./exec.ts";
 *
 * checkRunPermission("tr"); // throws (exit code 126) without --allow-run
 * ```
 */
export function checkRunPermission(program: string): void {
  const { state } = Deno.permissions.querySync({ name: "run", command: program });
  if (state !== "granted") {
    throw new SockitError(`permission denied: requires run access to ${JSON.stringify(program)}`, {
      op: "exec",
      exitCode: ExitCode.PermissionDenied,
      code: "EPERM",
      hint:
        `run deno with --allow-run (or --allow-run=${program}) (see "Permissions" in the README)`,
    });
  }
}

/**
 * The environment a child gets for its connection: `SOCKIT_REMOTE_ADDR`,
 * `SOCKIT_REMOTE_PORT`, `SOCKIT_LOCAL_ADDR`, `SOCKIT_LOCAL_PORT` (a Unix
 * peer has an empty port, an unnamed one an empty address, an abstract one
 * `@name`), and `SOCKIT_PROTO`: the socket's protocol as its scheme names it
 * (`tcp`, `tls`, `unix`, `udp`, `unixgram`).
 *
 * @example Usage
 * ```ts
 * import { connectionEnv } from "./exec.ts";
 * import assert from "node:assert/strict";
 *
 * const env = connectionEnv(
 *   { transport: "tcp", hostname: "127.0.0.1", port: 5000 },
 *   { transport: "tcp", hostname: "127.0.0.1", port: 8888 },
 *   "tcp",
 * );
 * assert.deepEqual([env.SOCKIT_REMOTE_PORT, env.SOCKIT_PROTO], ["5000", "tcp"]);
 * // An unnamed Unix peer (Deno gives no path), and an abstract name.
 * const unix = connectionEnv(
 *   { transport: "unix", path: null as unknown as string },
 *   { transport: "unix", path: "\0app" },
 *   "unix",
 * );
 * assert.deepEqual([unix.SOCKIT_REMOTE_ADDR, unix.SOCKIT_LOCAL_ADDR], ["", "@app"]);
 * ```
 */
export function connectionEnv(
  remote: Deno.Addr | PeerAddress,
  local: Deno.Addr | PeerAddress | undefined,
  proto: string,
): Record<string, string> {
  // An abstract name starts with a NUL byte, which no environment can hold: "@name", as ss shows it.
  const unix = (name: UnixName) => name.path ? formatUnixName(name).replaceAll("\0", "") : "";
  const part = (addr: Deno.Addr | PeerAddress | undefined): [string, string] => {
    if (!addr) return ["", ""];
    if ("hostname" in addr) return [addr.hostname, String(addr.port)];
    if ("transport" in addr) return [unix(kernelName("path" in addr ? addr.path : null)), ""];
    if (addr.family === "child") return ["", ""];
    if (addr.family === "local") return [unix(addr), ""];
    return [addr.address, String("port" in addr ? addr.port : addr.protocol)];
  };
  const [remoteAddr, remotePort] = part(remote);
  const [localAddr, localPort] = part(local);
  return {
    SOCKIT_REMOTE_ADDR: remoteAddr,
    SOCKIT_REMOTE_PORT: remotePort,
    SOCKIT_LOCAL_ADDR: localAddr,
    SOCKIT_LOCAL_PORT: localPort,
    SOCKIT_PROTO: proto,
  };
}

/**
 * Whether `program` can be found, as far as sockit may look: `missing` when
 * it is surely not there (a path that does not exist, a name in no `PATH`
 * directory), `found`, or `unknown` when the permissions given do not let
 * sockit look (then the first client finds out).
 *
 * @example Usage
 * ```ts
 * import { findProgram } from "./exec.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(findProgram("/bin/sh"), "found");
 * assert.equal(findProgram("/no/such/program"), "missing");
 * ```
 */
export function findProgram(program: string): "found" | "missing" | "unknown" {
  const may = (desc: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(desc).state === "granted";
  const isFile = (path: string): boolean | undefined => {
    if (!may({ name: "read", path })) return undefined;
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  };
  if (program.includes("/")) {
    const found = isFile(program);
    return found === undefined ? "unknown" : found ? "found" : "missing";
  }
  if (!may({ name: "env", variable: "PATH" })) return "unknown";
  let unknown = false;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    const found = isFile(`${dir}/${program}`);
    if (found) return "found";
    if (found === undefined) unknown = true;
  }
  return unknown ? "unknown" : "missing";
}
