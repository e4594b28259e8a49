/**
 * The library the way a CI script uses it: only `lib/mod.ts` is imported.
 * A script starts a service, waits for it, scans its ports and talks to it.
 */

import { assert, assertEquals } from "./assert.ts";
import {
  connect,
  formatEndpoint,
  listen,
  parseEndpoint,
  parsePorts,
  relay,
  scan,
  serve,
  waitFor,
} from "../lib/mod.ts";

Deno.test("library: start an echo service, wait for it, scan for it, talk to it", async () => {
  const stop = new AbortController();
  const listener = await listen(parseEndpoint("127.0.0.1:0"));
  const port = (listener.addr as Deno.NetAddr).port;
  const endpoint = parseEndpoint(`127.0.0.1:${port}`);
  const served = serve(listener, async (conn) => {
    await relay(conn, conn, { halfClose: [true, false] });
    return 0;
  }, { signal: stop.signal });

  const [ready] = await waitFor([endpoint], { timeout: 5000, interval: 50 });
  assert(ready.ready, JSON.stringify(ready));
  assertEquals(ready.address, formatEndpoint(endpoint));

  const open = await scan("127.0.0.1", parsePorts(`${port - 1}-${port + 1}`));
  assert(open.some((r) => r.port === port && r.state === "open"), JSON.stringify(open));

  const conn = await connect(endpoint, { timeout: 2000 });
  await conn.write(new TextEncoder().encode("PING\r\n"));
  await conn.closeWrite();
  const buf = new Uint8Array(16);
  const n = await conn.read(buf);
  assertEquals(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "PING\r\n");
  conn.close();

  stop.abort();
  assertEquals(await served, 0);
  const [gone] = await waitFor([endpoint], { reverse: true, timeout: 2000, interval: 50 });
  assert(gone.ready, "the service is down after stop");
});
