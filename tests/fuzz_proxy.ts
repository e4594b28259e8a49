/**
 * `sockit proxy` fuzzed: SOCKS4, SOCKS4a, SOCKS5 and HTTP requests for
 * every spelling of the local host and of an allowed target, with and
 * without credentials, then mutated (cut short, bytes flipped, inserted,
 * repeated, glued to another request, sent in two writes or half-closed)
 * and thrown at two proxies, one with `--auth`. The rules every input must
 * keep: the proxy never crashes, never connects to the denied canary,
 * answers or closes within its request timeout (plus connecting), never
 * stalls other clients (a well-formed request after each batch is served),
 * and gives back its descriptors. `tests/fuzz_test.ts` runs a sample in
 * every test run; `deno task fuzz` runs as many as asked.
 */

import fc from "fast-check";
import type { SockitRun } from "./helpers.ts";
import { decoder, encoder, spawnSockit } from "./helpers.ts";
import { askBytes, Canary } from "./proxy_clients.ts";
import type { AskProtocol } from "./proxy_clients.ts";

/** The proxies' request timeout, in ms: short, so that inputs cut short end soon. */
const REQUEST_TIMEOUT = 300;
/** Their connect timeout, in ms. */
const CONNECT_TIMEOUT = 1000;
/** How long an input may go without an answer or a close (timeouts plus a margin for the load). */
const ANSWER_WITHIN = REQUEST_TIMEOUT + CONNECT_TIMEOUT + 4000;

/** Host spellings: of the local host (the canary must stay unreached) and of the allowed target. */
const HOSTS = [
  "127.0.0.1",
  "0.0.0.0",
  "0",
  "2130706433",
  "0x7f.1",
  "0177.0.0.1",
  "127.1",
  "localhost",
  "localhost.",
  "::",
  "::1",
  "::ffff:0.0.0.0",
  "::ffff:127.0.0.1",
  "::127.0.0.1",
  "::1%lo",
  "0:0:0:0:0:0:0:1",
  "",
  "a".repeat(300),
];

/** One fuzz input: which proxy, the bytes, how they are sent. */
export interface ProxyInput {
  /** 0: no authentication; 1: `--auth u:p`. */
  proxy: 0 | 1;
  /** The protocol the unmutated request spoke (for messages). */
  protocol: AskProtocol | "raw";
  /** The bytes. */
  bytes: Uint8Array;
  /** Send in two writes at this offset (0: one write). */
  split: number;
  /** Half-close after sending. */
  halfClose: boolean;
}

/**
 * The port the inputs aim at: the echo target listens on it on ::1
 * (allowed), the canary on 127.0.0.1 (denied) — so `0.0.0.0`, `::` and
 * their kin, which reach 127.0.0.1, are what the rules must catch.
 */
interface Ports {
  /** The one port. */
  port: number;
}

/** A well-formed request, before mutation. */
function requests(ports: Ports): fc.Arbitrary<{ protocol: AskProtocol; bytes: Uint8Array }> {
  const protocol = fc.constantFrom<AskProtocol>(
    "socks4",
    "socks4a",
    "socks5",
    "http-connect",
    "http",
  );
  const host = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...HOSTS) },
    { weight: 4, arbitrary: fc.constantFrom("::1", "0:0:0:0:0:0:0:1", "::1%lo") }, // the allowed target
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.ipV4() }, // refused by the rules, never dialled
    { weight: 1, arbitrary: fc.ipV6() },
  );
  const port = fc.oneof(
    { weight: 4, arbitrary: fc.constant(ports.port) },
    { weight: 1, arbitrary: fc.constantFrom(0, 1, 65535) },
  );
  const credentials = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom({}, { user: "u", pass: "p" }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        { user: "u", pass: "wrong" },
        { user: "u:p", pass: "" },
        { user: "", pass: "" },
      ),
    },
  );
  return fc.tuple(protocol, host, port, credentials, fc.boolean(), fc.option(httpExtra(ports)))
    .map(([protocol, host, port, creds, literal, extra]) => {
      // SOCKS4 carries IPv4 addresses only: others go as SOCKS4a names.
      const as = protocol === "socks4" && !/^\d+\.\d+\.\d+\.\d+$/.test(host) ? "socks4a" : protocol;
      let bytes: Uint8Array;
      try {
        bytes = askBytes(as, host, port, {
          ...creds,
          literal: literal && /^[\d.]+$|:/.test(host) && !host.includes("%"),
        });
      } catch {
        bytes = askBytes(as, "127.0.0.1", port, creds); // not encodable as an address
      }
      if (extra && as === "http") {
        // A header block of our choosing: bodies, pipelining, smuggling attempts.
        const text = decoder.decode(bytes).replace(/\r\n\r\n$/, `\r\n${extra}`);
        bytes = encoder.encode(text);
      }
      return { protocol: as, bytes };
    });
}

