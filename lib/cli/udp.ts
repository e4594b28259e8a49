/**
 * UDP for `listen`, `connect` and `echo`, with datagram semantics: each
 * datagram received is written to stdout as it is; each chunk read from
 * stdin (one read(2)), each `--send` text and each `--send-file` is one
 * datagram, and one too large for UDP is refused.
 *
 * - `listen udp://` answers the most recent peer and runs until a signal or
 *   `--idle-timeout`.
 * - `connect udp://` does not stop at end of input: it waits until no
 *   datagram has come for the idle time (default 2 s), or until `--expect`
 *   matches. ICMP "port unreachable" is reported as connection refused.
 * - `echo udp://` answers every peer.
 *
 * @module
 */

import { formatAddr, type NetEndpoint } from "../address.ts";
import { bindDatagram, canConnectDatagram, connectDatagram, RECEIVE_BUFFER } from "../datagram.ts";
import type { DatagramSocket } from "../datagram.ts";
import { ExpectMatcher } from "../expect.ts";
import { exitCodeOf, SockitError, TimeoutError, toSockitError, UsageError } from "../errors.ts";
import { formatDuration } from "../format.ts";
import type { HexTap } from "../hexdump.ts";
import type { Reporter } from "../report.ts";
import { nextConnectionId } from "../stream.ts";
import type { CommandContext } from "./context.ts";

/** How long `connect udp://` waits for replies after its input ended, by default. */
export const UDP_REPLY_WAIT = 2000;

/** Peers whose `--hex` offsets are remembered; beyond it they start again from 0. */
const HEX_PEERS = 256;

/**
 * `--hex` for datagrams, or `undefined` without it: one dump per datagram,
 * labelled with the socket's tag and the peer, offsets counted per peer and
 * direction (as a TCP connection counts them).
 */
function datagramHex(
  reporter: Reporter,
  id: number,
): ((direction: 0 | 1, peer: Deno.NetAddr, bytes: Uint8Array) => void) | undefined {
  if (!reporter.hexing) return undefined;
  const taps = new Map<string, HexTap>();
  return (direction, peer, bytes) => {
    const remote = formatAddr(peer);
    let tap = taps.get(remote);
    if (!tap) {
      if (taps.size >= HEX_PEERS) taps.clear();
      tap = reporter.hexTap(id, `udp://${remote}`)!;
      taps.set(remote, tap);
    }
    tap.onChunk(direction, bytes);
  };
}

/** Where the datagrams to send come from. */
type RecordSource = () => Promise<Uint8Array | null>;

/** One datagram of `bytes`, then the end. */
function once(bytes: Uint8Array): RecordSource {
  let sent = false;
  return () => {
    if (sent) return Promise.resolve(null);
    sent = true;
    return Promise.resolve(bytes);
  };
}

/** `--send`, `--send-file`, or stdin read chunk by chunk. */
async function recordSource(
  options: { send?: Uint8Array; sendFile?: string },
  ctx: CommandContext,
  max: number,
): Promise<RecordSource> {
  if (options.send) return once(options.send);
  if (options.sendFile !== undefined) {
    try {
      return once(await Deno.readFile(options.sendFile));
    } catch (err) {
      throw toSockitError(err, "open", options.sendFile);
    }
  }
  const stdin = ctx.stdin;
  if (stdin.readRecord) return () => stdin.readRecord!(max);
  const buf = new Uint8Array(max + 1);
  return async () => {
    const n = await stdin.read(buf);
    return n === null ? null : buf.slice(0, n);
  };
}

/** What a datagram session does and when it ends. */
interface DatagramSessionOptions {
  /** The datagrams to send. */
  source: RecordSource;
  /** Whether the source is `--send`/`--send-file` (its size is known exactly). */
  fixedInput?: boolean;
  /** The peer to send to; waits until one is known (listen) when absent. */
  peer?: Deno.NetAddr;
  /** Succeed when the received text matches. */
  expect?: RegExp;
  /** End normally after this many ms without a datagram once the input has ended. */
  endAfterInput?: number;
  /** Fail with 124 after this many ms without a datagram either way. */
  idleTimeout?: number;
  /** Fail with 124 after this many ms in all. */
  timeout?: number;
  /** The address in messages, and the operation (`connect`, `listen`). */
  address: string;
  op: string;
  /** Called for the first datagram of each new peer. */
  onPeer?: (peer: Deno.NetAddr) => void;
}

