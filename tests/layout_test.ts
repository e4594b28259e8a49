/**
 * The layout holds (docs/ARCHITECTURE.md): the library never imports the
 * command line, no code outside the scheme table and a transport's own
 * modules names a scheme or tests an address form, no module of lib/ is in
 * an import cycle, reading an endpoint loads no socket code, nothing cites
 * a document outside the repository, and only the reporter writes to the
 * console.
 */

import { assert, assertEquals } from "./assert.ts";
import { literals } from "./code_scan.ts";
import { SCHEMES } from "../lib/net/schemes.ts";
import type { SchemeName } from "../lib/net/schemes.ts";
import { datagramOpener, streamOpener } from "../lib/net/transports.ts";

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

/** The scheme table and the grammar that reads it: where schemes and address forms are data. */
const GRAMMAR = ["lib/net/schemes.ts", "lib/net/transports.ts", "lib/net/address.ts"];

/** Each transport's own modules: its opener and the sockets it opens, which may name it. */
const TRANSPORT_MODULES: Record<SchemeName, string[]> = {
  tcp: [
    "lib/net/tcp_transport.ts",
    "lib/net/dial.ts",
    "lib/net/listener.ts",
    "lib/net/tcp_libc.ts",
  ],
  tls: [
    "lib/net/tcp_transport.ts",
    "lib/protocols/tls.ts",
    "lib/protocols/node_tls.ts",
    "lib/protocols/tls_stream.ts",
    "lib/protocols/tls_options.ts",
  ],
  ws: [
    "lib/protocols/websocket_transport.ts",
    "lib/protocols/websocket.ts",
    "lib/protocols/websocket_options.ts",
  ],
  wss: ["lib/protocols/websocket_transport.ts"],
  udp: ["lib/net/udp_transport.ts", "lib/net/datagram.ts"],
  ip: ["lib/net/ip_transport.ts", "lib/net/raw.ts"],
  unixgram: ["lib/net/unixgram_transport.ts", "lib/net/unixgram.ts"],
  unix: ["lib/net/unix_transport.ts", "lib/net/dial.ts", "lib/net/listener.ts"],
};

/**
 * Words that are schemes only by coincidence, in the one context where they
 * are something else: a Deno address's socket type (endpoints say `scheme:`).
 */
const NOT_A_SCHEME: Array<[RegExp, string]> = [
  [/\btransport: "\w+"/, "a Deno.Addr's socket type"],
];

/** The code of lib/ (and main.ts) outside the grammar and the transport modules. */
function codeOutsideTheTable(): string[] {
  const own = new Set([...GRAMMAR, ...Object.values(TRANSPORT_MODULES).flat()]);
  // help_text.ts is the help generated from the declarations (help text, not code).
  return [...sources("lib"), "main.ts"].filter((f) => !own.has(f) && f !== "lib/cli/help_text.ts");
}

Deno.test("layout: no scheme is named outside the scheme table and a transport's own modules", () => {
  const names = Object.keys(SCHEMES).join("|");
  // The whole literal is a scheme, or a scheme is written bare (`udp://` in a list, `unixgram:`)
  // or as the head of an address being built (`unix:${path}`); `udp://host:53` is an example.
  const exact = new RegExp(`^(${names})$`);
  const bare = new RegExp(`(^|[^\\w+.-])(${names}):(//)?(?=$|[\\s),;'"\`]|\\$\\{)`);
  const found: string[] = [];
  for (const file of codeOutsideTheTable()) {
    const source = Deno.readTextFileSync(`${ROOT}${file}`);
    const lines = source.split("\n");
    for (const literal of literals(source)) {
      // Help texts name schemes to teach them (their titles become option groups' own).
      if (literal.help || !(exact.test(literal.text) || bare.test(literal.text))) continue;
      const line = lines[literal.line - 1];
      if (NOT_A_SCHEME.some(([context]) => context.test(line))) continue;
      found.push(`${file}:${literal.line}: ${line.trim()}`);
    }
  }
  assertEquals(found, []);
});