/** What may follow a plain HTTP request's headers. */
function httpExtra(ports: Ports): fc.Arbitrary<string> {
  const second = `GET http://127.0.0.1:${ports.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`;
  return fc.constantFrom(
    "\r\n",
    "Content-Length: 5\r\n\r\nhello",
    `Content-Length: 0\r\n\r\n${second}`,
    `Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${second}`,
    "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "X-A: 1\nHost: evil.example\r\n\r\n",
    "Proxy-Authorization : Basic dTpw\r\n\r\n",
    " folded\r\n\r\n",
    `Connection: keep-alive\r\n\r\n${second}`,
  );
}

/** Mutations of a request's bytes. */
function mutated(base: Uint8Array): fc.Arbitrary<Uint8Array> {
  const n = base.length;
  const at = fc.nat({ max: Math.max(0, n - 1) });
  const someBytes = fc.oneof(
    fc.uint8Array({ maxLength: 16 }),
    fc.constantFrom(
      new Uint8Array([0]),
      new Uint8Array([255]),
      encoder.encode("\r\n"),
      encoder.encode("\n"),
      encoder.encode(":"),
      encoder.encode(" "),
      new Uint8Array([5, 1, 0]),
      new Uint8Array([4, 1, 0, 80, 0, 0, 0, 1, 0]),
    ),
  );
  const join = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(base) },
    { weight: 2, arbitrary: at.map((i) => base.slice(0, i)) }, // cut short
    {
      weight: 2,
      arbitrary: fc.tuple(at, fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
        const out = base.slice();
        if (n) out[i] = b;
        return out;
      }),
    }, // one byte changed
    {
      weight: 2,
      arbitrary: fc.tuple(at, someBytes).map(([i, b]) =>
        join(base.subarray(0, i), b, base.subarray(i))
      ),
    }, // bytes inserted
    {
      weight: 1,
      arbitrary: fc.tuple(at, at).map(([i, j]) =>
        join(base.subarray(0, Math.max(i, j)), base.subarray(Math.min(i, j)))
      ),
    }, // a stretch repeated
    { weight: 1, arbitrary: someBytes.map((b) => join(base, b)) }, // trailing bytes
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) }, // noise
  );
}

/** Fuzz inputs aimed at `ports`. */
export function proxyInputs(ports: Ports): fc.Arbitrary<ProxyInput> {
  return requests(ports).chain(({ protocol, bytes }) =>
    fc.record({
      proxy: fc.constantFrom<0 | 1>(0, 1),
      protocol: fc.constant<AskProtocol | "raw">(protocol),
      bytes: mutated(bytes),
      split: fc.nat({ max: 40 }),
      halfClose: fc.boolean(),
    })
  );
}

/** The number of descriptors process `pid` has open (through `ls`: Deno reads /proc only with -A). */
async function descriptors(pid: number): Promise<number> {
  const out = await new Deno.Command("ls", { args: [`/proc/${pid}/fd`] }).output();
  return decoder.decode(out.stdout).split("\n").filter(Boolean).length;
}

