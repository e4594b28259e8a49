/**
 * Raw sockets: `sockit ping`, `sockit traceroute` and `ip://` endpoints,
 * against iputils ping, traceroute and socat, on loopback and in network
 * namespaces that each test makes and removes (root: CI runs as root).
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { customCommand, requireTool, runSockit, sockitCommand, spawnSockit } from "./helpers.ts";
import { Lab, Namespace, privateNamespace, requireRoot, runArgv, straced } from "./netns.ts";
import { checksum, describeIcmp, echoRequest, parseIcmp } from "../lib/protocols/icmp.ts";
import { decodeSockaddr, encodeInet } from "../lib/sys/sockaddr.ts";
import { formatEndpoint, parseEndpoint } from "../lib/net/address.ts";

const FFI = ["--allow-net", "--allow-ffi"];
const sockit = (args: string[]) => [...sockitCommand(FFI), ...args];
const hex = (text: string) => new Uint8Array(text.match(/../g)!.map((b) => parseInt(b, 16)));

/** The documented fields of the ping and traceroute events (README "ping and traceroute"). */
const SCHEMA: Record<string, string[]> = {
  ping: ["host", "address", "family", "socket", "size", "id"],
  reply: ["seq", "from", "bytes", "rttMs", "duplicate"],
  icmp: ["seq", "from", "icmpType", "code", "message"],
  done: [
    "host",
    "address",
    "transmitted",
    "received",
    "errors",
    "duplicates",
    "corrupted",
    "lossPercent",
    "timeMs",
  ],
  traceroute: ["host", "address", "maxHops", "packetBytes"],
  hop: ["hop", "probes"],
  traced: ["address", "reached", "hops"],
};

function jsonEvents(text: string): Record<string, unknown>[] {
  return text.split("\n").filter(Boolean).map((line) => {
    const obj = JSON.parse(line);
    const fields = SCHEMA[obj.event];
    assert(fields, `undocumented event ${obj.event}`);
    for (const f of fields) assert(f in obj, `${obj.event} lacks ${f}: ${line}`);
    assert(!Number.isNaN(Date.parse(obj.time)), `no time in ${line}`);
    return obj;
  });
}

// ---- pure packet code --------------------------------------------------------------

Deno.test("icmp: checksum, echo requests, sockaddr round trips", () => {
  const request = echoRequest(4, 0xbeef, 513, 56);
  assertEquals(checksum(request), 0);
  assertEquals([request[4], request[5], request[6], request[7]], [0xbe, 0xef, 2, 1]);
  // IPv6: the kernel computes the checksum.
  assertEquals(echoRequest(6, 1, 1, 8).subarray(0, 4), new Uint8Array([128, 0, 0, 0]));
  // An odd length pads with a zero byte.
  assertEquals(checksum(new Uint8Array([0xff])), 0x00ff);
  for (const [host, port] of [["127.1.0.2", 0], ["::1", 58], ["fe80::1:2", 33434]] as const) {
    assertEquals(decodeSockaddr(encodeInet(host, port)), {
      family: host.includes(":") ? 6 : 4,
      address: host,
      port,
    });
  }
});

Deno.test("icmp: replies parsed from captured packets (time exceeded, port unreachable)", () => {
  // Captured in the namespace lab: a TTL-1 echo request from 127.1.0.1 to 127.2.0.2, answered by
  // the router 127.1.0.2 (a raw IPv4 socket's bytes: IP header first).
  const exceeded = parseIcmp(
    4,
    hex(
      "45c00040cced00004001af0a7f0100027f0100010b00f4ff00000000450000247e9f40000101fd337f0100017f0200020800a9a6424200070001020304050607",
    ),
    true,
  );
  assertEquals(exceeded?.kind, "time-exceeded");
  assertEquals(exceeded?.ttl, 64);
  assertEquals(exceeded?.quoted, { protocol: 1, destination: "127.2.0.2", id: 0x4242, seq: 7 });
  assertEquals(describeIcmp(4, exceeded!.type, exceeded!.code), "Time to live exceeded");
  // A UDP probe from port 60024 to 33440 answered by the destination: port unreachable.
  const unreachable = parseIcmp(
    4,
    hex(
      "45c0003cb5f700003f01c7037f0200027f010001030391b30000000045000020ce6a40000111ad5c7f0100017f020002ea7882a0000cfe2300000000",
    ),
    true,
  );
  assertEquals(unreachable?.kind, "unreachable");
  assertEquals(unreachable?.code, 3);
  assertEquals(unreachable?.quoted, {
    protocol: 17,
    destination: "127.2.0.2",
    sourcePort: 60024,
    destinationPort: 33440,
  });
  // Too short to be anything.
  assertEquals(parseIcmp(4, new Uint8Array(10), true), undefined);
});

