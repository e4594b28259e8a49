/**
 * The floor for the echo benchmark: the smallest echo server Deno can run
 * (one read/write loop per connection, 16 KiB buffer, nothing else). sockit's
 * echo cannot use less memory or run faster than this on the same runtime, so
 * the bench prints it beside sockit and Node to show what the runtime costs.
 *
 * @example
 * ```sh
 * deno run --allow-net bench/deno_echo.ts 7000
 * ```
 *
 * @module
 */

const port = Number(Deno.args[0] ?? 7000);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
for await (const conn of listener) {
  (async () => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) written += await conn.write(buffer.subarray(written, n));
      }
    } catch {
      // a reset ends this connection only
    } finally {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  })();
}
