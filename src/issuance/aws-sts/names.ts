/**
 * Names AWS records in CloudTrail, built so they stay within its rules:
 * RoleSessionName and SourceIdentity are 2-64 characters of [\w+=,.@-].
 */

const NAME_MIN = 2;
const NAME_MAX = 64;
const NOT_NAME_CHAR = /[^\w+=,.@-]/g;
/** Enough of a task id's random tail to tell sessions of one plugin apart. */
const TASK_TAIL = 12;
/** AWS minimum for DurationSeconds. */
export const MIN_SESSION_SECONDS = 900;

function sanitize(value: string): string {
  return value.replace(NOT_NAME_CHAR, '_');
}

/**
 * `leash.<plugin>.<task tail>`: the plugin stays readable (truncated only if the whole would
 * pass 64 characters) and the tail of the task id keeps sessions of different tasks apart.
 * Without a task: `leash.<plugin>.none`.
 */
export function roleSessionName(plugin: string, task: string | undefined): string {
  if (!plugin) throw new TypeError('roleSessionName: plugin is required');
  const tail = task === undefined || task === '' ? 'none' : sanitize(task.slice(-TASK_TAIL));
  const room = NAME_MAX - 'leash.'.length - 1 - tail.length;
  return `leash.${sanitize(plugin).slice(0, room)}.${tail}`;
}

/**
 * SourceIdentity = the plugin id. It persists through role chaining and cannot be changed
 * by the session, so CloudTrail always says which plugin acted. A one-character id is
 * prefixed to reach AWS's minimum of two.
 */
export function sourceIdentity(plugin: string): string {
  if (!plugin) throw new TypeError('sourceIdentity: plugin is required');
  const name = sanitize(plugin);
  return (name.length < NAME_MIN ? `leash.${name}` : name).slice(0, NAME_MAX);
}

/** The shortest session that covers the request: the TTL, raised to AWS's 900 s minimum, capped at the role's maximum. */
export function sessionDuration(ttl: number, roleMax: number): number {
  if (!Number.isInteger(ttl) || ttl < 1) throw new TypeError(`sessionDuration: ttl must be a positive integer, got ${ttl}`);
  if (!Number.isInteger(roleMax) || roleMax < MIN_SESSION_SECONDS) {
    throw new TypeError(`sessionDuration: roleMax must be an integer of at least ${MIN_SESSION_SECONDS}, got ${roleMax}`);
  }
  return Math.min(Math.max(ttl, MIN_SESSION_SECONDS), roleMax);
}

/** Session tag values: AWS allows letters, digits, spaces and _.:/=+-@, up to 256 characters. */
export function tagValue(value: string): string {
  return value.replace(/[^\p{L}\p{Z}\p{N}_.:/=+\-@]/gu, '_').slice(0, 256);
}
