/**
 * The worker `main.ts` runs a server command in when it sets up a fair
 * runtime (see {@linkcode fairRuntime}): it receives the command line, then
 * the signals the process gets, and answers with the exit code.
 *
 * @module
 */

import { runProcess, stdioWorkersFromMain } from "./process.ts";
import { SignalInterrupt } from "../base/errors.ts";

const scope = globalThis as unknown as {
  onmessage: (event: MessageEvent) => void;
  postMessage(message: unknown): void;
};
const stopper = new AbortController();
const fromMain = stdioWorkersFromMain(scope);
scope.onmessage = async (event: MessageEvent) => {
  if (fromMain(event)) return;
  const message = event.data as { argv?: string[]; signal?: "SIGINT" | "SIGTERM" };
  if (message.signal) {
    stopper.abort(new SignalInterrupt(message.signal));
    return;
  }
  const code = await runProcess(message.argv ?? [], stopper.signal);
  scope.postMessage({ code });
};
