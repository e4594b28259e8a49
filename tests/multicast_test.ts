/**
 * UDP multicast (`--multicast-join`, `--multicast-ttl`, `--multicast-loop`)
 * against socat inside a network namespace this test creates (loopback
 * only, with a route for 239.0.0.0/8), `--broadcast`, and keepalive timings
 * (`--keepalive=IDLE,INTERVAL,COUNT`) — each checked as the setsockopt call
 * strace sees.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { requireTool, runSockit, sockitCommand } from "./helpers.ts";
import { privateNamespace, runArgv, straced } from "./netns.ts";

/**
 * The script run in the namespace: multicast on loopback; a sockit
 * receiver that joins 239.1.2.3 hears socat; a socat member (of 239.1.2.4) hears a sockit
 * sender with TTL 2. Prints both results between markers.
 */
function multicastScript(strace: string, sockit: string[], dir: string): string {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const run = sockit.map(q).join(" ");
  return [
    "ip link set lo multicast on",
    "ip route add 239.0.0.0/8 dev lo src 127.0.0.1",
    // The receiver: joins the group on loopback's address; stops after 6 s.
    `${q(strace)} -f -o ${dir}/recv.strace -e trace=setsockopt ${run} listen udp://0.0.0.0:5000 ` +
    `--multicast-join 239.1.2.3@127.0.0.1 --trace --idle-timeout 6s > ${dir}/recv.out 2> ${dir}/recv.err &`,
    "receiver=$!",
    `for i in $(seq 100); do grep -q IP_ADD_MEMBERSHIP ${dir}/recv.err 2>/dev/null && break; sleep 0.05; done`,
    "printf 'to the group' | socat - UDP4-DATAGRAM:239.1.2.3:5000",
    // A socat member of the group; the sender is sockit.
    // (a group of its own, so the wait below sees socat's join, not the receiver's)
    `timeout 5 socat -u UDP4-RECV:5001,ip-add-membership=239.1.2.4:127.0.0.1 - > ${dir}/member.out &`,
    "member=$!",
    "for i in $(seq 100); do ip maddr show dev lo | grep -q 239.1.2.4 && break; sleep 0.05; done",
    `${
      q(strace)
    } -f -o ${dir}/send.strace -e trace=setsockopt ${run} connect udp://239.1.2.4:5001 ` +
    `--send 'from sockit' --multicast-ttl 2 --multicast-loop=on --idle-timeout 300ms --trace 2> ${dir}/send.err`,
    "wait $member",
    "kill $receiver; wait $receiver",
    "true",
  ].join("\n");
}

