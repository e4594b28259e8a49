/**
 * WebSocket: `sockit echo ws://` against a node `ws` echo server (and
 * websocat when installed), the same Node client driving each in turn:
 * 64-byte ping-pong messages per second over one connection for a fixed
 * time, and bulk — 256 MiB in 64 KiB binary messages echoed back — in MB/s
 * (each way). Interleaved runs, median and range. Target: ≥ 1.0× node `ws`
 * on both.
 *
 * @module
 */

import { NODE_PEERS } from "../tools/peers.ts";
import {
  freeTcpPort,
  median,
  type Row,
  sh,
  sockitServerShell,
  waitForTcpListen,
  which,
} from "./util.ts";

/** Options of {@linkcode benchWs}. */
export interface WsBenchOptions {
  /** Runs of each server. Default 3. */
  runs: number;
  /** Seconds of ping-pong per run. Default 2. */
  seconds: number;
  /** Bytes of the bulk echo. Default 256 MiB. */
  size: number;
}

const NODE_PATH = NODE_PEERS;

/** The Node client: ping-pong for `seconds`, then bulk `size` bytes; prints JSON. */
const CLIENT = `
const WebSocket = require("ws");
const [url, seconds, size] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const ws = new WebSocket(url);
ws.binaryType = "nodebuffer";
const small = Buffer.alloc(64, 7);
let count = 0, phase = "ping", end = 0, started = 0, received = 0, sent = 0;
const chunk = Buffer.alloc(65536, 9);
function pump() {
  while (sent < size && ws.bufferedAmount < 4 * 1048576) { ws.send(chunk); sent += chunk.length; }
  if (sent < size) setTimeout(pump, 1);
}
ws.on("open", () => { end = Date.now() + seconds * 1000; ws.send(small); });
ws.on("message", (m) => {
  if (phase === "ping") {
    count++;
    if (Date.now() < end) { ws.send(small); return; }
    phase = "bulk"; started = Date.now(); pump(); return;
  }
  received += m.length;
  if (received >= size) {
    const ms = Date.now() - started;
    console.log(JSON.stringify({ msgs: count / seconds, mbps: (size / 1e6) / (ms / 1000) }));
    ws.close(1000);
  }
});
ws.on("error", (e) => { console.error(String(e)); process.exit(1); });
`;

const SERVER = `
const WebSocket = require("ws");
const wss = new WebSocket.Server({ host: "127.0.0.1", port: Number(process.argv[1]), maxPayload: 1 << 30 });
wss.on("connection", (ws) => ws.on("message", (m, binary) => ws.send(m, { binary })));
`;

/** Runs the WebSocket comparison. */
export async function benchWs(
  options: WsBenchOptions = { runs: 3, seconds: 2, size: 256 * 2 ** 20 },
): Promise<Row[]> {
  if (!which("node")) return [{ bench: "ws", tool: "-", note: "node is not installed" }];
  const servers = [
    {
      name: "sockit echo ws://",
      command: (port: number) => `${sockitServerShell()} echo ws://127.0.0.1:${port}/`,
    },
    {
      name: "node ws",
      command: (port: number) => `env NODE_PATH=${NODE_PATH} node -e '${SERVER}' ${port}`,
    },
    ...(which("websocat")
      ? [{
        name: "websocat",
        command: (port: number) => `websocat -b -E ws-l:127.0.0.1:${port} mirror:`,
      }]
      : []),
  ];
  const results = new Map<string, { msgs: number[]; mbps: number[] }>();
  for (let run = 0; run < options.runs; run++) {
    for (const server of run % 2 ? [...servers].reverse() : servers) {
      const port = freeTcpPort();
      const child = sh(`exec ${server.command(port)}`);
      await waitForTcpListen(port);
      const out = await new Deno.Command("node", {
        args: [
          "-e",
          CLIENT,
          `ws://127.0.0.1:${port}/`,
          String(options.seconds),
          String(options.size),
        ],
        env: { NODE_PATH },
        stdout: "piped",
        stderr: "piped",
      }).output();
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone.
      }
      await child.output();
      if (!out.success) throw new Error(`${server.name}: ${new TextDecoder().decode(out.stderr)}`);
      const { msgs, mbps } = JSON.parse(new TextDecoder().decode(out.stdout));
      const r = results.get(server.name) ?? { msgs: [], mbps: [] };
      r.msgs.push(msgs);
      r.mbps.push(mbps);
      results.set(server.name, r);
    }
  }
  const node = results.get("node ws")!;
  const rows: Row[] = [];
  for (const [kind, unit] of [["msgs", "msg/s"], ["mbps", "MB/s"]] as const) {
    for (const [name, r] of results) {
      const mid = median(r[kind]);
      const ratio = mid / median(node[kind]);
      rows.push({
        bench: kind === "msgs"
          ? "ping-pong 64 B, 1 conn"
          : `bulk ${options.size / 2 ** 20} MiB echoed`,
        tool: name,
        value: `${mid.toFixed(kind === "msgs" ? 0 : 1)} ${unit}`,
        range: `${Math.min(...r[kind]).toFixed(0)}–${Math.max(...r[kind]).toFixed(0)}`,
        ratio: `${ratio.toFixed(2)}× node ws`,
        target: name.startsWith("sockit") ? `≥ 1.0× node ws: ${ratio >= 1 ? "met" : "MISSED"}` : "",
      });
    }
  }
  return rows;
}
