import { assert, assertEquals, assertThrows } from "./assert.ts";
import fc from "fast-check";
import { formatEndpoint, parseEndpoint } from "../lib/net/address.ts";
import { formatAddr, isIPv4, isIPv6, parseUnixName } from "../lib/net/ip.ts";
import { requireEndpoint } from "../lib/net/address.ts";
import { schemeNamed } from "../lib/net/schemes.ts";
import type { Endpoint } from "../lib/net/address.ts";
import { UsageError } from "../lib/base/errors.ts";

Deno.test("parseEndpoint: every documented form", () => {
  const table: Array<[string, Endpoint]> = [
    ["8888", { form: "host-port", scheme: "tcp", port: 8888 }],
    ["0", { form: "host-port", scheme: "tcp", port: 0 }],
    ["localhost:8888", { form: "host-port", scheme: "tcp", hostname: "localhost", port: 8888 }],
    ["1.2.3.4:80", { form: "host-port", scheme: "tcp", hostname: "1.2.3.4", port: 80 }],
    ["[::1]:8888", { form: "host-port", scheme: "tcp", hostname: "::1", port: 8888 }],
    ["[::]:0", { form: "host-port", scheme: "tcp", hostname: "::", port: 0 }],
    ["[fe80::1%eth0]:22", { form: "host-port", scheme: "tcp", hostname: "fe80::1%eth0", port: 22 }],
    ["[::ffff:127.0.0.1]:1", {
      form: "host-port",
      scheme: "tcp",
      hostname: "::ffff:127.0.0.1",
      port: 1,
    }],
    ["tcp://host:65535", { form: "host-port", scheme: "tcp", hostname: "host", port: 65535 }],
    ["TCP://host:1", { form: "host-port", scheme: "tcp", hostname: "host", port: 1 }],
    ["tcp://8888", { form: "host-port", scheme: "tcp", port: 8888 }],
    ["udp://[::1]:53", { form: "host-port", scheme: "udp", hostname: "::1", port: 53 }],
    ["tls://example.com:443", {
      form: "host-port",
      scheme: "tls",
      hostname: "example.com",
      port: 443,
    }],
    ["my-host.example.:80", {
      form: "host-port",
      scheme: "tcp",
      hostname: "my-host.example.",
      port: 80,
    }],
    ["unix:/tmp/s.sock", { form: "path", scheme: "unix", path: "/tmp/s.sock", abstract: false }],
    ["unix:///tmp/s.sock", { form: "path", scheme: "unix", path: "/tmp/s.sock", abstract: false }],
    ["unix:relative.sock", {
      form: "path",
      scheme: "unix",
      path: "relative.sock",
      abstract: false,
    }],
    ["unix:/tmp/with space.sock", {
      form: "path",
      scheme: "unix",
      path: "/tmp/with space.sock",
      abstract: false,
    }],
    ["0.0.0.0:8888", { form: "host-port", scheme: "tcp", hostname: "0.0.0.0", port: 8888 }],
  ];
  for (const [input, expected] of table) assertEquals(parseEndpoint(input), expected, input);
});

Deno.test("parseEndpoint: malformed input names the input and the reason", () => {
  const table: Array<[string, string]> = [
    ["x:99999", "port out of range"],
    ["65536", "port out of range"],
    ["host", "missing port"],
    ["host:", "missing port"],
    ["[::1]", "missing port"],
    ["[::1]:", "missing port"],
    ["", "empty endpoint"],
    ["ftp://host:21", 'unknown scheme "ftp"'],
    ["http://host:80", 'unknown scheme "http"'],
    ["[::1:80", "unbalanced brackets"],
    ["::1]:80", "unbalanced brackets"],
    ["[[::1]]:80", "unbalanced brackets"],
    ["::1:80", "must be in brackets"],
    ["unix:", "empty unix socket path"],
    ["unix://", "empty unix socket path"],
    ["unix://tmp/x", "expected unix:/path or unix:///path"],
    [`unix:/${"x".repeat(107)}`, "longer than 107 bytes"],
    ["host:8o", 'invalid port "8o"'],
    ["host:-1", 'invalid port "-1"'],
    [":80", "missing host"],
    ["bad_host!:80", "invalid host"],
    ["300.1.1.1:80", "invalid IPv4 address"],
    ["[1:2:3]:80", "invalid IPv6 address"],
    ["a b:80", "whitespace"],
    ["unix:/tmp/a\0b", "NUL byte"],
    ["tcp://", "missing host and port"],
  ];
  for (const [input, reason] of table) {
    const err = assertThrows(() => parseEndpoint(input), UsageError);
    assert(
      err.message.startsWith(`cannot parse endpoint ${JSON.stringify(input)}: `),
      `${input}: ${err.message}`,
    );
    assert(err.message.includes(reason), `${input}: expected "${reason}" in "${err.message}"`);
  }
});

