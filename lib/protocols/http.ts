/**
 * A small HTTP/1.1 client for health checks (`sockit wait http://…`): one
 * request over a connection that the dialer chain opened (so TLS
 * verification, `--cacert`, `--insecure`, client certificates, Unix
 * sockets and later proxies apply as for every other connection), the
 * status line and headers read back, and the body when asked for (up to
 * {@linkcode MAX_BODY}). Redirects are the caller's to follow; {@linkcode redirectTarget}
 * says where one may lead.
 *
 * @module
 */

import { writeAll } from "../base/bytes.ts";
import { formatEndpoint, pathEndpoint, schemeFor, withTls } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { DEFAULT_SCHEME } from "../net/schemes.ts";
import type { Duplex } from "../engine/relay.ts";
import { SockitError, UsageError } from "../base/errors.ts";
import { formatHost } from "../net/ip.ts";

/** The most of a body that is read (for `--body REGEX`). */
export const MAX_BODY = 1024 * 1024;

/** Where an HTTP URL points: the endpoint to connect to, and what the request names. */
export interface HttpTarget {
  /** The URL as given. */
  url: string;
  /** The endpoint to connect to (`tcp`, `tls` for https, `unix` for http+unix). */
  endpoint: Endpoint;
  /** The `Host` header. */
  host: string;
  /** Path and query (`/health?x=1`). */
  path: string;
}

/**
 * Parses an `http://`, `https://` or `http+unix://` URL (the socket path
 * percent-encoded as the host: `http+unix://%2Frun%2Fapp.sock/health`).
 * Throws a {@linkcode UsageError} naming the URL when it is not one.
 *
 * @example Usage
 * ```ts
 * import { parseHttpUrl } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseHttpUrl("https://localhost:8443/health").endpoint, { form: "host-port", scheme: "tls", hostname: "localhost", port: 8443 });
 * assert.deepEqual(parseHttpUrl("http+unix://%2Frun%2Fapp.sock/up").endpoint, { form: "path", scheme: "unix", path: "/run/app.sock", abstract: false });
 * ```
 */
export function parseHttpUrl(text: string): HttpTarget {
  const fail = (reason: string): never => {
    throw new UsageError(`cannot parse URL ${JSON.stringify(text)}: ${reason}`);
  };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail("not a URL");
  }
  const path = `${url.pathname || "/"}${url.search}`;
  if (url.protocol === "http+unix:") {
    const socket = decodeURIComponent(url.host);
    if (!socket) fail("missing the socket path (http+unix://%2Fpath%2Fto.sock/…)");
    // The socket is a stream at a path: the grammar's `unix:` endpoint.
    const endpoint = pathEndpoint(schemeFor("stream", "path").scheme, socket);
    return { url: text, endpoint, host: "localhost", path };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") fail(`not http or https`);
  if (!url.hostname) fail("missing host");
  if (url.username || url.password) fail("credentials in the URL are not sent; use --header");
  const tls = url.protocol === "https:";
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : tls ? 443 : 80;
  const plain: Endpoint = { form: "host-port", scheme: DEFAULT_SCHEME, hostname, port };
  return {
    url: text,
    endpoint: tls ? withTls(plain, text) : plain,
    host: url.port ? `${formatHost(hostname)}:${port}` : formatHost(hostname),
    path,
  };
}

/**
 * The origin of a target: scheme, host and port (`https://example.com:443`),
 * or the socket of an `http+unix:` URL (`unix:/run/app.sock`). Headers the
 * user gave go only to the origin they were given for.
 *
 * @example Usage
 * ```ts
 * import { originOf, parseHttpUrl } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(originOf(parseHttpUrl("https://Example.com/a")), "https://example.com:443");
 * assert.equal(originOf(parseHttpUrl("http+unix://%2Frun%2Fapp.sock/up")), "unix:/run/app.sock");
 * ```
 */
export function originOf(target: HttpTarget): string {
  const endpoint = target.endpoint;
  if (!("port" in endpoint)) return formatEndpoint(endpoint);
  const scheme = new URL(target.url).protocol;
  return `${scheme}//${formatHost(endpoint.hostname ?? "")}:${endpoint.port}`;
}

/** Where a redirect leads, or why it is not followed. */
export type Redirect = { target: HttpTarget } | { refused: string };

/** Text from a server, fit for a message: no control characters, at most 200 characters. */
function shown(text: string): string {
  // deno-lint-ignore no-control-regex
  const plain = text.replace(/[\x00-\x1f\x7f]/g, "?");
  return plain.length > 200 ? `${plain.slice(0, 200)}…` : plain;
}

