/**
 * An option group, declared: the flags of one concern of a transport
 * (socket options, multicast, WebSocket, TLS, a proxy…), declared by the
 * module that owns the concern, with its help title and a typed `parse`
 * from the flags' values to the options the transport takes. Which
 * endpoints a group applies to is the scheme table's to say: a row lists
 * the names of the groups it takes (`schemes.ts`), and the command line
 * refuses a group's flag when no endpoint given takes the group. The
 * options reach a transport as `groups: { [name]: options }` (see
 * `opener.ts`). Types only.
 *
 * @module
 */

import type { FlagSpec } from "../base/flag.ts";
import type { Endpoint } from "./address.ts";
import type { GroupName, Role } from "./schemes.ts";

/** A flag a group (or a command's help section) lists: its name, or its name and its help there. */
export type FlagUse = string | readonly [string, string];

/** An endpoint of a command line and the part it plays. */
export interface EndpointRole {
  /** The endpoint (with what the groups' {@linkcode OptionGroup.apply} made of it). */
  readonly endpoint: Endpoint;
  /** Listened on, or connected to. */
  readonly role: Role;
}

/** What a group's {@linkcode OptionGroup.parse} is told besides the values. */
export interface GroupContext extends EndpointRole {
  /** Every endpoint of the command line (a group may share its options out between them). */
  readonly endpoints: readonly EndpointRole[];
  /**
   * What the endpoint is relayed with: the terminal (`stdio`), itself (an
   * echo server), or another endpoint (a forwarder).
   */
  readonly partner: "stdio" | "itself" | "endpoint";
}

/** One option group. */
export interface OptionGroup<T = unknown> {
  /** Its name, as the rows of the scheme table list it. */
  readonly name: GroupName;
  /** The title of its flags in help (`TLS`, `Socket options`). */
  readonly title: string;
  /** Its flags, in the order help shows them (some with the help they have here). */
  readonly flags: readonly FlagUse[];
  /** The declarations of the flags it owns (others it lists are declared elsewhere). */
  readonly specs: Readonly<Record<string, FlagSpec>>;
  /** The role of the endpoints it applies to (a client's `--source`); both when absent. */
  readonly role?: Role;
  /**
   * Flags listed by another group that this one takes too, with the role
   * of the endpoints it takes them for (a WebSocket server's
   * `--handshake-timeout`).
   */
  readonly shares?: Readonly<Record<string, Role>>;
  /** The flag that turns an endpoint into one of the rows that take this group (`--tls`). */
  readonly via?: string;
  /**
   * What the group's flags make of an endpoint before its row is asked for
   * its groups (`--tls`: `tcp` → `tls`); `text` is the endpoint as written.
   */
  apply?(endpoint: Endpoint, values: Readonly<Record<string, unknown>>, text: string): Endpoint;
  /**
   * The options of the group for one endpoint whose row takes it, from the
   * parsed values of every flag (`undefined`: nothing to set). Throws a
   * `UsageError` for values that do not fit the endpoint.
   */
  parse(values: Readonly<Record<string, unknown>>, ctx: GroupContext): T | undefined;
}
