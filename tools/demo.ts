/**
 * `deno task demo`: the seed's scenario end to end on loopback, traced.
 *
 * Two real sockit processes, as a user would run them in two terminals: a
 * server that writes `hello!` (`sockit listen 127.0.0.1:8888 --send
 * 'hello!' --trace`) and a client that reads it into a 4096-byte buffer and
 * prints it (`sockit connect 127.0.0.1:8888 --trace < /dev/null`). Each
 * process's trace is shown as one block (two pipes cannot tell which line
 * came first): socket → bind → listen → accept → write on the server,
 * socket → connect → read on the client.
 *
 * @module
 */

import { textSinkOf } from "../lib/cli/context.ts";
import { seedPort } from "./seed_port.ts";

const stdout = textSinkOf(Deno.stdout);
function print(text: string): void {
  stdout.write(text);
}

const main = new URL("../main.ts", import.meta.url).pathname;
const config = new URL("../deno.json", import.meta.url).pathname;

/**
 * Starts `sockit args` with only the permission it needs (loopback TCP).
 * `--cached-only`: the npm packages of deno.json are in Deno's cache already
 * (`deno task` and this script's own start put them there), and without it
 * each process's first run would fetch their registry metadata again and
 * print "Download …" lines into the trace, for TLS it never uses.
 */
function sockit(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--cached-only",
      "--no-prompt",
      `--config=${config}`,
      "--allow-net=127.0.0.1",
      main,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
}

/** A process's stderr as lines; calls `onLine` for each as it comes. */
async function lines(stream: ReadableStream<Uint8Array>, onLine?: (line: string) => void) {
  const all: string[] = [];
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const line of parts) {
      all.push(line.replace(/^sockit: /, ""));
      onLine?.(line);
    }
  }
  return all;
}

const port = seedPort();
const serverArgs = ["listen", `127.0.0.1:${port}`, "--send", "hello!", "--trace"];
const clientArgs = ["connect", `127.0.0.1:${port}`, "--trace"];

print(`The socket call sequence, traced: a server that writes "hello!" and a client that reads it.

  server$ sockit ${serverArgs.slice(0, 3).join(" ")} 'hello!' --trace
  client$ sockit ${clientArgs.join(" ")} < /dev/null

`);

const server = sockit(serverArgs);
const listening = Promise.withResolvers<void>();
const serverLines = lines(server.stderr, (line) => {
  if (line.includes("listen(backlog=")) listening.resolve();
});
const serverOut = new Response(server.stdout).text();
await Promise.race([listening.promise, server.status]);
const client = sockit(clientArgs);
const [clientOut, clientTrace, clientStatus] = await Promise.all([
  new Response(client.stdout).text(),
  lines(client.stderr),
  client.status,
]);
const [serverStatus, serverTrace] = await Promise.all([server.status, serverLines, serverOut]);
for (const line of serverTrace) print(`server  ${line}\n`);
print("\n");
for (const line of clientTrace) print(`client  ${line}\n`);

print(`
client stdout: ${clientOut}
exit status: server ${serverStatus.code}, client ${clientStatus.code}

Each line is one socket operation, written as the system call it makes
(strace -f -e trace=network shows the same calls: socket, setsockopt, bind,
listen, accept4, sendto, shutdown, recvfrom). [L1] is the listening socket,
[#N] a connection. Try it between two terminals:

  sockit listen 127.0.0.1:8888 --send 'hello!' --trace
  sockit connect 127.0.0.1:8888 --trace
`);
