/**
 * The one module that writes diagnostics: `-v` event lines, `--json` event
 * objects, `--trace` lines, warnings, errors, `--stats`, `--hex` and the
 * `--progress` line. It implements the library's {@linkcode Events}, so
 * servers and transfers report through it; everything goes to a text sink
 * that is stderr in the CLI. Payload never passes here. How a line looks is
 * the {@linkcode EventFormat}'s business; the progress line, the totals and
 * the hex dump are modules of their own.
 *
 * @module
 */

import { exitCodeOf, SockitError, toSockitError, UsageError } from "../base/errors.ts";
import type {
  ChunkTap,
  ClosedInfo,
  Counted,
  Events,
  LayerInfo,
  PeerInfo,
} from "../engine/events.ts";
import { formatBytes, formatDuration } from "../base/format.ts";
import { HexDumper } from "../engine/hexdump.ts";
import type { CertificateInfo } from "../protocols/tls.ts";
import type { TraceFn } from "../engine/trace.ts";
import { DEFAULT_SCHEME } from "../net/schemes.ts";
import { jsonFormat, linePrefix, textFormat } from "./event_format.ts";
import type { EventFormat } from "./event_format.ts";
import { ProgressLine } from "./progress.ts";
import { statsRecord, StatsTotals } from "./stats.ts";
import type { StatsRecord } from "./stats.ts";

/** Where diagnostics are written (stderr in the CLI, a buffer in tests). */
export interface TextSink {
  /** Writes `text` (one or more whole lines). */
  write(text: string): void;
  /** Releases the sink (a `--hex-file`), if it holds anything. */
  close?(): void;
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
  /** `-o/--output`: the payload both ways, written as it moves; closed with the reporter. */
  transcript?: { writeSync(p: Uint8Array): number; close(): void };
  /** `--hex`: dump every chunk; to `hexSink` (`--hex-file`) or, when absent, with the rest. */
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
 * assert.equal(out, "sockit: listening on 127.0.0.1:41663\n");
 * ```
 */
export class Reporter implements Events, Disposable {
  #sink: TextSink;
  #options: ReporterOptions;
  #format: EventFormat;
  #progress?: ProgressLine;
  #totals = new StatsTotals();
  #hex?: HexDumper;

  /** Creates a reporter writing to `sink`. */
  constructor(out: TextSink, options: ReporterOptions = {}) {
    this.#options = options;
    this.#format = options.json ? jsonFormat() : textFormat(options.color === true);
    // Every line goes through here, so that a progress line on show is cleared first.
    this.#sink = {
      write: (text: string) => {
        this.#progress?.clear();
        out.write(text);
      },
    };
    if (options.progress) {
      this.#progress = new ProgressLine({
        write: (t) => out.write(t),
        prefix: linePrefix(options.color === true),
        columns: options.columns,
      });
    }
    if (options.hex) {
      const fileSink = options.hexSink;
      this.#hex = new HexDumper(fileSink ?? this.#sink, {
        json: options.json && !fileSink,
        // A --hex-file that fails is said once on stderr; a failing stderr says nothing.
        onFailure: fileSink
          ? (err) => this.warning(`${(err as Error)?.message ?? err}; the hex dump stops here`)
          : undefined,
      });
    }
  }

  /** Closes the `--hex-file`, if there is one (`using reporter = …`). */
  [Symbol.dispose](): void {
    this.#progress?.clear();
    this.#options.hexSink?.close?.();
    this.#options.transcript?.close();
  }

  /** Whether `--trace` is on; callers skip building trace text when it is not. */
  get tracing(): boolean {
    return this.#options.trace === true;
  }

  /** The trace function to hand to the library, or `undefined` without `--trace`. */
  get traceFn(): TraceFn | undefined {
    return this.tracing ? (tag, call) => this.trace(tag, call) : undefined;
  }

  /** Whether events are printed at all (`-v` or `--json`, and not `-q`). */
  get eventsOn(): boolean {
    return !this.#options.quiet && (this.#options.verbose === true || this.#options.json === true);
  }

  /** Prints an event: text with `-v`, an object with `--json`. */
  event(event: string, text: string, fields: Record<string, unknown> = {}): void {
    if (this.eventsOn) this.#sink.write(this.#format.event(event, text, fields));
  }

  /** One socket operation, tagged with its listener (`L1`) or connection (`#1`). */
  trace(tag: string, call: string): void {
    if (this.#options.trace) this.#sink.write(this.#format.trace(tag, call));
  }

  /** The listening event, with the real bound address. */
  listening(address: string, transport: string): void {
    // The scheme, where the address does not say it already (`unix:/…`) and it is not TCP.
    const plain = transport === DEFAULT_SCHEME || address.startsWith(`${transport}:`);
    const suffix = plain ? "" : ` (${transport})`;
    this.event("listening", `listening on ${address}${suffix}`, { address, transport });
  }

  /** A connection was accepted. */
  accepted(peer: PeerInfo): void {
    this.event("accepted", `connection from ${peer.remoteAddress}`, {
      conn: peer.id,
      remote: peer.remoteAddress,
      local: peer.localAddress,
    });
  }

  /** A client was closed at once, before any byte was read or written. */
  rejected(peer: PeerInfo, reason: string): void {
    this.event("rejected", `rejected ${peer.remoteAddress}: ${reason}`, {
      conn: peer.id,
      remote: peer.remoteAddress,
      reason,
    });
  }

  /** A connection was established. */
  connected(peer: PeerInfo): void {
    this.event("connected", `connected to ${peer.remoteAddress}`, {
      conn: peer.id,
      remote: peer.remoteAddress,
      local: peer.localAddress,
    });
  }

  /**
   * A layer over a connection was set up (`-v`), in the layer's own words
   * (`TLS with 127.0.0.1:443: TLSv1.3, …`): the event is the layer's name,
   * its JSON fields the layer's.
   */
  layer(peer: PeerInfo, name: string, info: LayerInfo): void {
    this.event(name, `${info.title} with ${peer.remoteAddress}: ${info.text}`, {
      conn: peer.id,
      remote: peer.remoteAddress,
      ...info.fields,
    });
  }

  /** A TLS server's certificate (`-v`): subject, SHA-256 fingerprint, names; ephemeral or from a file. */
  certificate(info: CertificateInfo, ephemeral: boolean): void {
    const kind = ephemeral ? "ephemeral self-signed certificate" : "certificate";
    const names = info.names ? ` (${info.names})` : "";
    this.event("certificate", `TLS ${kind} ${info.subject}${names}, SHA-256 ${info.fingerprint}`, {
      subject: info.subject,
      fingerprint: info.fingerprint,
      names: info.names ?? null,
      ephemeral,
      validTo: info.validTo ?? null,
    });
  }

  /** A connection ended (and, with `--stats`, its figures). */
  closed(peer: PeerInfo, info: ClosedInfo): void {
    const remote = peer.remoteAddress;
    this.#totals.add(info);
    if (this.#options.stats) {
      this.#stats(
        statsRecord(
          `stats ${remote}:`,
          { conn: peer.id, remote },
          info.sent,
          info.received,
          info.durationMs,
        ),
      );
    }
    // What the peer's layer said of its end (a close code), after the figures.
    const { layer, ...figures } = info;
    const detail = `sent ${formatBytes(info.sent)}, received ${formatBytes(info.received)}, ` +
      formatDuration(info.durationMs) + (layer?.text ? `, ${layer.text}` : "");
    this.event("closed", `closed ${remote} (${detail}${info.reason ? `; ${info.reason}` : ""})`, {
      conn: peer.id,
      remote,
      ...figures,
      ...layer?.fields,
    });
  }

