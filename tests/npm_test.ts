/**
 * The npm package, as a user gets it: `tools/npm_pack.ts` builds and packs
 * it, `npm install -g --prefix TMP` installs the tarball (with the `deno`
 * package it pins, from npm's cache after the first run), and the installed
 * `TMP/bin/sockit` is checked — version, exit codes, SIGTERM and SIGINT to the
 * launcher's PID, Ctrl-C in a terminal and SIGTERM to the process group taken
 * once (cleanly), no orphan when the launcher is SIGKILLed, stdin to the socket
 * byte for byte, `npx TGZ` — and then the whole smoke suite runs against it
 * (`SOCKIT=TMP/bin/sockit`). The launcher runs under this machine's Node
 * (20 here: Deno is its child) and under Node 22.15 from npm's
 * `node-linux-*` package, where `process.execve` makes Deno the process
 * itself. Needs npm and node, and the npm registry on a first run.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { CHILD_ENV, freePort, randomBytes, requireTool, sha256 } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const VERSION: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;
/** A Node that has process.execve (22.15+), from the npm registry. */
const NODE_WITH_EXECVE = `node-linux-${Deno.build.arch === "aarch64" ? "arm64" : "x64"}@22.15.0`;
const decoder = new TextDecoder();
const ENV = { ...CHILD_ENV, npm_config_fund: "false", npm_config_audit: "false" };

interface Output {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

async function run(
  command: string[],
  options: { stdin?: Uint8Array; cwd?: string; timeout?: number } = {},
): Promise<Output> {
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: options.cwd,
    env: ENV,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeout ?? 60_000),
  }).spawn();
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    signal: out.signal,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

async function ok(command: string[], options: { cwd?: string; timeout?: number } = {}) {
  const out = await run(command, options);
  assertEquals(out.code, 0, `${command.join(" ")}:\n${out.stderr}${out.stdout}`);
  return out.stdout;
}

/** A running server through the launcher, once it has said where it listens. */
async function listening(command: string[]): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(command[0], {
    args: [...command.slice(1), "listen", "127.0.0.1:0", "-v"],
    env: ENV,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!/listening on 127\.0\.0\.1:\d+/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`no listening line: ${text}`);
    text += value;
  }
  await reader.cancel();
  return { child, port: Number(text.match(/listening on 127\.0\.0\.1:(\d+)/)![1]) };
}

