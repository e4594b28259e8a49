/**
 * Writes `lib/cli/help_text.ts`: the version line and every help text, as
 * the commands' declarations produce them, for `main.ts` to print without
 * loading the commands. `deno task gen-help` after changing a flag, a
 * command or the transport table; `tests/cli_test.ts` fails while the file
 * is stale.
 *
 * @module
 */

import { helpTextModule } from "../lib/cli/help_source.ts";

const path = new URL("../lib/cli/help_text.ts", import.meta.url);
Deno.writeTextFileSync(path, helpTextModule());
const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", path.pathname] }).output();
if (!fmt.success) Deno.exit(1);
