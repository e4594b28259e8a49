/**
 * The one module that writes diagnostics (DESIGN §4): `-v` event lines,
 * `--json` event objects, `--trace` lines, warnings and errors. Everything
 * goes to a text sink that is stderr in the CLI; payload never passes here.
 *
 * @module
 */

import { styleText } from "node:util";
import { exitCodeOf, SockitError, toSockitError, UsageError } from "./errors.ts";
import { formatBytes, formatDuration, formatRate } from "./format.ts";
import { hexString, HexTap } from "./hexdump.ts";
import type { CertificateInfo, HandshakeInfo } from "./tls.ts";

/** Where diagnostics are written (stderr in the CLI, a buffer in tests). */
export interface TextSink {
  /** Writes `text` (one or more whole lines). */
  write(text: string): void;
}

/** Options of {@linkcode Reporter}. */
export interface ReporterOptions {
  /** `-v`: print connection events as text. */
  verbose?: boolean;
  /** `-q`: print no warnings and no events (errors still print). */
  quiet?: boolean;
  /** `--json`: print events and errors as one JSON object per line. */
  json?: boolean;
  /** `--trace`: print socket operations in the form of system calls. */
  trace?: boolean;
  /** `--stats`: bytes, duration and rate of each connection, and totals for servers. */
  stats?: boolean;
  /** `--hex`: dump every chunk; to this sink (`--hex-file`) or, when absent, with the rest. */
  hex?: boolean;
  /** Where `--hex` dumps go instead of the diagnostics sink (`--hex-file`). */
  hexSink?: TextSink;
  /** `--progress`: one refreshing status line (only when the sink is a terminal). */
  progress?: boolean;
  /** The terminal's width, to keep the `--progress` line on one row. */
  columns?: () => number | undefined;
  /** Colour the `sockit:` prefix, warnings and errors. */
  color?: boolean;
  /** The subcommand, for the usage hint (`Try 'sockit listen --help'`). */
  command?: string;
}

/** Colours `text`; the reporter has already decided that colour is wanted. */
function paint(format: "dim" | "red" | "yellow" | "cyan", text: string): string {
  return styleText(format, text, { validateStream: false });
}

/**
 * One JSON line: `{"event": …, "time": …, …fields}`. Events (stderr) and the
 * results of `wait` and `scan` (stdout) share it.
 *
 * @example Usage
 * ```ts
 * import { jsonLine } from "./report.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(JSON.parse(jsonLine("port", { port: 22 })).port, 22);
 * ```
 */
export function jsonLine(event: string, fields: Record<string, unknown>): string {
  return JSON.stringify({ event, time: new Date().toISOString(), ...fields }) + "\n";
}

/** Byte counts and duration of a finished connection. */
export interface ClosedInfo {
  /** Bytes written to the peer. */
  sent: number;
  /** Bytes received from the peer. */
  received: number;
  /** How long the connection lasted, in milliseconds. */
  durationMs: number;
  /** Why it ended, when not a normal close (`reset`, `idle timeout`, …). */
  reason?: string;
}

/** Something whose byte counts `--progress` shows: `[received, sent]`. */
export interface Counted {
  /** Bytes received and sent so far. */
  readonly bytes: readonly [number, number];
}

/** How often the `--progress` line is redrawn (at most 10 times a second). */
export const PROGRESS_INTERVAL = 100;

/**
 * Reports events, traces, warnings and errors, as `-v` text or `--json` lines.
 *
 * @example Usage
 * ```ts
 * import { Reporter } from "./report.ts";
 * import assert from "node:assert/strict";
 *
 * let out = "";
 * const reporter = new Reporter({ write: (t) => out += t }, { verbose: true });
 * reporter.listening("127.0.0.1:41663", "tcp");
 * assert.deepEqual(out, "sockit: listening on 127.0.0.1:41663\n");
 * ```
 */
