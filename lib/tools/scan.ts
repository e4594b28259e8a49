/**
 * `scan`: a TCP connect scan. Correctness first:
 *
 * - no false positives: on loopback a probe can connect to itself when its
 *   ephemeral source port equals the target port (TCP simultaneous open);
 *   such a connection is recognised and discarded;
 * - no false negatives: a probe that fails for a local reason (too many open
 *   files, no buffer space) is tried again instead of counting as closed.
 *
 * Speed: Deno stalls the `Deno.connect` calls beyond 128 pending at once,
 * and one event loop spends ~20 µs per probe. So the ports are shared out
 * (through one atomic counter) to one worker per CPU, each with at most 100
 * probes in flight; the kernel work of the probes then runs in parallel.
 *
 * @module
 */

import { nextConnectionId } from "../net/conn.ts";
import { directDialer } from "../net/dial.ts";
import type { Dialer } from "../net/dial.ts";
import type { SourceAddress } from "../net/tcp_libc.ts";
import {
  errnoError,
  ExitCode,
  rebuildError,
  SockitError,
  toSockitError,
  UsageError,
} from "../base/errors.ts";
import { C, type Constants } from "../sys/constants.ts";
import { READABLE } from "../sys/epoll.ts";
import { ffiAvailable, lastErrno } from "../sys/libc.ts";
import { encodeInet, type InetAddress, inetAddress } from "../sys/sockaddr.ts";
import { domainOf, LibcSocket } from "../sys/socket.ts";
import { startWorker, type SymbolTable, workerSource } from "../sys/worker.ts";
import { formatHost, isIPv4 } from "../net/ip.ts";
import { servicePort } from "../net/services.ts";

/** The most probes one worker keeps in flight (Deno stalls beyond 128). */
export const PROBES_PER_WORKER = 100;

/**
 * Parses a port list like `22,80,8000-8100,https`: ports 1–65535 or
 * service names (`/etc/services`), ranges ascending. Returns the ports in order, without duplicates. Throws a
 * {@linkcode UsageError} naming the input and the bad part.
 *
 * @example Usage
 * ```ts
 * import { parsePorts } from "./scan.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parsePorts("22,80,8000-8002"), [22, 80, 8000, 8001, 8002]);
 * assert.throws(() => parsePorts("90-80"), /range must ascend/);
 * ```
 */
export function parsePorts(text: string): number[] {
  const fail = (reason: string): never => {
    throw new UsageError(`cannot parse ports ${JSON.stringify(text)}: ${reason}`);
  };
  if (text.trim() === "") fail("empty");
  const ports = new Set<number>();
  const port = (word: string): number =>
    /^\d+$/.test(word) ? Number(word) : servicePort(word) ?? -1;
  for (const part of text.split(",")) {
    const word = part.trim();
    // A service name may itself contain "-" (http-alt): try the whole word first.
    const named = /^\d+$/.test(word) ? undefined : servicePort(word);
    const m = named === undefined ? /^([^-]+)(?:-([^-]+))?$/.exec(word) : undefined;
    if (named === undefined && (!m || port(m[1]) < 0 || (m[2] !== undefined && port(m[2]) < 0))) {
      fail(`${JSON.stringify(part)} is not a port or a range like 8000-8100 (nor a service name)`);
    }
    const from = named ?? port(m![1]);
    const to = named ?? (m![2] === undefined ? from : port(m![2]));
    for (const p of [from, to]) if (p < 1 || p > 65535) fail(`port ${p} is out of range 1–65535`);
    if (to < from) fail(`range must ascend: ${part}`);
    for (let p = from; p <= to; p++) ports.add(p);
  }
  return [...ports].sort((a, b) => a - b);
}