Deno.test("ip://: the endpoint grammar", async () => {
  assertEquals(parseEndpoint("ip://127.0.0.1/253"), {
    form: "host-protocol",
    scheme: "ip",
    hostname: "127.0.0.1",
    protocol: 253,
  });
  assertEquals(parseEndpoint("ip://[::1]/253"), {
    form: "host-protocol",
    scheme: "ip",
    hostname: "::1",
    protocol: 253,
  });
  assertEquals(formatEndpoint(parseEndpoint("ip://::1/253")), "ip://[::1]/253");
  for (
    const [bad, why] of [
      ["ip://127.0.0.1", /missing protocol/],
      ["ip://127.0.0.1/300", /invalid IP protocol "300"/],
      ["ip://127.0.0.1/0", /invalid IP protocol "0"/],
      ["ip:127.0.0.1/1", /expected ip:\/\/host\/protocol/],
    ] as const
  ) {
    const r = await runSockit(["connect", bad]);
    assertEquals(r.code, 2, bad);
    assertMatch(r.stderr, why);
  }
});

// ---- ping on loopback ----------------------------------------------------------------

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`ping ${host}: the same replies and lines as iputils ping, run at the same time`, async () => {
    requireRoot();
    const iputils = requireTool("ping");
    const [mine, theirs] = await Promise.all([
      runArgv(sockit(["ping", "-c", "3", "-i", "0.2", host])),
      runArgv([iputils, "-c", "3", "-i", "0.2", host]),
    ]);
    assertEquals(mine.code, 0, mine.stderr);
    assertEquals(theirs.code, 0);
    // Line by line, with the times taken out.
    const shape = (text: string) =>
      text.replace(/time[= ][\d.]+ ?ms/g, "time=T").replace(/time \d+ms/g, "time T")
        .replace(/= [\d./]+ ms/, "= R ms");
    assertEquals(shape(mine.stdout), shape(theirs.stdout));
    assertEquals(mine.stdout.match(/^64 bytes from/gm)?.length, 3);
  });
}

Deno.test("ping --json: events with the documented fields; --ttl; -q", async () => {
  requireRoot();
  const r = await runArgv(
    sockit(["ping", "-c", "2", "-i", "0.05", "--ttl", "9", "::1", "--json", "--trace"]),
  );
  assertEquals(r.code, 0, r.stderr);
  const events = jsonEvents(r.stdout);
  assertEquals(events.map((e) => e.event), ["ping", "reply", "reply", "done"]);
  assertEquals(events[0].socket, "raw");
  // The reply's hop limit is the replier's; the request's is ours.
  assertEquals(events[1].ttl, 64);
  assertMatch(r.stderr, /setsockopt\(IPV6_UNICAST_HOPS, 9\) = 0/);
  assertEquals([events[3].transmitted, events[3].received, events[3].lossPercent], [2, 2, 0]);
  const quiet = await runArgv(sockit(["ping", "-c", "2", "-i", "0.05", "-q", "127.0.0.1"]));
  assertEquals(quiet.code, 0);
  assert(!/bytes from/.test(quiet.stdout), quiet.stdout);
  assertMatch(quiet.stdout, /^2 packets transmitted, 2 received, 0% packet loss/m);
});

Deno.test("ping --trace: the calls strace sees (socket, setsockopt, sendto, recvmsg)", async () => {
  requireRoot();
  const { kernel, ...r } = await straced(
    "network",
    sockit(["ping", "-c", "1", "127.0.0.1", "--trace"]),
  );
  assertEquals(r.code, 0, r.stderr);
  const calls = (text: string) =>
    ["socket", "setsockopt", "sendto", "recvmsg"].filter((c) =>
      new RegExp(`\\b${c}\\(`).test(text)
    );
  assertMatch(r.stderr, /socket\(AF_INET, SOCK_RAW, IPPROTO_ICMP\) = \d+/);
  assertMatch(kernel, /socket\(AF_INET, SOCK_RAW(\|SOCK_CLOEXEC)?, IPPROTO_ICMP\) = \d+/);
  assertEquals(calls(r.stderr), calls(kernel));
  assertEquals(calls(r.stderr), ["socket", "setsockopt", "sendto", "recvmsg"]);
});

