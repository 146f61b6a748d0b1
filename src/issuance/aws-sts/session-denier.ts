import { randomBytes } from 'node:crypto';
import type { AuditSink } from '../../audit/recorder.js';
import type { IAMClient } from '@aws-sdk/client-iam';
import { iamSdk } from './aws-sdk.js';
import type { AuditPayload } from '../../audit/events.js';
import { LeashError } from '../../errors/leash-error.js';
import type { AwsDenyStore } from '../../store/store.js';
import { backoffDelay } from '../../client/backoff.js';
import type { Clock } from '../../time/clock.js';
import { Sweeper } from '../../time/periodic-pass.js';
import { REVOKED_SESSIONS_POLICY_NAME, addEntries, emptyState, fitPolicy, nextExpiry, prune, renderPolicy, type DenyEntry, type RoleDenyState } from './deny-policy.js';
import { mapIamError, roleNameFromArn } from './deny-sessions.js';

/** A replica writing a role's policy holds it this long at most (longer than any IAM call with its retries). */
const LOCK_MS = 60_000;
/** Failed IAM updates are retried after 1 s, 2 s, 4 s, ... up to 5 minutes (with jitter). */
const RETRY_BASE_MS = 1_000;
const RETRY_CAP_MS = 300_000;
/** Compare-and-set rounds before giving up on a busy document (another replica keeps winning). */
const CAS_ROUNDS = 8;

export type DenyOutcome = 'put' | 'deleted' | 'in-step' | 'busy' | 'waiting' | 'failed';

export interface SessionDenierDeps {
  readonly store: AwsDenyStore;
  readonly iam: () => IAMClient;
  readonly clock: Clock;
  /** The size budget for the policy (read per call, so a reload applies). */
  readonly maxChars: () => number;
  readonly audit: AuditSink;
  readonly metrics: { readonly awsDenyUpdates: { inc(labels: { outcome: string }): void } };
  readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  readonly intervalMs: number;
  /** This replica's name in the write lock (default: random). */
  readonly owner?: string;
  /** [0, 1), for the retry jitter. */
  readonly random?: () => number;
}

function parse(text: string | undefined, roleArn: string): RoleDenyState | undefined {
  if (text === undefined) return undefined;
  const s = JSON.parse(text) as RoleDenyState;
  if (s.v !== 1 || s.roleArn !== roleArn || !Array.isArray(s.entries)) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the stored AWS deny state is not readable', { role_arn: roleArn });
  return s;
}

/**
 * Keeps each IAM role's `leash-revoked-sessions` inline policy equal to what the store says
 * it should deny. A revocation adds entries to the role's document in the store first
 * (durable, compare-and-set), then writes IAM; a write IAM refuses or cannot take stays
 * pending in the store, is retried with backoff by every replica's sweep (and after a
 * restart), and is reported each time (`aws.deny_policy_failed` + metric). Expired entries
 * are removed by the same sweep, and the policy is deleted when nothing is left to deny.
 * One replica at a time writes a role (a lock inside the document), so IAM never receives
 * an older document after a newer one.
 */
export class SessionDenier extends Sweeper {
  readonly #d: SessionDenierDeps;
  readonly #owner: string;
  /** Entries that could not reach the store (it was down): added on the next sweep. */
  readonly #unsaved = new Map<string, DenyEntry[]>();

  constructor(deps: SessionDenierDeps) {
    super(deps.intervalMs, (err) => deps.log('aws deny sweep failed', { error: err.name }));
    this.#d = deps;
    this.#owner = deps.owner ?? `replica-${randomBytes(6).toString('hex')}`;
  }

  /** Records the entries for the role, then tries IAM once. Never throws: what is not applied now stays pending. */
  async deny(roleArn: string, entries: readonly DenyEntry[]): Promise<DenyOutcome> {
    if (entries.length === 0) return 'in-step';
    try {
      await this.#update(roleArn, (s) => addEntries(s ?? emptyState(roleArn), entries, this.#d.clock.now()));
    } catch (err) {
      // The store is down: keep them here and add them on the next sweep (not across a restart).
      this.#unsaved.set(roleArn, [...(this.#unsaved.get(roleArn) ?? []), ...entries]);
      this.#d.metrics.awsDenyUpdates.inc({ outcome: 'failed' });
      this.#d.log('aws session deny could not be recorded; retrying on the next sweep', { role_arn: roleArn, entries: entries.length, error: err instanceof Error ? err.name : 'Error' });
      return 'failed';
    }
    return this.apply(roleArn, { force: true });
  }

