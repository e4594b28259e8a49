/**
 * Writes the documents made from the declarations: `docs/COMMANDS.md` and
 * the man page `docs/sockit.1` (`deno task gen-docs`, which also writes the
 * help texts and `tests/README.md`). `tests/layout_test.ts` fails while any
 * is stale.
 *
 * @module
 */

import { commandsMarkdown, manPage } from "../lib/cli/docs_source.ts";

const commands = new URL("../docs/COMMANDS.md", import.meta.url);
Deno.writeTextFileSync(commands, commandsMarkdown());
Deno.writeTextFileSync(new URL("../docs/sockit.1", import.meta.url), manPage());
