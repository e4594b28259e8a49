/**
 * The relay against real loopback sockets: half-close both ways, a 256 MiB
 * transfer checked by SHA-256, a peer that resets mid-transfer, cancellation
 * and the idle timeout. Run with the op and resource sanitizers on.
 */

import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { Relay, relay, RelayError } from "../lib/engine/relay.ts";
import { Connection } from "../lib/net/conn.ts";
import { TimeoutError } from "../lib/base/errors.ts";
import { decoder, encoder, noise, readAll, writeAll } from "./helpers.ts";

/** A connected pair of TCP sockets on loopback: [client, server]. */
async function socketPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  return [client, server];
}

/**
 * Two pairs joined by a relay, like `forward`: what `left` writes reaches
 * `right` and back. The relay owns the two inner ends.
 */
async function relayed(options = {}) {
  const [left, innerLeft] = await socketPair();
  const [innerRight, right] = await socketPair();
  const r = new Relay(Connection.from(innerLeft), Connection.from(innerRight), options);
  return { left, right, r, done: r.run() };
}

Deno.test("relay: half-close from a, then b replies and closes", async () => {
  const { left, right, r, done } = await relayed();
  await writeAll(left, encoder.encode("request"));
  await left.closeWrite();
  // The right side sees the request and then EOF, while its own direction is still open.
  assertEquals(decoder.decode(await readAll(right)), "request");
  await writeAll(right, encoder.encode("the reply"));
  await right.closeWrite();
  assertEquals(decoder.decode(await readAll(left)), "the reply");
  await done;
  assertEquals(r.bytes, [7, 9]);
  left.close();
  right.close();
});

Deno.test("relay: half-close from b first, a keeps sending", async () => {
  const { left, right, done } = await relayed();
  await writeAll(right, encoder.encode("greeting"));
  await right.closeWrite();
  assertEquals(decoder.decode(await readAll(left)), "greeting");
  // After the peer's EOF, this direction still flows.
  await writeAll(left, encoder.encode("late data"));
  await left.closeWrite();
  assertEquals(decoder.decode(await readAll(right)), "late data");
  assertEquals(await done, undefined);
  left.close();
  right.close();
});

Deno.test("relay: 256 MiB of random bytes arrive intact (SHA-256)", async () => {
  const total = 256 * 1024 * 1024;
  const { left, right, r, done } = await relayed();
  const sent = createHash("sha256");
  const sender = (async () => {
    for (const chunk of noise(total, 1 << 20, 0x5eed)) {
      sent.update(chunk);
      await writeAll(left, chunk);
    }
    await left.closeWrite();
  })();
  const received = createHash("sha256");
  let count = 0;
  const buf = new Uint8Array(1 << 18);
  for (;;) {
    const n = await right.read(buf);
    if (n === null) break;
    received.update(buf.subarray(0, n));
    count += n;
  }
  await sender;
  await right.closeWrite();
  assertEquals(await readAll(left), new Uint8Array());
  await done;
  assertEquals(count, total);
  assertEquals(received.digest("hex"), sent.digest("hex"));
  assertEquals(r.bytes, [total, 0]);
  left.close();
  right.close();
});

Deno.test("relay: a peer that resets mid-transfer fails the relay and closes the other side", async () => {
  const { left, right, done } = await relayed();
  // Keep the left side sending; the right side reads a little, then closes
  // with unread data in its receive buffer, which makes the kernel send RST.
  let stop = false;
  const sender = (async () => {
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (!stop) await writeAll(left, chunk);
    } catch {
      // The relay closed our peer: expected.
    }
  })();
  const buf = new Uint8Array(1024);
  await right.read(buf);
  await new Promise((resolve) => setTimeout(resolve, 50));
  right.close();
  const err = await assertRejects(() => done, RelayError);
  assertEquals(err.side, "b");
  assert(
    err.cause instanceof Deno.errors.ConnectionReset || err.cause instanceof Deno.errors.BrokenPipe,
    `expected a reset, got ${err.cause}`,
  );
  stop = true;
  // The relay closed its end towards `left`: our reads end, our writes fail.
  const rest = await readAll(left).catch(() => new Uint8Array());
  assertEquals(rest.length, 0);
  await sender;
  left.close();
});

Deno.test("relay: cancellation by AbortSignal closes both sides and rejects with the reason", async () => {
  const controller = new AbortController();
  const { left, right, done } = await relayed({ signal: controller.signal });
  await writeAll(left, encoder.encode("x"));
  const buf = new Uint8Array(8);
  assertEquals(await right.read(buf), 1);
  const reason = new Error("stop now");
  controller.abort(reason);
  await assertRejects(() => done, Error, "stop now");
  // Both outer ends see the relay's sockets go away.
  assertEquals((await readAll(left)).length, 0);
  assertEquals((await readAll(right)).length, 0);
  left.close();
  right.close();
});