  /** Roles whose IAM policy lags what the store wants (for the gauge). */
  async pendingRoles(): Promise<number> {
    let n = this.#unsaved.size;
    for (const role of await this.#d.store.listAwsDenyRoles()) {
      const s = parse(await this.#d.store.getAwsDeny(role), role);
      if (s && s.applied !== s.rev) n++;
    }
    return n;
  }

  /** The stored state (tests, the admin view). */
  async state(roleArn: string): Promise<RoleDenyState | undefined> {
    return parse(await this.#d.store.getAwsDeny(roleArn), roleArn);
  }

  /** One pass over every role (pending writes, due retries, expired entries); returns how many IAM writes succeeded. */
  protected async pass(): Promise<number> {
    for (const [role, entries] of [...this.#unsaved]) {
      this.#unsaved.delete(role);
      await this.deny(role, entries);
    }
    let written = 0;
    for (const role of await this.#d.store.listAwsDenyRoles()) {
      const outcome = await this.apply(role).catch((err: unknown) => {
        this.#d.log('aws deny sweep could not process a role', { role_arn: role, error: err instanceof Error ? err.name : 'Error' });
        return 'failed' as const;
      });
      if (outcome === 'put' || outcome === 'deleted') written++;
    }
    return written;
  }

  /** Read-modify-write under compare-and-set; `fn` returning the same object writes nothing. */
  async #update(roleArn: string, fn: (s: RoleDenyState | undefined) => RoleDenyState | undefined): Promise<RoleDenyState | undefined> {
    for (let round = 0; round < CAS_ROUNDS; round++) {
      const text = await this.#d.store.getAwsDeny(roleArn);
      const cur = parse(text, roleArn);
      const next = fn(cur);
      if (next === cur) return cur;
      if (await this.#d.store.casAwsDeny(roleArn, text, next === undefined ? undefined : JSON.stringify(next))) return next;
    }
    throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the AWS deny state kept changing underneath; retry', { role_arn: roleArn });
  }

  /**
   * Brings IAM in step with the stored state for one role. `force` ignores the retry backoff
   * (a new revocation should not wait behind an old failure).
   */
  async apply(roleArn: string, opts: { force?: boolean } = {}): Promise<DenyOutcome> {
    const now = this.#d.clock.now();
    let collapsed = 0;
    let took = false;
    // Claim the role: prune what expired, fit the size budget, take the lock.
    const claimed = await this.#update(roleArn, (cur) => {
      took = false;
      collapsed = 0;
      if (!cur) return cur;
      let s = prune(cur, now);
      const fit = fitPolicy(s, this.#d.maxChars(), now);
      s = fit.state;
      collapsed = fit.collapsed;
      if (s.applied === s.rev) return s === cur ? cur : s;
      if (s.lock && s.lock.owner !== this.#owner && s.lock.until > now) return s === cur ? cur : s;
      if (!opts.force && s.retryAt > now) return s === cur ? cur : s;
      took = true;
      return { ...s, lock: { owner: this.#owner, until: now + LOCK_MS } };
    });
    if (collapsed > 0) await this.#overflow(roleArn, claimed, collapsed, 'budget');
    if (!claimed) return 'in-step';
    if (!took) {
      if (claimed.applied === claimed.rev) return 'in-step';
      return claimed.lock && claimed.lock.owner !== this.#owner && claimed.lock.until > now ? 'busy' : 'waiting';
    }
    return this.#write(roleArn, claimed);
  }

  async #write(roleArn: string, claimed: RoleDenyState, retried = false): Promise<DenyOutcome> {
    const doc = renderPolicy(claimed);
    let requestId: string | undefined;
    try {
      const iam = this.#d.iam();
      const { DeleteRolePolicyCommand, PutRolePolicyCommand } = iamSdk();
      const RoleName = roleNameFromArn(roleArn);
      if (doc === undefined) {
        try {
          requestId = (await iam.send(new DeleteRolePolicyCommand({ RoleName, PolicyName: REVOKED_SESSIONS_POLICY_NAME }))).$metadata.requestId;
        } catch (err) {
          // Already gone is what we wanted.
          if (!isNoSuchPolicy(err)) throw err;
        }
      } else {
        requestId = (await iam.send(new PutRolePolicyCommand({ RoleName, PolicyName: REVOKED_SESSIONS_POLICY_NAME, PolicyDocument: doc }))).$metadata.requestId;
      }
    } catch (err) {
      const mapped = mapIamError(err);
      const iamError = (mapped.detail as { iam_error?: string } | undefined)?.iam_error;
      if (!retried && doc !== undefined && (iamError === 'LimitExceededException' || iamError === 'LimitExceeded')) {
        // The role's other inline policies use the room: fall back to the role-wide cut-off now.
        const now = this.#d.clock.now();
        const fit = fitPolicy(claimed, this.#d.maxChars(), now, true);
        if (fit.collapsed > 0) {
          const next = await this.#update(roleArn, (cur) => (cur ? fitPolicy(cur, this.#d.maxChars(), now, true).state : cur));
          await this.#overflow(roleArn, next, fit.collapsed, 'limit_exceeded');
          if (next) return this.#write(roleArn, next, true);
        }
      }
      return this.#failed(roleArn, claimed, mapped);
    }
    return this.#applied(roleArn, claimed, doc, requestId);
  }

  async #applied(roleArn: string, wrote: RoleDenyState, doc: string | undefined, requestId: string | undefined): Promise<DenyOutcome> {
    const after = await this.#update(roleArn, (cur) => {
      if (!cur) return cur;
      const applied = Math.max(cur.applied, wrote.rev);
      const inStep = applied === cur.rev;
      const next: RoleDenyState = {
        ...cur,
        applied,
        pendingSince: inStep ? undefined : cur.pendingSince,
        failures: 0,
        retryAt: 0,
        lastError: undefined,
        lock: cur.lock?.owner === this.#owner ? undefined : cur.lock,
      };
      // Nothing left to deny and IAM has no policy: forget the role.
      return inStep && doc === undefined && next.entries.length === 0 && next.roleCutoff === undefined ? undefined : next;
    });
    const outcome = doc === undefined ? 'deleted' : 'put';
    this.#d.metrics.awsDenyUpdates.inc({ outcome });
    await this.#audit('aws.deny_policy_updated', {
      role_arn: roleArn,
      policy_name: REVOKED_SESSIONS_POLICY_NAME,
      action: outcome === 'put' ? 'put' : 'delete',
      rev: wrote.rev,
      entries: wrote.entries.length,
      role_cutoff: wrote.roleCutoff ? new Date(wrote.roleCutoff.before).toISOString() : undefined,
      chars: doc?.length ?? 0,
      next_expiry: (() => {
        const t = nextExpiry(wrote);
        return t === undefined ? undefined : new Date(t).toISOString();
      })(),
      request_id: requestId,
    });
    // A revocation arrived while this write was in flight: write again now, not at the next sweep.
    if (after && after.applied !== after.rev) return this.apply(roleArn, { force: true });
    return outcome;
  }

