/**
 * Helpers for the benchmarks: shell commands, free ports, readiness from
 * /proc/net/tcp (a probe connection would use up `nc -l`'s only accept),
 * medians, and the sockit command under test.
 *
 * @module
 */

/** One line of a benchmark table. */
export type Row = Record<string, string>;

/** Starts `command` under /bin/sh with piped stdout and stderr. */
export function sh(command: string): Deno.ChildProcess {
  return new Deno.Command("/bin/sh", {
    args: ["-c", command],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
}

/** Whether a program is on PATH (or an absolute path exists). */
export function which(name: string): string | undefined {
  const candidates = name.startsWith("/")
    ? [name]
    : (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").map((d) => `${d}/${name}`);
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The sockit command as a shell prefix: `$SOCKIT`, or `deno run` with the narrow flags. */
export function sockitShell(): string {
  const custom = Deno.env.get("SOCKIT");
  if (custom) return custom;
  const main = new URL("../main.ts", import.meta.url).pathname;
  const config = new URL("../deno.json", import.meta.url).pathname;
  return `${Deno.execPath()} run --no-prompt --config=${config} --allow-net ${main}`;
}

/**
 * The sockit command for servers, as the binary and `deno task start` run
 * it: also allowed to read its own modules and to set the tokio variable, so
 * that a server runs in a worker with a fair runtime (see README).
 */
export function sockitServerShell(): string {
  const custom = Deno.env.get("SOCKIT");
  if (custom) return custom;
  return sockitShell().replace(
    " --allow-net ",
    " --allow-net --allow-read --allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK ",
  );
}

/** The sockit command with every permission the binary has (`deno task compile`). */
export function sockitFullShell(): string {
  const custom = Deno.env.get("SOCKIT");
  if (custom) return custom;
  return sockitShell().replace(
    " --allow-net ",
    " --allow-net --allow-read --allow-write --allow-run --allow-ffi " +
      "--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK ",
  );
}

/**
 * Another build of sockit to compare against in the same interleaved run:
 * `SOCKIT_BASELINE=/path/to/other/checkout deno task bench …` adds rows
 * "sockit (baseline)" run with that checkout's `main.ts` and `deno.json`.
 */
export function baselineShell(full = false): string | undefined {
  const dir = Deno.env.get("SOCKIT_BASELINE");
  if (!dir) return undefined;
  const perms = full
    ? "--allow-net --allow-read --allow-write --allow-run --allow-ffi " +
      "--allow-env=DENO_TOKIO_MAX_IO_EVENTS_PER_TICK"
    : "--allow-net";
  return `${Deno.execPath()} run --no-prompt --config=${dir}/deno.json ${perms} ${dir}/main.ts`;
}

/** A TCP port on 127.0.0.1 that is free now. */
export function freeTcpPort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  return port;
}

/** Resolves once something listens on 127.0.0.1:`port` (state 0A in /proc/net/tcp). */
export async function waitForTcpListen(port: number, timeoutMs = 10_000): Promise<void> {
  const needle = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // Deno asks for --allow-all to read /proc directly; cat needs only --allow-run.
    const out = await new Deno.Command("cat", { args: ["/proc/net/tcp"], stdout: "piped" })
      .output();
    const table = new TextDecoder().decode(out.stdout);
    if (table.split("\n").some((line) => line.includes(`0100007F${needle}`) && / 0A /.test(line))) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Formats rows as an aligned text table. */
export function table(rows: Row[]): string {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const width = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => cell.padEnd(width[i])).join("  ").trimEnd();
  return [
    line(columns),
    line(width.map((w) => "-".repeat(w))),
    ...rows.map((r) => line(columns.map((c) => r[c] ?? ""))),
  ]
    .join("\n");
}

/** The ids of `pid`'s descendants, children before grandchildren (via `ps`). */
export async function descendants(pid: number): Promise<number[]> {
  const out = await new Deno.Command("ps", { args: ["-e", "-o", "pid=,ppid="], stdout: "piped" })
    .output();
  const children = new Map<number, number[]>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    if (!child || !parent) continue;
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/**
 * Stops a process started by the benchmark and whatever it forked: SIGTERM
 * to each by id, then SIGKILL if the process is still there after `graceMs`.
 */
export async function killTree(child: Deno.ChildProcess, graceMs = 2_000): Promise<void> {
  const signal = (pids: number[], name: Deno.Signal) => {
    for (const pid of pids) {
      try {
        Deno.kill(pid, name);
      } catch {
        // Already gone.
      }
    }
  };
  let exited = false;
  const status = child.status.then(() => exited = true);
  await null; // Lets `exited` catch up with a process that has already ended.
  signal(exited ? [] : await descendants(child.pid), "SIGTERM");
  if (!exited) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([status, new Promise((resolve) => timer = setTimeout(resolve, graceMs))]);
  clearTimeout(timer);
  if (!exited) {
    // Only ids that are still this process's descendants: others may have been reused.
    signal(await descendants(child.pid), "SIGKILL");
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await status;
  }
}
