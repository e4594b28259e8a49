/**
 * The `sockit` executable: wires the process's stdin/stdout/stderr and
 * signals into a command context, runs the command line, and exits with its
 * code. The only place that calls `Deno.exit`.
 *
 * @module
 */

import { textSinkOf } from "./lib/cli/context.ts";
import { main } from "./lib/cli/main.ts";
import { SignalInterrupt } from "./lib/errors.ts";
import { StdinReader, stdoutClosed, StdoutWriter } from "./lib/stdio.ts";

const stopper = new AbortController();
let signalled = 0;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    // A second signal while shutting down exits at once.
    if (signalled++) Deno.exit(signal === "SIGINT" ? 130 : 143);
    stopper.abort(new SignalInterrupt(signal));
  });
}

const stdout = new StdoutWriter();
const stderr = textSinkOf(Deno.stderr);
let stderrGone = false;
const code = await main(Deno.args, {
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
  signal: stopper.signal,
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
  stdoutClosed: stdoutClosed(),
});
try {
  await stdout.flush();
} catch {
  // stdout's reader is gone; the command has reported what matters.
}
Deno.exit(code);
