/** Small pure pieces: durations, escapes, human units, error mapping, the reporter, flags. */

import { assert, assertEquals, assertThrows } from "./assert.ts";
import fc from "fast-check";
import { parseDuration } from "../lib/base/duration.ts";
import { decodeEscapes } from "../lib/base/escapes.ts";
import { formatBytes, formatDuration, formatRate } from "../lib/base/format.ts";
import { exitCodeOf, SignalInterrupt, toSockitError, UsageError } from "../lib/base/errors.ts";
import { Reporter } from "../lib/cli/report.ts";
import { parseFlags } from "../lib/cli/flags.ts";

Deno.test("parseDuration: units, bare seconds, errors", () => {
  const table: Array<[string, number]> = [
    ["250ms", 250],
    ["2s", 2000],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1.5", 1500],
    ["0", 0],
    [".5s", 500],
  ];
  for (const [text, ms] of table) assertEquals(parseDuration(text), ms, text);
  for (const bad of ["", "s", "-1s", "1 s", "1d", "abc", "1e3", "99999999h"]) {
    assertThrows(
      () => parseDuration(bad),
      UsageError,
      `cannot parse duration ${JSON.stringify(bad)}`,
    );
  }
});

Deno.test("decodeEscapes: known escapes, UTF-8, errors", () => {
  assertEquals(
    decodeEscapes("a\\r\\n\\t\\0\\\\\\e\\x41é"),
    new TextEncoder().encode("a\r\n\t\0\\\x1bAé"),
  );
  assertThrows(() => decodeEscapes("x\\"), UsageError, "lone");
  assertThrows(() => decodeEscapes("\\x4"), UsageError, "unknown escape");
  fc.assert(fc.property(fc.string().filter((s) => !s.includes("\\")), (s) => {
    assertEquals(decodeEscapes(s), new TextEncoder().encode(s));
  }));
});

Deno.test("format: bytes, durations, rates", () => {
  assertEquals(formatBytes(0), "0 B");
  assertEquals(formatBytes(1023), "1023 B");
  assertEquals(formatBytes(1024), "1 KiB");
  assertEquals(formatBytes(10.5 * 1024 * 1024), "10.5 MiB");
  assertEquals(formatBytes(3 * 1024 ** 3), "3 GiB");
  assertEquals(formatDuration(0), "0 ms");
  assertEquals(formatDuration(999), "999 ms");
  assertEquals(formatDuration(61_000), "1 m 1 s");
  assertEquals(formatDuration(3_660_000), "1 h 1 m");
  assertEquals(formatRate(2 * 1024 ** 3, 2000), "1 GiB/s");
  assertEquals(formatRate(8, 1356), "5.9 B/s");
  assertEquals(formatBytes(0.5), "0.5 B");
  // Rounding carries into the next unit.
  assertEquals(formatBytes(1048575), "1 MiB");
  assertEquals(formatBytes(1073741823), "1 GiB");
  assertEquals(formatBytes(1023.9), "1 KiB");
  assertEquals(formatDuration(999.6), "1 s");
  assertEquals(formatDuration(59_999), "1 m 0 s");
  assertEquals(formatDuration(119_700), "2 m 0 s");
  assertEquals(formatDuration(3_599_600), "1 h 0 m");
  assertEquals(formatDuration(7_170_000), "2 h 0 m");
});

