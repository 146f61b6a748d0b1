import type { IssuedToken, LeaseRecord } from '../store/records.js';
import type { IssueLimit, LeaseStore, TokenIndex } from '../store/store.js';
import type { UsageStore } from '../store/usage-store.js';

/** The prefix of an `aws-sts` credential's jti: the rest is its access key id (issuance/aws-sts). */
const AWS_JTI = 'aws:';

export interface LinkDeps {
  readonly store: Pick<UsageStore, 'linkCredentials'>;
  /** How long past the credential's expiry its downstream name is kept (the usage retention). */
  readonly retentionMs: () => number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * The token index, recording the downstream name of every `aws-sts` credential (its access
 * key id) as it is issued, so CloudTrail events made with it link to the plugin and task
 * long after the index has forgotten the token. A link that cannot be written is logged,
 * never a reason to withhold the credential (the session tags and source identity remain).
 */
export function linkingTokenIndex<T extends Pick<TokenIndex, 'recordIssued'>>(tokens: T, deps: LinkDeps): T {
  return new Proxy(tokens, {
    get(target, prop, receiver) {
      if (prop !== 'recordIssued') {
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      }
      return async (t: IssuedToken, limit?: IssueLimit) => {
        await target.recordIssued(t, limit);
        if (t.kind === 'aws-sts' && t.jti.startsWith(AWS_JTI))
          await link(deps, [{ kind: 'aws_access_key', id: t.jti.slice(AWS_JTI.length), jti: t.jti, plugin: t.plugin, task: t.task ?? '' }], t.expiresAt);
      };
    },
  });
}

/** The lease store, recording each Vault lease id as a link to its credential's plugin and task. */
export function linkingLeaseStore<T extends Pick<LeaseStore, 'recordLease'>>(leases: T, deps: LinkDeps): T {
  return new Proxy(leases, {
    get(target, prop, receiver) {
      if (prop !== 'recordLease') {
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      }
      return async (l: LeaseRecord) => {
        await target.recordLease(l);
        await link(deps, [{ kind: 'vault_lease', id: l.leaseId, jti: l.jti, plugin: l.plugin, task: l.task ?? '' }], l.expiresAt);
      };
    },
  });
}

async function link(deps: LinkDeps, links: Parameters<UsageStore['linkCredentials']>[0], expiresAt: number): Promise<void> {
  try {
    await deps.store.linkCredentials(links, expiresAt + deps.retentionMs());
  } catch (err) {
    deps.log?.('recording a downstream credential link failed; its downstream events link by tags and names only', {
      kind: links[0]?.kind,
      error: err instanceof Error ? err.message.slice(0, 200) : String(err),
    });
  }
}
