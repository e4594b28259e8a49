/**
 * How a diagnostic line looks, decided once per command: as text (`-v`,
 * warnings, errors, with optional colour) or as JSON lines (`--json`). The
 * reporter asks the format for a line and never branches on `--json`
 * itself.
 *
 * @module
 */

import { styleText } from "node:util";
import type { SockitError, UsageError } from "../base/errors.ts";
import { jsonLine } from "../base/format.ts";

/** Turns what happened into the text written on stderr (whole lines). */
export interface EventFormat {
  /** An event: its text for `-v`, its fields for `--json`. */
  event(name: string, text: string, fields: Record<string, unknown>): string;
  /** A socket call (`--trace`) of a tag (`L1`, `#1`). */
  trace(tag: string, call: string): string;
  /** A warning. */
  warning(text: string): string;
  /** A failure: one line, and a hint line when there is one. */
  error(error: SockitError): string;
  /** A usage error and where to find help (`sockit connect --help`). */
  usage(error: UsageError, help: string): string;
  /** Figures of a connection or of a server's total (`--stats`). */
  stats(text: string, fields: Record<string, unknown>): string;
}

/** Colours `text`; the caller has already decided that colour is wanted. */
function paint(format: "dim" | "red" | "yellow" | "cyan", text: string): string {
  return styleText(format, text, { validateStream: false });
}

/**
 * The `sockit:` that starts every text line, dimmed when `color` is set.
 *
 * @example Usage
 * ```ts
 * import { linePrefix } from "./event_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(linePrefix(false), "sockit:");
 * ```
 */
export function linePrefix(color: boolean): string {
  return color ? paint("dim", "sockit:") : "sockit:";
}

/**
 * Text lines prefixed `sockit:`, coloured when `color` is set.
 *
 * @example Usage
 * ```ts
 * import { textFormat } from "./event_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(textFormat(false).warning("careful"), "sockit: warning: careful\n");
 * ```
 */
export function textFormat(color: boolean): EventFormat {
  const prefix = linePrefix(color);
  const line = (text: string) => `${prefix} ${text}\n`;
  return {
    event: (_name, text) => line(text),
    trace: (tag, call) => line(color ? paint("cyan", `[${tag}] ${call}`) : `[${tag}] ${call}`),
    warning: (text) => line(`${color ? paint("yellow", "warning:") : "warning:"} ${text}`),
    error: (error) =>
      line(color ? paint("red", error.message) : error.message) +
      (error.hint ? line(`hint: ${error.hint}`) : ""),
    // Usage errors are never coloured: they may come before --color is read.
    usage: (error, help) => `sockit: ${error.message}\nsockit: hint: try '${help}'\n`,
    stats: (text) => line(text),
  };
}

/**
 * One JSON object per line (`--json`).
 *
 * @example Usage
 * ```ts
 * import { jsonFormat } from "./event_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(JSON.parse(jsonFormat().warning("careful")).message, "careful");
 * ```
 */
export function jsonFormat(): EventFormat {
  return {
    event: (name, _text, fields) => jsonLine(name, fields),
    trace: (tag, call) => jsonLine("trace", { tag, call }),
    warning: (text) => jsonLine("warning", { message: text }),
    error: (error) =>
      jsonLine("error", {
        code: error.code,
        exitCode: error.exitCode,
        message: error.message,
        ...(error.hint ? { hint: error.hint } : {}),
      }),
    usage: (error) =>
      jsonLine("error", { code: "EUSAGE", exitCode: error.exitCode, message: error.message }),
    stats: (_text, fields) => jsonLine("stats", fields),
  };
}
