import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { TAG_PLUGIN, TAG_TASK } from '../../issuance/aws-sts/aws-sts-issuer.js';
import type { DownstreamEvent } from '../../store/usage-store.js';
import type { Candidate } from './link.js';

/*
 * CloudTrail log files as AWS delivers them to S3: one JSON object `{"Records": [...]}` per
 * file, gzip-compressed (`.json.gz`) or plain. Each record is one API call: `eventID`,
 * `eventTime`, `eventSource`, `eventName`, `awsRegion`, `sourceIPAddress`, `errorCode`,
 * `userIdentity` (for a role session: `type: AssumedRole`, `arn` .../assumed-role/<role>/<session>,
 * `accessKeyId`, `sessionContext.sessionIssuer`, `sessionContext.sourceIdentity`),
 * `requestParameters`, `responseElements` and `resources`. For AssumeRole and
 * AssumeRoleWithWebIdentity the record names the new session: `requestParameters.roleArn`,
 * `roleSessionName`, `sourceIdentity`, session `tags`, and `responseElements.credentials
 * .accessKeyId`. See docs/usage.md for the references.
 */

/** What a record says that can tie it to a Leash credential, and what it did. */
export interface CloudTrailCall extends Candidate {
  readonly source: 'cloudtrail';
}

/** Field limits: a log line is input, bounded before it is stored. */
const MAX = 512;
const cut = (v: unknown): string => (typeof v === 'string' ? v.slice(0, MAX) : '');

/** Every `.json` / `.json.gz` file under `path` (a file or a folder, recursively), sorted. */
export async function cloudTrailFiles(path: string): Promise<string[]> {
  const s = await stat(path);
  if (s.isFile()) return [path];
  const out: string[] = [];
  for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) out.push(...(await cloudTrailFiles(p)));
    else if (/\.json(\.gz)?$/i.test(entry.name)) out.push(p);
  }
  return out;
}

/** The records of one log file (gzip detected by its magic bytes, not its name). */
export async function readCloudTrailFile(path: string): Promise<unknown[]> {
  let bytes = await readFile(path);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  const doc = JSON.parse(bytes.toString('utf8')) as { Records?: unknown };
  if (!doc || !Array.isArray(doc.Records)) throw new Error(`${path}: not a CloudTrail log file (no Records array)`);
  return doc.Records as unknown[];
}

type Tag = { key?: unknown; value?: unknown; Key?: unknown; Value?: unknown };

function tagsOf(params: Record<string, unknown> | undefined): Map<string, string> {
  const tags = new Map<string, string>();
  for (const name of ['tags', 'principalTags']) {
    const v = params?.[name];
    if (Array.isArray(v))
      for (const t of v as Tag[]) {
        const k = t.key ?? t.Key;
        const val = t.value ?? t.Value;
        if (typeof k === 'string' && typeof val === 'string') tags.set(k, val);
      }
    else if (v && typeof v === 'object') for (const [k, val] of Object.entries(v)) if (typeof val === 'string') tags.set(k, val);
  }
  return tags;
}

/** The session name in an assumed-role ARN: `arn:aws:sts::<acct>:assumed-role/<role>/<session>`. */
function sessionOf(arn: string): string {
  const m = /:assumed-role\/[^/]+\/(.+)$/.exec(arn);
  return m?.[1] ?? '';
}

/** `leash.<plugin>.<task tail>` (issuance/aws-sts/names.ts). */
export function parseSessionName(name: string): { plugin: string; taskTail: string } | undefined {
  const m = /^leash\.(.+)\.([^.]+)$/.exec(name);
  return m ? { plugin: m[1]!, taskTail: m[2]! } : undefined;
}

/** One record, reduced to its link candidates and its action; undefined when it is not a record. */
export function parseCloudTrailRecord(raw: unknown): CloudTrailCall | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  const id = cut(r.eventID);
  const at = Date.parse(cut(r.eventTime));
  const name = cut(r.eventName);
  const eventSource = cut(r.eventSource);
  if (!id || !Number.isFinite(at) || !name || !eventSource) return undefined;
  const ui = (r.userIdentity ?? {}) as Record<string, unknown>;
  const ctx = (ui.sessionContext ?? {}) as Record<string, unknown>;
  const params = (r.requestParameters && typeof r.requestParameters === 'object' ? r.requestParameters : undefined) as Record<string, unknown> | undefined;
  const response = (r.responseElements && typeof r.responseElements === 'object' ? r.responseElements : undefined) as Record<string, unknown> | undefined;
  const creds = (response?.credentials ?? {}) as Record<string, unknown>;
  const tags = tagsOf(params);
  const service = eventSource.replace(/\.amazonaws\.com$/, '');
  const isAssume = service === 'sts' && name.startsWith('AssumeRole');
  // The session that acted, or (for AssumeRole*) the session being created.
  const accessKeys = [cut(ui.accessKeyId), cut(creds.accessKeyId)].filter((k) => k.length > 0);
  const sessionName = isAssume ? cut(params?.roleSessionName) : sessionOf(cut(ui.arn));
  const sourceIdentity = cut(ctx.sourceIdentity) || cut(params?.sourceIdentity) || cut(ui.sourceIdentity);
  const resources = Array.isArray(r.resources) ? (r.resources as Array<Record<string, unknown>>).map((x) => cut(x.ARN ?? x.arn)).filter(Boolean) : [];
  const target =
    (isAssume ? cut(params?.roleArn) : '') ||
    resources[0] ||
    (service === 's3' && typeof params?.bucketName === 'string' ? `arn:aws:s3:::${cut(params.bucketName)}${typeof params.key === 'string' ? `/${cut(params.key)}` : ''}` : '');
  const principal = cut(ui.arn) || cut(ui.principalId) || cut(ui.userName);
  return {
    source: 'cloudtrail',
    id: `cloudtrail:${id}`,
    at,
    action: `${service}:${name}`,
    target,
    outcome: typeof r.errorCode === 'string' && r.errorCode.length > 0 ? 'failure' : 'success',
    principal,
    sourceAddress: cut(r.sourceIPAddress),
    keys: accessKeys.map((k) => ({ kind: 'aws_access_key' as const, id: k })),
    task: tags.get(TAG_TASK),
    plugin: tags.get(TAG_PLUGIN),
    sessionName,
    sourceIdentity,
  };
}

export type { DownstreamEvent };
