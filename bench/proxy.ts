/**
 * Proxy: (1) bulk — 1 GiB from `nc -N -X 5 -x proxy` through a SOCKS5 proxy
 * to `nc -l`, `sockit proxy` against `microsocks`, interleaved, median and
 * range, the proxy's CPU from `/usr/bin/time`; (2) short tunnels — 1,000
 * CONNECT tunnels (each: connect, handshake, one byte to an echo server
 * and back, close), 32 at a time, from a load generator in this process:
 * `sockit proxy` over SOCKS5 against microsocks, and over HTTP CONNECT
 * against tinyproxy. Targets: bulk ≥ 1.0× microsocks; short tunnels ≥ 1.0×
 * the faster of the two.
 *
 * @module
 */

import {
  descendants,
  freeTcpPort,
  median,
  type Row,
  sh,
  sockitServerShell,
  waitForTcpListen,
  which,
} from "./util.ts";

/** Options of {@linkcode benchProxy}. */
export interface ProxyBenchOptions {
  /** Bytes of the bulk transfer. Default 1 GiB. */
  size: number;
  /** Runs of each. Default 3. */
  runs: number;
  /** Short tunnels per run. Default 1000. */
  tunnels: number;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface ProxyUnderTest {
  name: string;
  command: (port: number, dir: string) => string;
}

async function startProxy(p: ProxyUnderTest, dir: string, timed: boolean) {
  const port = freeTcpPort();
  const time = timed && which("/usr/bin/time") ? "/usr/bin/time -f 'cpu=%U+%S' " : "";
  const child = sh(`exec ${time}${p.command(port, dir)}`);
  await waitForTcpListen(port);
  return {
    port,
    async stop(): Promise<number> {
      const [pid] = time ? await descendants(child.pid) : [child.pid];
      try {
        Deno.kill(pid ?? child.pid, "SIGTERM");
      } catch {
        // Gone already.
      }
      const out = await child.output();
      const m = /cpu=([\d.]+)\+([\d.]+)/.exec(decoder.decode(out.stderr));
      return m ? Number(m[1]) + Number(m[2]) : NaN;
    },
  };
}

/** Reads until `n` bytes came (or the end). */
async function readSome(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new Error(`closed after ${at} of ${n} bytes`);
    at += got;
  }
  return out;
}

/** One short tunnel through the proxy to the echo port: handshake, one byte there and back. */
async function tunnel(proxyPort: number, kind: "socks5" | "http", echoPort: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
  try {
    if (kind === "socks5") {
      await conn.write(new Uint8Array([5, 1, 0]));
      await readSome(conn, 2);
      await conn.write(new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff]));
      await readSome(conn, 10);
    } else {
      await conn.write(
        encoder.encode(
          `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`,
        ),
      );
      let head = "";
      const buf = new Uint8Array(512);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) throw new Error("proxy closed");
        head += decoder.decode(buf.subarray(0, n));
      }
      if (!/^HTTP\/1\.\d 200/.test(head)) throw new Error(head.split("\r\n")[0]);
    }
    await conn.write(new Uint8Array([42]));
    const [b] = await readSome(conn, 1);
    if (b !== 42) throw new Error("wrong echo");
  } finally {
    conn.close();
  }
}

