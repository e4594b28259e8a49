import { spawnSockit } from "./helpers.ts";
Deno.test("leak echo :1 under connects + SIGTERM", async () => {
  for (let i = 0; i < 60; i++) {
    const run = spawnSockit(["echo", "127.0.0.1:1"], { stdin: "null" });
    const clients: Promise<void>[] = [];
    const spam = setInterval(() => {
      clients.push(
        Deno.connect({ hostname: "127.0.0.1", port: 1 }).then((c) => {
          c.write(new Uint8Array([1])).catch(() => {}).finally(() =>
            setTimeout(() => c.close(), 5)
          );
        }).catch(() => {}),
      );
    }, 1);
    const stop = setTimeout(() => run.kill("SIGTERM"), 30 + (i % 10) * 7);
    const r = await run.result();
    clearInterval(spam);
    clearTimeout(stop);
    await Promise.all(clients);
    await new Promise((res) => setTimeout(res, 10));
    if (r.code !== 143) console.log(r.code, r.stderr);
  }
});
