import type { TaskStore, TokenIndex } from '../../store/store.js';
import type { CredentialLink, CredentialLinkKind, DownstreamEvent, UsageStore } from '../../store/usage-store.js';

/** A downstream record, reduced to what can tie it to a Leash credential and what it did. */
export interface Candidate {
  readonly source: 'cloudtrail' | 'vault';
  /** Unique per source (`cloudtrail:<eventID>`, `vault:<request.id>:<type>`). */
  readonly id: string;
  readonly at: number;
  readonly action: string;
  readonly target: string;
  readonly outcome: 'success' | 'failure';
  readonly principal: string;
  readonly sourceAddress: string;
  /** Exact names of the credential used: an AWS access key id, a Vault lease id or accessor. */
  readonly keys: ReadonlyArray<{ readonly kind: CredentialLinkKind; readonly id: string }>;
  /** A name this record creates for the credential it links to (a Vault token's accessor, minted in the response). */
  readonly provides?: { readonly kind: CredentialLinkKind; readonly id: string } | undefined;
  /** From the `leash:task` / `leash:plugin` session tags. */
  readonly task?: string | undefined;
  readonly plugin?: string | undefined;
  /** The AWS role session name (`leash.<plugin>.<task tail>`). */
  readonly sessionName?: string | undefined;
  /** The AWS source identity (the plugin id). */
  readonly sourceIdentity?: string | undefined;
}

export interface LinkDeps {
  readonly store: Pick<UsageStore, 'resolveCredentialLinks' | 'linkCredentials'> & Pick<TokenIndex, 'getIssued'> & Pick<TaskStore, 'getTask'>;
  /** Plugins of the policy in force: a source identity or session name names one of them, or nothing. */
  readonly knownPlugin: (id: string) => boolean;
  /** Links this run discovers (a Vault token's accessor) are kept this long. */
  readonly keepUntil: number;
}

export interface LinkResult {
  readonly events: DownstreamEvent[];
  /** Records with no tie to any Leash credential, task or plugin (not stored). */
  readonly unlinked: number;
  /** How the linked ones were tied, by link kind. */
  readonly byLink: Readonly<Record<string, number>>;
}

const LINK_NAME: Readonly<Record<CredentialLinkKind, string>> = { aws_access_key: 'access_key', vault_lease: 'lease_id', vault_accessor: 'accessor' };

/**
 * Ties downstream records to Leash's tasks and plugins, most exact first: the credential's
 * own name (access key id, lease id, accessor) through the links recorded at issuance;
 * the `leash:task` session tag; the session name; the source identity. Records are taken
 * in time order, so a Vault token minted for a credential links the requests made with it.
 */
export async function linkCandidates(deps: LinkDeps, candidates: readonly Candidate[]): Promise<LinkResult> {
  const sorted = [...candidates].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  const known = new Map<string, CredentialLink>();
  const key = (kind: string, id: string) => `${kind}\u001f${id}`;
  // One store read per kind for every exact name in the batch.
  const byKind = new Map<CredentialLinkKind, Set<string>>();
  for (const c of sorted) for (const k of c.keys) (byKind.get(k.kind) ?? byKind.set(k.kind, new Set()).get(k.kind)!).add(k.id);
  for (const [kind, ids] of byKind) {
    for (const l of await deps.store.resolveCredentialLinks(kind, [...ids])) known.set(key(kind, l.id), l);
    if (kind === 'aws_access_key') {
      // Credentials still in the token index link without a recorded link.
      for (const id of ids) {
        if (known.has(key(kind, id))) continue;
        const t = await deps.store.getIssued(`aws:${id}`);
        if (t) known.set(key(kind, id), { kind, id, jti: t.jti, plugin: t.plugin, task: t.task ?? '' });
      }
    }
  }
  const tasks = new Map<string, boolean>();
  const taskExists = async (id: string) => {
    if (!tasks.has(id)) tasks.set(id, (await deps.store.getTask(id)) !== undefined);
    return tasks.get(id)!;
  };
  const seenTasks = new Set<string>();
  const events: DownstreamEvent[] = [];
  const byLink: Record<string, number> = {};
  const discovered: CredentialLink[] = [];
  let unlinked = 0;
  for (const c of sorted) {
    let link: { jti: string; plugin: string; task: string; via: string } | undefined;
    for (const k of c.keys) {
      const l = known.get(key(k.kind, k.id));
      if (l) {
        link = { jti: l.jti, plugin: l.plugin, task: l.task, via: LINK_NAME[k.kind] };
        break;
      }
    }
    if (!link && c.task !== undefined && c.task !== 'none' && (await taskExists(c.task))) {
      link = { jti: '', plugin: c.plugin && deps.knownPlugin(c.plugin) ? c.plugin : '', task: c.task, via: 'session_tag' };
    }
    if (!link && c.sessionName) {
      const m = /^leash\.(.+)\.([^.]+)$/.exec(c.sessionName);
      if (m && deps.knownPlugin(m[1]!)) {
        const tail = m[2]!;
        const task = tail === 'none' ? '' : ([...seenTasks].find((t) => t.endsWith(tail)) ?? '');
        link = { jti: '', plugin: m[1]!, task, via: 'session_name' };
      }
    }
    if (!link && c.sourceIdentity && deps.knownPlugin(c.sourceIdentity)) link = { jti: '', plugin: c.sourceIdentity, task: '', via: 'source_identity' };
    if (!link) {
      unlinked += 1;
      continue;
    }
    if (link.task) seenTasks.add(link.task);
    if (c.provides && !known.has(key(c.provides.kind, c.provides.id))) {
      const l: CredentialLink = { kind: c.provides.kind, id: c.provides.id, jti: link.jti || `${c.source}:${c.id}`, plugin: link.plugin, task: link.task };
      known.set(key(l.kind, l.id), l);
      discovered.push(l);
    }
    byLink[link.via] = (byLink[link.via] ?? 0) + 1;
    events.push({
      id: c.id,
      source: c.source,
      at: c.at,
      task: link.task,
      plugin: link.plugin,
      jti: link.jti,
      action: c.action,
      target: c.target,
      outcome: c.outcome,
      principal: c.principal,
      link: link.via,
      sourceAddress: c.sourceAddress,
    });
  }
  if (discovered.length > 0) await deps.store.linkCredentials(discovered, deps.keepUntil);
  return { events, unlinked, byLink };
}
