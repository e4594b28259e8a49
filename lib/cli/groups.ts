/**
 * Option groups on the command line: which of a command's group flags its
 * endpoints take (a flag no endpoint's row takes is refused, naming the
 * schemes it is for), the options of each endpoint's groups, and — when
 * the command runs — what some groups need before a socket is opened
 * (files read, a certificate made, a proxy's dialer). The groups
 * themselves are declared by the modules that own them; a command's help
 * sections name the groups their flags belong to (`FlagGroup.groups`).
 *
 * @module
 */

import { schemeList, transportOf } from "../net/address.ts";
import type { Endpoint } from "../net/address.ts";
import { UsageError } from "../base/errors.ts";
import { checkSocketOptions } from "../net/conn.ts";
import type { SocketOptions } from "../net/conn.ts";
import type { GroupOptions } from "../net/opener.ts";
import type { GroupContext, OptionGroup } from "../net/option_group.ts";
import type { GroupName, Role } from "../net/schemes.ts";
import type { ProxySpec } from "../protocols/proxy_options.ts";
import type { TlsClientFlags, TlsServerFlags } from "../protocols/tls_options.ts";
import { flagName } from "./flags.ts";
import type { FlagGroup, FlagName, FlagValues } from "./flags.ts";
import type { Reporter } from "./report.ts";

/** An endpoint a command line names: the endpoint, the part it plays, and how it was written. */
export interface CommandEndpoint {
  /** The endpoint. */
  endpoint: Endpoint;
  /** Listened on, or connected to. */
  role: Role;
  /** As written (for messages). */
  text: string;
}

/**
 * The parsed options of an endpoint's groups, by group name: those of the
 * groups its row takes. Most are what the transport takes as they are;
 * the TLS groups hold file names and the proxy its URL until
 * {@linkcode prepareGroups}.
 */
export type ParsedGroups = Omit<GroupOptions, "tls-client" | "tls-server" | "proxy"> & {
  /** `--cacert`, `--servername`, … (files not read yet). */
  "tls-client"?: TlsClientFlags;
  /** `--cert`, `--key`, `--client-ca`, `--alpn` (files not read yet). */
  "tls-server"?: TlsServerFlags;
  /** `--proxy`. */
  proxy?: ProxySpec;
};

/** An endpoint with its groups' options. */
export interface GroupedEndpoint extends CommandEndpoint {
  /** The options of the groups its row takes. */
  groups: ParsedGroups;
}

/** Whether an endpoint's row takes a group. */
function takes(endpoint: Endpoint, group: OptionGroup): boolean {
  return (transportOf(endpoint).groups as readonly GroupName[]).includes(group.name);
}

/** The role of the endpoints `group` takes flag `name` for, if it takes it at all. */
function ownsFor(group: OptionGroup, name: string): Role | "any" | undefined {
  if (group.flags.some((use) => (typeof use === "string" ? use : use[0]) === name)) {
    return group.role ?? "any";
  }
  return group.shares?.[name];
}

/**
 * The endpoints of a command line, each with what its groups' flags make
 * of it (`--tls`) and its groups' options; a group flag that no endpoint
 * takes is a usage error naming the schemes it is for.
 *
 * @example Usage
 * ```ts
 * import { endpointGroups } from "./groups.ts";
 * import { groupSection, parseFlags } from "./flags.ts";
 * import { MULTICAST_GROUP } from "../net/udp_options.ts";
 * import { parseEndpoint } from "../net/address.ts";
 * import assert from "node:assert/strict";
 *
 * const sections = [groupSection(MULTICAST_GROUP)];
 * const flags = parseFlags(["--multicast-join", "239.1.1.1"], ["multicast-join"]);
 * const at = (text: string) => [{ endpoint: parseEndpoint(text), role: "listen" as const, text }];
 * assert.deepEqual(endpointGroups(sections, flags, at("udp://0.0.0.0:5000"), "stdio")[0].groups, {
 *   multicast: { join: [{ group: "239.1.1.1" }] },
 * });
 * assert.throws(() => endpointGroups(sections, flags, at("5000"), "stdio"), /option --multicast-join is for udp:\/\/ endpoints/);
 * ```
 */
export function endpointGroups(
  sections: readonly FlagGroup[],
  flags: { values: FlagValues; given: ReadonlySet<FlagName> },
  endpoints: readonly CommandEndpoint[],
  partner: GroupContext["partner"],
): GroupedEndpoint[] {
  const groups = [...new Set(sections.flatMap((s) => s.groups ?? []))];
  const taken = new Set(sections.flatMap((s) => s.flags.map(flagName)));
  const values = flags.values as Readonly<Record<string, unknown>>;
  // What the groups' flags make of each endpoint (`--tls`), before its row is asked.
  const applied = endpoints.map((e) => {
    let endpoint = e.endpoint;
    for (const group of groups) {
      if (group.apply && (group.role ?? e.role) === e.role) {
        endpoint = group.apply(endpoint, values, e.text);
      }
    }
    return { ...e, endpoint };
  });
  for (const name of taken) {
    if (flags.given.has(name as FlagName)) refuseUntaken(name, groups, applied, taken, flags.given);
  }
  return applied.map((e) => {
    const parsed: Record<string, unknown> = {};
    for (const group of groups) {
      if ((group.role ?? e.role) !== e.role || !takes(e.endpoint, group)) continue;
      const options = group.parse(values, { ...e, endpoints: applied, partner });
      if (options !== undefined) parsed[group.name] = options;
    }
    return { ...e, groups: parsed as ParsedGroups };
  });
}

