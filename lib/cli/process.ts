/**
 * A command line run against the process's own stdin, stdout, stderr and
 * terminal: the context `main.ts` gives {@linkcode main}, on whichever
 * thread runs it (the main one, or the worker of {@linkcode fairRuntime}).
 *
 * @module
 */

import { servesMany } from "./command.ts";
import { textSinkOf } from "./context.ts";
import { COMMANDS, main } from "./main.ts";
import { StdinReader, stdoutMayBeClosed, StdoutWriter } from "../engine/stdio.ts";
import { spawnWorkersWith, startWorker, type ThreadWorker } from "../sys/worker.ts";

/**
 * Runs `argv` with the process's stdio until it ends or `signal` aborts;
 * resolves to the exit code once stdout is flushed.
 *
 * @example Usage
 * ```ts ignore
 * import { runProcess } from "./process.ts";
 *
 * Deno.exit(await runProcess(Deno.args, new AbortController().signal));
 * ```
 */
export async function runProcess(argv: string[], signal: AbortSignal): Promise<number> {
  const stdout = new StdoutWriter();
  const stderr = textSinkOf(Deno.stderr);
  let stderrGone = false;
  const code = await main(argv, {
    stdin: new StdinReader(),
    stdout,
    stderr: {
      write(text: string) {
        // Diagnostics never stop the payload: once stderr is gone (its reader
        // closed: `2>&1 | head`), they are dropped, as nc's would be.
        if (stderrGone) return;
        try {
          stderr.write(text);
        } catch {
          stderrGone = true;
        }
      },
    },
    signal,
    stdinIsTerminal: Deno.stdin.isTerminal(),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    stderrColumns: () => {
      try {
        return Deno.consoleSize().columns || undefined;
      } catch {
        return undefined;
      }
    },
    noColor: Deno.noColor,
    stdoutMayBeClosed: stdoutMayBeClosed(),
  });
  try {
    await stdout.flush();
  } catch {
    // stdout's reader is gone; the command has reported what matters.
  }
  return code;
}

/** The tokio setting that makes Deno serve many busy sockets fairly (see the README). */
export const FAIR_IO_VARIABLE = "DENO_TOKIO_MAX_IO_EVENTS_PER_TICK";

/**
 * Whether `argv` should run in a worker whose runtime is set up for fair
 * service: a command that serves many clients at once, as its declaration
 * says (`Command.serves`: `echo`, `forward`, `proxy`, `listen -k` or
 * `--broker`), when
 * the variable is not set for the whole process already, sockit may set it
 * (`--allow-env`, or `--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK`) and
 * may load the worker's module (`worker`; Deno asks read permission for a
 * worker's file, unlike for the main program's).
 * Each Deno worker starts its own tokio runtime, which reads the variable
 * then; the main thread's runtime read it before sockit ran.
 *
 * @example Usage
 * ```ts
 * import { fairRuntime } from "./process.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(fairRuntime(["connect", "127.0.0.1:80"]), false);
 * assert.equal(fairRuntime(["listen", "8080"]), false); // one client
 * ```
 */
export function fairRuntime(argv: readonly string[], worker?: URL): boolean {
  const [name, ...rest] = argv[0] === "--" ? argv.slice(1) : argv;
  const command = Object.hasOwn(COMMANDS, name ?? "") ? COMMANDS[name] : undefined;
  if (!command || !servesMany(command, rest)) return false;
  const granted = (descriptor: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(descriptor).state === "granted";
  try {
    if (!granted({ name: "env", variable: FAIR_IO_VARIABLE })) return false;
    if (worker?.protocol === "file:" && !granted({ name: "read", path: worker })) return false;
    return Deno.env.get(FAIR_IO_VARIABLE) === undefined;
  } catch {
    return false;
  }
}

/** What a command's worker and the main thread say about stdio workers. */
type HostMessage =
  | { host: "start"; id: number; name: string; source: string }
  | { host: "post"; id: number; message: unknown }
  | { host: "terminate"; id: number };

/**
 * In a command's worker: has its stdio workers started by the main thread
 * (see {@linkcode spawnWorkersWith}), which runs them for it through
 * {@linkcode hostStdioWorkers}.
 *
 * @example Usage
 * ```ts ignore
 * stdioWorkersFromMain(self as unknown as Worker);
 * ```
 */
export function stdioWorkersFromMain(parent: {
  postMessage(message: unknown): void;
}): (event: MessageEvent) => boolean {
  const proxies = new Map<number, ThreadWorker>();
  let next = 0;
  spawnWorkersWith((name, source) => {
    const id = next++;
    const proxy: ThreadWorker = {
      onmessage: null,
      postMessage: (message) => parent.postMessage({ host: "post", id, message }),
      terminate: () => parent.postMessage({ host: "terminate", id }),
    };
    proxies.set(id, proxy);
    parent.postMessage({ host: "start", id, name, source });
    return proxy;
  });
  // What the main thread passes on from a stdio worker; true when the message was one.
  return (event) => {
    const data = event.data as { hosted?: number; message?: unknown };
    if (data.hosted === undefined) return false;
    proxies.get(data.hosted)?.onmessage?.(new MessageEvent("message", { data: data.message }));
    return true;
  };
}

/**
 * On the main thread: runs the stdio workers that `worker` asks for (see
 * {@linkcode stdioWorkersFromMain}); returns a handler for `worker`'s
 * messages, true when the message was one of those requests.
 *
 * @example Usage
 * ```ts ignore
 * const hosted = hostStdioWorkers(worker);
 * worker.onmessage = (event) => hosted(event) || handleOther(event);
 * ```
 */
export function hostStdioWorkers(worker: Worker): (event: MessageEvent) => boolean {
  const running = new Map<number, ThreadWorker>();
  return (event) => {
    const data = event.data as HostMessage;
    if (typeof data !== "object" || data === null || !("host" in data)) return false;
    if (data.host === "start") {
      const started = startWorker(data.name, data.source);
      started.onmessage = (e) => worker.postMessage({ hosted: data.id, message: e.data });
      running.set(data.id, started);
    } else if (data.host === "post") {
      running.get(data.id)?.postMessage(data.message);
    } else {
      running.get(data.id)?.terminate();
      running.delete(data.id);
    }
    return true;
  };
}
