/**
 * Raw proxy clients for tests: the exact bytes of a SOCKS4, SOCKS4a,
 * SOCKS5 or HTTP (CONNECT or absolute-URI) request for any host spelling,
 * and the proxy's answer read back and named. curl and sockit's own
 * `--proxy` normalise what they send; these send what they are given.
 */

import { encodeSocks5Address } from "../lib/protocols/socks.ts";
import { encoder } from "./helpers.ts";

/** The five ways a client asks `sockit proxy` for a target. */
export type AskProtocol = "socks4" | "socks4a" | "socks5" | "http-connect" | "http";

/** Every protocol, in the order tests use. */
export const ASK_PROTOCOLS: readonly AskProtocol[] = [
  "socks4",
  "socks4a",
  "socks5",
  "http-connect",
  "http",
];

/** How to spell the request. */
export interface AskOptions {
  /** SOCKS5: send an IP literal as an address (ATYP 1 or 4) rather than as a name. */
  literal?: boolean;
  /** Credentials: SOCKS5 username/password, HTTP Basic, the SOCKS4 user id (user only). */
  user?: string;
  /** The password. */
  pass?: string;
}

/**
 * The request bytes: `host` goes in as given (a name for SOCKS4a and
 * SOCKS5, in the request line for HTTP; SOCKS4 takes an IPv4 literal).
 *
 * @example Usage
 * ```ts ignore
 * const bytes = askBytes("socks4a", "0x7f.1", 80);
 * ```
 */
export function askBytes(
  protocol: AskProtocol,
  host: string,
  port: number,
  options: AskOptions = {},
): Uint8Array {
  const p = [port >> 8, port & 255];
  const user = encoder.encode(options.user ?? "");
  const pass = encoder.encode(options.pass ?? "");
  switch (protocol) {
    case "socks4":
      return new Uint8Array([4, 1, ...p, ...host.split(".").map(Number), ...user, 0]);
    case "socks4a":
      return new Uint8Array([4, 1, ...p, 0, 0, 0, 1, ...user, 0, ...encoder.encode(host), 0]);
    case "socks5": {
      const name = encoder.encode(host);
      const address = options.literal
        ? [...encodeSocks5Address(host, port)]
        : [3, name.length, ...name, ...p];
      const auth = options.user === undefined
        ? [5, 1, 0]
        : [5, 1, 2, 1, user.length, ...user, pass.length, ...pass];
      return new Uint8Array([...auth, 5, 1, 0, ...address]);
    }
    default: {
      const authority = `${host.includes(":") ? `[${host}]` : host}:${port}`;
      const line = protocol === "http-connect"
        ? `CONNECT ${authority} HTTP/1.1`
        : `GET http://${authority}/ HTTP/1.1`;
      const auth = options.user === undefined
        ? ""
        : `Proxy-Authorization: Basic ${btoa(`${options.user}:${options.pass ?? ""}`)}\r\n`;
      return encoder.encode(`${line}\r\nHost: ${authority}\r\n${auth}\r\n`);
    }
  }
}

/** What the proxy answered. */
export interface Answer {
  /** `granted`, `denied` (SOCKS5 reply 2, HTTP 403), `refused` (SOCKS4 0x5B), or the reply in words. */
  verdict: string;
  /** The bytes read. */
  bytes: Uint8Array;
}

/** Whether `bytes` hold the whole answer (the reply, not the tunnel's data after it). */
function complete(protocol: AskProtocol, bytes: Uint8Array, withAuth: boolean): boolean {
  if (protocol === "socks4" || protocol === "socks4a") return bytes.length >= 2;
  if (protocol === "socks5") return bytes.length >= (withAuth ? 6 : 4);
  return new TextDecoder().decode(bytes).includes("\r\n");
}

/** The answer in one word (see {@linkcode Answer.verdict}). */
function verdictOf(protocol: AskProtocol, bytes: Uint8Array, withAuth: boolean): string {
  if (protocol === "socks4" || protocol === "socks4a") {
    if (bytes.length < 2) return "closed";
    return bytes[1] === 0x5a ? "granted" : bytes[1] === 0x5b ? "refused" : `reply ${bytes[1]}`;
  }
  if (protocol === "socks5") {
    const at = withAuth ? 4 : 2;
    if (withAuth && bytes.length >= 4 && bytes[3] !== 0) return "auth failed";
    if (bytes.length < at + 2) {
      return bytes.length >= 2 && bytes[1] === 0xff ? "no method" : "closed";
    }
    return bytes[at + 1] === 0
      ? "granted"
      : bytes[at + 1] === 2
      ? "denied"
      : `reply ${bytes[at + 1]}`;
  }
  const status = /^HTTP\/1\.1 (\d{3})/.exec(new TextDecoder().decode(bytes))?.[1];
  if (status === undefined) return bytes.length ? "other" : "closed";
  return status === "200" ? "granted" : status === "403" ? "denied" : status;
}

/**
 * Sends `bytes` to the proxy at `port` on `hostname` and reads its answer,
 * until it is complete, the proxy closes, or `ms` pass; then closes.
 *
 * @example Usage
 * ```ts ignore
 * const { verdict } = await ask(port, "socks5", askBytes("socks5", "0", 80));
 * ```
 */
export async function ask(
  port: number,
  protocol: AskProtocol,
  bytes: Uint8Array,
  { hostname = "127.0.0.1", ms = 5000, withAuth = false } = {},
): Promise<Answer> {
  using conn = await Deno.connect({ hostname, port });
  await conn.write(bytes).catch(() => 0);
  let got = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (!complete(protocol, got, withAuth)) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      const next = new Uint8Array(got.length + n);
      next.set(got);
      next.set(buf.subarray(0, n), got.length);
      got = next;
    }
  } finally {
    clearTimeout(timer);
  }
  return { verdict: verdictOf(protocol, got, withAuth), bytes: got };
}

/**
 * A listener that counts who connects (and closes each at once): a service
 * the proxy must never reach. Listens on 127.0.0.1 and ::1 on one port, or
 * on the addresses given (on `port`, when given).
 */
export class Canary implements Disposable {
  readonly port: number;
  /** How many connections arrived. */
  count = 0;
  #listeners: Deno.Listener[];
  #serving: Promise<void>[];

  constructor(hostnames = ["127.0.0.1", "::1"], port = 0) {
    for (let tries = 0;; tries++) {
      // Below the ephemeral range (32768–60999): a port another test took with freePort() and
      // now connects to, expecting a refusal, is never the canary's.
      const chosen = port || 20_000 + Math.floor(Math.random() * 12_000);
      const listeners: Deno.Listener[] = [];
      try {
        for (const hostname of hostnames) {
          listeners.push(Deno.listen({ hostname, port: chosen }));
        }
        this.#listeners = listeners;
        break;
      } catch (err) {
        for (const l of listeners) l.close();
        if (tries > 50 || port !== 0) throw err;
      }
    }
    this.port = (this.#listeners[0].addr as Deno.NetAddr).port;
    this.#serving = this.#listeners.map(async (l) => {
      try {
        for await (const conn of l) {
          this.count++;
          conn.close();
        }
      } catch {
        // Closed.
      }
    });
  }

  /** Stops listening; resolves when the accept loops have ended. */
  async close(): Promise<void> {
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch {
        // Closed already.
      }
    }
    await Promise.all(this.#serving);
  }

  [Symbol.dispose](): void {
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch {
        // Closed already.
      }
    }
  }
}