/** Formats ports compactly (`22,80,8000-8100`); the inverse of {@linkcode parsePorts}. */
export function formatPorts(ports: number[]): string {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** An open port. */
export interface PortResult {
  /** The port number. */
  port: number;
  /** Always `open`: closed and filtered ports are not reported. */
  state: "open";
  /** Milliseconds the connection took. */
  latencyMs: number;
}

/** Options of {@linkcode scan}. */
export interface ScanOptions {
  /** Probes in flight at once, over all workers (default 200). */
  concurrency?: number;
  /** Give up on a port after this many ms (default 1000): it counts as filtered. */
  timeout?: number;
  /** Workers to use (default: one per CPU, at least enough for `concurrency`). */
  workers?: number;
  /** Stops the scan; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Probe through libc — non-blocking `connect()` and `poll()` in batches —
   * rather than `Deno.connect` (default: when `--allow-ffi` is granted on
   * Linux). The default concurrency is then 512.
   */
  libc?: boolean;
  /** Told which way the ports are probed, before the first probe. */
  onPath?: (path: "libc" | "deno" | "proxy" | "source") => void;
  /**
   * Probe by dialling through this dialer (a proxy's, `--proxy`) rather than
   * directly: a port is open when the tunnel opens, closed when the proxy
   * says the target refused or could not be reached. Default concurrency 16.
   */
  dialer?: Dialer;
  /** Probe from this local address (`--source`): each probe then binds first, through libc. */
  source?: SourceAddress;
}

/**
 * The probe loop. It runs in a worker, so it only uses what it is sent: the
 * function's source text becomes the worker script, called with the
 * constants of `sys/constants.ts`.
 */
function probeWorker(C: Constants): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown): void;
    close(): void;
  };
  scope.onmessage = async (event: MessageEvent) => {
    const { hostname, ports, next, inFlight, timeout } = event.data as {
      hostname: string;
      ports: Int32Array;
      next: Int32Array;
      inFlight: number;
      timeout: number;
    };
    const open: Array<{ port: number; latencyMs: number }> = [];
    let failure: { name: string; message: string } | undefined;
    // Out of descriptors or buffers: try again rather than call it closed.
    const retry = [C.EMFILE, C.ENFILE, C.ENOBUFS, C.EAGAIN].map((e) => `os error ${e})`);
    const retryable = (err: unknown) => {
      const message = String((err as Error)?.message);
      return retry.some((text) => message.includes(text)) ||
        /Too many open files|No buffer space/.test(message);
    };
    // What a closed or filtered port looks like; anything else ends the scan.
    const closed = (err: unknown) =>
      ["ConnectionRefused", "ConnectionReset", "TimedOut", "AbortError", "TimeoutError"]
        .includes((err as Error)?.name);
    // One sweep aborts the probes past their deadline (a timer per probe costs ~8%).
    const inflight = new Map<AbortController, number>();
    const sweep = setInterval(() => {
      const now = performance.now();
      for (const [controller, deadline] of inflight) if (deadline <= now) controller.abort();
    }, Math.max(5, Math.min(50, timeout / 4)));
    const probe = async (port: number): Promise<void> => {
      for (let attempt = 0;; attempt++) {
        const started = performance.now();
        const controller = new AbortController();
        inflight.set(controller, started + timeout);
        try {
          const conn = await Deno.connect({ hostname, port, signal: controller.signal });
          const local = conn.localAddr as Deno.NetAddr;
          conn.close();
          // A probe that connected to itself (simultaneous open on loopback) is no server.
          if (local.port === port && local.hostname === hostname) return;
          open.push({ port, latencyMs: Math.round((performance.now() - started) * 100) / 100 });
          return;
        } catch (err) {
          if (closed(err)) return;
          if (!retryable(err) || attempt >= 20) {
            failure ??= { name: (err as Error)?.name, message: (err as Error)?.message };
            Atomics.store(next, 0, ports.length);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
        } finally {
          inflight.delete(controller);
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, async () => {
      for (;;) {
        const i = Atomics.add(next, 0, 1);
        if (i >= ports.length) return;
        await probe(ports[i]);
      }
    }));
    clearInterval(sweep);
    scope.postMessage({ open, failure });
    scope.close();
  };
}

/**
 * The probe loop through libc, for when `--allow-ffi` is granted: a batch
 * of non-blocking `connect()`s, then `poll()` on all of them until each has
 * answered or the timeout has passed, then the next batch — no Deno task,
 * promise or Error per port (~8 µs per probe against ~30 µs). It runs in a
 * worker and blocks that worker's thread in `poll()`, never the main one.
 * Self-contained like {@linkcode probeWorker}.
 */
function libcProbeWorker(
  C: Constants,
  symbols: SymbolTable<typeof LIBC_PROBE_SYMBOLS[number]>,
): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown): void;
    close(): void;
  };
  scope.onmessage = (event: MessageEvent) => {
    const { family, address, ports, next, stop, batch, timeout } = event.data as {
      family: number;
      address: Uint8Array;
      ports: Int32Array;
      next: Int32Array;
      stop: Int32Array;
      batch: number;
      timeout: number;
    };
    const stopped = () => Atomics.load(stop, 0) !== 0;
    const lib = Deno.dlopen("libc.so.6", symbols);
    const c = lib.symbols;
    const errno = () => {
      const ptr = c.__errno_location();
      return ptr ? new Deno.UnsafePointerView(ptr).getInt32() : 0;
    };
    const SOCK_STREAM_NONBLOCK_CLOEXEC = C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
    // Out of descriptors, ports or buffers: wait and try again rather than call it closed.
    const RETRY = new Set<number>([C.EAGAIN, C.ENFILE, C.EMFILE, C.EADDRNOTAVAIL, C.ENOBUFS]);
    // What a closed port looks like (refused, reset, timed out); anything else ends the scan.
    const CLOSED = new Set<number>([C.ECONNREFUSED, C.ECONNRESET, C.ETIMEDOUT]);
    const sa = new Uint8Array(address);
    const view = new DataView(sa.buffer);
    const open: Array<{ port: number; latencyMs: number }> = [];
    let failure: { errno: number } | undefined;
    const fds = new Int32Array(batch);
    const started = new Float64Array(batch);
    const portOf = new Int32Array(batch);
    const pollfds = new Uint8Array(batch * 8);
    const pollView = new DataView(pollfds.buffer);
    const intBuf = new Uint8Array(4);
    const lenBuf = new Uint8Array(4);
    const local = new Uint8Array(28);
    const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    /** Whether the connection on `fd` is to itself (simultaneous open on loopback). */
    const self = (fd: number, port: number) => {
      new DataView(lenBuf.buffer).setUint32(0, local.length, true);
      if (c.getsockname(fd, local, lenBuf) !== 0) return false;
      const localPort = new DataView(local.buffer).getUint16(2, false);
      if (localPort !== port) return false;
      const at = family === C.AF_INET ? 4 : 8;
      const size = family === C.AF_INET ? 4 : 16;
      return local.subarray(at, at + size).every((b, i) => b === sa[at + i]);
    };
    try {
      while (!failure && !stopped()) {
        const first = Atomics.add(next, 0, batch);
        if (first >= ports.length) break;
        const count = Math.min(batch, ports.length - first);
        let pending = 0;
        for (let i = 0; i < count && !failure; i++) {
          const port = ports[first + i];
          view.setUint16(2, port, false);
          for (let attempt = 0;; attempt++) {
            const fd = c.socket(family, SOCK_STREAM_NONBLOCK_CLOEXEC, 0);
            const t0 = performance.now();
            const e = fd < 0 ? errno() : c.connect(fd, sa, sa.length) === 0 ? 0 : errno();
            if (e === C.EINPROGRESS) {
              fds[pending] = fd;
              portOf[pending] = port;
              started[pending] = t0;
              pending++;
              break;
            }
            if (fd >= 0 && e === 0 && !self(fd, port)) open.push({ port, latencyMs: 0 });
            if (fd >= 0) c.close(fd);
            if (e === 0 || CLOSED.has(e)) break;
            if (RETRY.has(e) && attempt < 20) {
              sleep(10 * (attempt + 1));
              continue;
            }
            failure = { errno: e };
            break;
          }
        }
        // Wait for the batch: each fd is writable once its connect has an answer.
        const deadline = performance.now() + timeout;
        while (pending > 0) {
          for (let k = 0; k < pending; k++) {
            pollView.setInt32(k * 8, fds[k], true);
            pollView.setInt16(k * 8 + 4, C.POLLOUT, true);
            pollView.setInt16(k * 8 + 6, 0, true);
          }
          const left = Math.ceil(deadline - performance.now());
          if (left <= 0 || stopped()) break; // the rest timed out (filtered), or the scan stops
          // In slices, so that a stop is seen within 50 ms.
          const n = c.poll(pollfds, BigInt(pending), Math.min(left, 50));
          if (n < 0 && errno() !== C.EINTR) break;
          if (n <= 0) continue;
          let kept = 0;
          for (let k = 0; k < pending; k++) {
            if (pollView.getInt16(k * 8 + 6, true) === 0) {
              fds[kept] = fds[k];
              portOf[kept] = portOf[k];
              started[kept] = started[k];
              kept++;
              continue;
            }
            new DataView(lenBuf.buffer).setUint32(0, 4, true);
            c.getsockopt(fds[k], C.SOL_SOCKET, C.SO_ERROR, intBuf, lenBuf);
            const soError = new DataView(intBuf.buffer).getInt32(0, true);
            if (soError === 0 && !self(fds[k], portOf[k])) {
              const latencyMs = Math.round((performance.now() - started[k]) * 100) / 100;
              open.push({ port: portOf[k], latencyMs });
            }
            c.close(fds[k]);
          }
          pending = kept;
        }
        for (let k = 0; k < pending; k++) c.close(fds[k]);
      }
    } finally {
      lib.close();
    }
    scope.postMessage({ open, failure });
    scope.close();
  };
}