Deno.test("ping: SIGINT prints the statistics, then exit 130", async () => {
  requireRoot();
  const run = spawnSockit(["ping", "-i", "0.1", "127.0.0.1", "-v"], {
    perms: FFI,
    process: true,
  });
  await run.waitForStderr(/raw socket/);
  await new Promise((r) => setTimeout(r, 350));
  run.kill("SIGINT");
  const r = await run.result();
  assertEquals(r.code, 130);
  assertMatch(
    r.text,
    /--- 127\.0\.0\.1 ping statistics ---\n\d+ packets transmitted, \d+ received/,
  );
});

Deno.test("ping: without --allow-ffi, exit 126 naming the flag; bad flags exit 2", async () => {
  if (customCommand) return; // a binary has its permissions built in
  const r = await runArgv([...sockitCommand(["--allow-net"]), "ping", "-c", "1", "127.0.0.1"]);
  assertEquals(r.code, 126);
  assertMatch(r.stderr, /needs --allow-ffi/);
  for (const args of [["--socket", "icmp"], ["--ttl", "0"], ["-c", "0"], []]) {
    const bad = await runSockit(["ping", ...args, ...(args.length ? ["127.0.0.1"] : [])]);
    assertEquals(bad.code, 2, args.join(" "));
  }
});

// ---- ping in a private namespace: the datagram socket, refusals, silence ---------------

Deno.test("ping in a private namespace: ICMP datagram socket, no privileges (126), echo ignored (1)", async () => {
  requireRoot();
  // A group allowed to open ICMP datagram sockets: root's (0).
  const dgram = await runArgv(
    privateNamespace(
      ["net.ipv4.ping_group_range=0 0"],
      sockit(["ping", "-c", "2", "-i", "0.05", "--socket", "dgram", "127.0.0.1", "-v"]),
    ),
  );
  assertEquals(dgram.code, 0, dgram.stderr);
  assertMatch(dgram.stderr, /ICMP datagram socket/);
  assertEquals(dgram.stdout.match(/^64 bytes from 127\.0\.0\.1: icmp_seq=\d ttl=64/gm)?.length, 2);
  // Without CAP_NET_RAW and no group allowed: neither socket, exit 126 naming all three.
  const setpriv = requireTool("setpriv");
  const denied = await runArgv(
    privateNamespace(
      ["net.ipv4.ping_group_range=1 0"],
      [
        setpriv,
        "--bounding-set=-net_raw",
        "--inh-caps=-net_raw",
        ...sockit(["ping", "-c", "1", "127.0.0.1"]),
      ],
    ),
  );
  assertEquals(denied.code, 126, denied.stderr);
  assertMatch(denied.stderr, /allows neither a raw socket nor an ICMP datagram socket/);
  assertMatch(denied.stderr, /root or with CAP_NET_RAW.*ping_group_range \(now "1 0"\)/);
  // A host that ignores echo requests: 100 % loss, exit 1.
  const ignored = await runArgv(
    privateNamespace(
      ["net.ipv4.icmp_echo_ignore_all=1"],
      sockit(["ping", "-c", "2", "-i", "0.05", "-W", "0.3", "127.0.0.1"]),
    ),
  );
  assertEquals(ignored.code, 1, ignored.stderr);
  assertMatch(ignored.stdout, /2 packets transmitted, 0 received, 100% packet loss/);
});

// ---- the three-namespace lab: TTL and traceroute -----------------------------------------