/** Runs datagrams both ways until the session ends; returns the exit code. */
async function runDatagramSession(
  sock: DatagramSocket,
  ctx: CommandContext,
  reporter: Reporter,
  options: DatagramSessionOptions,
): Promise<number> {
  const id = nextConnectionId();
  const startedAt = performance.now();
  let last = startedAt;
  let inputEndedAt: number | undefined;
  let sent = 0;
  let received = 0;
  let peer = options.peer;
  let peerKnown = Promise.withResolvers<void>();
  if (peer) peerKnown.resolve();
  const outcome = Promise.withResolvers<number>();
  let ended = false;
  const end = (code: number) => {
    if (ended) return;
    ended = true;
    outcome.resolve(code);
  };
  const fail = (err: unknown) => {
    if (!ended) end(reporter.fail(err, options.op, options.address));
  };
  const onAbort = () => end(exitCodeOf(ctx.signal.reason));
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  const matcher = options.expect ? new ExpectMatcher(options.expect) : undefined;
  const hex = datagramHex(reporter, id);

  const receiving = (async () => {
    const buf = new Uint8Array(RECEIVE_BUFFER);
    while (!ended) {
      const [n, from] = await sock.receive(buf);
      last = performance.now();
      received += n;
      if (!options.peer && (!peer || peer.hostname !== from.hostname || peer.port !== from.port)) {
        peer = from;
        options.onPeer?.(from);
        peerKnown.resolve();
      }
      await ctx.stdout.write(buf.subarray(0, n));
      // connect's replies carry the peer as it was named, like what it sends.
      hex?.(0, options.peer ?? from, buf.subarray(0, n));
      if (matcher?.push(buf.subarray(0, n))) end(0);
    }
  })().catch(fail);

  const sending = (async () => {
    for (;;) {
      const record = await options.source();
      if (record === null || ended) break;
      if (record.length > sock.maxDatagram) {
        const size = record.length > sock.maxDatagram + 1 || options.fixedInput
          ? `${record.length} bytes`
          : "more";
        throw new UsageError(
          `a UDP datagram carries at most ${sock.maxDatagram} bytes; the input gave ${size}`,
        );
      }
      await peerKnown.promise;
      if (ended) break;
      await sock.send(record, peer);
      hex?.(1, peer!, record);
      sent += record.length;
      last = performance.now();
    }
    inputEndedAt = performance.now();
  })().catch(fail);

  const ticker = setInterval(() => {
    const now = performance.now();
    if (options.timeout !== undefined && now - startedAt >= options.timeout) {
      fail(
        new TimeoutError(`timed out after ${formatDuration(options.timeout)}`, {
          op: "connect",
          address: options.address,
        }),
      );
    } else if (
      inputEndedAt !== undefined && options.endAfterInput !== undefined &&
      now - Math.max(last, inputEndedAt) >= options.endAfterInput
    ) {
      if (matcher) {
        fail(
          new SockitError(
            `no match for ${options.expect} within ${
              formatDuration(options.endAfterInput)
            } of the last datagram`,
            {
              op: "expect",
              address: options.address,
              code: "ENOMATCH",
            },
          ),
        );
      } else end(0);
    } else if (options.idleTimeout !== undefined && now - last >= options.idleTimeout) {
      fail(
        new TimeoutError(`no datagram for ${formatDuration(options.idleTimeout)}`, {
          op: "idle timeout",
          address: options.address,
        }),
      );
    }
  }, 20);

  const code = await outcome.promise;
  clearInterval(ticker);
  ctx.signal.removeEventListener("abort", onAbort);
  sock.close();
  ctx.stdin.cancel();
  peerKnown.resolve();
  peerKnown = Promise.withResolvers<void>();
  await Promise.allSettled([receiving, sending]);
  try {
    await ctx.stdout.flush();
  } catch {
    // stdout's reader is gone.
  }
  // connect names the peer as it named it in `connected`; listen names the latest peer.
  reporter.closed(id, !options.peer && peer ? formatAddr(peer) : options.address, {
    sent,
    received,
    durationMs: Math.round(performance.now() - startedAt),
  });
  return code;
}

/** Options the UDP flows take from the commands. */
export interface UdpOptions {
  /** The UDP endpoint. */
  endpoint: NetEndpoint;
  /** `-4` / `-6`. */
  family?: 4 | 6;
  /** `--send`. */
  send?: Uint8Array;
  /** `--send-file`. */
  sendFile?: string;
  /** `--expect`. */
  expect?: RegExp;
  /** `--idle-timeout`. */
  idleTimeout?: number;
  /** `--timeout`. */
  timeout?: number;
}

