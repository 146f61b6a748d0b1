import type { Store } from '../../store/store.js';
import type { Clock } from '../../time/clock.js';
import { cloudTrailFiles, parseCloudTrailRecord, readCloudTrailFile } from './cloudtrail.js';
import { linkCandidates, type Candidate } from './link.js';
import { readVaultAudit } from './vault-audit.js';

export interface DownstreamIngestDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly knownPlugin: (id: string) => boolean;
  /** How long stored events (and links discovered) are kept. */
  readonly retentionMs: number;
}

export interface DownstreamReport {
  readonly files: number;
  readonly records: number;
  /** Records that were not CloudTrail records / Vault audit entries. */
  readonly malformed: number;
  readonly linked: number;
  readonly unlinked: number;
  /** Linked events not stored before (ingesting the same file twice stores nothing new). */
  readonly stored: number;
  readonly byLink: Readonly<Record<string, number>>;
}

const BATCH = 2000;

async function store(deps: DownstreamIngestDeps, candidates: Candidate[], counts: { files: number; records: number; malformed: number }): Promise<DownstreamReport> {
  const keepUntil = deps.clock.now() + deps.retentionMs;
  let linked = 0;
  let unlinked = 0;
  let stored = 0;
  const byLink: Record<string, number> = {};
  // Linked in one pass (a Vault token's accessor links what follows it), stored in batches.
  const result = await linkCandidates({ store: deps.store, knownPlugin: deps.knownPlugin, keepUntil }, candidates);
  linked += result.events.length;
  unlinked += result.unlinked;
  for (const [k, n] of Object.entries(result.byLink)) byLink[k] = (byLink[k] ?? 0) + n;
  for (let i = 0; i < result.events.length; i += BATCH) stored += await deps.store.recordDownstream(result.events.slice(i, i + BATCH), keepUntil);
  return { ...counts, linked, unlinked, stored, byLink };
}

/** `leash ingest cloudtrail FILE|DIR`: every record of every log file, linked to tasks and plugins. */
export async function ingestCloudTrail(deps: DownstreamIngestDeps, path: string): Promise<DownstreamReport> {
  const files = await cloudTrailFiles(path);
  const candidates: Candidate[] = [];
  let records = 0;
  let malformed = 0;
  for (const file of files) {
    for (const raw of await readCloudTrailFile(file)) {
      records += 1;
      const c = parseCloudTrailRecord(raw);
      if (c) candidates.push(c);
      else malformed += 1;
    }
  }
  return store(deps, candidates, { files: files.length, records, malformed });
}

/** `leash ingest vault-audit FILE`: every entry of an audit-device log, linked by lease id and token accessor. */
export async function ingestVaultAudit(deps: DownstreamIngestDeps, path: string): Promise<DownstreamReport> {
  const { candidates, lines, malformed } = await readVaultAudit(path);
  return store(deps, candidates, { files: 1, records: lines, malformed });
}
