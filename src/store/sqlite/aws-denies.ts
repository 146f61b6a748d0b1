import type Database from 'better-sqlite3';
import type { AwsDenyStore } from '../store.js';
import type { SqliteHandle } from './handle.js';

/* The AWS session denies per IAM role: compare-and-set on the whole document, fsynced (a promised deny must survive a crash until IAM has it). */

function prepare(db: Database.Database) {
  return {
    get: db.prepare('SELECT state FROM aws_denies WHERE role_arn = ?'),
    // OR IGNORE: a row another writer inserted first makes this compare-and-set fail, not throw.
    insert: db.prepare('INSERT OR IGNORE INTO aws_denies (role_arn, state) VALUES (?, ?)'),
    update: db.prepare('UPDATE aws_denies SET state = ? WHERE role_arn = ? AND state = ?'),
    delete: db.prepare('DELETE FROM aws_denies WHERE role_arn = ? AND state = ?'),
    list: db.prepare('SELECT role_arn FROM aws_denies ORDER BY role_arn'),
  };
}

export class SqliteAwsDenies implements AwsDenyStore {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;

  constructor(h: SqliteHandle) {
    this.#h = h;
    this.#s = prepare(h.db);
  }

  async getAwsDeny(roleArn: string): Promise<string | undefined> {
    const row = this.#h.run('getAwsDeny', () => this.#s.get.get(roleArn) as { state: string } | undefined);
    return row?.state;
  }

  async casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean> {
    const s = this.#s;
    return this.#h.run('casAwsDeny', () =>
      this.#h.durably(() => {
        if (expected === undefined) return next === undefined ? s.get.get(roleArn) === undefined : s.insert.run(roleArn, next).changes === 1;
        if (next === undefined) return s.delete.run(roleArn, expected).changes === 1;
        return s.update.run(next, roleArn, expected).changes === 1;
      }),
    );
  }

  async listAwsDenyRoles(): Promise<string[]> {
    return this.#h.run('listAwsDenyRoles', () => (this.#s.list.all() as { role_arn: string }[]).map((r) => r.role_arn));
  }
}
