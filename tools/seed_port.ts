/**
 * The seed's port: 8888, unless something on this machine already has it,
 * then a free one. Used by the demo and by the strace test.
 *
 * @module
 */

/** 8888 when free on 127.0.0.1, else a free port. */
export function seedPort(): number {
  try {
    Deno.listen({ hostname: "127.0.0.1", port: 8888 }).close();
    return 8888;
  } catch {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    probe.close();
    return probe.addr.port;
  }
}
