/**
 * oidc-provider's storage adapter. Leash enables no flow that stores provider state (no
 * codes, sessions, grants or refresh tokens: tokens are issued and indexed by Leash
 * itself), so nothing needs keeping; this adapter makes that explicit instead of using the
 * development in-memory adapter, which would grow and warn. A lookup always misses.
 */
export class StatelessAdapter {
  constructor(readonly name: string) {}
  async upsert(): Promise<void> {}
  async find(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}
