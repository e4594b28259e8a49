/**
 * The layout holds (docs/ARCHITECTURE.md): the library never imports the
 * command line, no code outside the transport table names a scheme to
 * branch on it, nothing cites a document outside the repository, and only
 * the reporter writes to the console.
 */

import { assertEquals } from "./assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...sources(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

function offenders(files: string[], pattern: RegExp): string[] {
  return files.filter((f) => pattern.test(Deno.readTextFileSync(`${ROOT}${f}`)));
}

Deno.test("layout: lib/ never imports lib/cli/", () => {
  const lib = sources("lib").filter((f) => !f.startsWith("lib/cli/"));
  assertEquals(offenders(lib, /from "\.\/cli\//), []);
});

Deno.test("layout: schemes are compared only in the transport table", () => {
  const code = [...sources("lib"), "main.ts"].filter((f) => f !== "lib/net/transports.ts");
  assertEquals(offenders(code, /transport [!=]== "/), []);
});

Deno.test("layout: code cites no document outside the repository", () => {
  assertEquals(offenders([...sources("lib"), "main.ts"], /DESIGN( §|\.md)/), []);
});

Deno.test("layout: tests/README.md says what each test file needs (deno task gen-docs)", async () => {
  const { testsReadme } = await import("../tools/gen_tests_readme.ts");
  const text = Deno.readTextFileSync(`${ROOT}tests/README.md`);
  assertEquals(text, testsReadme(), "tests/README.md is stale: run `deno task gen-docs`");
});