Deno.test("lab: ping --ttl 1 is answered by the middle hop; traceroute shows the hops traceroute -n shows", async () => {
  await using lab = await Lab.create();
  const exceeded = await runArgv(
    lab.inside(lab.a, sockit(["ping", "-c", "1", "-W", "1", "--ttl", "1", Lab.C, "--json"])),
  );
  assertEquals(exceeded.code, 1, exceeded.stderr);
  const icmp = jsonEvents(exceeded.stdout).find((e) => e.event === "icmp");
  assertEquals([icmp?.from, icmp?.message], [Lab.B, "Time to live exceeded"]);
  const through = await runArgv(lab.inside(lab.a, sockit(["ping", "-c", "1", Lab.C])));
  assertEquals(through.code, 0, through.stderr);
  assertMatch(through.stdout, /64 bytes from 127\.2\.0\.2: icmp_seq=1 ttl=63 /);
  // traceroute: the same two hops as traceroute -n.
  const theirs = await runArgv(
    lab.inside(lab.a, [requireTool("traceroute"), "-n", "-q", "2", "-w", "2", Lab.C]),
  );
  const mine = await runArgv(
    lab.inside(lab.a, sockit(["traceroute", "-n", "-q", "2", "-w", "2s", Lab.C])),
  );
  assertEquals(mine.code, 0, mine.stderr);
  const hops = (text: string) =>
    text.split("\n").slice(1).filter(Boolean).map((l) => l.replace(/ +[\d.]+ ms/g, ""));
  assertEquals(hops(mine.stdout), hops(theirs.stdout));
  assertEquals(hops(mine.stdout), [" 1  127.1.0.2", " 2  127.2.0.2"]);
  assertEquals(mine.stdout.split("\n")[0], theirs.stdout.split("\n")[0]);
  const json = await runArgv(
    lab.inside(lab.a, sockit(["traceroute", "-q", "1", "-w", "2s", Lab.C, "--json"])),
  );
  const events = jsonEvents(json.stdout);
  assertEquals(events.map((e) => e.event), ["traceroute", "hop", "hop", "traced"]);
  assertEquals(events[3].reached, true);
});

Deno.test("traceroute: without a raw socket, exit 126 naming root and CAP_NET_RAW", async () => {
  requireRoot();
  const r = await runArgv([
    requireTool("setpriv"),
    "--bounding-set=-net_raw",
    "--inh-caps=-net_raw",
    ...sockit(["traceroute", "-q", "1", "127.0.0.1"]),
  ]);
  assertEquals(r.code, 126, r.stderr);
  assertMatch(r.stderr, /traceroute 127\.0\.0\.1: the system does not allow raw sockets/);
  assertMatch(r.stderr, /CAP_NET_RAW/);
});

// ---- ip:// --------------------------------------------------------------------------------

