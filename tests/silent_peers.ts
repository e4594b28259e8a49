/**
 * Peers that go silent at a chosen stage of a session, for the hang guard
 * (tests/hang_guard_test.ts): servers that never accept, accept and never
 * answer, finish a TLS handshake or a WebSocket upgrade or a SOCKS greeting
 * and then say nothing; and clients that connect to a sockit server and stop
 * at the same stages. Each is a small Python process (the system Python,
 * standard library only) that prints one line — its port or path — and then
 * `held N` each time a connection reaches the point where it goes silent,
 * so a test knows the stage was reached before it acts.
 *
 * @module
 */

import { requireTool } from "./helpers.ts";

/** Where a silent server stops. */
export type ServerStage =
  /** Listens (the kernel completes handshakes) but never accepts. */
  | "no-accept"
  /** Accepts, then neither reads nor writes. */
  | "accept"
  /** Accepts and reads everything, writes nothing (mid-TLS-handshake for a TLS client). */
  | "read"
  /** Completes a TLS handshake, then reads and writes nothing. */
  | "tls"
  /** Reads a WebSocket upgrade request, answers nothing (mid-upgrade). */
  | "ws-upgrade"
  /** Completes a WebSocket upgrade, then sends nothing (mid-session). */
  | "ws"
  /** TLS, then a WebSocket upgrade request answered with nothing. */
  | "wss-upgrade"
  /** TLS and a completed WebSocket upgrade, then nothing. */
  | "wss"
  /** A SOCKS5 proxy that answers the greeting, then never the request (mid-proxy-handshake). */
  | "socks5"
  /** An HTTP proxy that reads the CONNECT request and never answers. */
  | "http-proxy"
  /** A UDP socket that receives and never replies. */
  | "udp"
  /** A Unix stream socket that accepts and reads, never writes. */
  | "unix"
  /** A Unix datagram socket that receives, never replies. */
  | "unixgram";

/** Where a silent client stops, talking to a sockit server. */
export type ClientStage =
  /** Connects, sends nothing. */
  | "connect"
  /** Sends half a TLS ClientHello. */
  | "tls-hello"
  /** Sends half a WebSocket upgrade request. */
  | "ws-upgrade"
  /** Completes a WebSocket upgrade, then sends nothing. */
  | "ws"
  /** Sends half a SOCKS5 greeting. */
  | "socks5"
  /** Sends a UDP datagram, then nothing. */
  | "udp";

const SERVER = String.raw`
import socket, ssl, sys, threading, time, hashlib, base64, os
stage, where, cert, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
held = 0
lock = threading.Lock()
def hold(conn):
    global held
    with lock:
        held += 1
        print("held", held, flush=True)
def drain(conn):
    try:
        while conn.recv(65536):
            pass
    except Exception:
        pass
    time.sleep(3600)
def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data
def upgrade(conn):
    head = read_head(conn).decode("latin-1")
    k = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:")]
    acc = base64.b64encode(hashlib.sha1((k[0] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + "\r\n\r\n").encode())
def serve(conn):
    try:
        if stage in ("tls", "wss", "wss-upgrade"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            conn = ctx.wrap_socket(conn, server_side=True)
        if stage in ("ws", "wss"):
            upgrade(conn)
        elif stage in ("ws-upgrade", "wss-upgrade", "http-proxy"):
            read_head(conn)
        elif stage == "socks5":
            conn.recv(3)
            conn.sendall(b"\x05\x00")
            conn.recv(4096)
        if stage == "accept":
            hold(conn)
            time.sleep(3600)
        hold(conn)
        drain(conn)
    except Exception as e:
        print("error", e, file=sys.stderr, flush=True)
        time.sleep(3600)
if stage == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1], flush=True)
    while True:
        s.recvfrom(65536)
        hold(s)
elif stage == "unixgram":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(where)
    print(where, flush=True)
    while True:
        s.recv(65536)
        hold(s)
else:
    if stage == "unix":
        l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        l.bind(where)
        name = where
    else:
        l = socket.socket()
        l.bind(("127.0.0.1", 0))
        name = l.getsockname()[1]
    l.listen(64)
    print(name, flush=True)
    if stage == "no-accept":
        time.sleep(3600)
    while True:
        c, _ = l.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

const CLIENT = String.raw`
import socket, sys, time, base64, os
stage, port = sys.argv[1], int(sys.argv[2])
if stage == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", port))
else:
    s = socket.create_connection(("127.0.0.1", port))
    if stage == "tls-hello":
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    elif stage == "ws-upgrade":
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    elif stage == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    elif stage == "socks5":
        s.sendall(b"\x05")
print("held 1", flush=True)
time.sleep(3600)
`;

/** A silent Python peer: its address, a wait for its stage, its end. */
export class SilentPeer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  /** The port (TCP/UDP) or path (Unix) it listens on; for a client, "". */
  readonly address: string;

  private constructor(child: Deno.ChildProcess, lines: AsyncIterator<string>, address: string) {
    this.#child = child;
    this.#lines = lines;
    this.address = address;
  }

  static async #start(script: string, args: string[], announces: boolean): Promise<SilentPeer> {
    const child = new Deno.Command(requireTool("python3"), {
      args: ["-c", script, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = lineReader(child.stdout);
    let address = "";
    if (announces) {
      const first = await lines.next();
      if (first.done) throw new Error("silent peer ended before it said where it listens");
      address = first.value;
    }
    return new SilentPeer(child, lines, address);
  }

  /** A server that goes silent at `stage`; `path` for the Unix stages, `tls` files for TLS. */
  static server(
    stage: ServerStage,
    options: { path?: string; tls?: { cert: string; key: string } } = {},
  ): Promise<SilentPeer> {
    return SilentPeer.#start(SERVER, [
      stage,
      options.path ?? "",
      options.tls?.cert ?? "",
      options.tls?.key ?? "",
    ], true);
  }

  /** A client of 127.0.0.1:`port` that goes silent at `stage`. */
  static client(stage: ClientStage, port: number): Promise<SilentPeer> {
    return SilentPeer.#start(CLIENT, [stage, String(port)], false);
  }

  /** Waits until a connection (or datagram) has reached the silent stage, at most `ms`. */
  async held(ms = 10_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the peer never reached its stage in ${ms} ms`)),
        ms,
      );
    });
    try {
      for (;;) {
        const line = await Promise.race([this.#lines.next(), timeout]);
        if (line.done) throw new Error("the silent peer ended");
        if (line.value.startsWith("held")) return;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the peer (its PID only) and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#lines.return?.();
  }
}

function lineReader(stream: ReadableStream<Uint8Array>): AsyncIterator<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const queue: string[] = [];
  return {
    async next(): Promise<IteratorResult<string>> {
      while (queue.length === 0) {
        const { value, done } = await reader.read();
        if (done) return { value: undefined, done: true };
        buffered += value;
        const parts = buffered.split("\n");
        buffered = parts.pop() ?? "";
        queue.push(...parts);
      }
      return { value: queue.shift()!, done: false };
    },
    async return(): Promise<IteratorResult<string>> {
      await reader.cancel().catch(() => {});
      return { value: undefined, done: true };
    },
  };
}
