/**
 * `deno task demo`: the seed's scenario end to end on loopback, traced.
 *
 * A server that writes `hello!` (`sockit listen 127.0.0.1:8888 --send
 * 'hello!' --trace`) and a client that reads it into a 4096-byte buffer and
 * prints it (`sockit connect 127.0.0.1:8888 --trace`), both run through the
 * real command line in this process, so the traces interleave in the order
 * the calls happen: socket → bind → listen → accept on the server, socket →
 * connect on the client, then write → read.
 *
 * @module
 */

import { main } from "../lib/cli/main.ts";
import { memoryContext } from "../lib/cli/context.ts";
import { seedPort } from "./seed_port.ts";

const encoder = new TextEncoder();
function print(text: string): void {
  const bytes = encoder.encode(text);
  for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
}

/** A context whose stderr lines are printed with a label as they come. */
function labelled(label: string) {
  const ctx = memoryContext();
  let pending = "";
  ctx.stderr = {
    write(text: string) {
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) print(`${label}  ${line.replace(/^sockit: /, "")}\n`);
    },
  };
  return ctx;
}

const port = seedPort();
const serverArgs = ["listen", `127.0.0.1:${port}`, "--send", "hello!", "--trace"];
const clientArgs = ["connect", `127.0.0.1:${port}`, "--trace"];

print(`The socket call sequence, traced: a server that writes "hello!" and a client that reads it.

  server$ sockit ${serverArgs.slice(0, 3).join(" ")} 'hello!' --trace
  client$ sockit ${clientArgs.join(" ")} < /dev/null

`);

const server = labelled("server");
const serverDone = main(serverArgs, server);
// The server is listening once main() has bound (Deno.listen is synchronous).
await new Promise((resolve) => setTimeout(resolve, 20));
const client = labelled("client");
const clientCode = await main(clientArgs, client);
const serverCode = await serverDone;

print(`
client stdout: ${client.stdoutText()}
exit status: server ${serverCode}, client ${clientCode}

Each line is one socket operation, written as the system call it makes
(strace -f -e trace=network shows the same calls: socket, setsockopt, bind,
listen, accept4, sendto, shutdown, recvfrom). [L1] is the listening socket,
[#N] a connection. Try it between two terminals:

  sockit listen 127.0.0.1:8888 --send 'hello!' --trace
  sockit connect 127.0.0.1:8888 --trace
`);