Deno.test("format: no shown figure ever reaches its unit's limit, and it stays near the value", () => {
  const units: Record<string, number> = {
    B: 1,
    KiB: 2 ** 10,
    MiB: 2 ** 20,
    GiB: 2 ** 30,
    TiB: 2 ** 40,
  };
  fc.assert(
    fc.property(fc.double({ min: 0, max: 2 ** 50, noNaN: true }), (bytes) => {
      const [figure, unit] = formatBytes(bytes).split(" ");
      assert(Number(figure) < 1024 || unit === "TiB", formatBytes(bytes));
      const back = Number(figure) * units[unit];
      assert(
        Math.abs(back - bytes) <= Math.max(bytes * 0.006, 0.006),
        `${bytes} → ${formatBytes(bytes)}`,
      );
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (ms) => {
      const text = formatDuration(ms);
      const parts = [...text.matchAll(/([\d.]+) (ms|s|m|h)/g)];
      const scale: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
      const back = parts.reduce((sum, [, n, u]) => sum + Number(n) * scale[u], 0);
      assert(
        Math.abs(back - ms) <=
          Math.max(ms * 0.006, 0.5, ms >= 3_600_000 ? 30_000 : ms >= 60_000 ? 500 : 0),
        `${ms} → ${text}`,
      );
      const limits: Record<string, number> = { ms: 1000, s: 60, m: 60 };
      for (const [, n, u] of parts.slice(1)) assert(Number(n) < limits[u], `${ms} → ${text}`);
      if (parts.length === 1) {
        assert(Number(parts[0][1]) < (limits[parts[0][2]] ?? Infinity), `${ms} → ${text}`);
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("toSockitError: Deno errors become operation, address, reason and exit code", () => {
  const refused = toSockitError(
    new Deno.errors.ConnectionRefused("x (os error 111)"),
    "connect",
    "h:1",
  );
  assertEquals([refused.message, refused.exitCode, refused.code], [
    "connect h:1: connection refused",
    1,
    "ECONNREFUSED",
  ]);
  const denied = toSockitError(
    new Deno.errors.NotCapable('Requires net access to "h:1", run again with the --allow-net flag'),
    "connect",
    "h:1",
  );
  assertEquals(denied.exitCode, 126);
  assert(denied.hint?.includes("--allow-net"), denied.hint);
  const name = toSockitError(
    new Error("failed to lookup address information: Name or service not known"),
    "connect",
    "x:1",
  );
  assertEquals([name.reason, name.exitCode], ["name not found", 1]);
  const other = toSockitError(new Error("Something odd (os error 71)"), "read", "h:1");
  assertEquals(other.message, "read h:1: something odd");
  assertEquals(exitCodeOf(new SignalInterrupt("SIGINT")), 130);
  assertEquals(exitCodeOf(new SignalInterrupt("SIGTERM")), 143);
  assertEquals(exitCodeOf("weird"), 1);
});

Deno.test("Reporter: -v text, --json objects, -q silence, one-line errors", () => {
  let out = "";
  const sink = { write: (t: string) => void (out += t) };
  new Reporter(sink, { verbose: true }).closed({
    id: 3,
    remoteAddress: "127.0.0.1:42694",
    localAddress: "",
  }, {
    sent: 6,
    received: 0,
    durationMs: 2,
  });
  assertEquals(out, "sockit: closed 127.0.0.1:42694 (sent 6 B, received 0 B, 2 ms)\n");
  out = "";
  new Reporter(sink, { json: true }).accepted({
    id: 1,
    remoteAddress: "127.0.0.1:5",
    localAddress: "127.0.0.1:6",
  });
  const event = JSON.parse(out);
  assertEquals([event.event, event.conn, event.remote, event.local], [
    "accepted",
    1,
    "127.0.0.1:5",
    "127.0.0.1:6",
  ]);
  out = "";
  const quiet = new Reporter(sink, { quiet: true, verbose: false });
  quiet.listening("x", "tcp");
  quiet.warning("careful");
  assertEquals(out, "");
  assertEquals(quiet.fail(new Deno.errors.AddrInUse("x"), "listen", "127.0.0.1:80"), 1);
  assertEquals(out.split("\n")[0], "sockit: listen 127.0.0.1:80: address already in use");
  out = "";
  assertEquals(new Reporter(sink, { json: true }).fail(new UsageError("bad")), 2);
  assertEquals(JSON.parse(out).code, "EUSAGE");
  out = "";
  new Reporter(sink, { color: true, verbose: true }).listening("a:1", "tcp");
  assert(out.includes("\x1b["), "colour when asked");
});

Deno.test("parseFlags: any order, -- ends options, concise errors", () => {
  const flags = ["timeout", "verbose", "quiet", "json"] as const;
  const a = parseFlags(["--timeout", "2s", "h:1", "-v"], flags);
  const b = parseFlags(["h:1", "-v", "--timeout=2s"], flags);
  assertEquals(a.values.timeout, b.values.timeout);
  assertEquals(a.positionals, b.positionals);
  assertEquals(parseFlags(["--", "-v"], flags).positionals, ["-v"]);
  assertThrows(() => parseFlags(["--json=1"], flags), UsageError, "--json does not take a value");
  assertThrows(() => parseFlags(["-v", "-q"], flags), UsageError, "contradict");
});

Deno.test("help: generated from the declarations — every flag a command takes is in its help", async () => {
  const { COMMANDS, mainHelp } = await import("../lib/cli/main.ts");
  const { flagUses, helpText } = await import("../lib/cli/command.ts");
  const { flagName, TRAFFIC_FLAGS } = await import("../lib/cli/flags.ts");
  for (const command of Object.values(COMMANDS)) {
    const help = helpText(command);
    for (const use of flagUses(command)) {
      assert(
        help.includes(`--${flagName(use)}`),
        `${command.name} --help does not mention --${flagName(use)}`,
      );
    }
  }
  // The traffic flags are taken by every relaying command, and listed in sockit's own help.
  for (const name of ["listen", "connect", "echo", "forward"]) {
    const uses = flagUses(COMMANDS[name]).map(flagName);
    for (const use of TRAFFIC_FLAGS) {
      assert(uses.includes(flagName(use)), `${name} takes --${flagName(use)}`);
    }
  }
  for (const use of TRAFFIC_FLAGS) assert(mainHelp().includes(`--${flagName(use)}`));
});

Deno.test("units: IP literals are told apart as node:net's isIP does, and CIDRs match as its BlockList does", async () => {
  const { BlockList, isIP } = await import("node:net");
  const fc = (await import("fast-check")).default;
  const { ipFamily } = await import("../lib/net/ip.ts");
  const { cidrContains, normalizeIp, parseCidr } = await import("../lib/net/cidr.ts");
  const hex = fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF"), maxLength: 5 });
  const group = fc.oneof(hex, fc.constantFrom("0", "ffff", "1.2.3.4", "256.1.1.1", "01.1.1.1"));
  const literal = fc.tuple(
    fc.array(group, { maxLength: 10 }),
    fc.nat(12),
    fc.boolean(),
    fc.constantFrom("", "%eth0", "%", "%a:b"),
  ).map(([groups, at, gap, zone]) => {
    const parts = [...groups];
    if (gap) parts.splice(Math.min(at, parts.length), 0, "");
    return parts.join(":") + zone;
  });
  fc.assert(
    fc.property(fc.oneof(literal, fc.string({ maxLength: 20 })), (text) => {
      assertEquals(ipFamily(text), isIP(text) || undefined, JSON.stringify(text));
    }),
    { numRuns: 20_000, seed: 20261202 },
  );
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join("."));
  const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
    .map((g) => g.map((x) => x.toString(16)).join(":"));
  fc.assert(
    fc.property(
      fc.oneof(
        fc.tuple(v4, fc.nat(32), v4),
        fc.tuple(v6, fc.nat(128), v6),
        // Near misses: the same address with one bit flipped somewhere.
        fc.tuple(v4, fc.nat(32), fc.nat(31)).map(([a, p, bit]) => {
          const n = (a.split(".").reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0) ^
            (1 << bit)) >>> 0;
          return [a, p, [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".")];
        }),
      ),
      ([net, prefix, address]) => {
        const family = isIP(String(net)) === 4 ? "ipv4" : "ipv6";
        const list = new BlockList();
        list.addSubnet(String(net), Number(prefix), family);
        const cidr = parseCidr(`${net}/${prefix}`);
        const ip = normalizeIp(String(address))!;
        assertEquals(
          cidrContains(cidr, String(address)),
          list.check(ip[1], family),
          `${net}/${prefix} ∋ ${address}`,
        );
      },
    ),
    { numRuns: 20_000, seed: 20261202 },
  );
});
