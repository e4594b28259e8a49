/**
 * Peers that fail at a chosen point of a session, for the fault matrix of
 * the transports (tests/faults_transports_test.ts): servers and clients
 * that reset in the middle of a stream (SO_LINGER 0), go silent once the
 * session is up, or close in the middle of the handshake (TLS, the
 * WebSocket upgrade, SOCKS5 or HTTP CONNECT negotiation) — over TCP, TLS,
 * WebSocket, Unix stream sockets — and datagram peers (UDP, Unix datagram,
 * raw IP) that answer once and then are gone. Each is a small Python
 * process (the system Python, standard library only) that prints its
 * address first, then one line per thing that happened (`served`,
 * `closed`, `reset`), so a test knows a stage was reached.
 *
 * @module
 */

import { requireTool } from "./helpers.ts";

/** The layers a stream peer speaks before the payload. */
export type Layers = "" | "tls" | "ws" | "tls,ws" | "socks5" | "http";

/** What a peer does. */
export type FaultMode =
  /** After the handshake: send "partial" (a WebSocket text message over ws), then reset. */
  | "reset"
  /** After the handshake: say nothing, read nothing, hold the connection. */
  | "silent"
  /** Close (FIN) in the middle of the handshake of the innermost layer. */
  | "handshake-close"
  /** Reset in the middle of the handshake of the innermost layer. */
  | "handshake-reset"
  /** A client: after the handshake, send "ping", then reset (its echo unread). */
  | "echo-reset"
  /** Datagrams: answer the first with "pong", then close the socket (and remove its file). */
  | "once"
  /** A datagram client: send "ping" and close at once, before any answer. */
  | "gone";

const SCRIPT = String.raw`
import socket, ssl, struct, sys, threading, time, os, base64, hashlib
side, mode, layers, where, cert, key, target = sys.argv[1:8]
layers = [l for l in layers.split(",") if l]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def say(*words):
    print(*words, flush=True)
def reset(conn):
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()
def head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data
def ws_frame(payload, masked):
    hdr = bytes([0x81, (0x80 if masked else 0) | len(payload)])
    if masked:
        mask = os.urandom(4)
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return hdr + payload
def hs_fault(conn):
    if mode == "handshake-close":
        conn.close()
    else:
        reset(conn)
    say("faulted")
def serve(conn):
    try:
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if layer == "tls":
                if last and mode.startswith("handshake"):
                    conn.recv(65536)  # the ClientHello, all of it: a close is a FIN, not a reset
                    return hs_fault(conn)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
                conn = ctx.wrap_socket(conn, server_side=True)
            elif layer == "ws":
                text = head(conn).decode("latin-1")
                if last and mode.startswith("handshake"):
                    return hs_fault(conn)
                k = [l.split(":", 1)[1].strip() for l in text.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
                acc = base64.b64encode(hashlib.sha1((k + GUID).encode()).digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + "\r\n\r\n").encode())
            elif layer == "socks5":
                conn.recv(3)
                if mode.startswith("handshake"):
                    conn.sendall(b"\x05\x00")
                    conn.recv(4096)
                    return hs_fault(conn)
                conn.sendall(b"\x05\x00")
                conn.recv(4096)
                conn.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
            elif layer == "http":
                head(conn)
                if mode.startswith("handshake"):
                    return hs_fault(conn)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        say("served")
        if mode == "silent":
            time.sleep(3600)
        if mode == "reset":
            conn.sendall(ws_frame(b"partial", False) if "ws" in layers else b"partial")
            time.sleep(0.2)
            reset(conn)
            say("reset")
    except Exception as e:
        say("error", repr(e))
def client(conn):
    try:
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if layer == "tls":
                if last and mode.startswith("handshake"):
                    conn.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                    time.sleep(0.1)
                    return hs_fault(conn)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = ctx.wrap_socket(conn, server_hostname="localhost")
            elif layer == "ws":
                request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode() + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
                if last and mode.startswith("handshake"):
                    conn.sendall(request[:40].encode())
                    time.sleep(0.1)
                    return hs_fault(conn)
                conn.sendall(request.encode())
                head(conn)
            elif layer == "socks5":
                if mode.startswith("handshake"):
                    conn.sendall(b"\x05\x01")
                    time.sleep(0.1)
                    return hs_fault(conn)
                conn.sendall(b"\x05\x01\x00")
                conn.recv(2)
                conn.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", int(target)))
                got = b""
                while len(got) < 10:
                    chunk = conn.recv(10 - len(got))
                    if not chunk:
                        raise Exception("the proxy closed during the request")
                    got += chunk
        say("served")
        if mode == "silent":
            # Until the server ends it (a Close frame or a close of TLS may come first).
            while conn.recv(4096):
                pass
            say("ended")
            time.sleep(3600)
        if mode == "echo-reset":
            conn.sendall(ws_frame(b"ping", True) if "ws" in layers else b"ping")
            # The echo left unread makes the close a reset on a Unix socket too.
            time.sleep(0.1)
            reset(conn)
            say("reset")
    except Exception as e:
        say("error", repr(e))
family = socket.AF_UNIX if where.startswith("/") or where.startswith("@") else socket.AF_INET
if layers == ["ip"] and side == "server":
    where = ""
if layers == ["ip"]:
    addr = (where or "127.0.0.1", 0)
elif family == socket.AF_UNIX:
    addr = "\0" + where[1:] if where.startswith("@") else where
else:
    addr = ("127.0.0.1", int(where or 0))
if layers in (["udp"], ["unixgram"], ["ip"]):
    if layers == ["ip"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
    else:
        s = socket.socket(family, socket.SOCK_DGRAM)
    if side == "server":
        if layers == ["ip"]:
            s.bind(("127.0.0.2", 0))
        else:
            s.bind(addr)
        say(s.getsockname()[1] if layers == ["udp"] else where or "127.0.0.2")
        data, peer = s.recvfrom(65536)
        if mode == "once":
            s.sendto(b"pong", (peer[0], 0) if layers == ["ip"] else peer)
            s.close()
            if family == socket.AF_UNIX and not where.startswith("@"):
                os.unlink(where)
            say("gone")
            time.sleep(3600)
        say("served")
        while True:
            s.recvfrom(65536)
    else:
        say("client")
        if family == socket.AF_UNIX:
            s.bind("\0sockit-fault-" + str(os.getpid()))
        s.sendto(b"ping", addr)
        s.close()
        say("gone")
elif side == "server":
    l = socket.socket(family, socket.SOCK_STREAM)
    l.bind(addr)
    l.listen(16)
    say(l.getsockname()[1] if family == socket.AF_INET else where)
    while True:
        c, _ = l.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    say("client")
    conn = socket.socket(family, socket.SOCK_STREAM)
    conn.connect(addr)
    client(conn)
    time.sleep(3600)
`;

