import { describe, expect, it } from '@jest/globals';
import { concerns, createAudienceResolver } from '../../src/revocation/revocation-audiences.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { aTask, aToken } from '../store/describe-store.js';

describe('which audiences a revocation concerns', () => {
  it("task: its tokens and its plugins' grants; token: its task's (the cascade) or its own; plugin, key, unknown jti: everyone", async () => {
    const clock = new ManualClock(Date.now());
    const store = openSqliteStore({ path: ':memory:', clock });
    try {
      const task = aTask(clock, { plugins: ['reader', 'gone'] });
      await store.createTask(task);
      const inTask = aToken(clock, { task: task.id, plugin: 'reader', audience: 'https://a.example' });
      const delegated = aToken(clock, { task: task.id, plugin: 'writer', audience: 'https://d.example' });
      const loose = aToken(clock, { task: undefined, audience: 'https://solo.example' });
      for (const t of [inTask, delegated, loose]) await store.recordIssued(t);
      const grants: Record<string, string[]> = { reader: ['https://a.example', 'https://b.example'] };
      const resolve = createAudienceResolver({ tokens: store, tasks: store, grantedAudiences: (p) => grants[p] ?? [] });

      expect(await resolve('task', task.id)).toEqual(['https://a.example', 'https://b.example', 'https://d.example']);
      expect(await resolve('token', inTask.jti)).toEqual(['https://a.example', 'https://b.example', 'https://d.example']);
      expect(await resolve('token', loose.jti)).toEqual(['https://solo.example']);
      expect(await resolve('task', 'tsk_unknown')).toEqual([]);
      expect(await resolve('token', 'jti-unknown')).toBeUndefined();
      expect(await resolve('plugin', 'reader')).toBeUndefined();
      expect(await resolve('key', 'kid-1')).toBeUndefined();

      expect(concerns({ audiences: undefined }, ['https://x.example'])).toBe(true);
      expect(concerns({ audiences: [] }, ['https://x.example'])).toBe(false);
      expect(concerns({ audiences: ['https://x.example'] }, ['https://y.example', 'https://x.example'])).toBe(true);
      expect(concerns({ audiences: ['https://x.example'] }, ['https://y.example'])).toBe(false);
    } finally {
      await store.close();
    }
  });
});