Deno.test("layout: no address form is tested outside the grammar and a transport's own modules", () => {
  const test =
    /\b(form|address)\s*[!=]==\s*["'`]|[!=]==\s*["'`](host-port|host-protocol|url|path)["'`]|case\s*["'`](host-port|host-protocol|url|path)["'`]/;
  const found: string[] = [];
  for (const file of codeOutsideTheTable()) {
    Deno.readTextFileSync(`${ROOT}${file}`).split("\n").forEach((line, i) => {
      if (test.test(line) && !/^\s*(\*|\/\/)/.test(line)) {
        found.push(`${file}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  assertEquals(found, []);
});

Deno.test("layout: no scheme is compared to a string anywhere in lib/ but the scheme table", () => {
  // What the project's hook counts: `=== "udp"`, `!== "url"`, … (in the grammar too).
  const compare = /[!=]==\s*["'](udp|unixgram|ws|wss|ip|tls|tcp|unix|url)["']/;
  const code = [...sources("lib"), "main.ts"].filter((f) =>
    !/^lib\/net\/(schemes|transports)\.ts$/.test(f)
  );
  assertEquals(offenders(code, compare), []);
});

Deno.test("layout: every scheme's transport module registers the opener its kind needs", async () => {
  for (const row of Object.values(SCHEMES)) {
    const endpoint = { form: "host-port", scheme: row.scheme, port: 1 } as const;
    const stream = await streamOpener(endpoint);
    const datagram = await datagramOpener(endpoint);
    assertEquals([stream !== undefined, datagram !== undefined], [
      row.kind === "stream",
      row.kind === "datagram",
    ], row.scheme);
  }
});

/** A module graph from `deno info --json`: each lib/ module's imports, of every kind. */
interface Graph {
  /** Every import (code or type, static or dynamic), for cycles. */
  all: Map<string, Set<string>>;
  /** Static code imports only: what loading the module loads. */
  loads: Map<string, Set<string>>;
}

async function moduleGraph(roots: string[]): Promise<Graph> {
  const graph: Graph = { all: new Map(), loads: new Map() };
  const prefix = new URL("../", import.meta.url).href;
  const rel = (specifier: string) =>
    specifier.startsWith(prefix) ? specifier.slice(prefix.length) : undefined;
  for (const root of roots) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: Array<{
        specifier: string;
        dependencies?: Array<
          { code?: { specifier?: string }; type?: { specifier?: string }; isDynamic?: boolean }
        >;
      }>;
    };
    for (const module of info.modules) {
      const from = rel(module.specifier);
      if (!from) continue;
      const all = graph.all.get(from) ?? new Set();
      const loads = graph.loads.get(from) ?? new Set();
      for (const dep of module.dependencies ?? []) {
        for (const target of [dep.code?.specifier, dep.type?.specifier]) {
          const to = target && rel(target);
          if (to) all.add(to);
        }
        const code = dep.code?.specifier && rel(dep.code.specifier);
        if (code && !dep.isDynamic) loads.add(code);
      }
      graph.all.set(from, all);
      graph.loads.set(from, loads);
    }
  }
  return graph;
}

/** The strongly connected components of more than one module (or a module importing itself). */
function cycles(edges: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || edges.get(v)?.has(v)) found.push(component.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** What loading `module` loads (its static code imports, transitively). */
function loadedBy(graph: Graph, module: string): string[] {
  const seen = new Set<string>();
  const walk = (m: string) => {
    if (seen.has(m)) return;
    seen.add(m);
    for (const to of graph.loads.get(m) ?? []) walk(to);
  };
  walk(module);
  return [...seen].sort();
}

Deno.test("layout: no import cycle among the modules of lib/ (deno info, every kind of import)", async () => {
  const graph = await moduleGraph(["main.ts", "lib/mod.ts"]);
  // Modules neither reaches (a worker's entry, …) are roots of their own.
  const rest = sources("lib").filter((f) => !graph.all.has(f));
  if (rest.length) {
    const more = await moduleGraph(rest);
    for (const [m, to] of more.all) graph.all.set(m, to);
  }
  assertEquals(sources("lib").filter((f) => !graph.all.has(f)), []);
  const lib = new Map([...graph.all].filter(([m]) => m.startsWith("lib/")));
  assertEquals(cycles(lib), []);
});

Deno.test("layout: reading an endpoint loads no socket code; opening TCP loads no other transport", async () => {
  const graph = await moduleGraph(["lib/net/address.ts", "lib/net/tcp_transport.ts"]);
  const forbidden =
    /^lib\/(sys\/|net\/(raw|unixgram|tcp_libc|datagram)|protocols\/(websocket|proxy|socks))/;
  const grammar = loadedBy(graph, "lib/net/address.ts");
  assertEquals(grammar, [
    "lib/base/errors.ts",
    "lib/net/address.ts",
    "lib/net/ip.ts",
    "lib/net/schemes.ts",
    "lib/net/services.ts",
  ]);
  // Opening TCP loads no other transport, and of the platform layer only what conn.ts uses at
  // once (the splice fd lookup, setsockopt): no libc socket, epoll, splice worker.
  const tcp = loadedBy(graph, "lib/net/tcp_transport.ts");
  const platform = /^lib\/sys\/(constants|fd|libc|sockaddr|sockopt)\.ts$/;
  assertEquals(tcp.filter((m) => forbidden.test(m) && !platform.test(m)), []);
});

Deno.test("layout: code cites no document outside the repository", () => {
  assertEquals(offenders([...sources("lib"), "main.ts"], /DESIGN( §|\.md)/), []);
});

Deno.test("layout: tests/README.md says what each test file needs (deno task gen-docs)", async () => {
  const { testsReadme } = await import("../tools/gen_tests_readme.ts");
  const text = Deno.readTextFileSync(`${ROOT}tests/README.md`);
  assertEquals(text, testsReadme(), "tests/README.md is stale: run `deno task gen-docs`");
});

Deno.test("layout: docs/COMMANDS.md and the man page are what the declarations say (deno task gen-docs)", async () => {
  const { commandsMarkdown, manPage } = await import("../lib/cli/docs_source.ts");
  const stale = "is stale: run `deno task gen-docs`";
  assertEquals(
    Deno.readTextFileSync(`${ROOT}docs/COMMANDS.md`),
    commandsMarkdown(),
    `COMMANDS.md ${stale}`,
  );
  assertEquals(Deno.readTextFileSync(`${ROOT}docs/sockit.1`), manPage(), `sockit.1 ${stale}`);
});