/** The libc functions a {@linkcode libcProbeWorker} calls. */
const LIBC_PROBE_SYMBOLS = [
  "socket",
  "connect",
  "getsockopt",
  "getsockname",
  "poll",
  "close",
  "__errno_location",
] as const;

let libcProbeSource: string | undefined;

let probeSource: string | undefined;

/**
 * Fails with exit 126 unless Deno lets sockit connect to every port asked
 * for: a denied probe would otherwise look like a closed port.
 */
function checkNetPermission(hostname: string, ports: number[]): void {
  const granted = (host: string) =>
    Deno.permissions.querySync({ name: "net", host }).state === "granted";
  if (granted(hostname)) return;
  const denied = ports.find((port) => !granted(`${formatHost(hostname)}:${port}`));
  if (denied === undefined) return;
  throw new SockitError(
    `permission denied: requires net access to "${formatHost(hostname)}:${denied}"`,
    {
      op: "scan",
      address: hostname,
      exitCode: ExitCode.PermissionDenied,
      code: "EPERM",
      hint: `run deno with --allow-net (or --allow-net=${
        formatHost(hostname)
      }) (see "Permissions" in the README)`,
    },
  );
}

/** Probes in flight at once through libc, over all workers, unless told otherwise. */
const LIBC_CONCURRENCY = 512;

