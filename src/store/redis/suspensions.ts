import type { StateChange, Suspension } from '../records.js';
import type { SuspensionStore } from '../store.js';
import type { RedisConnection } from './connection.js';
import { RESUME, SUSPEND } from './redis-scripts.js';

/* Plugin suspensions: one hash (plugin -> JSON); each change is a script that PUBLISHes it with the write. */
export class RedisSuspensions implements SuspensionStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async suspendPlugin(s: Suspension): Promise<boolean> {
    const c = this.#c;
    const record = JSON.stringify({ plugin: s.plugin, since: s.since, actor: s.actor, reason: s.reason });
    const change: StateChange = { type: 'suspension', plugin: s.plugin, suspended: true };
    const r = await c.call('suspendPlugin', () => SUSPEND.run(c.client, [c.k.suspensions], [s.plugin, record, c.k.changes, JSON.stringify(change)]));
    return r === 1;
  }

  async resumePlugin(plugin: string): Promise<boolean> {
    const c = this.#c;
    const change: StateChange = { type: 'suspension', plugin, suspended: false };
    const r = await c.call('resumePlugin', () => RESUME.run(c.client, [c.k.suspensions], [plugin, c.k.changes, JSON.stringify(change)]));
    return r === 1;
  }

  async listSuspensions(): Promise<Suspension[]> {
    const c = this.#c;
    const raws = await c.call('listSuspensions', () => c.client.hvals(c.k.suspensions));
    return raws.map((raw) => JSON.parse(raw) as Suspension).sort((a, b) => (a.plugin < b.plugin ? -1 : a.plugin > b.plugin ? 1 : 0));
  }
}
