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
  /** Pub/sub channel of StateChange JSON. */
  get changes(): string {
    return `${this.prefix}changes`;
  }
}
