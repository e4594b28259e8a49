#!/usr/bin/env node
// The `sockit` command of the npm package (tools/npm_pack.ts copies this file
// to bin/sockit.js and fills in DENO_ARGS): runs the bundled CLI with the Deno
// binary of the `deno` npm package and the permissions `deno task start`
// grants. Where Node has process.execve (22.15+), this process becomes Deno:
// one PID, signals and exit status as if Deno had been run directly.
// Otherwise Deno is a child with stdio inherited (this process never touches
// the data), SIGINT/SIGTERM/SIGHUP are passed on, and its status is ours.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const process = require("node:process");

/** `deno run` and its flags; filled in by tools/npm_pack.ts from deno.json. */
const DENO_ARGS = ["@DENO_ARGS@"];
const SCRIPT = path.join(__dirname, "..", "bundle", "main.js");
const EXE = process.platform === "win32" ? "deno.exe" : "deno";

/** The Deno binary: the `deno` package's copy, else its platform package's (--ignore-scripts). */
function denoBinary() {
  let denoDir;
  try {
    denoDir = path.dirname(require.resolve("deno/package.json"));
    const own = path.join(denoDir, EXE);
    if (fs.existsSync(own)) return own;
  } catch {
    // No `deno` package beside us: look for a platform package all the same.
  }
  const arch = process.arch;
  const names = process.platform === "linux"
    ? [`linux-${arch}-glibc`, `linux-${arch}`]
    : [`${process.platform}-${arch}`];
  for (const name of names) {
    try {
      const dir = path.dirname(
        require.resolve(`@deno/${name}/package.json`, {
          paths: denoDir ? [denoDir, __dirname] : [__dirname],
        }),
      );
      const exe = path.join(dir, EXE);
      if (fs.existsSync(exe)) return exe;
    } catch {
      // Not this one.
    }
  }
  return undefined;
}

const deno = denoBinary();
if (deno === undefined) {
  process.stderr.write(
    "sockit: the Deno binary was not found (the `deno` package and its platform package " +
      `@deno/${process.platform}-${process.arch}*); reinstall sockit with optional dependencies\n`,
  );
  process.exit(127);
}

const args = [...DENO_ARGS, SCRIPT, ...process.argv.slice(2)];
const env = { ...process.env };
env.DENO_NO_UPDATE_CHECK ??= "1";

if (typeof process.execve === "function") {
  try {
    // Warnings are printed on a later tick, which never comes: no ExperimentalWarning.
    process.execve(deno, [deno, ...args], env);
  } catch {
    // execve(2) failed: run Deno as a child instead.
  }
}

// Where the OS allows, Deno gets SIGTERM if this process dies (even by SIGKILL).
const setpriv = "/usr/bin/setpriv";
const [file, argv] = process.platform === "linux" && fs.existsSync(setpriv)
  ? [setpriv, ["--pdeathsig", "TERM", "--", deno, ...args]]
  : [deno, args];
const child = require("node:child_process").spawn(file, argv, { stdio: "inherit", env });

// Every stop signal is passed on, whoever sent it: a `kill -INT` of this PID
// alone (Python's send_signal, child.kill) reaches Deno only this way. One that
// reached Deno directly too — Ctrl-C in a terminal, a signal to the process
// group (timeout(1), job control) — arrives there twice within moments, and
// sockit takes a repeat that close as the same stop (main.ts), not as the
// second signal that ends it at once. This process ends with Deno's status.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("error", (error) => {
  process.stderr.write(`sockit: cannot run ${deno}: ${error.message}\n`);
  process.exit(127);
});
child.on("exit", (code, signal) => {
  if (signal === null) process.exit(code ?? 1);
  // Die of the same signal, as Deno did.
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  setTimeout(() => process.exit(128 + (require("node:os").constants.signals[signal] ?? 0)), 100);
});
