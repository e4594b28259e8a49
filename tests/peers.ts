/**
 * Real peers for the tests: small Python servers on loopback with the
 * behaviours the CLI must cope with (read to EOF then reply, reset, slow
 * segments), and OpenBSD netcat.
 *
 * @module
 */

import { decoder, requireTool } from "./helpers.ts";

/** A Python TCP server on 127.0.0.1 that serves one connection with `body`. */
export class PythonServer {
  readonly child: Deno.ChildProcess;
  #port: Promise<number>;
  #output: Promise<string>;

  /**
   * `body` is Python run with `conn` (the accepted socket) in scope; the
   * script prints the port first, then whatever `body` prints.
   */
  constructor(body: string, family: "AF_INET" | "AF_INET6" = "AF_INET") {
    const host = family === "AF_INET" ? "127.0.0.1" : "::1";
    const script = [
      "import socket, struct, sys, time",
      `srv = socket.socket(socket.${family}, socket.SOCK_STREAM)`,
      `srv.bind(("${host}", 0))`,
      "srv.listen(8)",
      // A test that never connects fails after 30 s instead of hanging the run.
      "srv.settimeout(30)",
      "print(srv.getsockname()[1], flush=True)",
      "conn, _ = srv.accept()",
      "conn.settimeout(None)",
      ...body.trim().split("\n"),
    ].join("\n");
    this.child = new Deno.Command(requireTool("python3"), {
      args: ["-c", script],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = this.child.stdout.pipeThrough(new TextDecoderStream());
    const { promise, resolve: resolvePort } = Promise.withResolvers<number>();
    this.#port = promise;
    this.#output = (async () => {
      let text = "";
      let portSeen = false;
      for await (const chunk of lines) {
        text += chunk;
        if (!portSeen && text.includes("\n")) {
          portSeen = true;
          const [first, ...rest] = text.split("\n");
          resolvePort(Number(first));
          text = rest.join("\n");
        }
      }
      if (!portSeen) resolvePort(0);
      return text;
    })();
  }

  /** The port it listens on. */
  port(): Promise<number> {
    return this.#port;
  }

  /** Waits for the script to end; returns what it printed after the port. */
  async done(): Promise<string> {
    const [output, status] = await Promise.all([this.#output, this.child.status]);
    if (!status.success) throw new Error(`python peer failed with ${status.code}`);
    return output;
  }
}

/** Python that reads to EOF, then replies with what it read, upper-cased. */
export const READ_TO_EOF_THEN_REPLY = `
data = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
conn.sendall(b"got " + str(len(data)).encode() + b": " + data.upper())
conn.close()
`;

/** Python that sends some bytes, then resets the connection (SO_LINGER 0). */
export const SEND_THEN_RESET = `
conn.sendall(b"partial reply")
time.sleep(0.2)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
`;

/**
 * Connects `count` clients to 127.0.0.1:`port` that reset at once (SO_LINGER 0),
 * most of them before the server has accepted them.
 */
export async function resetFlood(port: number, count: number): Promise<void> {
  const script = `
import socket, struct
for i in range(${count}):
    s = socket.create_connection(("127.0.0.1", ${port}))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
`;
  const out = await new Deno.Command(requireTool("python3"), { args: ["-c", script] }).output();
  if (out.code !== 0) throw new Error(`reset flood failed: ${decoder.decode(out.stderr)}`);
}