Deno.test("relay: a tap that throws fails the relay with its error, after the chunk was delivered", async () => {
  const { left, right, done } = await relayed({
    onChunk: () => {
      throw new Error("tap broke");
    },
  });
  // The relay fails as soon as the tap throws: hold its outcome from the start.
  const outcome = done.then(() => "resolved", (err: Error) => err.message);
  await writeAll(left, encoder.encode("x"));
  assertEquals(decoder.decode(await readAll(right)), "x");
  assertEquals(await outcome, "tap broke");
  assertEquals((await readAll(left)).length, 0);
  left.close();
  right.close();
});

Deno.test("relay: the idle timeout fails with exit code 124", async () => {
  const { left, right, done } = await relayed({ idleTimeout: 100 });
  const started = performance.now();
  const err = await assertRejects(() => done, TimeoutError);
  assertEquals(err.exitCode, 124);
  assert(performance.now() - started >= 95, "not before the timeout");
  left.close();
  right.close();
});

Deno.test("relay: traffic resets the idle timer", async () => {
  const { left, right, done } = await relayed({ idleTimeout: 300 });
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writeAll(left, encoder.encode("tick"));
    const buf = new Uint8Array(16);
    assertEquals(await right.read(buf), 4);
  }
  await left.closeWrite();
  await right.closeWrite();
  await done;
  left.close();
  right.close();
});

Deno.test("relay: a duplex relayed into itself is an echo that honours half-close", async () => {
  const [client, server] = await socketPair();
  const stream = Connection.from(server);
  const echoed = relay(stream, stream, { halfClose: [true, false] });
  const payload = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251);
  const reader = readAll(client);
  await writeAll(client, payload);
  await client.closeWrite();
  assertEquals(await reader, payload);
  assertEquals(await echoed, [payload.length, 0]);
  client.close();
});

Deno.test("relay: endOnEof stops the other direction after delivering what it read", async () => {
  const [left, innerLeft] = await socketPair();
  const pending = encoder.encode("buffered");
  let cancelled = false;
  let served = false;
  // A payload side that has a few bytes, then would wait forever unless cancelled.
  const out: Uint8Array[] = [];
  const payload = {
    label: "payload",
    read(p: Uint8Array): Promise<number | null> {
      if (!served) {
        served = true;
        p.set(pending);
        return Promise.resolve(pending.length);
      }
      return new Promise((resolve) => {
        const poll = setInterval(() => {
          if (cancelled) {
            clearInterval(poll);
            resolve(null);
          }
        }, 5);
      });
    },
    write(p: Uint8Array) {
      out.push(p.slice());
      return Promise.resolve(p.length);
    },
    closeWrite: () => Promise.resolve(),
    cancelRead() {
      cancelled = true;
    },
    close() {},
  };
  const done = relay(Connection.from(innerLeft), payload, { endOnEof: "a" });
  const buf = new Uint8Array(16);
  const n = await left.read(buf);
  assertEquals(decoder.decode(buf.subarray(0, n ?? 0)), "buffered");
  await writeAll(left, encoder.encode("bye"));
  await left.closeWrite();
  const [fromLeft, fromPayload] = await done;
  assertEquals([fromLeft, fromPayload], [3, 8]);
  assertEquals(decoder.decode(out[0]), "bye");
  assert(cancelled);
  left.close();
});

Deno.test("relay: a chunk read in the turn the relay is told to stop is still written", async () => {
  // Like `--send x --expect ready` when the reply was already there: the send is
  // read, and the match stops the relay before the read's caller runs on.
  const controller = new AbortController();
  const [client, server] = await socketPair();
  let sent = false;
  const source = {
    read(p: Uint8Array): Promise<number | null> {
      if (sent) return new Promise<null>(() => {}); // cancelled below
      sent = true;
      p.set(encoder.encode("x\n"));
      queueMicrotask(() => controller.abort(new Error("matched")));
      return Promise.resolve(2);
    },
    write: (p: Uint8Array) => Promise.resolve(p.length),
    closeWrite: () => Promise.resolve(),
    close() {},
    cancelRead() {},
  };
  const r = new Relay(Connection.from(client), source, { signal: controller.signal });
  await assertRejects(() => r.run(), Error, "matched");
  assertEquals(decoder.decode(await readAll(server)), "x\n");
  server.close();
});