/**
 * Where a redirect from `from` to `location` (its `Location` header, maybe
 * relative) leads — or why it is not followed: to another scheme than
 * `http://` and `https://`, down from `https://` to `http://`, into a Unix
 * socket (an `http+unix:` URL is followed only on the socket it came from),
 * or to a URL that is not one sockit can request.
 *
 * @example Usage
 * ```ts
 * import { parseHttpUrl, redirectTarget } from "./http.ts";
 * import assert from "node:assert/strict";
 *
 * const from = parseHttpUrl("https://a.example/health");
 * const next = redirectTarget(from, "/ready");
 * assert.ok("target" in next && next.target.url === "https://a.example/ready");
 * assert.ok("refused" in redirectTarget(from, "http://a.example/ready"));
 * assert.ok("refused" in redirectTarget(from, "http+unix://%2Fvar%2Frun%2Fdocker.sock/"));
 * assert.ok("refused" in redirectTarget(from, "ftp://a.example/"));
 * ```
 */
export function redirectTarget(from: HttpTarget, location: string): Redirect {
  const where = shown(location);
  let url: URL;
  try {
    url = new URL(location, from.url);
  } catch {
    return { refused: `its Location ${JSON.stringify(where)} is not a URL` };
  }
  const leaving = new URL(from.url).protocol;
  const to = url.protocol;
  if (to !== "http:" && to !== "https:" && to !== "http+unix:") {
    return { refused: `${where} is another scheme (only http:// and https:// are followed)` };
  }
  if (leaving === "https:" && to === "http:") {
    return { refused: `${where} leaves https:// for http://` };
  }
  let target: HttpTarget;
  try {
    target = parseHttpUrl(url.href);
  } catch (err) {
    return {
      refused: `${where}: ${(err as Error).message.replace(/^cannot parse URL ".*": /s, "")}`,
    };
  }
  if (to === "http+unix:" && originOf(target) !== originOf(from)) {
    return { refused: `${where} leads into a Unix socket` };
  }
  return { target };
}

/** A request. */
export interface HttpRequest {
  /** `GET` by default. */
  method?: string;
  /** More headers (`Host`, `Connection: close` and `User-Agent` are set unless given). */
  headers?: Array<[string, string]>;
  /** Read the body (up to {@linkcode MAX_BODY}) for the response. */
  readBody?: boolean;
}

/** A response. */
export interface HttpResponse {
  /** The status code. */
  status: number;
  /** The reason phrase. */
  statusText: string;
  /** The headers, names lower-cased (the last one of a name wins). */
  headers: Map<string, string>;
  /** The body as text, when asked for: at most {@linkcode MAX_BODY} bytes of it. */
  body?: string;
  /** Whether the body went on past {@linkcode MAX_BODY} (only that much was read). */
  truncated?: boolean;
}

/** The most a response's head (status line and headers) may take, as curl allows. */
export const MAX_HEAD = 100 * 1024;

/** The longest chunk-size line of a chunked body (a size in hex and its extensions). */
const MAX_CHUNK_LINE = 4 * 1024;

const encoder = new TextEncoder();

/**
 * Sends one request over `conn` (already connected) and reads the
 * response: its head up to {@linkcode MAX_HEAD} (longer is an error, so a
 * server cannot grow the reader without end) and, when asked, up to
 * {@linkcode MAX_BODY} of its body (the rest is left unread). The
 * connection is the caller's to close.
 *
 * @example Usage
 * ```ts
 * import { httpExchange, parseHttpUrl } from "./http.ts";
 * import { Connection } from "../net/conn.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const serving = listener.accept().then(async (peer) => {
 *   await peer.read(new Uint8Array(1024));
 *   await peer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
 *   peer.close();
 * });
 * using conn = Connection.from(await Deno.connect({ port: listener.addr.port }), { id: 1 });
 * const target = parseHttpUrl(`http://127.0.0.1:${listener.addr.port}/`);
 * const response = await httpExchange(conn, target, { readBody: true });
 * assert.deepEqual([response.status, response.body], [200, "ok"]);
 * await serving;
 * listener.close();
 * ```
 */