/** Sends one input; resolves to a broken rule, or undefined. */
async function send(port: number, input: ProxyInput): Promise<string | undefined> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (err) {
    return `could not connect to the proxy: ${(err as Error).message}`;
  }
  const started = Date.now();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, ANSWER_WITHIN);
  try {
    const { bytes, split } = input;
    const cut = split > 0 && split < bytes.length ? split : bytes.length;
    await conn.write(bytes.subarray(0, cut));
    if (cut < bytes.length) {
      await new Promise((r) => setTimeout(r, 20));
      await conn.write(bytes.subarray(cut));
    }
    if (input.halfClose) await conn.closeWrite();
  } catch {
    // The proxy closed first: that is an answer.
  }
  // Until the proxy closes, or has answered (any bytes, then a moment for the rest).
  const buf = new Uint8Array(4096);
  let got = 0;
  try {
    for (;;) {
      const read = conn.read(buf);
      const n = got > 0
        ? await Promise.race([read, new Promise<"quiet">((r) => setTimeout(() => r("quiet"), 50))])
        : await read;
      if (n === "quiet") {
        read.catch(() => {});
        break;
      }
      if (n === null) break;
      got += n;
    }
  } catch {
    // Reset or closed by the timer.
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
  if (timedOut) {
    return `no answer and no close within ${Date.now() - started} ms`;
  }
  return undefined;
}

