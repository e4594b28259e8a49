/**
 * The `sockit` executable: answers --version/--help at once, else wires the
 * process's signals to the command line's run (`lib/cli/process.ts`) — in a
 * worker with a fair runtime for servers when it may — and exits with its
 * code. The only place that calls `Deno.exit`.
 *
 * @module
 */

import { quickAnswer } from "./lib/cli/quick.ts";

// --version and --help are answered before the rest of sockit is loaded.
const quick = quickAnswer(Deno.args);
if (quick !== undefined) {
  const bytes = new TextEncoder().encode(quick);
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch {
    // stdout's reader is gone (`sockit --help | head -1`): nothing more to say.
  }
  Deno.exit(0);
}

const [{ fairRuntime, FAIR_IO_VARIABLE, hostStdioWorkers, runProcess }, { SignalInterrupt }] =
  await Promise.all([
    import("./lib/cli/process.ts"),
    import("./lib/base/errors.ts"),
  ]);

// A server runs in a worker whose runtime serves many busy sockets fairly.
const workerModule = new URL("./lib/cli/process_worker.ts", import.meta.url);
const worker = fairRuntime(Deno.args, workerModule)
  ? (Deno.env.set(FAIR_IO_VARIABLE, "128"), new Worker(workerModule, { type: "module" }))
  : undefined;

const stopper = new AbortController();
/**
 * One stop may arrive twice within moments: Ctrl-C in a terminal (or a
 * signal to the process group) reaches Deno, and the npm launcher, which
 * passes every signal on, sends it again. A repeat this close is the same.
 */
const SAME_STOP_MS = 500;
let firstSignal: number | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (firstSignal !== undefined) {
      if (performance.now() - firstSignal < SAME_STOP_MS) return;
      // A second signal while shutting down exits at once.
      Deno.exit(signal === "SIGINT" ? 130 : 143);
    }
    firstSignal = performance.now();
    // To the server's worker, and here (where the command runs if the worker could not start).
    worker?.postMessage({ signal });
    stopper.abort(new SignalInterrupt(signal));
  });
}

let code: number;
if (worker) {
  const { promise, resolve } = Promise.withResolvers<number | undefined>();
  const hosted = hostStdioWorkers(worker);
  let heard = false;
  worker.onmessage = (event: MessageEvent) => {
    heard = true;
    if (!hosted(event)) resolve((event.data as { code: number }).code);
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    if (heard) {
      Deno.stderr.writeSync(new TextEncoder().encode(`sockit: ${event.message}\n`));
      resolve(1);
    } else resolve(undefined); // The worker could not start: run here, as without one.
  };
  worker.postMessage({ argv: Deno.args });
  const answered = await promise;
  if (answered === undefined) worker.terminate();
  code = answered ?? await runProcess(Deno.args, stopper.signal);
} else {
  code = await runProcess(Deno.args, stopper.signal);
}
Deno.exit(code);