Deno.test("isIPv4 / isIPv6", () => {
  for (const ok of ["0.0.0.0", "127.0.0.1", "255.255.255.255"]) assert(isIPv4(ok), ok);
  for (const bad of ["256.0.0.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "a.b.c.d"]) {
    assert(!isIPv4(bad), bad);
  }
  for (const ok of ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "fe80::1%lo"]) {
    assert(isIPv6(ok), ok);
  }
  for (
    const bad of ["1:2:3", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1", "localhost"]
  ) {
    assert(!isIPv6(bad), bad);
  }
});

Deno.test("formatAddr formats what Deno reports", () => {
  assertEquals(formatAddr({ transport: "tcp", hostname: "127.0.0.1", port: 1 }), "127.0.0.1:1");
  assertEquals(formatAddr({ transport: "tcp", hostname: "::1", port: 2 }), "[::1]:2");
  assertEquals(formatAddr({ transport: "unix", path: "" }), "unix:(unnamed)");
});

Deno.test("requireEndpoint refuses with 'not supported by <command>'", () => {
  const err = assertThrows(
    () =>
      requireEndpoint(
        parseEndpoint("udp://h:1"),
        { role: "listen", kind: "stream" },
        "forward",
        "udp://h:1",
      ),
    UsageError,
  );
  assert(err.message.includes("udp:// is not supported by forward"), err.message);
});

// ---- properties -------------------------------------------------------------

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/);
const hostname = fc.oneof(
  fc.array(label, { minLength: 1, maxLength: 4 }).map((parts) => parts.join(".")).filter((h) =>
    !/^[\d.]+$/.test(h)
  ),
  fc.ipV4(),
  fc.ipV6(),
);
const port = fc.integer({ min: 0, max: 65535 });
const netEndpoint = fc.record({
  form: fc.constant("host-port" as const),
  scheme: fc.constantFrom("tcp", "udp", "tls"),
  hostname: fc.option(hostname, { nil: undefined }),
  port,
}).map((e) => {
  const { hostname, ...rest } = e;
  return hostname === undefined ? rest : { ...rest, hostname };
});
const unixEndpoint = fc.record({
  form: fc.constant("path" as const),
  scheme: fc.constantFrom("unix", "unixgram"),
  path: fc.string({ minLength: 1, maxLength: 100, unit: "grapheme-ascii" })
    .filter((p) => !p.includes("\0") && new TextEncoder().encode(p).length <= 107)
    .filter((p) => !p.startsWith("//") || p.length > 2),
}).map(({ path, ...e }) => ({ ...e, ...parseUnixName(path) }));
const urlEndpoint = fc.record({
  form: fc.constant("url" as const),
  scheme: fc.constantFrom("ws", "wss"),
  hostname: fc.option(hostname, { nil: undefined }),
  port,
  resource: fc.option(fc.stringMatching(/^\/[A-Za-z0-9/?=&._-]{0,20}$/), { nil: undefined }),
}).map(({ hostname, resource, ...rest }) => ({
  ...rest,
  ...(hostname === undefined ? {} : { hostname }),
  ...(resource === undefined ? {} : { resource }),
}));
const ipEndpoint = fc.record({
  form: fc.constant("host-protocol" as const),
  scheme: fc.constant("ip"),
  hostname,
  protocol: fc.integer({ min: 1, max: 255 }),
});
// fast-check builds null-prototype records; endpoints are plain objects.
const endpoint: fc.Arbitrary<Endpoint> = fc.oneof(
  netEndpoint,
  unixEndpoint,
  urlEndpoint,
  ipEndpoint,
)
  .map((e) => ({ ...e }));