/** Runs the proxy comparison. */
export async function benchProxy(
  options: ProxyBenchOptions = { size: 2 ** 30, runs: 3, tunnels: 1000 },
): Promise<Row[]> {
  for (const tool of ["microsocks", "tinyproxy", "nc"]) {
    if (!which(tool)) return [{ bench: "proxy", tool: "-", note: `${tool} is not installed` }];
  }
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-proxy-" });
  const sockit: ProxyUnderTest = {
    name: "sockit proxy",
    command: (port) =>
      `${
        sockitServerShell().replace(" --allow-net ", " --allow-net --allow-ffi ")
      } proxy 127.0.0.1:${port}`,
  };
  const microsocks: ProxyUnderTest = {
    name: "microsocks",
    command: (port) => `microsocks -i 127.0.0.1 -p ${port}`,
  };
  const tinyproxy: ProxyUnderTest = {
    name: "tinyproxy",
    command: (port, d) => {
      Deno.writeTextFileSync(
        `${d}/tinyproxy-${port}.conf`,
        `Port ${port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogLevel Critical\nMaxClients 200\n`,
      );
      return `tinyproxy -d -c ${d}/tinyproxy-${port}.conf`;
    },
  };
  const rows: Row[] = [];
  try {
    // Bulk.
    const seconds = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    for (let run = 0; run < options.runs; run++) {
      for (const p of run % 2 ? [microsocks, sockit] : [sockit, microsocks]) {
        const proxy = await startProxy(p, dir, true);
        const sinkPort = freeTcpPort();
        const sink = sh(`nc -l 127.0.0.1 ${sinkPort} | wc -c`);
        await waitForTcpListen(sinkPort);
        const started = performance.now();
        await sh(
          `head -c ${options.size} /dev/zero | nc -N -X 5 -x 127.0.0.1:${proxy.port} 127.0.0.1 ${sinkPort}`,
        ).output();
        const got = Number(decoder.decode((await sink.output()).stdout).trim());
        const elapsed = (performance.now() - started) / 1000;
        const used = await proxy.stop();
        if (got !== options.size) throw new Error(`${p.name}: ${got} of ${options.size} bytes`);
        seconds.set(p.name, [...(seconds.get(p.name) ?? []), elapsed]);
        cpu.set(p.name, [...(cpu.get(p.name) ?? []), used]);
      }
    }
    const theirs = median(seconds.get("microsocks")!);
    for (const p of [sockit, microsocks]) {
      const s = seconds.get(p.name)!;
      rows.push({
        bench: `bulk ${options.size / 2 ** 20} MiB, SOCKS5`,
        tool: p.name,
        value: `${median(s).toFixed(3)} s`,
        range: `${Math.min(...s).toFixed(2)}–${Math.max(...s).toFixed(2)} s`,
        ratio: `${(theirs / median(s)).toFixed(2)}× microsocks`,
        cpu: `${median(cpu.get(p.name)!).toFixed(2)} s`,
        target: p === sockit
          ? `≥ 1.0× microsocks: ${theirs / median(s) >= 1 ? "met" : "MISSED"}`
          : "",
      });
    }
    // Short tunnels.
    const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      for await (const conn of echo) {
        (async () => {
          const buf = new Uint8Array(64);
          try {
            for (;;) {
              const n = await conn.read(buf);
              if (n === null) break;
              await conn.write(buf.subarray(0, n));
            }
          } catch {
            // The tunnel went away.
          } finally {
            conn.close();
          }
        })();
      }
    })();
    const cases: [ProxyUnderTest, "socks5" | "http"][] = [
      [sockit, "socks5"],
      [microsocks, "socks5"],
      [sockit, "http"],
      [tinyproxy, "http"],
    ];
    const rates = new Map<string, number[]>();
    for (let run = 0; run < options.runs; run++) {
      for (const [p, kind] of run % 2 ? [...cases].reverse() : cases) {
        const proxy = await startProxy(p, dir, false);
        let next = 0;
        const started = performance.now();
        await Promise.all(Array.from({ length: 32 }, async () => {
          while (next < options.tunnels) {
            next++;
            await tunnel(proxy.port, kind, echo.addr.port);
          }
        }));
        const rate = options.tunnels / ((performance.now() - started) / 1000);
        await proxy.stop();
        const key = `${p.name} (${kind})`;
        rates.set(key, [...(rates.get(key) ?? []), rate]);
      }
    }
    echo.close();
    await serving.catch(() => {});
    const best = Math.max(
      median(rates.get("microsocks (socks5)")!),
      median(rates.get("tinyproxy (http)")!),
    );
    for (const [key, r] of rates) {
      rows.push({
        bench: `${options.tunnels} short tunnels`,
        tool: key,
        value: `${median(r).toFixed(0)} tunnels/s`,
        range: `${Math.min(...r).toFixed(0)}–${Math.max(...r).toFixed(0)}`,
        ratio: `${(median(r) / best).toFixed(2)}× the faster`,
        target: key.startsWith("sockit")
          ? `≥ 1.0× the faster of microsocks/tinyproxy: ${median(r) >= best ? "met" : "MISSED"}`
          : "",
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}
