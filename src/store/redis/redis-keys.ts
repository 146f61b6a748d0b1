/**
 * Every key the Redis store uses, all under one prefix so deployments can share a server.
 * Ids are appended verbatim: a Redis key is binary-safe, and each kind of key has its own
 * fixed stem, so ids cannot collide across kinds.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  task(id: string): string {
    return `${this.prefix}task:${id}`;
  }
  /** Sorted set: active task ids by expiresAt. */
  get activeTasks(): string {
    return `${this.prefix}tasks:active`;
  }
  token(jti: string): string {
    return `${this.prefix}tok:${jti}`;
  }
  /** Sorted set: jtis of one task by issuedAt (ties by jti, as SQLite orders them). */
  tokensOfTask(task: string): string {
    return `${this.prefix}tok-task:${task}`;
  }
  /** Hash: plugin -> tokens recorded for it in one task (the tokens-per-task quota). */
  tokenCountsOfTask(task: string): string {
    return `${this.prefix}tok-task-count:${task}`;
  }
  /** Sorted set: jtis of one plugin by expiresAt. */
  tokensOfPlugin(plugin: string): string {
    return `${this.prefix}tok-plugin:${plugin}`;
  }
  /** String "seq:hash" of the last audit record. */
  get auditHead(): string {
    return `${this.prefix}audit:head`;
  }
  /** Hash: seq -> record JSON. */
  get auditLog(): string {
    return `${this.prefix}audit:log`;
  }
  replay(key: string): string {
    return `${this.prefix}replay:${key}`;
  }
  /** Counter handing out revocation seqs: only ever incremented. */
  get revocationSeq(): string {
    return `${this.prefix}rev:seq`;
  }
  /** Sorted set: revocation record JSON by seq. */
  get revocationLog(): string {
    return `${this.prefix}rev:log`;
  }
  /** Sorted set: revocation seq by keepUntil (for the purge). */
  get revocationKeep(): string {
    return `${this.prefix}rev:keep`;
  }
  /** Hash: plugin -> suspension JSON. */
  get suspensions(): string {
    return `${this.prefix}suspensions`;
  }
  counter(key: string, windowMs: number, windowStart: number): string {
    return `${this.prefix}ctr:${windowMs}:${windowStart}:${key}`;
  }
  /** Hash: one approval (immutable part as JSON in `d`, the rest field by field). */
  approval(id: string): string {
    return `${this.prefix}apr:${id}`;
  }
  /** Sorted set: approval ids by requestedAt; `all`, or only those in one state. */
  approvalsIndex(state: 'all' | 'pending' | 'approved' | 'denied' | 'used'): string {
    return `${this.prefix}apr-idx:${state}`;
  }
  /** Sorted set: ids of one plugin's pending approvals by expiresAt (limits, dedupe; stale entries pruned lazily). */
  approvalsPendingOfPlugin(plugin: string): string {
    return `${this.prefix}apr-pending-plugin:${plugin}`;
  }
  /** Sorted set: ids of one task's pending approvals by expiresAt. */
  approvalsPendingOfTask(task: string): string {
    return `${this.prefix}apr-pending-task:${task}`;
  }
  /** Sorted set: approval ids by when their record is dropped (removes stale index entries). */
  get approvalsDrop(): string {
    return `${this.prefix}apr-drop`;
  }
  /** Hash: one Vault lease (immutable part as JSON in `d`, revokedAt in `r`). */
  lease(jti: string): string {
    return `${this.prefix}lease:${jti}`;
  }
  /** Hash: role ARN -> that role's AWS session-deny document (JSON). */
  get awsDenies(): string {
    return `${this.prefix}aws-deny`;
  }
  /** Sorted set: jtis of unrevoked leases by expiresAt. */
  get leasesDue(): string {
    return `${this.prefix}lease-due`;
  }
  /** String: the store's epoch (a random id written once, when the store is initialised). */
  get storeEpoch(): string {
    return `${this.prefix}store:epoch`;
  }
  /** String: the reset marker JSON, while a reset waits for an operator. */
  get storeReset(): string {
    return `${this.prefix}store:reset`;
  }
  /** String: the audit genesis JSON (where the chain begins, and any accepted reset). */
  get auditGenesis(): string {
    return `${this.prefix}audit:genesis`;
  }
  /** Pub/sub channel of StateChange JSON. */
  get changes(): string {
    return `${this.prefix}changes`;
  }
}