Deno.test("property: parse ∘ format is the identity on endpoints", () => {
  fc.assert(
    fc.property(endpoint, (e) => {
      assertEquals(parseEndpoint(formatEndpoint(e)), e);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: format ∘ parse is the identity on canonical text", () => {
  fc.assert(
    fc.property(endpoint, (e) => {
      const text = formatEndpoint(e);
      assertEquals(formatEndpoint(parseEndpoint(text)), text);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: no input crashes the parser; bad input always gets the documented error", () => {
  const noise = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ maxLength: 40, unit: "binary" }),
    fc.tuple(fc.constantFrom("tcp://", "udp://", "tls://", "unix:", "[", "", "x://"), fc.string())
      .map(([a, b]) => a + b),
    fc.tuple(hostname, fc.string({ maxLength: 8 })).map(([h, p]) => `${h}:${p}`),
  );
  fc.assert(
    fc.property(noise, (input) => {
      try {
        const parsed = parseEndpoint(input);
        // Whatever parses formats to something that parses to the same endpoint.
        assertEquals(parseEndpoint(formatEndpoint(parsed)), parsed);
      } catch (err) {
        assert(err instanceof UsageError, `non-usage error for ${JSON.stringify(input)}: ${err}`);
        assert(
          err.message.startsWith(`cannot parse endpoint ${JSON.stringify(input)}: `),
          err.message,
        );
        assert(!err.message.includes("\n"), "one line");
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("property: any port above 65535 is 'port out of range'", () => {
  fc.assert(fc.property(fc.integer({ min: 65536, max: 10 ** 12 }), hostname, (p, h) => {
    const host = h.includes(":") ? `[${h}]` : h;
    assertThrows(() => parseEndpoint(`${host}:${p}`), UsageError, "port out of range");
  }));
});

// ---- the socat / wait-on spellings, service names, unknown schemes -----------

Deno.test("parseEndpoint: tcp:host:port, udp:…, tls:…, tcp:PORT and host:service", () => {
  const table: Array<[string, Endpoint]> = [
    ["tcp:db:5432", { form: "host-port", scheme: "tcp", hostname: "db", port: 5432 }],
    ["tcp:8888", { form: "host-port", scheme: "tcp", port: 8888 }],
    ["TCP:[::1]:80", { form: "host-port", scheme: "tcp", hostname: "::1", port: 80 }],
    ["udp:127.0.0.1:53", { form: "host-port", scheme: "udp", hostname: "127.0.0.1", port: 53 }],
    ["tls:example.com:443", {
      form: "host-port",
      scheme: "tls",
      hostname: "example.com",
      port: 443,
    }],
    ["localhost:http", { form: "host-port", scheme: "tcp", hostname: "localhost", port: 80 }],
    ["tcp://example.com:https", {
      form: "host-port",
      scheme: "tcp",
      hostname: "example.com",
      port: 443,
    }],
  ];
  for (const [input, expected] of table) assertEquals(parseEndpoint(input), expected, input);
  // A name of Object.prototype is no scheme either.
  for (
    const input of ["ftp://x", "ftp:host:21", "sctp:/x", "http://h:80", "x://", "constructor:/x"]
  ) {
    const err = assertThrows(() => parseEndpoint(input), UsageError);
    assert(/unknown scheme "[a-z]+"/.test(err.message), `${input}: ${err.message}`);
  }
});

const spelledScheme = fc.constantFrom("tcp", "udp", "tls");
const hostPort = fc.tuple(hostname, port).map(([h, p]) => `${h.includes(":") ? `[${h}]` : h}:${p}`);

Deno.test("property: scheme:host:port means what scheme://host:port means", () => {
  fc.assert(
    fc.property(spelledScheme, hostPort, (scheme, rest) => {
      assertEquals(parseEndpoint(`${scheme}:${rest}`), parseEndpoint(`${scheme}://${rest}`));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("property: an unknown scheme is reported as one, never as a bad port or bracket", () => {
  const unknown = fc.stringMatching(/^[a-z][a-z0-9+.-]{1,8}$/).filter((s) =>
    schemeNamed(s) === undefined && /[g-z]/.test(s)
  );
  const rest = fc.oneof(
    hostPort,
    fc.string({ maxLength: 10 }).map((s) => `/${s}`),
    fc.string({ maxLength: 10 }).map((s) => `//${s}`),
  );
  fc.assert(
    fc.property(unknown, rest, (scheme, tail) => {
      const input = `${scheme}:${tail}`;
      if (input.includes("\0")) return;
      const err = assertThrows(() => parseEndpoint(input), UsageError);
      assert(err.message.includes(`unknown scheme "${scheme}"`), `${input}: ${err.message}`);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("parseEndpoint: each address form has its own fields (protocol, resource, abstract)", () => {
  const table: Array<[string, Endpoint]> = [
    ["ip://10.0.0.1/253", {
      form: "host-protocol",
      scheme: "ip",
      hostname: "10.0.0.1",
      protocol: 253,
    }],
    ["ws://h:8080/chat?room=1", {
      form: "url",
      scheme: "ws",
      hostname: "h",
      port: 8080,
      resource: "/chat?room=1",
    }],
    ["wss://h", { form: "url", scheme: "wss", hostname: "h", port: 443 }],
    ["ws://h?x=1", { form: "url", scheme: "ws", hostname: "h", port: 80, resource: "/?x=1" }],
    ["unix:@app", { form: "path", scheme: "unix", path: "app", abstract: true }],
    ["unixgram:/dev/log", { form: "path", scheme: "unixgram", path: "/dev/log", abstract: false }],
  ];
  for (const [input, expected] of table) {
    assertEquals(parseEndpoint(input), expected, input);
    assertEquals(parseEndpoint(formatEndpoint(expected)), expected, input);
  }
});
