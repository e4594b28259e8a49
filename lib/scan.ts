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

import { ExitCode, rebuildError, SockitError, toSockitError, UsageError } from "./errors.ts";
import { formatHost } from "./ip.ts";
import { servicePort } from "./services.ts";

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
}

/**
 * The probe loop. It runs in a worker, so it only uses what it is sent: the
 * function's source text becomes the worker script.
 */
function probeWorker(): void {
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
    const retryable = (err: unknown) =>
      /os error (24|23|105|11)\)|Too many open files|No buffer space/.test(
        String((err as Error)?.message),
      );
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

let probeUrl: string | undefined;

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
  checkNetPermission(hostname, ports);
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
  probeUrl ??= URL.createObjectURL(
    new Blob([`(${probeWorker.toString()})()`], { type: "text/javascript" }),
  );
  const running: Worker[] = [];
  const stopAll = () => {
    Atomics.store(next, 0, ports.length);
    for (const w of running) w.terminate();
  };
  options.signal?.addEventListener("abort", stopAll, { once: true });
  try {
    type Outcome = {
      open: Array<{ port: number; latencyMs: number }>;
      failure?: { name: string; message: string };
    };
    const results = await Promise.all(
      Array.from({ length: workers }, () =>
        new Promise<Outcome>((resolve, reject) => {
          const worker = new Worker(probeUrl!, { type: "module", name: "sockit-scan" });
          running.push(worker);
          worker.onmessage = (event: MessageEvent) => resolve(event.data);
          worker.onerror = (event: ErrorEvent) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
          options.signal?.addEventListener("abort", () => reject(options.signal!.reason), {
            once: true,
          });
          worker.postMessage({
            hostname,
            ports: shared,
            next,
            inFlight,
            timeout: options.timeout ?? 1000,
          });
        })),
    );
    const failure = results.find((r) => r.failure)?.failure;
    if (failure) {
      throw toSockitError(rebuildError(failure.name, failure.message), "scan", hostname);
    }
    return results.flatMap((r) => r.open)
      .map((r): PortResult => ({ port: r.port, state: "open", latencyMs: r.latencyMs }))
      .sort((a, b) => a.port - b.port);
  } finally {
    options.signal?.removeEventListener("abort", stopAll);
    for (const w of running) w.terminate();
  }
}