export class Reporter {
  #out: TextSink;
  #sink: TextSink;
  #options: ReporterOptions;
  #progress?: {
    active: Map<Counted, number | undefined>;
    done: [number, number];
    started: number;
    samples: Array<[number, number, number]>;
    timer?: ReturnType<typeof setInterval>;
    shown: boolean;
  };
  #totals = { connections: 0, sent: 0, received: 0, started: performance.now() };
  #hexOut?: TextSink;

  /** Creates a reporter writing to `sink`. */
  constructor(sink: TextSink, options: ReporterOptions = {}) {
    this.#out = sink;
    this.#options = options;
    // Every line goes through here, so that a progress line on show is cleared first.
    this.#sink = {
      write: (text: string) => {
        if (this.#progress?.shown) {
          this.#out.write("\r\x1b[K");
          this.#progress.shown = false;
        }
        this.#out.write(text);
      },
    };
    if (options.progress) {
      this.#progress = { active: new Map(), done: [0, 0], started: 0, samples: [], shown: false };
    }
    if (options.hex) {
      const target = options.hexSink ?? this.#sink;
      let failed = false;
      // A dump that cannot be written stops; the payload goes on. A --hex-file
      // failure is said once on stderr.
      this.#hexOut = {
        write: (text: string) => {
          if (failed) return;
          try {
            target.write(text);
          } catch (err) {
            failed = true;
            if (options.hexSink) {
              this.warn(`${(err as Error)?.message ?? err}; the hex dump stops here`);
            }
          }
        },
      };
    }
  }

  /**
   * Shows `counted` in the `--progress` line until {@linkcode Reporter.untrack};
   * `total` is the size of what is being sent, when known (a file), for the ETA.
   */
  track(counted: Counted, total?: number): void {
    const p = this.#progress;
    if (!p) return;
    if (p.active.size === 0) {
      p.started = performance.now();
      p.samples = [];
      p.timer = setInterval(() => this.#drawProgress(), PROGRESS_INTERVAL);
    }
    p.active.set(counted, total);
  }

  /** Stops showing `counted`; the line is cleared when nothing is left to show. */
  untrack(counted: Counted): void {
    const p = this.#progress;
    if (!p || !p.active.delete(counted)) return;
    p.done[0] += counted.bytes[0];
    p.done[1] += counted.bytes[1];
    if (p.active.size === 0) {
      clearInterval(p.timer);
      p.timer = undefined;
      if (p.shown) this.#out.write("\r\x1b[K");
      p.shown = false;
    }
  }

  #drawProgress(): void {
    const p = this.#progress!;
    let received = p.done[0];
    let sent = p.done[1];
    let total: number | undefined;
    let sentOfTotal = 0;
    for (const [counted, size] of p.active) {
      received += counted.bytes[0];
      sent += counted.bytes[1];
      if (size !== undefined) {
        total = (total ?? 0) + size;
        sentOfTotal += counted.bytes[1];
      }
    }
    const now = performance.now();
    p.samples.push([now, received, sent]);
    if (p.samples.length > 10) p.samples.shift();
    // The rates over the last second of samples (since the start until there are two).
    const [t0, r0, s0] = p.samples.length > 1 ? p.samples[0] : [p.started, 0, 0];
    const perSecond = (bytes: number) => now > t0 ? (bytes * 1000) / (now - t0) : 0;
    const rate = perSecond(received - r0 + sent - s0);
    const pace = `${formatBytes(rate)}/s, ${formatDuration(now - p.started)}`;
    let line = `received ${formatBytes(received)}, sent ${formatBytes(sent)}, ${pace}`;
    if (total !== undefined) {
      // Sending a file: its share and ETA first, where a narrow terminal keeps them.
      const percent = total > 0 ? Math.floor((sentOfTotal * 100) / total) : 100;
      // The ETA counts on the sending rate alone: what comes back does not shorten the upload.
      const sendRate = perSecond(sent - s0);
      const eta = sendRate > 0 && sentOfTotal < total
        ? ` ETA ${formatDuration(((total - sentOfTotal) * 1000) / sendRate)}`
        : "";
      line = `sent ${formatBytes(sent)} of ${formatBytes(total)} (${percent}%)${eta}, ${pace}, ` +
        `received ${formatBytes(received)}`;
    }
    // One row only: a line that wraps cannot be redrawn or cleared with \r.
    // The last column is left free, so the cursor never wraps either.
    const width = this.#options.columns?.();
    const room = width === undefined ? Infinity : width - 1 - "sockit: ".length;
    const chars = [...line];
    if (chars.length > room) line = chars.slice(0, Math.max(0, room - 1)).join("") + "…";
    this.#out.write(`\r${this.#prefix()} ${line}\x1b[K`);
    p.shown = true;
  }

  /** Whether `--hex` is on. */
  get hexing(): boolean {
    return this.#hexOut !== undefined;
  }

  /** Whether `--trace` is on; callers skip building trace text when it is not. */
  get tracing(): boolean {
    return this.#options.trace === true;
  }

  /** Whether events are printed at all (`-v` or `--json`, and not `-q`). */
  get eventsOn(): boolean {
    return !this.#options.quiet && (this.#options.verbose === true || this.#options.json === true);
  }

  #prefix(): string {
    return this.#options.color ? paint("dim", "sockit:") : "sockit:";
  }

  #json(event: string, fields: Record<string, unknown>): void {
    this.#sink.write(jsonLine(event, fields));
  }

  /** Prints an event: text with `-v`, an object with `--json`. */
  event(event: string, text: string, fields: Record<string, unknown> = {}): void {
    if (!this.eventsOn) return;
    if (this.#options.json) this.#json(event, fields);
    else this.#sink.write(`${this.#prefix()} ${text}\n`);
  }

  /** One socket operation, tagged with its listener (`L1`) or connection (`#1`). */
  trace(tag: string, call: string): void {
    if (!this.#options.trace) return;
    if (this.#options.json) this.#json("trace", { tag, call });
    else {
      const line = `[${tag}] ${call}`;
      this.#sink.write(
        `${this.#prefix()} ${this.#options.color ? paint("cyan", line) : line}\n`,
      );
    }
  }

  /** The listening event, with the real bound address (DESIGN §4). */
  listening(address: string, transport: string): void {
    const suffix = transport === "tcp" || transport === "unix" ? "" : ` (${transport})`;
    this.event("listening", `listening on ${address}${suffix}`, { address, transport });
  }

  /** A connection was accepted from `remote`. */
  accepted(conn: number, remote: string, local: string): void {
    this.event("accepted", `connection from ${remote}`, { conn, remote, local });
  }

  /** A client was closed at once, before any byte was read or written. */
  rejected(conn: number, remote: string, reason: string): void {
    this.event("rejected", `rejected ${remote}: ${reason}`, { conn, remote, reason });
  }

  /** What a TLS handshake negotiated (`-v`): ALPN, version, cipher, the peer's certificate. */
  tls(conn: number, remote: string, info: HandshakeInfo): void {
    const parts = [
      info.version,
      info.cipher,
      info.alpn ? `ALPN ${info.alpn}` : "no ALPN",
      info.peer ? `certificate ${info.peer.subject}, SHA-256 ${info.peer.fingerprint}` : undefined,
    ].filter(Boolean);
    this.event("tls", `TLS with ${remote}: ${parts.join(", ")}`, {
      conn,
      remote,
      alpn: info.alpn,
      ...(info.version ? { version: info.version } : {}),
      ...(info.cipher ? { cipher: info.cipher } : {}),
      ...(info.peer
        ? { peerSubject: info.peer.subject, peerFingerprint: info.peer.fingerprint }
        : {}),
    });
  }

  /** A TLS server's certificate (`-v`): subject, SHA-256 fingerprint, names; ephemeral or from a file. */
  certificate(info: CertificateInfo, ephemeral: boolean): void {
    const kind = ephemeral ? "ephemeral self-signed certificate" : "certificate";
    this.event(
      "certificate",
      `TLS ${kind} ${info.subject}${
        info.names ? ` (${info.names})` : ""
      }, SHA-256 ${info.fingerprint}`,
      {
        subject: info.subject,
        fingerprint: info.fingerprint,
        names: info.names ?? null,
        ephemeral,
        validTo: info.validTo ?? null,
      },
    );
  }

  /** A connection to `remote` was established. */
  connected(conn: number, remote: string, local: string): void {
    this.event("connected", `connected to ${remote}`, { conn, remote, local });
  }

  /** A connection ended (and, with `--stats`, its figures). */
  closed(conn: number, remote: string, info: ClosedInfo): void {
    this.#totals.connections++;
    this.#totals.sent += info.sent;
    this.#totals.received += info.received;
    if (this.#options.stats) {
      this.#stats(`stats ${remote}:`, { conn, remote }, info.sent, info.received, info.durationMs);
    }
    const detail = `sent ${formatBytes(info.sent)}, received ${formatBytes(info.received)}, ` +
      formatDuration(info.durationMs);
    this.event(
      "closed",
      `closed ${remote} (${detail}${info.reason ? `; ${info.reason}` : ""})`,
      { conn, remote, ...info },
    );
  }

  /**
   * A `--hex` dumper for connection `conn` with `remote`, or `undefined`
   * without `--hex`. With `--json` (and no `--hex-file`) the dump is `hex`
   * events: `conn`, `remote`, `direction` (`sent`/`received`), `offset`,
   * `length`, `data` (hex digits), one per 4 KiB slice.
   */
  hexTap(conn: number, remote: string): HexTap | undefined {
    if (!this.#hexOut) return undefined;
    const json = this.#options.json && !this.#options.hexSink;
    return new HexTap(
      this.#hexOut,
      `#${conn} ${remote}`,
      json
        ? (direction, slice, offset) =>
          jsonLine("hex", {
            conn,
            remote,
            direction: direction === ">" ? "sent" : "received",
            offset,
            length: slice.length,
            data: hexString(slice),
          })
        : undefined,
    );
  }

  /** `--stats` totals of a server at exit: connections, bytes each way, duration, rates. */
  totals(): void {
    if (!this.#options.stats) return;
    const t = this.#totals;
    const connections = `${t.connections} connection${t.connections === 1 ? "" : "s"}`;
    this.#stats(
      `stats total, ${connections}:`,
      { scope: "total", connections: t.connections },
      t.sent,
      t.received,
      performance.now() - t.started,
    );
  }

  #stats(
    label: string,
    fields: Record<string, unknown>,
    sent: number,
    received: number,
    ms: number,
  ): void {
    // Asked for by name, so -q (which silences warnings and events) keeps them.
    const durationMs = Math.round(ms);
    if (this.#options.json) {
      this.#json("stats", {
        ...fields,
        sent,
        received,
        durationMs,
        sentPerSecond: ms > 0 ? Math.round((sent * 1000) / ms) : null,
        receivedPerSecond: ms > 0 ? Math.round((received * 1000) / ms) : null,
      });
    } else {
      this.#sink.write(
        `${this.#prefix()} ${label} sent ${formatBytes(sent)} (${formatRate(sent, ms)}), ` +
          `received ${formatBytes(received)} (${formatRate(received, ms)}) in ${
            formatDuration(ms)
          }\n`,
      );
    }
  }

  /** A note shown with `-v` (e.g. a stale socket file was removed). */
  info(text: string, fields: Record<string, unknown> = {}): void {
    this.event("info", text, { message: text, ...fields });
  }

  /** A warning: shown unless `-q`. */
  warn(text: string): void {
    if (this.#options.quiet) return;
    if (this.#options.json) this.#json("warning", { message: text });
    else {
      const label = this.#options.color ? paint("yellow", "warning:") : "warning:";
      this.#sink.write(`${this.#prefix()} ${label} ${text}\n`);
    }
  }

  /**
   * Reports a failure — one line, plus a hint line where it helps — and
   * returns the exit code for it.
   */
  fail(error: unknown, op = "sockit", address?: string): number {
    if (error instanceof UsageError) return this.usage(error);
    const err = error instanceof SockitError ? error : toSockitError(error, op, address);
    if (this.#options.json) {
      this.#json("error", {
        code: err.code,
        exitCode: err.exitCode,
        message: err.message,
        ...(err.hint ? { hint: err.hint } : {}),
      });
    } else {
      const message = this.#options.color ? paint("red", err.message) : err.message;
      this.#sink.write(`${this.#prefix()} ${message}\n`);
      if (err.hint) this.#sink.write(`${this.#prefix()} hint: ${err.hint}\n`);
    }
    return err.exitCode;
  }

  /** Reports a usage error (two lines at most) and returns exit code 2. */
  usage(error: UsageError): number {
    const help = this.#options.command ? `sockit ${this.#options.command} --help` : "sockit --help";
    if (this.#options.json) {
      this.#json("error", { code: "EUSAGE", exitCode: error.exitCode, message: error.message });
    } else {
      this.#sink.write(`${this.#prefix()} ${error.message}\n`);
      this.#sink.write(`${this.#prefix()} hint: try '${help}'\n`);
    }
    return exitCodeOf(error);
  }
}