/** A failing Python peer: its address (servers), a wait for its lines, its end. */
export class FaultPeer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  /** The port or path it listens on (servers); "" for clients. */
  address = "";

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async #start(
    side: "server" | "client",
    mode: FaultMode,
    layers: Layers | "udp" | "unixgram" | "ip",
    where: string,
    tls?: { cert: string; key: string },
    target?: number,
  ): Promise<FaultPeer> {
    const child = new Deno.Command(requireTool("python3"), {
      args: [
        "-c",
        SCRIPT,
        side,
        mode,
        layers,
        where,
        tls?.cert ?? "",
        tls?.key ?? "",
        String(target ?? 0),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const peer = new FaultPeer(child);
    const first = await peer.line();
    if (first === undefined) throw new Error("the fault peer ended before it said where it is");
    if (side === "server") peer.address = first;
    return peer;
  }

  /**
   * A server speaking `layers` that does `mode`; `where` is a Unix path
   * (`/…` or `@name`) or "" for TCP/UDP on 127.0.0.1; `tls` for TLS layers.
   */
  static server(
    mode: FaultMode,
    layers: Layers | "udp" | "unixgram" | "ip",
    options: { where?: string; tls?: { cert: string; key: string } } = {},
  ): Promise<FaultPeer> {
    return FaultPeer.#start("server", mode, layers, options.where ?? "", options.tls);
  }

  /**
   * A client of `where` (a port, or a Unix path) speaking `layers` that
   * does `mode`; through a SOCKS5 proxy, `target` is the port on 127.0.0.1
   * it asks for.
   */
  static client(
    mode: FaultMode,
    layers: Layers | "udp" | "unixgram" | "ip",
    where: string,
    target?: number,
  ): Promise<FaultPeer> {
    return FaultPeer.#start("client", mode, layers, where, undefined, target);
  }

  /** The next line it printed (undefined once it ended). */
  async line(): Promise<string | undefined> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer += value;
    }
    const i = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return line;
  }

  /** Waits (10 s at most) for a line starting with `word`; throws if another says "error". */
  async waitFor(word: string, ms = 10_000): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the peer never said ${word}`)), ms);
    });
    try {
      for (;;) {
        const line = await Promise.race([this.line(), timeout]);
        if (line === undefined) throw new Error(`the peer ended before it said ${word}`);
        if (line.startsWith(word)) return line;
        if (line.startsWith("error")) throw new Error(`the peer: ${line}`);
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
    await this.#reader.cancel().catch(() => {});
  }
}