  async #failed(roleArn: string, claimed: RoleDenyState, err: LeashError): Promise<DenyOutcome> {
    const now = this.#d.clock.now();
    const failures = claimed.failures + 1;
    const retryAt = now + backoffDelay(failures, { baseMs: RETRY_BASE_MS, capMs: RETRY_CAP_MS, random: this.#d.random ?? Math.random });
    await this.#update(roleArn, (cur) => (cur ? { ...cur, failures, retryAt, lastError: err.code, lock: cur.lock?.owner === this.#owner ? undefined : cur.lock } : cur)).catch(() => undefined);
    this.#d.metrics.awsDenyUpdates.inc({ outcome: 'failed' });
    await this.#audit('aws.deny_policy_failed', {
      role_arn: roleArn,
      policy_name: REVOKED_SESSIONS_POLICY_NAME,
      rev: claimed.rev,
      applied: claimed.applied,
      pending_since: claimed.pendingSince === undefined ? undefined : new Date(claimed.pendingSince).toISOString(),
      failures,
      retry_at: new Date(retryAt).toISOString(),
      reason_code: err.code,
      detail: err.detail,
    });
    return 'failed';
  }

  async #overflow(roleArn: string, state: RoleDenyState | undefined, collapsed: number, cause: 'budget' | 'limit_exceeded'): Promise<void> {
    this.#d.metrics.awsDenyUpdates.inc({ outcome: 'overflow' });
    await this.#audit('aws.deny_policy_overflow', {
      role_arn: roleArn,
      policy_name: REVOKED_SESSIONS_POLICY_NAME,
      cause,
      entries_collapsed: collapsed,
      denied_before: state?.roleCutoff ? new Date(state.roleCutoff.before).toISOString() : undefined,
      until: state?.roleCutoff ? new Date(state.roleCutoff.until).toISOString() : undefined,
      max_chars: this.#d.maxChars(),
    });
  }

  /** Audit is reported, never thrown: the store's state is what drives the retries. */
  async #audit<T extends 'aws.deny_policy_updated' | 'aws.deny_policy_failed' | 'aws.deny_policy_overflow'>(type: T, event: AuditPayload<T>): Promise<void> {
    try {
      await this.#d.audit.record(type, event);
    } catch (err) {
      this.#d.log('audit write failed for an aws deny event', { type, role_arn: event.role_arn, error: err instanceof Error ? err.name : 'Error' });
    }
  }
}

function isNoSuchPolicy(err: unknown): boolean {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'NoSuchEntityException' || name === 'NoSuchEntity';
}
