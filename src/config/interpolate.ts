import type { ConfigProblem } from './config-error.js';

/**
 * `${VAR}` and `${VAR:-default}` in config values, from the environment: a config file can
 * be shared by every environment and carry no secret. `$${` writes a literal `${`. A
 * variable that is unset (or empty) with no default is a problem naming the path and the
 * variable. Values are never put into messages: a variable may hold a secret.
 */

export type Env = Readonly<Record<string, string | undefined>>;

export interface Interpolation {
  /** The value with every reference replaced (a problem leaves the string as written). */
  readonly value: unknown;
  readonly problems: ConfigProblem[];
  /** JSON pointers of the strings that held a reference (they may be read as numbers or booleans), with the variables they named. */
  readonly paths: ReadonlyMap<string, readonly string[]>;
  /** What each variable used was replaced by, to keep it out of messages (`redactValues`). */
  readonly substituted: ReadonlyMap<string, string>;
}

const NAME = '[A-Za-z_][A-Za-z0-9_]*';
/** `$${` (escape), `${NAME}`, `${NAME:-default}` (the default runs to the first `}`), or a malformed `${`. */
const REFERENCE = new RegExp(`\\$\\$\\{|\\$\\{(?:(${NAME})(?::-([^}]*))?\\}|([^}]*)\\}?)`, 'g');

const escapeKey = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

export function interpolateEnv(root: unknown, env: Env): Interpolation {
  const problems: ConfigProblem[] = [];
  const paths = new Map<string, string[]>();
  const substituted = new Map<string, string>();

  const expand = (text: string, path: string): string => {
    if (!text.includes('${')) return text;
    let failed = false;
    const names: string[] = [];
    const out = text.replace(REFERENCE, (whole: string, name: string | undefined, dflt: string | undefined) => {
      if (whole === '$${') return '${';
      if (name === undefined) {
        failed = true;
        problems.push({ path, message: `'${whole}' is not a valid reference: write \${NAME} or \${NAME:-default} (NAME of letters, digits and _), or $\${ for a literal \${` });
        return whole;
      }
      names.push(name);
      const set = env[name];
      if (set !== undefined && set !== '') {
        substituted.set(name, set);
        return set;
      }
      if (dflt !== undefined) return dflt;
      failed = true;
      problems.push({ path, message: `environment variable ${name} is not set (write \${${name}:-default} to give a default)` });
      return whole;
    });
    if (names.length > 0 && !failed) paths.set(path, names);
    return failed ? text : out;
  };

  const walk = (value: unknown, path: string): unknown => {
    if (typeof value === 'string') return expand(value, path);
    if (Array.isArray(value)) return value.map((v, i) => walk(v, `${path}/${i}`));
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, `${path}/${escapeKey(k)}`);
      return out;
    }
    return value;
  };

  return { value: walk(root, ''), problems, paths, substituted };
}

/**
 * Problems with every value taken from the environment replaced by the name it came from:
 * a message that quotes a value (a pattern, a duplicate, an unknown name) must not show a
 * secret. Values shorter than 3 characters are left (they cannot be told from the text).
 */
export function redactValues(problems: readonly ConfigProblem[], values: ReadonlyMap<string, string>): ConfigProblem[] {
  const secrets = [...values].filter(([, v]) => v.length >= 3).sort((a, b) => b[1].length - a[1].length);
  if (secrets.length === 0) return [...problems];
  return problems.map((p) => {
    let message = p.message;
    for (const [name, value] of secrets) message = message.split(value).join(`\${${name}}`);
    return message === p.message ? p : { ...p, message };
  });
}