export async function httpExchange(
  conn: Duplex,
  target: HttpTarget,
  request: HttpRequest,
): Promise<HttpResponse> {
  const headers = new Map<string, [string, string]>();
  const set = (name: string, value: string) => headers.set(name.toLowerCase(), [name, value]);
  set("Host", target.host);
  set("User-Agent", "sockit");
  set("Accept", "*/*");
  set("Connection", "close");
  for (const [name, value] of request.headers ?? []) set(name, value);
  const head = `${request.method ?? "GET"} ${target.path} HTTP/1.1\r\n` +
    [...headers.values()].map(([n, v]) => `${n}: ${v}\r\n`).join("") + "\r\n";
  await writeAll(conn, encoder.encode(head));
  const reader = new ByteReader(conn);
  const fail = (reason: string): never => {
    throw new SockitError(reason, { op: "http", address: target.url, code: "EPROTO" });
  };
  const headLimit = () =>
    fail(`the response's head (status line and headers) is longer than ${MAX_HEAD / 1024} KiB`);
  let headLeft = MAX_HEAD;
  const headLine = async () => {
    const line = await reader.line(headLeft, headLimit);
    headLeft -= reader.consumed;
    return line;
  };
  const statusLine = await headLine();
  const m = /^HTTP\/\d(?:\.\d)? (\d{3})(?: (.*))?$/.exec(statusLine ?? "");
  if (!m) {
    fail(statusLine === null ? "the server closed without answering" : "not an HTTP response");
  }
  const response: HttpResponse = {
    status: Number(m![1]),
    statusText: m![2] ?? "",
    headers: new Map(),
  };
  for (;;) {
    const line = await headLine();
    if (line === null || line === "") break;
    const colon = line.indexOf(":");
    if (colon > 0) {
      response.headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  if (request.readBody) {
    Object.assign(
      response,
      await readBody(reader, response, () => fail("a chunk-size line is too long")),
    );
  }
  return response;
}

/**
 * The body by Content-Length, chunked, or until the server closes — at most
 * {@linkcode MAX_BODY} of it, read in windows of what is still wanted (a
 * chunk that claims terabytes is read only up to the cap).
 */
async function readBody(
  reader: ByteReader,
  response: HttpResponse,
  lineTooLong: () => never,
): Promise<{ body: string; truncated: boolean }> {
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let left = MAX_BODY;
  const take = async (count: number) => {
    const bytes = await reader.bytes(Math.min(count, left));
    left -= bytes.length;
    parts.push(decoder.decode(bytes, { stream: true }));
    return bytes.length;
  };
  let truncated = false;
  if (/chunked/i.test(response.headers.get("transfer-encoding") ?? "")) {
    for (;;) {
      const sizeLine = await reader.line(MAX_CHUNK_LINE, lineTooLong);
      const size = parseInt(sizeLine ?? "0", 16);
      if (!(size > 0)) break;
      if (size > left) truncated = true;
      const got = await take(size);
      if (truncated || got < size) break;
      await reader.line(MAX_CHUNK_LINE, lineTooLong);
    }
  } else {
    const length = response.headers.get("content-length");
    const declared = length === undefined ? Infinity : Number(length);
    const got = await take(Number.isFinite(declared) && declared >= 0 ? declared : MAX_BODY);
    // Without a length, one more byte tells whether the body went on past the cap.
    truncated = declared > MAX_BODY ||
      (got === MAX_BODY && !Number.isFinite(declared) && (await reader.bytes(1)).length > 0);
  }
  parts.push(decoder.decode());
  return { body: parts.join(""), truncated };
}

/**
 * Lines and byte counts from a duplex, buffered in one buffer that grows by
 * doubling (so filling it is linear in what is read) and never past what
 * the caller allows: a line longer than its limit, or `count` bytes, is as
 * much as it holds.
 */
class ByteReader {
  #conn: Duplex;
  #buf = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  #ended = false;
  /** Bytes the last {@linkcode line} took from the stream, its line end included. */
  consumed = 0;

  constructor(conn: Duplex) {
    this.#conn = conn;
  }

  /** Reads more into the buffer, which holds at least `room` more bytes after it. */
  async #fill(room = 16 * 1024): Promise<boolean> {
    if (this.#ended) return false;
    const live = this.#end - this.#start;
    if (this.#buf.length - this.#end < room) {
      if (live + room <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(this.#buf.length * 2, live + room));
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = grown;
      }
      this.#start = 0;
      this.#end = live;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end, this.#end + room));
    if (n === null) {
      this.#ended = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  /**
   * A line without its CRLF (or LF); `null` at the end. One that has not
   * ended within `max` bytes calls `tooLong` (which throws).
   */
  async line(max: number, tooLong: () => never): Promise<string | null> {
    let scanned = 0;
    for (;;) {
      const lf = this.#buf.subarray(this.#start + scanned, this.#end).indexOf(10);
      if (lf !== -1) {
        const end = this.#start + scanned + lf;
        if (end + 1 - this.#start > max) tooLong();
        const text = new TextDecoder().decode(this.#buf.subarray(this.#start, end));
        this.consumed = end + 1 - this.#start;
        this.#start = end + 1;
        return text.replace(/\r$/, "");
      }
      scanned = this.#end - this.#start;
      if (scanned >= max) tooLong();
      if (!(await this.#fill(Math.min(16 * 1024, max - scanned)))) {
        if (scanned === 0) return null;
        const text = new TextDecoder().decode(this.#buf.subarray(this.#start, this.#end));
        this.consumed = scanned;
        this.#start = this.#end;
        return text;
      }
    }
  }

  /** Up to `count` bytes (fewer if the connection ends first). */
  async bytes(count: number): Promise<Uint8Array> {
    while (this.#end - this.#start < count) {
      if (!(await this.#fill(Math.min(16 * 1024, count - (this.#end - this.#start))))) break;
    }
    const n = Math.min(count, this.#end - this.#start);
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }
}
