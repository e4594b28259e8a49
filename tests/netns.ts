/**
 * Network namespaces for the raw-socket tests, made and removed by the test
 * itself (as root), with 127.x addresses only: traffic never leaves the
 * machine. `Lab` is three namespaces in a row — A (127.1.0.1) — B, a router
 * (127.1.0.2 | 127.2.0.1) — C (127.2.0.2) — so a TTL-1 probe from A gets
 * "time exceeded" from B. `privateNamespace` runs a command in a fresh
 * namespace of its own (`unshare -n`), where sysctls such as
 * `ping_group_range` can be set without touching the host.
 *
 * @module
 */

import { requireTool } from "./helpers.ts";

const decoder = new TextDecoder();
let labs = 0;

/** Runs a command; throws with its stderr when it fails. */
async function run(argv: string[]): Promise<string> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`${argv.join(" ")} failed: ${decoder.decode(out.stderr).trim()}`);
  }
  return decoder.decode(out.stdout);
}

/**
 * Whether namespaces can be made here (root). The raw-socket tests need it;
 * CI runs as root, so there they never skip. A developer without root sees
 * a loud message and the namespace cases fail.
 */
export function requireRoot(): void {
  // From id(1): Deno.uid() needs --allow-sys and Deno will not read /proc/self without -A.
  const uid = decoder.decode(new Deno.Command("id", { args: ["-u"] }).outputSync().stdout).trim();
  if (uid !== "0") {
    throw new Error(
      "NEEDS ROOT: raw sockets and network namespaces need root (CI runs as root); " +
        "run this test as root",
    );
  }
}

/** Three namespaces joined by two veth pairs; removed on dispose. */
export class Lab implements AsyncDisposable {
  /** The namespaces' names. */
  readonly a: string;
  readonly b: string;
  readonly c: string;
  /** The addresses: A's, B's towards A, B's towards C, C's. */
  static readonly A = "127.1.0.1";
  static readonly B = "127.1.0.2";
  static readonly BC = "127.2.0.1";
  static readonly C = "127.2.0.2";

  private constructor(prefix: string) {
    this.a = `${prefix}a`;
    this.b = `${prefix}b`;
    this.c = `${prefix}c`;
  }

  /** Builds the lab: namespaces, links, addresses (scope global), routes, forwarding in B. */
  static async create(): Promise<Lab> {
    requireRoot();
    const ip = requireTool("ip");
    const prefix = `sk${Deno.pid % 100000}x${labs++}`;
    const lab = new Lab(prefix);
    try {
      for (const ns of [lab.a, lab.b, lab.c]) await run([ip, "netns", "add", ns]);
      const ab = `${prefix}ab`, ba = `${prefix}ba`, bc = `${prefix}bc`, cb = `${prefix}cb`;
      await run([ip, "link", "add", ab, "type", "veth", "peer", "name", ba]);
      await run([ip, "link", "add", bc, "type", "veth", "peer", "name", cb]);
      await run([ip, "link", "set", ab, "netns", lab.a]);
      await run([ip, "link", "set", ba, "netns", lab.b]);
      await run([ip, "link", "set", bc, "netns", lab.b]);
      await run([ip, "link", "set", cb, "netns", lab.c]);
      const links: [string, string, string][] = [
        [lab.a, ab, `${Lab.A}/24`],
        [lab.b, ba, `${Lab.B}/24`],
        [lab.b, bc, `${Lab.BC}/24`],
        [lab.c, cb, `${Lab.C}/24`],
      ];
      for (const [ns, dev] of links) {
        // 127/8 is routed only with route_localnet; replies must not be dropped by rp_filter.
        await lab.exec(ns, [
          "sysctl",
          "-qw",
          "net.ipv4.conf.all.route_localnet=1",
          "net.ipv4.conf.all.rp_filter=0",
          // No rate limit on ICMP errors: traceroute's parallel probes would use C's up.
          "net.ipv4.icmp_ratelimit=0",
          "net.ipv6.icmp.ratelimit=0",
          `net.ipv4.conf.${dev}.route_localnet=1`,
          `net.ipv4.conf.${dev}.rp_filter=0`,
        ]);
      }
      for (const [ns, dev, address] of links) {
        // Without "scope global", 127/8 gets scope host and nothing passes.
        await lab.exec(ns, [ip, "addr", "add", address, "dev", dev, "scope", "global"]);
        await lab.exec(ns, [ip, "link", "set", dev, "up"]);
      }
      await lab.exec(lab.b, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      await lab.exec(lab.a, [ip, "route", "add", "default", "via", Lab.B]);
      await lab.exec(lab.c, [ip, "route", "add", "default", "via", Lab.BC]);
      // Neighbours resolved once, so that no first probe waits for ARP.
      await lab.exec(lab.a, [requireTool("ping"), "-c", "1", "-W", "2", Lab.C]);
      return lab;
    } catch (err) {
      await lab[Symbol.asyncDispose]();
      throw err;
    }
  }

  /** Runs `argv` in namespace `ns`; throws when it fails. */
  exec(ns: string, argv: string[]): Promise<string> {
    return run(["ip", "netns", "exec", ns, ...argv]);
  }

  /** The command line that runs `argv` in namespace `ns`. */
  inside(ns: string, argv: string[]): string[] {
    return ["ip", "netns", "exec", ns, ...argv];
  }

  /** Removes the namespaces (and with them the veth pairs). */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const ns of [this.a, this.b, this.c]) {
      await run(["ip", "netns", "del", ns]).catch(() => {});
    }
  }
}

