/**
 * A WebSocket peer that sends exact frames, for the fault matrix
 * (tests/faults_transports_test.ts): a small Python process (the system
 * Python, standard library only) that plays the server or the client and
 * follows a script of steps — text and binary messages, fragments, a Close
 * with any payload (codes no library would send, reasons too long or not
 * UTF-8), bulk data, a TCP close without a Close frame, a reset — while it
 * reports every frame it receives as one JSON line. Python's `websockets`
 * refuses to send what a hostile peer sends; this sends what it is told.
 *
 * @module
 */

import { requireTool } from "./helpers.ts";

/**
 * One step of a peer's script:
 * - `text:STR`, `binary:N` a message; `frag:STR` a first fragment; `cont:STR`
 *   a middle one; `last:STR` the last one
 * - `close:CODE[:REASON]` a Close (`close:none` an empty one; REASON
 *   `bad` is 0xFF, `long` 124 bytes); `closehex:HEX` a Close of these bytes
 * - `bulk:N` N bytes in 16 KiB binary messages from a thread, while the
 *   script goes on; `wait:EVENT` until a frame or event (`close`, `text`,
 *   `eof`) has been seen (5 s at most); `sleep:S`
 * - `fin` a TCP close without a Close frame; `rst` a reset (SO_LINGER 0)
 */
export type WsStep = string;

const SCRIPT = String.raw`
import socket, struct, sys, threading, time, os, base64, hashlib, json
role, port, steps = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
seen = []
cond = threading.Condition()
wlock = threading.Lock()
def say(text):
    with cond:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
def note(event):
    with cond:
        seen.append(event)
        cond.notify_all()
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
def head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("closed in the upgrade")
        data += chunk
    i = data.index(b"\r\n\r\n") + 4
    return data[:i].decode("latin-1"), data[i:]
if role == "server":
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    text, rest = head(conn)
    key = [l.split(":", 1)[1].strip() for l in text.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
    acc = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + "\r\n\r\n").encode())
else:
    print("client", flush=True)
    conn = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    text, rest = head(conn)
    if " 101 " not in text.split("\r\n")[0]:
        note({"event": "refused", "status": text.split("\r\n")[0]})
        sys.exit(0)
masking = role == "client"
def frame(op, payload, fin=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    m = 0x80 if masking else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if masking:
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else bytes(a ^ b for a, b in zip(payload, (mask * (n // 4 + 1))[:n]))
        hdr += mask
    return hdr + payload
def send(data):
    with wlock:
        try:
            conn.sendall(data)
        except OSError as e:
            note({"event": "send-failed", "error": str(e)})
def reader():
    buf = rest
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError()
            buf += chunk
    try:
        while True:
            need(2)
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7f
            at = 2
            if n == 126:
                need(4); n = struct.unpack("!H", buf[2:4])[0]; at = 4
            elif n == 127:
                need(10); n = struct.unpack("!Q", buf[2:10])[0]; at = 10
            if b1 & 0x80:
                need(at + 4); mask = buf[at:at + 4]; at += 4
            else:
                mask = None
            need(at + n)
            payload = buf[at:at + n]
            buf = buf[at + n:]
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            op = b0 & 0x0f
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                note({"event": "close", "code": code, "masked": mask is not None})
            elif op == 9:
                send(frame(10, payload))
            elif op in (0, 1, 2):
                note({"event": "text" if op == 1 else "data", "op": op, "fin": bool(b0 & 0x80), "size": n, "text": payload.decode("utf-8", "replace")[:40]})
    except (EOFError, OSError) as e:
        note({"event": "eof"})
threading.Thread(target=reader, daemon=True).start()
def bulk(n):
    chunk = bytes(16384)
    sent = 0
    while sent < n:
        send(frame(2, chunk))
        sent += len(chunk)
    note({"event": "bulk-sent", "bytes": sent})
for step in steps:
    kind, _, arg = step.partition(":")
    if kind == "text":
        send(frame(1, arg.encode()))
    elif kind == "binary":
        send(frame(2, bytes(int(arg))))
    elif kind == "frag":
        send(frame(1, arg.encode(), False))
    elif kind == "cont":
        send(frame(0, arg.encode(), False))
    elif kind == "last":
        send(frame(0, arg.encode(), True))
    elif kind == "close":
        code, _, reason = arg.partition(":")
        if code == "none":
            payload = b""
        else:
            r = b"\xff" if reason == "bad" else b"x" * 124 if reason == "long" else reason.encode()
            payload = struct.pack("!H", int(code)) + r
        send(frame(8, payload))
    elif kind == "closehex":
        send(frame(8, bytes.fromhex(arg)))
    elif kind == "bulk":
        threading.Thread(target=bulk, args=(int(arg),), daemon=True).start()
    elif kind == "wait":
        with cond:
            cond.wait_for(lambda: any(e["event"] == arg for e in seen), timeout=5)
    elif kind == "sleep":
        time.sleep(float(arg))
    elif kind == "fin":
        conn.shutdown(socket.SHUT_WR)
    elif kind == "rst":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        note({"event": "reset"})
        break
with cond:
    cond.wait_for(lambda: any(e["event"] in ("eof", "reset") for e in seen), timeout=5)
say(json.dumps({"event": "done"}))
`;

/** A scripted WebSocket peer: its port (as a server), the events it saw, its end. */
export class ScriptedWsPeer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #buffer = "";
  /** The port it listens on (as a server; 0 as a client). */
  port = 0;
  /** Every event it reported, in order. */
  readonly events: Array<Record<string, unknown>> = [];

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async #start(role: "server" | "client", port: number, steps: WsStep[]) {
    const child = new Deno.Command(requireTool("python3"), {
      args: ["-c", SCRIPT, role, String(port), JSON.stringify(steps)],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const peer = new ScriptedWsPeer(child);
    const first = await peer.#line();
    if (first === undefined) throw new Error("the WebSocket peer ended before it started");
    if (role === "server") peer.port = Number(first);
    return peer;
  }

  /** A server on 127.0.0.1 that upgrades one client, then follows `steps`. */
  static server(steps: WsStep[]): Promise<ScriptedWsPeer> {
    return ScriptedWsPeer.#start("server", 0, steps);
  }

  /** A client of 127.0.0.1:`port` that upgrades, then follows `steps`. */
  static client(port: number, steps: WsStep[]): Promise<ScriptedWsPeer> {
    return ScriptedWsPeer.#start("client", port, steps);
  }

  async #line(): Promise<string | undefined> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) return undefined;
      this.#buffer += value;
    }
    const i = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, i);
    this.#buffer = this.#buffer.slice(i + 1);
    return line;
  }

  /** Waits for the script to end (the peer saw its connection end); resolves to every event. */
  async done(): Promise<Array<Record<string, unknown>>> {
    for (;;) {
      const line = await this.#line();
      if (line === undefined) break;
      const event = JSON.parse(line);
      if (event.event === "done") break;
      this.events.push(event);
    }
    return this.events;
  }

  /** The Close code the peer received (null: an empty Close; undefined: none). */
  closeCode(): number | null | undefined {
    const close = this.events.find((e) => e.event === "close");
    return close ? (close.code as number | null) : undefined;
  }

  /** Ends the peer (its PID only) and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#lines.cancel().catch(() => {});
  }
}
