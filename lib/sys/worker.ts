/**
 * Worker threads whose script is a function's source text: the stdio
 * workers, the splice worker and the scan workers. A body gets what it may
 * not import as arguments — the constants of `constants.ts` and the libc
 * symbols it names from `libc.ts` — interpolated into the script, so no
 * number or signature is written twice (and a bundler that renames imports
 * cannot break a worker). The script needs no `--allow-read`: it runs from
 * a blob URL.
 *
 * Workers that serve a command's stdio are started through
 * {@linkcode spawnWorker}, which a command running inside a worker points
 * at the main thread ({@linkcode spawnWorkersWith}): a worker started by a
 * worker takes Deno ~0.5 s to come up, one started by the main thread
 * ~20 ms.
 *
 * @module
 */

import { C, type Constants } from "./constants.ts";
import { type SymbolName, SYMBOLS } from "./libc.ts";

/** The libc entries a worker body asked for. */
export type SymbolTable<S extends SymbolName> = Pick<typeof SYMBOLS, S>;

/** A worker's body: it receives the constants and its libc entries. */
export type WorkerBody<S extends SymbolName> = (c: Constants, symbols: SymbolTable<S>) => void;

/**
 * The script of a worker: `body`'s source called with the constants and
 * the libc entries `symbols` names.
 *
 * @example Usage
 * ```ts
 * import { workerSource } from "./worker.ts";
 * import assert from "node:assert/strict";
 *
 * const source = workerSource((c, symbols) => void [c.EAGAIN, symbols.close], ["close"]);
 * assert.match(source, /"EAGAIN":11/);
 * assert.match(source, /"close":\{"parameters":\["i32"\]/);
 * ```
 */
export function workerSource<S extends SymbolName>(
  body: WorkerBody<S>,
  symbols: readonly S[] = [],
): string {
  const table = Object.fromEntries(symbols.map((name) => [name, SYMBOLS[name]]));
  return `(${body.toString()})(${JSON.stringify(C)}, ${JSON.stringify(table)});\n`;
}

const urls = new Map<string, string>();

/** A blob URL for a worker script, made once per script. */
function scriptUrl(source: string): string {
  let url = urls.get(source);
  if (!url) {
    url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    urls.set(source, url);
  }
  return url;
}

/** What sockit needs of a worker: a `Worker`, or a stand-in for one on another thread. */
export interface ThreadWorker {
  /** Messages from the worker. */
  onmessage: ((event: MessageEvent) => void) | null;
  /** Sends the worker a message (shared buffers stay shared). */
  postMessage(message: unknown): void;
  /** Stops the worker. */
  terminate(): void;
}

/**
 * Starts a worker named `name` running `source` (from
 * {@linkcode workerSource}) on this thread.
 *
 * @example Usage
 * ```ts
 * import { startWorker, workerSource } from "./worker.ts";
 *
 * startWorker("sockit-example", workerSource(() => {})).terminate();
 * ```
 */
export function startWorker(name: string, source: string): Worker {
  return new Worker(scriptUrl(source), { type: "module", name });
}

let spawn: (name: string, source: string) => ThreadWorker = startWorker;

/**
 * Starts a worker for a command's stdio or splice: on this thread, or
 * wherever {@linkcode spawnWorkersWith} said.
 *
 * @example Usage
 * ```ts
 * import { spawnWorker, workerSource } from "./worker.ts";
 *
 * spawnWorker("sockit-example", workerSource(() => {})).terminate();
 * ```
 */
export function spawnWorker(name: string, source: string): ThreadWorker {
  return spawn(name, source);
}

/**
 * Has {@linkcode spawnWorker} start workers with `start` from now on (a
 * command run inside a worker has the main thread start them).
 *
 * @example Usage
 * ```ts
 * import { spawnWorkersWith, startWorker } from "./worker.ts";
 *
 * spawnWorkersWith(startWorker);
 * ```
 */
export function spawnWorkersWith(start: (name: string, source: string) => ThreadWorker): void {
  spawn = start;
}