function tracer(reporter: Reporter) {
  return reporter.tracing ? reporter.trace.bind(reporter) : undefined;
}

/**
 * `listen udp://`: datagrams to stdout; stdin to the most recent peer.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runListenUdp({ endpoint: parseEndpoint("udp://127.0.0.1:0") as NetEndpoint }, ctx, reporter);
 * ```
 */
export async function runListenUdp(
  options: UdpOptions,
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  let sock: DatagramSocket;
  let source: RecordSource;
  try {
    sock = bindDatagram(options.endpoint, { family: options.family, trace: tracer(reporter) });
    source = await recordSource(options, ctx, sock.maxDatagram);
  } catch (err) {
    return reporter.fail(err, "listen", `udp://${options.endpoint.hostname ?? ""}`);
  }
  reporter.listening(sock.address, "udp");
  return await runDatagramSession(sock, ctx, reporter, {
    source,
    fixedInput: options.send !== undefined || options.sendFile !== undefined,
    idleTimeout: options.idleTimeout,
    address: sock.address,
    op: "listen",
    onPeer: (peer) =>
      reporter.event("peer", `datagrams from ${formatAddr(peer)}`, {
        remote: formatAddr(peer),
      }),
  });
}

/**
 * `connect udp://`: stdin (or `--send`) as datagrams to the peer, replies to
 * stdout, until the replies stop after the input has ended.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runConnectUdp({ endpoint, send: new TextEncoder().encode("ping") }, ctx, reporter);
 * ```
 */
export async function runConnectUdp(
  options: UdpOptions,
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  const address = `udp://${options.endpoint.hostname ?? "localhost"}:${options.endpoint.port}`;
  let sock: DatagramSocket;
  let source: RecordSource;
  try {
    sock = await connectDatagram(options.endpoint, {
      family: options.family,
      trace: tracer(reporter),
    });
    source = await recordSource(options, ctx, sock.maxDatagram);
  } catch (err) {
    return reporter.fail(err, "connect", address);
  }
  if (!canConnectDatagram()) {
    reporter.info(
      "without --allow-ffi the UDP socket is not connected: an ICMP port unreachable (connection refused) goes unnoticed",
    );
  }
  reporter.connected(0, address, sock.address);
  return await runDatagramSession(sock, ctx, reporter, {
    source,
    peer: {
      transport: "udp",
      hostname: options.endpoint.hostname ?? "localhost",
      port: options.endpoint.port,
    },
    fixedInput: options.send !== undefined || options.sendFile !== undefined,
    expect: options.expect,
    endAfterInput: options.idleTimeout ?? UDP_REPLY_WAIT,
    timeout: options.timeout,
    address,
    op: "connect",
  });
}

/**
 * `echo udp://`: every datagram goes back to its sender, until a signal.
 *
 * @example Usage
 * ```ts ignore
 * const code = await runEchoUdp({ endpoint }, ctx, reporter);
 * ```
 */
export async function runEchoUdp(
  options: UdpOptions,
  ctx: CommandContext,
  reporter: Reporter,
): Promise<number> {
  let sock: DatagramSocket;
  try {
    sock = bindDatagram(options.endpoint, { family: options.family, trace: tracer(reporter) });
  } catch (err) {
    return reporter.fail(err, "echo", `udp://${options.endpoint.hostname ?? ""}`);
  }
  reporter.listening(sock.address, "udp");
  const stop = () => sock.close();
  ctx.signal.addEventListener("abort", stop, { once: true });
  const id = nextConnectionId();
  const hex = datagramHex(reporter, id);
  const startedAt = performance.now();
  let sent = 0;
  let received = 0;
  const buf = new Uint8Array(RECEIVE_BUFFER);
  try {
    while (!ctx.signal.aborted) {
      const [n, from] = await sock.receive(buf);
      received += n;
      hex?.(0, from, buf.subarray(0, n));
      try {
        await sock.send(buf.subarray(0, n), from);
        sent += n;
        hex?.(1, from, buf.subarray(0, n));
      } catch (err) {
        reporter.warn(toSockitError(err, "send", formatAddr(from)).message);
      }
    }
  } catch (err) {
    if (!ctx.signal.aborted) return reporter.fail(err, "echo", sock.address);
  } finally {
    ctx.signal.removeEventListener("abort", stop);
    sock.close();
    // The socket's figures at exit: a `closed` event (and with --stats, its line).
    reporter.closed(id, `udp://${sock.address}`, {
      sent,
      received,
      durationMs: Math.round(performance.now() - startedAt),
    });
  }
  return exitCodeOf(ctx.signal.reason);
}