/** Whether `pid` has stopped running within `ms`. */
async function goneWithin(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (!await alive(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return !await alive(pid);
}

/** Whether `pid` is running (not gone, not a zombie); /proc through `ps` (Deno asks --allow-all for /proc). */
async function alive(pid: number): Promise<boolean> {
  const state = (await run(["ps", "-o", "stat=", "-p", String(pid)])).stdout.trim();
  return state !== "" && !state.startsWith("Z");
}

/** Resolves to `promise`'s value, or to undefined if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((
    resolve,
  ) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to the Unix socket at `path` once something listens there (bounded). */
async function connectUnix(path: string): Promise<Deno.Conn> {
  for (let i = 0;; i++) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch (err) {
      // Not there yet, or bound but not yet listening (refused).
      if (i >= 500) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A shell word. */
const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;

/** The pids of the processes whose command line is `sleep SECONDS` (through `ps`: Deno asks --allow-all for /proc). */
async function sleepers(seconds: string): Promise<number[]> {
  const out = await run(["ps", "-eo", "pid=,args="]);
  return out.stdout.split("\n").flatMap((line) => {
    const m = /^\s*(\d+) (.*)$/.exec(line);
    return m && m[2] === `sleep ${seconds}` ? [Number(m[1])] : [];
  });
}

/**
 * `sockit listen -k unix:S --sh-exec 'exec sleep SECONDS'` through the
 * launcher, one client on it, then a stop that reaches Deno directly and
 * through the launcher: ^C in a terminal, or SIGTERM to the process group.
 * Taken once, the stop is clean — the child is ended, exit 130 / 143; taken
 * twice, it would exit at once and leave the child running.
 */
async function stopsOnce(launcher: string[], seconds: string, how: "terminal" | "group") {
  const dir = await Deno.makeTempDir({ prefix: "sockit-npm-stop-" });
  const socket = `${dir}/s.sock`;
  const argv = [...launcher, "listen", "-k", `unix:${socket}`, "-v", "--sh-exec"];
  argv.push(`exec sleep ${seconds}`);
  // In a terminal the launcher is the session's leader, as under an interactive shell.
  const child = how === "terminal"
    ? new Deno.Command("script", {
      args: ["-q", "-e", "-c", `exec ${argv.map(quote).join(" ")}`, "/dev/null"],
      env: ENV,
      stdin: "piped",
      stdout: "null",
    }).spawn()
    : new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: ENV,
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true, // A process group of its own, as a shell's job.
    }).spawn();
  const writer = how === "terminal" ? child.stdin.getWriter() : undefined;
  let conn: Deno.Conn | undefined;
  try {
    conn = await connectUnix(socket);
    for (let i = 0; i < 250 && (await sleepers(seconds)).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assertEquals((await sleepers(seconds)).length, 1, "the child runs");
    if (writer) await writer.write(new TextEncoder().encode("\x03"));
    else Deno.kill(-child.pid, "SIGTERM");
    const status = await within(child.status, 5000);
    assertEquals(status?.code, how === "terminal" ? 130 : 143, "the exit status");
    let left = await sleepers(seconds);
    for (let i = 0; i < 50 && left.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      left = await sleepers(seconds);
    }
    assertEquals(left, [], "the child was ended: the stop was taken once, cleanly");
  } finally {
    conn?.close();
    await writer?.close().catch(() => {});
    // After a failed check: nothing is left running (script's end hangs up its terminal).
    if (await within(child.status, 0) === undefined) {
      if (how === "group") Deno.kill(-child.pid, "SIGKILL");
      else child.kill("SIGKILL");
    }
    await child.status;
    for (const pid of await sleepers(seconds)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
}

/** The checks every launcher must pass; `launcher` is the command that starts sockit. */
async function checkLauncher(t: Deno.TestContext, launcher: string[], execve: boolean) {
  await t.step("--version, usage error 2, connection refused 1", async () => {
    assertEquals(await ok([...launcher, "--version"]), `sockit ${VERSION}\n`);
    assertEquals((await run([...launcher, "connect"])).code, 2);
    const refused = await run([...launcher, "connect", `127.0.0.1:${freePort()}`]);
    assertEquals(refused.code, 1, refused.stderr);
    assertMatch(refused.stderr, /connection refused/);
  });

  await t.step("SIGTERM to the launcher ends `sockit listen` with 143", async () => {
    const { child } = await listening(launcher);
    // With execve the launcher's PID is Deno's own.
    const exe = (await ok(["readlink", `/proc/${child.pid}/exe`])).trim();
    assertEquals(exe.endsWith("/deno"), execve, exe);
    child.kill("SIGTERM");
    const status = await child.status;
    await child.stdin.close();
    assertEquals([status.code, status.signal], [143, null]);
  });

  await t.step(
    "SIGINT to the launcher's PID alone ends `sockit listen` with 130 within 2 s, no Deno left",
    async () => {
      // Python's Popen.send_signal, `kill -INT PID`, Node's child.kill("SIGINT"): the launcher only.
      const { child } = await listening(launcher);
      const deno = execve
        ? child.pid
        : Number((await ok(["cat", `/proc/${child.pid}/task/${child.pid}/children`])).trim());
      child.kill("SIGINT");
      const status = await within(child.status, 2000);
      if (status === undefined) child.kill("SIGTERM"); // The SIGINT was lost: end it all the same.
      await child.status;
      await child.stdin.close();
      assertEquals([status?.code, status?.signal], [130, null], "the launcher ended with 130");
      assertEquals(await goneWithin(deno, 2000), true, `sockit (pid ${deno}) is gone`);
    },
  );

  await t.step(
    "Ctrl-C in a terminal stops it once, cleanly: 130, its --exec child ended",
    async () => {
      // ^C written to a pty (script(1)) is the terminal's SIGINT to its foreground process
      // group: the launcher and Deno, which then hears it twice (once passed on).
      await stopsOnce(launcher, execve ? "31.201" : "31.202", "terminal");
    },
  );

  await t.step(
    "SIGTERM to its process group stops it once, cleanly: 143, its --exec child ended",
    async () => {
      // timeout(1) and a shell's `kill %1` signal the group: Deno hears it, and the launcher too.
      await stopsOnce(launcher, execve ? "31.203" : "31.204", "group");
    },
  );

  await t.step("stdin reaches the socket byte for byte", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const payload = randomBytes(4 * 1024 * 1024);
    const received = (async () => {
      const conn = await listener.accept();
      const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
      return sha256(bytes);
    })();
    try {
      const out = await run([...launcher, "connect", `127.0.0.1:${listener.addr.port}`], {
        stdin: payload,
      });
      assertEquals(out.code, 0, out.stderr);
      assertEquals(await received, sha256(payload));
    } finally {
      listener.close();
    }
  });
}

Deno.test("npm: pack, install -g into a prefix, run the installed sockit", async (t) => {
  requireTool("npm");
  requireTool("node");
  requireTool("ps");
  requireTool("setpriv"); // The Node 20 launcher's guard against orphans.
  const dir = await Deno.makeTempDir({ prefix: "sockit-npm-" });
  try {
    const tgz = (await ok([
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-env",
      `${ROOT}tools/npm_pack.ts`,
      `--out=${dir}`,
    ])).trim();
    assertEquals(tgz, `${dir}/sockit-${VERSION}.tgz`);

    await t.step("the package: name, version, pinned deno, files", async () => {
      const manifest = JSON.parse(await Deno.readTextFile(`${dir}/npm/package.json`));
      assertEquals(
        [manifest.name, manifest.version, manifest.bin, manifest.dependencies],
        ["sockit", VERSION, { sockit: "bin/sockit.js" }, { deno: Deno.version.deno }],
      );
      const listing = await ok(["tar", "-tzf", tgz]);
      for (const file of ["bin/sockit.js", "bundle/main.js", "bundle/lib/cli/process_worker.js"]) {
        assertMatch(listing, new RegExp(`^package/${file}$`, "m"));
      }
    });

    const prefix = `${dir}/prefix`;
    await ok(["npm", "install", "-g", "--prefer-offline", "--prefix", prefix, tgz], {
      timeout: 300_000,
    });
    const sockit = `${prefix}/bin/sockit`;
    await checkLauncher(t, [sockit], false);

    await t.step("SIGKILL of the launcher leaves no sockit behind", async () => {
      const { child } = await listening([sockit]);
      const children = await ok(["cat", `/proc/${child.pid}/task/${child.pid}/children`]);
      const deno = Number(children.trim().split(/\s+/)[0]);
      assertEquals(await alive(deno), true);
      child.kill("SIGKILL");
      await child.status;
      await child.stdin.close();
      const deadline = Date.now() + 5000;
      while (await alive(deno) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assertEquals(await alive(deno), false, `sockit (pid ${deno}) outlived its launcher`);
    });

    await t.step("under Node 22.15, the launcher becomes Deno (process.execve)", async (t) => {
      const nodeDir = `${dir}/node`;
      await ok(["npm", "install", "--prefer-offline", "--prefix", nodeDir, NODE_WITH_EXECVE], {
        timeout: 300_000,
      });
      const node = `${nodeDir}/node_modules/${NODE_WITH_EXECVE.split("@")[0]}/bin/node`;
      assertMatch(await ok([node, "--version"]), /^v22\./);
      const launcher = `${prefix}/lib/node_modules/sockit/bin/sockit.js`;
      await checkLauncher(t, [node, launcher], true);
    });

    await t.step("npx ./sockit-VERSION.tgz --version", async () => {
      const cache = (await ok(["npm", "config", "get", "cache"])).trim();
      const before = new Set(entries(`${cache}/_npx`));
      try {
        assertEquals(
          await ok(["npx", "--yes", "--prefer-offline", `./sockit-${VERSION}.tgz`, "--version"], {
            cwd: dir,
            timeout: 300_000,
          }),
          `sockit ${VERSION}\n`,
        );
      } finally {
        // npx keeps what it installed per tarball path: this one is never asked for again.
        for (const entry of entries(`${cache}/_npx`)) {
          if (!before.has(entry)) await Deno.remove(`${cache}/_npx/${entry}`, { recursive: true });
        }
      }
    });

    await t.step("the smoke suite against the installed sockit", async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "test",
          "--no-prompt",
          "--sanitize-ops",
          "--sanitize-resources",
          "--allow-net",
          "--allow-read",
          "--allow-write",
          "--allow-run",
          "--allow-env",
          `${ROOT}tests/smoke_test.ts`,
        ],
        cwd: ROOT,
        env: { ...ENV, SOCKIT: sockit },
        stdin: "null",
        signal: AbortSignal.timeout(180_000),
      }).output();
      const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
      assertEquals(out.code, 0, text);
      assertMatch(text, /ok \| [1-9]\d* passed \| 0 failed/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function entries(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((entry) => entry.name);
  } catch {
    return [];
  }
}
