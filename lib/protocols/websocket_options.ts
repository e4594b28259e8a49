/**
 * The `websocket` option group: the WebSocket flags (`--binary`,
 * `--protocol`, `--origin`, `-H` with the upgrade, `--close-delay`,
 * `--ping-interval`, `--ping-timeout`, `--max-message`), declared, and the
 * options of both ends they make. Small on purpose: reading the flags
 * loads no WebSocket code (`websocket.ts` is loaded by the rows that take
 * the group, when one is opened).
 *
 * @module
 */

import { count, duration, limit } from "../base/flag.ts";
import { UsageError } from "../base/errors.ts";
import type { OptionGroup } from "../net/option_group.ts";
import type { WebSocketClientOptions, WebSocketMode } from "./websocket.ts";

/** The options of the group: those of both ends (a server ignores the client's headers and origin). */
export type WebSocketGroupOptions = Omit<WebSocketClientOptions, "host" | "resource">;

/** The flags the group owns. */
export const WEBSOCKET_SPECS = {
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
    parse: duration,
  },
  "ping-interval": {
    type: "string",
    value: "DUR",
    help: "WebSocket: send a ping every DUR",
    parse: limit,
  },
  "ping-timeout": {
    type: "string",
    value: "DUR",
    help: "WebSocket: fail when no pong came DUR after a ping",
    parse: limit,
  },
  "max-message": {
    type: "string",
    value: "BYTES",
    help: "WebSocket: refuse a message over BYTES with close code 1009 (default 64 MiB)",
    parse: count({ min: 1 }),
  },
} as const;

type Values = {
  binary?: boolean;
  protocol?: string[];
  origin?: string;
  "close-delay"?: number;
  "ping-interval"?: number;
  "ping-timeout"?: number;
  "max-message"?: number;
  header?: string[];
  "no-half-close"?: boolean;
  crlf?: boolean;
};

/** How messages map to bytes by default, by what the endpoint is relayed with. */
const MODES: Record<"stdio" | "itself" | "endpoint", WebSocketMode> = {
  // A terminal's lines are messages; an echo sends each message back as it came; a
  // forwarder passes bytes on.
  stdio: "text",
  itself: "echo",
  endpoint: "binary",
};

/**
 * `websocket`: the WebSocket settings of both ends (`-H` is the client's
 * upgrade headers; a server's upgrade is bounded by `--handshake-timeout`,
 * a server limit). `--no-half-close` keeps the Close back at the end of
 * input, `--crlf` keeps each text message's line end.
 */
export const WEBSOCKET_GROUP: OptionGroup<WebSocketGroupOptions> = {
  name: "websocket",
  title: "WebSocket (ws://, wss://)",
  flags: [
    "binary",
    ["header", "WebSocket client: send this header with the upgrade (repeatable)"],
    "protocol",
    "origin",
    "close-delay",
    "ping-interval",
    "ping-timeout",
    "max-message",
  ],
  specs: WEBSOCKET_SPECS,
  shares: { "handshake-timeout": "listen" },
  parse(values, { partner }) {
    const v = values as Values;
    const headers = (v.header ?? []).map((h) => {
      const colon = h.indexOf(":");
      if (colon < 1) {
        throw new UsageError(`option --header needs 'Name: value', not ${JSON.stringify(h)}`);
      }
      return [h.slice(0, colon).trim(), h.slice(colon + 1).trim()] as [string, string];
    });
    return {
      mode: v.binary === true ? "binary" : MODES[partner],
      protocols: v.protocol,
      origin: v.origin,
      closeDelay: v["close-delay"],
      pingInterval: v["ping-interval"],
      pingTimeout: v["ping-timeout"],
      maxMessage: v["max-message"],
      headers: headers.length ? headers : undefined,
      noCloseOnEof: v["no-half-close"] === true,
      keepLineEnds: v.crlf === true,
    };
  },
};
