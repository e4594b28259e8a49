/**
 * The answers that need no command: `--version` and every `--help`, given
 * from text generated ahead of time (`help_text.ts`), so that `main.ts`
 * can print them before it loads the rest of sockit (start-up of the whole
 * module graph costs ~100 ms; these answer in about the time of an empty
 * `deno run`). Anything else — including a help request for a command that
 * does not exist — goes the normal way, which also produces the errors.
 *
 * @module
 */

import { HELP, VERSION_LINE } from "./help_text.ts";

/**
 * Whether `argv` asks for help (`-h`/`--help` before any `--`), so that help
 * is answered before anything else is checked.
 *
 * @example Usage
 * ```ts
 * import { asksForHelp } from "./quick.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(asksForHelp(["x:99999", "--help"]));
 * assert.ok(!asksForHelp(["--", "cmd", "--help"]));
 * ```
 */
export function asksForHelp(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === "--") return false;
    if (arg === "--help" || arg === "-h") return true;
    // -vh and the like: a cluster of short switches that contains h.
    if (/^-[vqk46]*h[vqk46h]*$/.test(arg)) return true;
  }
  return false;
}

/**
 * What sockit prints on stdout for `argv` if it asks only for the version
 * or for help, else `undefined`.
 *
 * @example Usage
 * ```ts
 * import { quickAnswer } from "./quick.ts";
 * import assert from "node:assert/strict";
 *
 * assert.match(quickAnswer(["--version"]) ?? "", /^sockit \d+\.\d+\.\d+\n$/);
 * assert.match(quickAnswer(["connect", "-h"]) ?? "", /^Usage: sockit connect/m);
 * assert.equal(quickAnswer(["connect", "127.0.0.1:80"]), undefined);
 * assert.equal(quickAnswer(["help", "nosuch"]), undefined);
 * ```
 */
export function quickAnswer(argv: readonly string[]): string | undefined {
  // `deno task start -- <args>` passes the "--" along.
  const [name, ...rest] = argv[0] === "--" ? argv.slice(1) : argv;
  if (name === "--version" || name === "-V") return VERSION_LINE;
  if (name === "--help" || name === "-h") return HELP[""];
  if (name === "help") return rest.length === 0 ? HELP[""] : commandHelp(rest[0]);
  if (name !== undefined && asksForHelp(rest)) return commandHelp(name);
  return undefined;
}

function commandHelp(name: string): string | undefined {
  return name !== "" && Object.hasOwn(HELP, name) ? HELP[name] : undefined;
}