for (const host of ["127.0.0.1", "[::1]"]) {
  Deno.test(`ip://${host}/253: two sockit processes exchange datagrams both ways`, async () => {
    requireRoot();
    const server = spawnSockit(["listen", `ip://${host}/253`, "-v"], {
      perms: FFI,
      process: true,
      stdin: "piped",
    });
    await server.waitForStderr(/listening on/);
    const client = spawnSockit([
      "connect",
      `ip://${host}/253`,
      "--idle-timeout",
      "1s",
      "--hex",
      "--stats",
    ], {
      perms: FFI,
      process: true,
      stdin: "piped",
    });
    const toServer = client.stdin.getWriter();
    await toServer.write(new TextEncoder().encode("one\n"));
    await server.waitForStderr(/datagrams from/);
    const toClient = server.stdin.getWriter();
    await toClient.write(new TextEncoder().encode("back\n"));
    await new Promise((r) => setTimeout(r, 200));
    await toServer.close();
    const c = await client.result();
    server.kill("SIGTERM");
    await toClient.close().catch(() => {});
    const s = await server.result();
    // Each side got the other's datagram, and not its own copy (loopback delivers one to every raw socket).
    assertEquals(c.text, "back\n");
    assertEquals(s.text, "one\n");
    // --hex and --stats as for any datagram side: one dump each way, and the counts.
    assertMatch(c.stderr, /> #1 ip:\/\/.*\/253 4 bytes\n0+ {2}6f 6e 65 0a /);
    assertMatch(c.stderr, /< #1 ip:\/\/.*\/253 5 bytes\n0+ {2}62 61 63 6b 0a /);
    assertMatch(c.stderr, /stats ip:\/\/.*\/253: sent 4 B .*received 5 B/);
    assertMatch(s.stderr, new RegExp(`datagrams from ${host.replace(/[[\].]/g, "\\$&")}/253`));
  });
}

Deno.test("ip://: interoperates with socat IP4-SENDTO and IP4-RECV", async () => {
  requireRoot();
  const socat = requireTool("socat");
  // sockit → socat
  const receiver = new Deno.Command(socat, {
    args: ["-u", "IP4-RECV:253,bind=127.0.0.1", "STDOUT"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 300));
  const sent = await runSockit(["connect", "ip://127.0.0.1/253", "--send", "to socat\\n"], {
    perms: FFI,
  });
  assertEquals(sent.code, 0, sent.stderr);
  await new Promise((r) => setTimeout(r, 200));
  receiver.kill("SIGTERM");
  assertEquals(new TextDecoder().decode((await receiver.output()).stdout), "to socat\n");
  // socat → sockit
  const listener = spawnSockit(["listen", "ip://127.0.0.1/253", "-v"], {
    perms: FFI,
    process: true,
    stdin: "null",
  });
  await listener.waitForStderr(/listening on/);
  const sender = await new Deno.Command(socat, {
    args: ["-u", "STDIN", "IP4-SENDTO:127.0.0.1:253"],
    stdin: "piped",
    stderr: "null",
  }).spawn();
  const w = sender.stdin.getWriter();
  await w.write(new TextEncoder().encode("from socat\n"));
  await w.close();
  await sender.status;
  await listener.waitForStderr(/datagrams from 127\.0\.0\.1\/253/);
  listener.kill("SIGTERM");
  const got = await listener.result();
  assertEquals(got.text, "from socat\n");
});

// ---- fixes: sequence wrap, reply size, checksums, unreachable routers, unspecified hosts ------

/** iputils' lines with the times taken out (and iputils' flood-only `ipg/ewma` figures). */
const shape = (text: string) =>
  text.replace(/time[= ][\d.]+ ?ms/g, "time=T").replace(/time \d+ms/g, "time T")
    .replace(/= [\d./]+ ms(, ipg\/ewma [\d./]+ ms)?/, "= R ms");

Deno.test("ping -c 70000 -i 0: sequence numbers come round after 65535 without counting duplicates, as iputils", async () => {
  requireRoot();
  // Before: the answered set was never cleared, so from request 65,537 on every reply was a
  // duplicate (65536 received, +4464 duplicates) and ping waited -W for answers already in.
  const args = ["-c", "70000", "-i", "0", "-q", "127.0.0.1"];
  const started = performance.now();
  const mine = await runArgv(sockit(["ping", ...args, "-W", "2s"]));
  const took = performance.now() - started;
  const theirs = await runArgv([requireTool("ping"), ...args, "-W", "2"]);
  assertEquals(mine.code, 0, mine.stderr);
  assertMatch(
    mine.stdout,
    /^70000 packets transmitted, 70000 received, 0% packet loss, time \d+ms$/m,
  );
  assertEquals(shape(mine.stdout), shape(theirs.stdout));
  // A bound on a hang, not a speed target (~1 s here; the -W wait alone was 2 s before).
  assert(took < 15_000, `took ${took} ms`);
});

/**
 * A fake peer in `ns`: a Python raw socket that answers each echo request
 * (the kernel's own answer is off: icmp_echo_ignore_all) as `plan[seq - 1]`
 * says — `good`, `bad` (a wrong checksum), `size=N` (N data bytes, the
 * request's pattern continued). Stopped by its PID.
 */
async function echoSpoofer(ns: Namespace, plan: string[]): Promise<AsyncDisposable> {
  const [command, ...args] = ns.inside([requireTool("python3"), "-c", SPOOFER, ...plan]);
  const child = new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assertEquals((await reader.read()).value?.trim(), "ready");
  return {
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

const SPOOFER = `
import socket, struct, sys
plan = sys.argv[1:]
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
while True:
    pkt, (src, _) = s.recvfrom(65535)
    icmp = pkt[(pkt[0] & 15) * 4:]
    if icmp[0] != 8: continue
    how = plan[(struct.unpack("!H", icmp[6:8])[0] - 1) % len(plan)]
    data = icmp[8:]
    if how.startswith("size="):
        n = int(how[5:])
        data = (data + bytes(i & 255 for i in range(len(data), n)))[:n]
    reply = bytearray(b"\\0\\0\\0\\0" + icmp[4:8] + data)
    struct.pack_into("!H", reply, 2, csum(bytes(reply)) ^ (0x5555 if how == "bad" else 0))
    s.sendto(reply, (src, 0))
`;

Deno.test("ping: a reply is read whole — -s 60000 as iputils, and a 60008-byte reply to a 64-byte request", async () => {
  requireRoot();
  const [mine, theirs] = await Promise.all([
    runArgv(sockit(["ping", "-c", "1", "-s", "60000", "127.0.0.1"])),
    runArgv([requireTool("ping"), "-c", "1", "-s", "60000", "127.0.0.1"]),
  ]);
  assertEquals(mine.code, 0, mine.stderr);
  assertEquals(shape(mine.stdout), shape(theirs.stdout));
  assertMatch(mine.stdout, /^60008 bytes from 127\.0\.0\.1: icmp_seq=1 ttl=64 time=/m);
  // A peer that answers with more than was asked: before, the 2048-byte buffer cut it to
  // "2028 bytes" (2048 less the IP header).
  await using ns = await Namespace.create(["net.ipv4.icmp_echo_ignore_all=1"]);
  await using _peer = await echoSpoofer(ns, ["size=60000"]);
  const big = await runArgv(ns.inside(sockit(["ping", "-c", "1", "-W", "2s", "127.0.0.1"])));
  assertEquals(big.code, 0, big.stderr);
  assertMatch(big.stdout, /^60008 bytes from 127\.0\.0\.1: icmp_seq=1 ttl=64 time=[\d.]+ ms$/m);
});

Deno.test("ping: a reply with a bad ICMP checksum is shown (BAD CHECKSUM!) and not counted, as iputils", async () => {
  requireRoot();
  await using ns = await Namespace.create(["net.ipv4.icmp_echo_ignore_all=1"]);
  const args = ["-c", "2", "-i", "0.2", "127.0.0.1"];
  let mine, theirs;
  {
    await using _peer = await echoSpoofer(ns, ["bad", "good"]);
    mine = await runArgv(ns.inside(sockit(["ping", ...args, "-W", "0.5s"])));
    theirs = await runArgv(ns.inside([requireTool("ping"), ...args, "-W", "1"]));
  }
  assertEquals(mine.code, 0, mine.stderr);
  const lines = mine.stdout.split("\n");
  assertMatch(
    lines[1],
    /^64 bytes from 127\.0\.0\.1: icmp_seq=1 ttl=64 time=[\d.]+ ms \(BAD CHECKSUM!\)$/,
  );
  assertMatch(lines[2], /^64 bytes from 127\.0\.0\.1: icmp_seq=2 ttl=64 time=[\d.]+ ms$/);
  assertMatch(
    mine.stdout,
    /^2 packets transmitted, 1 received, \+1 corrupted, 50% packet loss, time \d+ms$/m,
  );
  // iputils checks the checksum since 20240905 (bacf1b7, "fix IPv4 checksum check always
  // succeeding once again"); an older one prints the same lines without the mark and counts it.
  if (/BAD CHECKSUM/.test(theirs.stdout)) assertEquals(shape(mine.stdout), shape(theirs.stdout));
  else {
    const replies = (text: string) =>
      shape(text).split("\n").filter((l) => / bytes from /.test(l)).map((l) =>
        l.replace(" (BAD CHECKSUM!)", "")
      );
    assertEquals(replies(mine.stdout), replies(theirs.stdout));
  }
  // --json: the reply says so, the totals count it apart; only bad replies: exit 1.
  await using _bad = await echoSpoofer(ns, ["bad"]);
  const json = await runArgv(
    ns.inside(sockit(["ping", "-c", "1", "-W", "0.5s", "127.0.0.1", "--json"])),
  );
  assertEquals(json.code, 1, json.stderr);
  const events = jsonEvents(json.stdout);
  assert(events.some((e) => e.event === "reply" && e.badChecksum === true), json.stdout);
  const done = events.find((e) => e.event === "done")!;
  assertEquals([done.received, done.corrupted, done.duplicates], [0, 1, 0]);
});

Deno.test("lab: traceroute stops at a router's !H / !X as traceroute -n does, but HOST was not reached (exit 1)", async () => {
  await using lab = await Lab.create();
  // B has no way on to 127.3/24 (host unreachable) and refuses 127.4/24 (administratively).
  // B sends these from ip_error(), limited per source to a burst of 5 and then 1/s by the
  // host-wide net.ipv4.route.error_cost/error_burst (no namespace has its own): each run below
  // sends one probe that meets them — traceroute(8) -N 1, one at a time — 3 in all.
  await lab.exec(lab.b, ["ip", "route", "add", "unreachable", "127.3.0.0/24"]);
  await lab.exec(lab.b, ["ip", "route", "add", "prohibit", "127.4.0.0/24"]);
  const hops = (text: string) =>
    text.split("\n").slice(1).filter(Boolean).map((l) => l.replace(/ +[\d.]+ ms/g, ""));
  const args = ["-n", "-q", "1", "-m", "5", "127.3.0.2"];
  const theirs = await runArgv(
    lab.inside(lab.a, [requireTool("traceroute"), "-N", "1", ...args, "-w", "2"]),
  );
  const mine = await runArgv(lab.inside(lab.a, sockit(["traceroute", ...args, "-w", "2s", "-v"])));
  assertEquals(hops(mine.stdout), hops(theirs.stdout));
  assertEquals(hops(mine.stdout), [` 1  ${Lab.B} !H`]);
  // Before: exit 0 and reached: true, as if HOST had answered.
  assertEquals(mine.code, 1, mine.stderr);
  assertMatch(mine.stderr, /127\.3\.0\.2 not reached: 127\.1\.0\.2 answered !H at hop 1/);
  const json = await runArgv(
    lab.inside(lab.a, sockit(["traceroute", "-q", "1", "-w", "2s", "127.4.0.2", "--json", "-v"])),
  );
  assertEquals(json.code, 1, json.stderr);
  assertMatch(json.stderr, /127\.4\.0\.2 not reached: 127\.1\.0\.2 answered !X at hop 1/);
  const events = jsonEvents(json.stdout);
  assertEquals(events.map((e) => e.event), ["traceroute", "hop", "traced"]);
  const [probe] = events[1].probes as { from: string; mark: string }[];
  assertEquals([probe.from, probe.mark], [Lab.B, "!X"]);
  assertEquals(events[2].reached, false);
});

Deno.test("traceroute and ping to 0.0.0.0, :: and ::ffff:127.0.0.1: the local host, as traceroute(8) and iputils", async () => {
  requireRoot();
  // Before: traceroute printed only * (replies quote 127.0.0.1, not 0.0.0.0; ICMPv6 never
  // reaches a v4-mapped address) for 30 hops × 3 probes × 5 s, then exit 1.
  for (const host of ["0.0.0.0", "::", "::ffff:127.0.0.1"]) {
    const args = ["-n", "-q", "1", "-m", "3", host];
    const [mine, theirs] = await Promise.all([
      runArgv(sockit(["traceroute", ...args, "-w", "2s"])),
      runArgv([requireTool("traceroute"), ...args, "-w", "2"]),
    ]);
    assertEquals(mine.code, 0, `${host}: ${mine.stderr}`);
    const noTimes = (text: string) => text.replace(/ +[\d.]+ ms/g, "");
    assertEquals(noTimes(mine.stdout), noTimes(theirs.stdout), host);
  }
  // ping: 0.0.0.0 and :: as iputils prints them (PING 0.0.0.0 (127.0.0.1), PING ::(::)).
  for (const host of ["0.0.0.0", "::"]) {
    const args = ["-c", "2", "-i", "0.2", host];
    const [mine, theirs] = await Promise.all([
      runArgv(sockit(["ping", ...args])),
      runArgv([requireTool("ping"), ...args]),
    ]);
    assertEquals(mine.code, 0, `${host}: ${mine.stderr}`);
    assertEquals(shape(mine.stdout), shape(theirs.stdout), host);
  }
  // iputils sends ICMPv6 to ::ffff:127.0.0.1 and loses every request; sockit pings the IPv4
  // address it carries, as traceroute(8) traces it: the lines of iputils' ping 127.0.0.1.
  const [mapped, plain] = await Promise.all([
    runArgv(sockit(["ping", "-c", "2", "-i", "0.2", "::ffff:127.0.0.1"])),
    runArgv([requireTool("ping"), "-c", "2", "-i", "0.2", "127.0.0.1"]),
  ]);
  assertEquals(mapped.code, 0, mapped.stderr);
  assertEquals(
    shape(mapped.stdout),
    shape(plain.stdout).replace("PING 127.0.0.1 ", "PING ::ffff:127.0.0.1 ")
      .replace("--- 127.0.0.1 ", "--- ::ffff:127.0.0.1 "),
  );
  // -6 with a v4-mapped address: a usage error (traceroute(8) and iputils exit 2 too).
  const six = await runSockit(["traceroute", "-6", "::ffff:127.0.0.1"], { perms: FFI });
  assertEquals(six.code, 2, six.stderr);
});
