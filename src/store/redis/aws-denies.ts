import type { AwsDenyStore } from '../store.js';
import type { RedisConnection } from './connection.js';
import { CAS_AWS_DENY } from './redis-scripts.js';

/* The AWS session denies per IAM role: one hash (role ARN -> document); compare-and-set is a script. */
export class RedisAwsDenies implements AwsDenyStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async getAwsDeny(roleArn: string): Promise<string | undefined> {
    const c = this.#c;
    const v = await c.call('getAwsDeny', () => c.client.hget(c.k.awsDenies, roleArn));
    return v ?? undefined;
  }

  async casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean> {
    const c = this.#c;
    const r = await c.call('casAwsDeny', () => CAS_AWS_DENY.run(c.client, [c.k.awsDenies], [roleArn, expected ?? '', next ?? '']));
    return r === 1;
  }

  async listAwsDenyRoles(): Promise<string[]> {
    const c = this.#c;
    return c.call('listAwsDenyRoles', async () => (await c.client.hkeys(c.k.awsDenies)).sort());
  }
}