Deno.test("multicast: a sockit receiver joins a group and hears socat; a socat member hears sockit (TTL, loop)", async () => {
  const strace = requireTool("strace");
  requireTool("socat");
  const dir = await Deno.makeTempDir();
  try {
    const script = multicastScript(
      strace,
      sockitCommand(["--allow-net", "--allow-ffi"]),
      dir,
    );
    const r = await runArgv(privateNamespace([], ["sh", "-c", script]));
    assertEquals(r.code, 0, r.stderr);
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    assertEquals(await read("recv.out"), "to the group");
    assertMatch(
      await read("recv.err"),
      /setsockopt\(IP_ADD_MEMBERSHIP, 239\.1\.2\.3@127\.0\.0\.1\) = 0/,
    );
    assertMatch(
      await read("recv.strace"),
      /setsockopt\(\d+, SOL_IP, IP_ADD_MEMBERSHIP, .*239\.1\.2\.3.*127\.0\.0\.1.*\) = 0/,
    );
    assertEquals(await read("member.out"), "from sockit");
    const sent = await read("send.err");
    assertMatch(sent, /setsockopt\(IP_MULTICAST_TTL, 2\) = 0/);
    assertMatch(sent, /setsockopt\(IP_MULTICAST_LOOP, 1\) = 0/);
    const kernel = await read("send.strace");
    assertMatch(kernel, /setsockopt\(\d+, SOL_IP, IP_MULTICAST_TTL, \[2\], 4\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_IP, IP_MULTICAST_LOOP, \[1\], 4\) = 0/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--broadcast: SO_BROADCAST before connect (strace); socat hears loopback's broadcast; refused without", async () => {
  const strace = requireTool("strace");
  const socat = requireTool("socat");
  const dir = await Deno.makeTempDir();
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const run = sockitCommand(["--allow-net", "--allow-ffi"]).map(q).join(" ");
  const send = `connect udp://127.255.255.255:5002 --send hi --idle-timeout 200ms`;
  try {
    const script = [
      `timeout 3 ${q(socat)} -u UDP4-RECV:5002 - > ${dir}/heard &`,
      "heard=$!",
      "sleep 0.3",
      `${run} ${send} 2> ${dir}/refused.err; echo $? > ${dir}/refused.code`,
      `${q(strace)} -f -o ${dir}/strace -e trace=setsockopt ${run} ${send} --broadcast --trace ` +
      `2> ${dir}/sent.err`,
      // socat's UDP4-RECV never ends by itself: its timeout ends it.
      "wait $heard",
      "true",
    ].join("\n");
    // Loopback's broadcast address, in a namespace of this test's own.
    const r = await runArgv(privateNamespace([], ["sh", "-c", script]));
    assertEquals(r.code, 0, r.stderr);
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    assertEquals((await read("refused.code")).trim(), "1");
    assertMatch(await read("refused.err"), /needs SO_BROADCAST.*\n.*hint: add --broadcast/);
    assertMatch(await read("sent.err"), /setsockopt\(SO_BROADCAST, 1\) = 0/);
    assertMatch(await read("strace"), /setsockopt\(\d+, SOL_SOCKET, SO_BROADCAST, \[1\], 4\) = 0/);
    assertEquals(await read("heard"), "hi");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--keepalive=IDLE,INTERVAL,COUNT: the three setsockopt calls strace sees", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => (await listener.accept()).close())();
  try {
    const { kernel, ...r } = await straced("setsockopt", [
      ...sockitCommand(["--allow-net", "--allow-ffi"]),
      "connect",
      `127.0.0.1:${listener.addr.port}`,
      "--keepalive=1m,10s,4",
      "--trace",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(kernel, /setsockopt\(\d+, SOL_SOCKET, SO_KEEPALIVE, \[1\], 4\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_TCP, TCP_KEEPIDLE, \[60\], 4\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_TCP, TCP_KEEPINTVL, \[10\], 4\) = 0/);
    assertMatch(kernel, /setsockopt\(\d+, SOL_TCP, TCP_KEEPCNT, \[4\], 4\) = 0/);
    assertMatch(r.stderr, /setsockopt\(TCP_KEEPIDLE, 60\) = 0/);
  } finally {
    listener.close();
    await accepting.catch(() => {});
  }
});

Deno.test("multicast, broadcast and keepalive mistakes: one-line usage errors", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["listen", "udp://0.0.0.0:0", "--multicast-join", "10.0.0.1"], /not a multicast group/],
    [
      ["listen", "udp://0.0.0.0:0", "--multicast-join", "239.1.1.1@eth0"],
      /after @ comes the IPv4 address/,
    ],
    [["listen", "8080", "--multicast-join", "239.1.1.1"], /is for udp:\/\/ endpoints/],
    [["connect", "127.0.0.1:80", "--broadcast"], /--broadcast is for udp:\/\//],
    [["connect", "udp://239.1.1.1:5000", "--multicast-ttl", "300"], /0–255/],
    [["connect", "udp://239.1.1.1:5000", "--multicast-loop=maybe"], /=on or =off/],
    [["connect", "127.0.0.1:80", "--keepalive=1,2"], /IDLE or IDLE,INTERVAL,COUNT/],
    [["connect", "127.0.0.1:80", "--keepalive=0"], /1s to 32767s/],
    [["connect", "127.0.0.1:80", "--keepalive=60,10,0"], /COUNT must be 1–127/],
  ];
  for (const [args, message] of cases) {
    const r = await runSockit(args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assertMatch(r.stderr.split("\n")[0], message);
  }
  // A connected socket hears only its peer: joining is for receivers.
  const r = await runSockit(["connect", "udp://239.1.1.1:5000", "--multicast-join", "239.1.1.1"]);
  assertEquals(r.code, 2, r.stderr);
  assertMatch(r.stderr, /unknown option --multicast-join/);
});