/**
 * A network namespace of its own for several processes at once (a fake
 * peer and the tool under test): loopback up, `sysctls` (`key=value`) set;
 * removed on dispose.
 */
export class Namespace implements AsyncDisposable {
  private constructor(readonly name: string) {}

  /** Makes the namespace. */
  static async create(sysctls: string[] = []): Promise<Namespace> {
    requireRoot();
    const ip = requireTool("ip");
    const ns = new Namespace(`sk${Deno.pid % 100000}n${labs++}`);
    await run([ip, "netns", "add", ns.name]);
    try {
      await run(ns.inside([ip, "link", "set", "lo", "up"]));
      if (sysctls.length) await run(ns.inside(["sysctl", "-qw", ...sysctls]));
      return ns;
    } catch (err) {
      await ns[Symbol.asyncDispose]();
      throw err;
    }
  }

  /** The command line that runs `argv` in it (`ip netns exec` execs `argv`: same PID). */
  inside(argv: string[]): string[] {
    return ["ip", "netns", "exec", this.name, ...argv];
  }

  /** Removes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await run(["ip", "netns", "del", this.name]).catch(() => {});
  }
}

/**
 * The command line that runs `argv` in a private network namespace of its
 * own (`unshare -n`), loopback up, after `sysctls` (`key=value`) are set
 * there.
 */
export function privateNamespace(sysctls: string[], argv: string[]): string[] {
  requireRoot();
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const setup = [
    "ip link set lo up",
    ...sysctls.map((s) => `sysctl -qw ${quote(s)}`),
    `exec ${argv.map(quote).join(" ")}`,
  ].join(" && ");
  return [requireTool("unshare"), "-n", "sh", "-c", setup];
}

/** What {@linkcode runArgv} gives. */
export interface ArgvResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` to the end (stdin closed) and returns its exit code and output. */
export async function runArgv(
  argv: string[],
  env: Record<string, string> = {},
): Promise<ArgvResult> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/**
 * Runs `argv` to the end under `strace -f -e trace=TRACE`: its exit code
 * and output, and what strace saw (`kernel`).
 */
export async function straced(
  trace: string,
  argv: string[],
): Promise<ArgvResult & { kernel: string }> {
  const strace = requireTool("strace");
  const log = await Deno.makeTempFile({ prefix: "sockit-strace-" });
  try {
    const r = await runArgv([strace, "-f", "-o", log, "-e", `trace=${trace}`, ...argv]);
    return { ...r, kernel: await Deno.readTextFile(log) };
  } finally {
    await Deno.remove(log);
  }
}
