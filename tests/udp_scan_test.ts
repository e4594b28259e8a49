/**
 * `scan -u` and `sockit nc -zu` against Python UDP listeners (one that
 * answers, one silent) and closed ports on 127.0.0.1, beside OpenBSD nc.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { requireTool, runSockit } from "./helpers.ts";

const decoder = new TextDecoder();

/** Two UDP ports: the first answers each datagram, the second never does. */
const LISTENERS = `
import socket, threading, time
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1], flush=True)
def answer():
    while True:
        data, addr = a.recvfrom(100)
        a.sendto(b"here", addr)
threading.Thread(target=answer, daemon=True).start()
time.sleep(30)
`;

Deno.test("scan -u: open (a reply), open|filtered (silence), closed (ICMP) — and nc -zu agrees", async () => {
  const python = new Deno.Command(requireTool("python3"), {
    args: ["-c", LISTENERS],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = python.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the Python listeners ended: ${JSON.stringify(line)}`);
    line += value;
  }
  const [answering, silent] = line.trim().split(/\s+/).map(Number);
  try {
    // A UDP port nothing listens on: bound, then released.
    const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const closed = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const ports = [answering, silent, closed].sort((x, y) => x - y).join(",");
    const r = await runSockit(["scan", "-u", "127.0.0.1", ports, "--json", "--timeout", "500ms"]);
    assertEquals(r.code, 0, r.stderr);
    const states = Object.fromEntries(
      r.text.trim().split("\n").map((l) => JSON.parse(l)).map((o) => [o.port, o.state]),
    );
    assertEquals(states, { [answering]: "open", [silent]: "open|filtered" });
    const none = await runSockit(["scan", "-u", "127.0.0.1", String(closed), "--timeout", "300ms"]);
    assertEquals([none.code, none.text], [1, ""]);
    // OpenBSD nc -zu and sockit nc -zu name the same ports.
    const nc = await new Deno.Command(requireTool("nc"), {
      args: ["-zuv", "-w1", "127.0.0.1", String(answering), String(silent), String(closed)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const succeeded = (text: string) =>
      [...text.matchAll(/(\d+) port \[udp\/\*\] succeeded/g)].map((m) => Number(m[1])).sort();
    const mine = await runSockit([
      "nc",
      "-zuv",
      "-w1",
      "127.0.0.1",
      String(answering),
      String(silent),
      String(closed),
    ]);
    assertEquals(succeeded(mine.stderr), succeeded(decoder.decode(nc.stderr)));
    assertEquals(succeeded(mine.stderr), [answering, silent].sort());
  } finally {
    python.kill("SIGTERM");
    await reader.cancel().catch(() => {});
    await python.status;
  }
});

Deno.test("scan -u: the whole port range of 127.0.0.1 finds no false open (self-connects discarded)", async () => {
  const r = await runSockit(["scan", "-u", "127.0.0.1", "1-65535", "--json", "--timeout", "1s"]);
  // Whatever listens on UDP here may show; no port may be "open" unless something answered it.
  for (const line of r.text.trim().split("\n").filter(Boolean)) {
    const { port, state } = JSON.parse(line);
    assertMatch(state, /^open(\|filtered)?$/, `port ${port}`);
  }
  const listed = r.text.trim().split("\n").filter(Boolean).length;
  // A self-connect would make a port answer itself: far more than the handful of real listeners.
  assertEquals(listed < 50, true, `${listed} ports reported`);
});