/** A well-formed SOCKS5 request to the echo target, and the echo: the proxy still serves. */
async function served(port: number, echo: number, auth: boolean): Promise<string | undefined> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 5000);
  try {
    const request = askBytes(
      "socks5",
      "::1",
      echo,
      auth ? { user: "u", pass: "p", literal: true } : { literal: true },
    );
    await conn.write(request);
    await conn.write(encoder.encode("ping"));
    const want = (auth ? 4 : 2) + 22 + 4;
    const got = new Uint8Array(want);
    let n = 0;
    while (n < want) {
      const r = await conn.read(got.subarray(n));
      if (r === null) break;
      n += r;
    }
    const text = decoder.decode(got.subarray(want - 4, n));
    return text === "ping" ? undefined : `a well-formed request got ${n} bytes back, not the echo`;
  } catch (err) {
    return `a well-formed request failed: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@linkcode fuzzProxy}. */
export interface ProxyFuzzOptions {
  /** How many inputs. */
  runs: number;
  /** The generator's seed. */
  seed: number;
  /** Inputs in flight at once. */
  concurrency: number;
  /** A well-formed request is checked after each batch of this many. */
  batch: number;
}

/** What a fuzz run found. */
export interface ProxyFuzzResult {
  /** Inputs sent. */
  runs: number;
  /** Broken rules, in words. */
  failures: string[];
  /** How many inputs each proxy logged as proxied, refused, or neither (closed early). */
  outcomes: Record<string, number>;
  /** Well-formed requests checked between batches. */
  probes: number;
}

/** An echo server on ::1 (the allowed target), in this process. */
function echoServer(): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  return serveEcho(listener);
}

/** Echoes every connection of `listener` until closed. */
function serveEcho(listener: Deno.Listener): { port: number; close: () => Promise<void> } {
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        (async () => {
          const buf = new Uint8Array(16384);
          try {
            for (;;) {
              const n = await conn.read(buf);
              if (n === null) break;
              await conn.write(buf.subarray(0, n));
            }
          } catch {
            // Reset by the proxy.
          } finally {
            conns.delete(conn);
            try {
              conn.close();
            } catch {
              // Closed already.
            }
          }
        })();
      }
    } catch {
      // Closed.
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: async () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await serving;
      // The connection tasks end once their reads fail.
      for (let i = 0; i < 50 && conns.size; i++) await new Promise((r) => setTimeout(r, 10));
    },
  };
}

/**
 * Runs the proxy fuzz: two `sockit proxy` processes (without and with
 * `--auth u:p`) that may reach only the echo target on ::1 and must never
 * reach the canary, each input sent and checked, a well-formed request
 * after each batch; then descriptors and exit checked.
 */
export async function fuzzProxy(options: ProxyFuzzOptions): Promise<ProxyFuzzResult> {
  let echo: ReturnType<typeof echoServer>;
  let canary: Canary;
  for (let tries = 0;; tries++) {
    echo = echoServer();
    try {
      canary = new Canary(["127.0.0.1"], echo.port);
      break;
    } catch (err) {
      await echo.close();
      if (tries > 20) throw err;
    }
  }
  const failures: string[] = [];
  const port = echo.port;
  const rules = [
    "--request-timeout",
    `${REQUEST_TIMEOUT}ms`,
    "--connect-timeout",
    `${CONNECT_TIMEOUT}ms`,
    // Only loopback and the unspecified addresses at the one port (nothing
    // leaves the machine), and of those not 127.0.0.0/8, where the canary
    // is: 0.0.0.0 and :: reach it, and must be refused.
    "--allow-target",
    `[::1]:${port}`,
    "--allow-target",
    `127.0.0.0/8:${port}`,
    "--allow-target",
    `0.0.0.0/8:${port}`,
    "--allow-target",
    `[::]:${port}`,
    "--deny-target",
    "127.0.0.0/8",
  ];
  const runs: SockitRun[] = [
    spawnSockit(["proxy", "127.0.0.1:0", "--json", ...rules], { process: true }),
    spawnSockit(["proxy", "127.0.0.1:0", "--json", "--auth", "u:p", ...rules], { process: true }),
  ];
  const ended = runs.map((run) => {
    const state = { done: false };
    run.result().then(() => state.done = true);
    return state;
  });
  let probes = 0;
  try {
    const ports = await Promise.all(runs.map((r) => r.listeningPort()));
    const pids = runs.map((r) => (r as unknown as { child: Deno.ChildProcess }).child.pid);
    for (const [i] of ports.entries()) {
      if (await served(ports[i], echo.port, i === 1)) throw new Error("the proxy serves nobody");
    }
    await new Promise((r) => setTimeout(r, 200));
    const before = await Promise.all(pids.map(descriptors));
    const inputs = fc.sample(proxyInputs({ port }), {
      numRuns: options.runs,
      seed: options.seed,
    });
    for (let start = 0; start < inputs.length; start += options.batch) {
      const batch = inputs.slice(start, start + options.batch);
      let next = 0;
      const worker = async () => {
        while (next < batch.length) {
          const input = batch[next++];
          const broke = await send(ports[input.proxy], input);
          if (broke) failures.push(`${describe(input)}: ${broke}`);
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      for (const [i, port] of ports.entries()) {
        probes++;
        const broke = await served(port, echo.port, i === 1);
        if (broke) failures.push(`after inputs ${start}–${start + batch.length - 1}: ${broke}`);
      }
      for (const [i, state] of ended.entries()) {
        if (state.done) {
          failures.push(`proxy ${i} ended during the fuzz:\n${runs[i].stderr.slice(-2000)}`);
          throw new Error("a proxy ended");
        }
      }
    }
    // Every input's connection is closed: the proxies' descriptors come back (timeouts included).
    for (const [i, pid] of pids.entries()) {
      let now = await descriptors(pid);
      for (let tries = 0; tries < 60 && now > before[i]; tries++) {
        await new Promise((r) => setTimeout(r, 100));
        now = await descriptors(pid);
      }
      if (now > before[i]) {
        failures.push(`proxy ${i}: ${now - before[i]} descriptors not given back`);
      }
    }
  } finally {
    for (const run of runs) run.kill("SIGTERM");
    const results = await Promise.all(runs.map((r) => r.result()));
    for (const [i, r] of results.entries()) {
      if (r.code !== 143) failures.push(`proxy ${i} exited ${r.code} on SIGTERM`);
      if (/^\s+at .*:\d+:\d+\)?$/m.test(r.stderr) || /Uncaught/.test(r.stderr)) {
        failures.push(`proxy ${i}: a stack trace:\n${r.stderr.slice(-2000)}`);
      }
    }
    await canary.close();
    await echo.close();
    if (canary.count) failures.push(`the denied canary was reached ${canary.count} times`);
  }
  const outcomes: Record<string, number> = {};
  for (const run of runs) {
    for (const line of run.stderr.split("\n")) {
      const event = /^\{"event":"(proxied|refused)"/.exec(line)?.[1];
      if (event) outcomes[event] = (outcomes[event] ?? 0) + 1;
    }
  }
  return { runs: options.runs, failures, outcomes, probes };
}

/** An input in words, for a failure message. */
function describe(input: ProxyInput): string {
  const hex = [...input.bytes.subarray(0, 80)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `proxy ${input.proxy} ${input.protocol} (${input.bytes.length} B${
    input.split ? `, split at ${input.split}` : ""
  }${input.halfClose ? ", half-closed" : ""}) ${hex}`;
}