/** {@linkcode scan} through {@linkcode libcProbeWorker}s. */
async function scanThroughLibc(
  hostname: string,
  ports: number[],
  options: ScanOptions,
): Promise<PortResult[]> {
  const cpus = navigator.hardwareConcurrency ?? 1;
  const workers = Math.max(1, Math.min(ports.length, options.workers ?? cpus, 32));
  const batch = Math.max(1, Math.ceil((options.concurrency ?? LIBC_CONCURRENCY) / workers));
  const shared = new Int32Array(new SharedArrayBuffer(ports.length * 4));
  shared.set(ports);
  const next = new Int32Array(new SharedArrayBuffer(4));
  const stop = new Int32Array(new SharedArrayBuffer(4));
  libcProbeSource ??= workerSource(libcProbeWorker, LIBC_PROBE_SYMBOLS);
  let address: Uint8Array;
  try {
    // A link-local address's zone (`fe80::1%eth0`) is its scope id.
    address = encodeInet(hostname, 0);
  } catch (err) {
    throw toSockitError(err, "scan", hostname);
  }
  // A worker blocked in poll() cannot be terminated mid-call: it is told to stop, and
  // closes its sockets, within one 50 ms poll slice.
  const onAbort = () => Atomics.store(stop, 0, 1);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let results: Array<ProbeOutcome & { failure?: { errno: number } }>;
  try {
    results = await runProbeWorkers(libcProbeSource, workers, {
      family: isIPv4(hostname) ? C.AF_INET : C.AF_INET6,
      address,
      ports: shared,
      next,
      stop,
      batch,
      timeout: options.timeout ?? 1000,
    }, { onError: onAbort });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
  if (options.signal?.aborted) throw options.signal.reason;
  const failure = results.find((r) => r.failure)?.failure;
  if (failure) throw toSockitError(errnoError(failure.errno), "scan", hostname);
  return openPorts(results);
}

/** What a probe worker reports: the open ports it found (and why it stopped early, if so). */
interface ProbeOutcome {
  open: Array<{ port: number; latencyMs: number }>;
}

/**
 * Starts `count` probe workers running `source`, each sent `message`, and resolves
 * to their reports; every worker is terminated at the end. With `signal`,
 * an abort rejects at once; `onError` runs when a worker fails.
 */
async function runProbeWorkers<T extends ProbeOutcome>(
  source: string,
  count: number,
  message: unknown,
  options: { signal?: AbortSignal; onError?: () => void },
): Promise<T[]> {
  const running: Worker[] = [];
  const { signal } = options;
  try {
    return await Promise.all(
      Array.from({ length: count }, () =>
        new Promise<T>((resolve, reject) => {
          const worker = startWorker("sockit-scan", source);
          running.push(worker);
          worker.onmessage = (event: MessageEvent) => resolve(event.data);
          worker.onerror = (event: ErrorEvent) => {
            event.preventDefault();
            options.onError?.();
            reject(new Error(event.message));
          };
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
          worker.postMessage(message);
        })),
    );
  } finally {
    for (const w of running) w.terminate();
  }
}

/** The open ports the workers found, in order. */
function openPorts(results: ProbeOutcome[]): PortResult[] {
  return results.flatMap((r) => r.open)
    .map((r): PortResult => ({ port: r.port, state: "open", latencyMs: r.latencyMs }))
    .sort((a, b) => a.port - b.port);
}

/**
 * Scans `ports` of one host (an IP literal: resolve names first) with TCP
 * connects; resolves to the open ports, in order.
 *
 * @example Usage
 * ```ts
 * import { scan } from "./scan.ts";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const open = await scan("127.0.0.1", [listener.addr.port]);
 * assert.deepEqual(open.map((r) => r.port), [listener.addr.port]);
 * listener.close();
 * ```
 */
export async function scan(
  hostname: string,
  ports: number[],
  options: ScanOptions = {},
): Promise<PortResult[]> {
  if (options.dialer) {
    options.onPath?.("proxy");
    return await scanThroughDialer(hostname, ports, options.dialer, options);
  }
  if (options.source) {
    const source = options.source;
    options.onPath?.("source");
    const direct = directDialer();
    return await scanThroughDialer(
      hostname,
      ports,
      async (target, ctx) => {
        const conn = await direct(target, { ...ctx, socket: { source } });
        // A socket given the probed port as its own connected to itself: not an open port.
        if (conn.localAddress === conn.remoteAddress) {
          conn.close();
          await conn.released;
          throw new SockitError("a self-connect", { op: "scan", code: "ECONNREFUSED" });
        }
        return conn;
      },
      { ...options, concurrency: options.concurrency ?? 64 },
    );
  }
  checkNetPermission(hostname, ports);
  if (options.libc ?? ffiAvailable()) {
    options.onPath?.("libc");
    return await scanThroughLibc(hostname, ports, options);
  }
  options.onPath?.("deno");
  const concurrency = Math.max(1, options.concurrency ?? 200);
  const cpus = navigator.hardwareConcurrency ?? 1;
  const workers = Math.max(
    1,
    Math.min(
      ports.length,
      options.workers ?? Math.max(cpus, Math.ceil(concurrency / PROBES_PER_WORKER)),
      32,
    ),
  );
  const inFlight = Math.max(1, Math.min(PROBES_PER_WORKER, Math.ceil(concurrency / workers)));
  const shared = new Int32Array(new SharedArrayBuffer(ports.length * 4));
  shared.set(ports);
  const next = new Int32Array(new SharedArrayBuffer(4));
  probeSource ??= workerSource(probeWorker);
  // The workers are terminated as the scan rejects; none takes a port after that.
  const stopAll = () => Atomics.store(next, 0, ports.length);
  options.signal?.addEventListener("abort", stopAll, { once: true });
  try {
    const results = await runProbeWorkers<
      ProbeOutcome & { failure?: { name: string; message: string } }
    >(probeSource, workers, {
      hostname,
      ports: shared,
      next,
      inFlight,
      timeout: options.timeout ?? 1000,
    }, { signal: options.signal });
    const failure = results.find((r) => r.failure)?.failure;
    if (failure) {
      throw toSockitError(rebuildError(failure.name, failure.message), "scan", hostname);
    }
    return openPorts(results);
  } finally {
    options.signal?.removeEventListener("abort", stopAll);
  }
}

/**
 * The scan through a dialer (a proxy): each port is one tunnel attempt, at
 * most `concurrency` at once, each limited to `timeout`. What the proxy
 * reports about the target decides the port; a failure of the proxy itself
 * (down, authentication) ends the scan with that error.
 */
async function scanThroughDialer(
  host: string,
  ports: number[],
  dialer: Dialer,
  options: ScanOptions,
): Promise<PortResult[]> {
  const open: PortResult[] = [];
  const timeout = options.timeout ?? 1000;
  let next = 0;
  let failure: unknown;
  const probe = async (port: number) => {
    const started = performance.now();
    const signal = options.signal
      ? AbortSignal.any([options.signal, AbortSignal.timeout(timeout)])
      : AbortSignal.timeout(timeout);
    try {
      const conn = await dialer({ host, port }, { id: nextConnectionId(), signal });
      conn.close();
      // A libc socket (--source) is released once out of the epoll set.
      await conn.released;
      open.push({
        port,
        state: "open",
        latencyMs: Math.round((performance.now() - started) * 100) / 100,
      });
    } catch (err) {
      if (options.signal?.aborted || signal.aborted) return;
      const code = (err as { code?: string }).code;
      if (code === "ECONNREFUSED" || code === "ETUNNEL") return;
      failure ??= err;
      next = ports.length;
    }
  };
  await Promise.all(
    Array.from(
      { length: Math.max(1, Math.min(ports.length, options.concurrency ?? 16)) },
      async () => {
        while (next < ports.length) await probe(ports[next++]);
      },
    ),
  );
  if (options.signal?.aborted) throw options.signal.reason;
  if (failure) throw failure;
  return open.sort((a, b) => a.port - b.port);
}

/** What a UDP probe found. */
export interface UdpPortResult {
  /** The port number. */
  port: number;
  /** `open`: a reply came; `open|filtered`: silence (nothing refused it). Closed ports are not reported. */
  state: "open" | "open|filtered";
}

/** Options of {@linkcode scanUdp}. */
export interface UdpScanOptions {
  /** How long to wait for a refusal or a reply, in ms (default 1000). */
  timeout?: number;
  /** Probes in flight at once (default 256). */
  concurrency?: number;
  /** Stops the scan; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Probe from this local address (`--source`; no port: the probes are many at once). */
  source?: SourceAddress;
}

/**
 * A UDP scan with connected sockets (through libc: `--allow-ffi`, Linux):
 * one byte to each port, then an ICMP port unreachable (`ECONNREFUSED` on
 * the socket) means closed, a reply means open, silence within the timeout
 * means open|filtered. A probe whose socket got the probed port as its own
 * (a self-connect on loopback) is made again. Across hosts the kernel
 * rate-limits ICMP errors, so silence there says little.
 *
 * @example Usage
 * ```ts ignore
 * const results = await scanUdp("127.0.0.1", [53, 5353], { timeout: 500 });
 * ```
 */
export async function scanUdp(
  hostname: string,
  ports: number[],
  options: UdpScanOptions = {},
): Promise<UdpPortResult[]> {
  if (!ffiAvailable()) {
    throw new SockitError("a UDP scan needs connected sockets, through libc: grant --allow-ffi", {
      op: "scan",
      address: hostname,
      code: "ENOTCAPABLE",
      exitCode: 126,
    });
  }
  const results: UdpPortResult[] = [];
  const timeout = options.timeout ?? 1000;
  const batch = Math.max(1, options.concurrency ?? 256);
  const fail = (err: unknown, what: string) =>
    toSockitError(err, "scan", `${formatHost(hostname)} (${what})`);
  let target: InetAddress;
  let from: InetAddress | undefined;
  try {
    target = inetAddress(hostname, 0);
    from = options.source?.host ? inetAddress(options.source.host, 0) : undefined;
  } catch (err) {
    throw toSockitError(err, "scan", hostname);
  }
  const probe = new Uint8Array([0]);
  /** A socket connected to `port`, the probe sent; none when it kept getting the port as its own. */
  const open = (port: number): LibcSocket | undefined => {
    for (let attempt = 0; attempt < 3; attempt++) {
      let sock: LibcSocket;
      try {
        sock = LibcSocket.open(domainOf(target.family), C.SOCK_DGRAM, 0);
      } catch (err) {
        throw fail(err, "socket");
      }
      try {
        if (from) {
          try {
            sock.bind(from);
          } catch (err) {
            throw fail(err, "bind --source");
          }
        }
        const errno = sock.connect({ ...target, port });
        if (errno !== 0) throw fail(errnoError(errno), "connect");
      } catch (err) {
        sock.close();
        throw err;
      }
      // The socket was given the probed port as its own: it would hear itself.
      const local = sock.address();
      if (local?.family === "local" || local?.port !== port) {
        sock.c.send(sock.fd, probe, 1n, C.MSG_DONTWAIT);
        return sock;
      }
      sock.close();
    }
    return undefined;
  };
  /** What came back on `sock` before `until`: a reply, a refusal, or nothing. */
  const answer = async (sock: LibcSocket, until: number): Promise<"open" | "closed" | "silent"> => {
    const buf = new Uint8Array(2048);
    for (;;) {
      const n = Number(sock.c.recv(sock.fd, buf, BigInt(buf.length), C.MSG_DONTWAIT));
      if (n >= 0) return "open";
      const errno = lastErrno(sock.c);
      if (errno === C.ECONNREFUSED) return "closed";
      if (errno !== C.EAGAIN && errno !== C.EINTR) return "silent";
      const left = until - performance.now();
      if (left <= 0) return "silent";
      const ready = await sock.wait(READABLE, {
        timeout: Math.ceil(left),
        signal: options.signal,
      });
      if (!ready) return "silent";
    }
  };
  for (let start = 0; start < ports.length; start += batch) {
    if (options.signal?.aborted) throw options.signal.reason;
    const slice = ports.slice(start, start + batch);
    const sockets: Array<LibcSocket | undefined> = [];
    try {
      for (const port of slice) sockets.push(open(port));
      const until = performance.now() + timeout;
      // Self-connect retries that failed three times count as closed.
      const states = await Promise.all(
        sockets.map((sock) => sock ? answer(sock, until) : Promise.resolve("closed" as const)),
      );
      slice.forEach((port, i) => {
        if (states[i] === "closed") return;
        results.push({ port, state: states[i] === "open" ? "open" : "open|filtered" });
      });
    } finally {
      for (const sock of sockets) sock?.close();
      await Promise.all(sockets.map((sock) => sock?.closed));
    }
  }
  return results;
}