  /** A `--hex` tap for a transfer with `peer`, or none without `--hex`. */
  tap(peer: PeerInfo): ChunkTap | undefined {
    const hex = this.#hex?.tap(peer);
    const file = this.#options.transcript;
    if (!file) return hex;
    let failed = false;
    return (direction, chunk) => {
      hex?.(direction, chunk);
      if (failed) return;
      try {
        for (let at = 0; at < chunk.length;) at += file.writeSync(chunk.subarray(at));
      } catch (err) {
        failed = true;
        this.warning(`--output: ${(err as Error)?.message ?? err}; the transcript stops here`);
      }
    };
  }

  /** Shows `counted` in the `--progress` line until {@linkcode Reporter.untrack}. */
  track(counted: Counted, total?: number): void {
    this.#progress?.track(counted, total);
  }

  /** Stops showing `counted` in the `--progress` line. */
  untrack(counted: Counted): void {
    this.#progress?.untrack(counted);
  }

  /** `--stats` totals of a server at exit: connections, bytes each way, duration, rates. */
  totals(): void {
    if (this.#options.stats) this.#stats(this.#totals.record());
  }

  #stats(record: StatsRecord): void {
    // Asked for by name, so -q (which silences warnings and events) keeps them.
    this.#sink.write(this.#format.stats(record.text, record.fields));
  }

  /** A line exactly as given (another tool's wording, for `sockit nc -v`), unless `-q`. */
  verbatim(text: string): void {
    if (!this.#options.quiet) this.#sink.write(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** A note shown with `-v` (e.g. a stale socket file was removed). */
  info(text: string, fields: Record<string, unknown> = {}): void {
    this.event("info", text, { message: text, ...fields });
  }

  /** A warning: shown unless `-q`. */
  warning(text: string): void {
    if (!this.#options.quiet) this.#sink.write(this.#format.warning(text));
  }

  /**
   * Reports a failure — one line, plus a hint line where it helps — and
   * returns the exit code for it.
   */
  fail(error: unknown, op = "sockit", address?: string): number {
    if (error instanceof UsageError) return this.usage(error);
    const err = error instanceof SockitError ? error : toSockitError(error, op, address);
    this.#sink.write(this.#format.error(err));
    return err.exitCode;
  }

  /**
   * Reports the failure of one connection of a server as a warning, and
   * returns its exit code.
   */
  warnFailure(error: unknown): number {
    if (error instanceof UsageError) return this.usage(error);
    const err = toSockitError(error, "sockit");
    this.warning(err.message);
    return err.exitCode;
  }

  /** Reports a usage error (two lines at most) and returns exit code 2. */
  usage(error: UsageError): number {
    const help = this.#options.command ? `sockit ${this.#options.command} --help` : "sockit --help";
    this.#sink.write(this.#format.usage(error, help));
    return exitCodeOf(error);
  }
}