/**
 * Refuses flag `name` when none of the groups that take it is taken by the
 * endpoints it would be for: a group of one side (a client's `--source`)
 * must be taken by every endpoint of that side, a group of both sides by
 * one of them.
 */
function refuseUntaken(
  name: string,
  groups: readonly OptionGroup[],
  endpoints: readonly CommandEndpoint[],
  taken: ReadonlySet<string>,
  given: ReadonlySet<string>,
): void {
  const owners = groups.flatMap((group) => {
    const role = ownsFor(group, name);
    return role === undefined ? [] : [{ group, role }];
  });
  if (owners.length === 0) return;
  const ok = owners.some(({ group, role }) => {
    const candidates = endpoints.filter((e) => role === "any" || e.role === role);
    if (candidates.length === 0) return false;
    return role === "any"
      ? candidates.some((e) => takes(e.endpoint, group))
      : candidates.every((e) => takes(e.endpoint, group));
  });
  if (ok) return;
  const rows = schemeList((row) =>
    owners.some(({ group }) => (row.groups as readonly GroupName[]).includes(group.name))
  );
  // A flag of the command that makes such an endpoint (`--tls`), when it was not given.
  const via = owners.map(({ group }) => group.via).find((v) =>
    v !== undefined && taken.has(v) && !given.has(v)
  );
  throw new UsageError(`option --${name} is for ${rows} endpoints${via ? `, or --${via}` : ""}`);
}

/** What {@linkcode prepareGroups} is told. */
export interface PrepareContext {
  /** Where warnings, events and the certificate go. */
  reporter: Reporter;
  /** The part the endpoint plays. */
  role: Role;
  /** The target as text, for a client whose line should name it (`to … through the proxy`). */
  to?: string;
}

/** The groups' options as the transports take them, and how to explain a failure to open. */
export interface PreparedGroups {
  /** The options, by group name. */
  groups: GroupOptions;
  /** A failure to open the endpoint, in the words of the group that caused it. */
  explain(error: unknown): unknown;
}

type Prepared<T> = { value: T; explain?: (error: unknown) => unknown };

/** What some groups need before a socket is opened, in the order it is done. */
const PREPARE: {
  [G in keyof ParsedGroups]?: (
    options: NonNullable<ParsedGroups[G]>,
    ctx: PrepareContext,
  ) => Promise<Prepared<NonNullable<GroupOptions[G]>>>;
} = {
  // A server says at start that an option needs libc, not at its first client.
  socket: (options: SocketOptions, { role }) => {
    if (role === "listen") checkSocketOptions(options);
    return Promise.resolve({ value: options });
  },
  "tls-client": async (flags, { reporter }) => {
    const { tlsClientOptions } = await import("./tls_flags.ts");
    return { value: tlsClientOptions(flags, reporter) };
  },
  "tls-server": async (flags, { reporter }) => {
    const { explainTlsListenError, serverCertificate } = await import("./tls_flags.ts");
    return {
      value: await serverCertificate(flags, reporter),
      explain: (err) => explainTlsListenError(err, flags),
    };
  },
  proxy: async (spec, { reporter, to }) => {
    reporter.info(`${to ? `to ${to} ` : ""}through the proxy ${spec.text}`, { proxy: spec.text });
    const { proxyDialer } = await import("../protocols/proxy.ts");
    return { value: proxyDialer(spec) };
  },
};

/**
 * The options of an endpoint's groups as its transport takes them: files
 * read, a server's certificate loaded or made (and reported), the proxy's
 * dialer — what needs the reporter or I/O, done when the command runs.
 *
 * @example Usage
 * ```ts ignore
 * const { groups, explain } = await prepareGroups(options.groups, { reporter, role: "listen" });
 * ```
 */
export async function prepareGroups(
  parsed: ParsedGroups,
  ctx: PrepareContext,
): Promise<PreparedGroups> {
  const groups: Record<string, unknown> = { ...parsed };
  const explainers: Array<(error: unknown) => unknown> = [];
  for (const [name, prepare] of Object.entries(PREPARE)) {
    const options = parsed[name as keyof ParsedGroups];
    if (options === undefined || !prepare) continue;
    const prepared =
      await (prepare as (o: unknown, c: PrepareContext) => Promise<Prepared<unknown>>)(
        options,
        ctx,
      );
    groups[name] = prepared.value;
    if (prepared.explain) explainers.push(prepared.explain);
  }
  return {
    groups: groups as GroupOptions,
    explain: (error) => explainers.reduce((err, explain) => explain(err), error),
  };
}
