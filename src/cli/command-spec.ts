import { parseArgs } from 'node:util';

/**
 * The `leash` command line as data: one tree of commands, their arguments and options.
 * The parser, every `--help`, the shell completion scripts, docs/cli.md and the help/exit
 * code table test all read this tree, so a command added to it is parsed, documented,
 * completed and tested with nothing else to write. Tokenising is node:util's parseArgs
 * (docs/decisions/0006-cli-parser.md); what a token means, and every message, is ours.
 */

/** An option: `--name <value>` when `value` is set, else a boolean `--name`. */
export interface OptionSpec {
  readonly name: string;
  readonly summary: string;
  /** The value's placeholder in help (`--config <file>`); absent for a boolean flag. */
  readonly value?: string;
  /** The only values allowed (checked, listed in help, offered by completion). */
  readonly choices?: readonly string[];
  /** May be given more than once; every value is kept. */
  readonly multiple?: boolean;
  /** Must be given (or come from `env`): a usage error (exit 2) otherwise. */
  readonly required?: boolean;
  /** The environment variable read when the option is not given. */
  readonly env?: string;
  /** The message when a required option is missing, when the generic one says too little. */
  readonly missing?: string;
  /** Completion offers file names for the value (the default for a value without choices). */
  readonly complete?: 'file' | 'none';
  /** Parsed, but left out of help, completion and docs (an npm script's private switch). */
  readonly hidden?: boolean;
}

/** A positional argument, in order. */
export interface ArgSpec {
  readonly name: string;
  readonly summary: string;
  readonly optional?: boolean;
  /** Takes every remaining positional (the last argument only). */
  readonly variadic?: boolean;
  readonly choices?: readonly string[];
  /** Completion offers file names here. */
  readonly complete?: 'file' | 'none';
}

/** What a command does: parsed arguments in, exit code out (undefined: leave it as it is). */
export type CommandRun = (inv: Invocation, io: CliIo) => Promise<number | undefined>;

export interface CommandSpec {
  readonly name: string;
  /** One line: the command list, completion, docs/cli.md's index. */
  readonly summary: string;
  /** More, for `--help` and docs/cli.md. */
  readonly description?: string;
  readonly args?: readonly ArgSpec[];
  readonly options?: readonly OptionSpec[];
  /** Verbs under this command (`leash keys rotate`). A command may have both verbs and `run` (`leash demo`, `leash demo token`). */
  readonly commands?: readonly CommandSpec[];
  /** What its exit codes mean, when more than the common 0 ok, 1 failure, 2 usage. */
  readonly exit?: string;
  readonly run?: CommandRun;
}

/** Where a command writes and what it reads from its environment; tests pass their own. */
export interface CliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** HTTP for commands that call Leash (tests may route it); globalThis.fetch otherwise. */
  readonly fetch?: typeof fetch;
}

export const processIo: CliIo = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s), env: process.env };

/** A mistake on the command line: the message, the usage line, exit 2. Handlers throw it too (an unreadable --key-file). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The parsed command line of one command. */
export interface Invocation {
  /** The command's words after `leash` (`['keys', 'retire']`). */
  readonly path: readonly string[];
  /** Positional arguments, in the declared order (a variadic one takes the rest). */
  readonly args: readonly string[];
  /** An option's value, or its `env` variable's when not given. */
  string(name: string): string | undefined;
  /** Every value of a `multiple` option, in order. */
  strings(name: string): readonly string[];
  /** A boolean flag was given. */
  has(name: string): boolean;
  /** The option was on the command line (not from the environment). */
  given(name: string): boolean;
  /** A `--port`-like option: an integer from 0 to 65535 (0: any free port), or undefined when absent. */
  port(name: string): number | undefined;
}

const HELP: OptionSpec = { name: 'help', summary: 'show this help', complete: 'none' };

/** The outcome of reading a command line: run a command, or print help, the version, or a usage error. */
export type Parsed =
  | { readonly kind: 'run'; readonly spec: CommandSpec; readonly inv: Invocation }
  | { readonly kind: 'help'; readonly path: readonly string[] }
  | { readonly kind: 'version' }
  | { readonly kind: 'usage'; readonly path: readonly string[]; readonly message: string; readonly showHelp?: boolean };

export function findCommand(root: CommandSpec, path: readonly string[]): CommandSpec | undefined {
  let spec: CommandSpec | undefined = root;
  for (const word of path) spec = spec?.commands?.find((c) => c.name === word);
  return spec;
}

/** Every command of the tree (the root excluded) with its path, depth first, in declared order. */
export function allCommands(root: CommandSpec): Array<{ path: string[]; spec: CommandSpec }> {
  const found: Array<{ path: string[]; spec: CommandSpec }> = [];
  const walk = (spec: CommandSpec, path: string[]) => {
    for (const c of spec.commands ?? []) {
      found.push({ path: [...path, c.name], spec: c });
      walk(c, [...path, c.name]);
    }
  };
  walk(root, []);
  return found;
}

/** Reads `argv` against the tree: verbs first, then the command's own arguments and options. */
export function parseCommandLine(root: CommandSpec, argv: readonly string[], env: NodeJS.ProcessEnv): Parsed {
  const path: string[] = [];
  let spec = root;
  let i = 0;
  for (; i < argv.length && spec.commands; i++) {
    const word = argv[i] as string;
    const sub = spec.commands.find((c) => c.name === word);
    if (sub) {
      path.push(word);
      spec = sub;
      continue;
    }
    // `leash help keys rotate` and `leash keys help` are `--help` by another name (as in git and kubectl).
    if (word === 'help') {
      if (spec !== root) return { kind: 'help', path };
      const target = argv.slice(i + 1);
      return findCommand(root, target) ? { kind: 'help', path: target } : { kind: 'usage', path: [], message: `unknown command '${target.join(' ')}'` };
    }
    if (word === '--help' || word === '-h') return { kind: 'help', path };
    if (spec === root && word === '--version') return { kind: 'version' };
    if (spec.run) break;
    if (word.startsWith('-'))
      return { kind: 'usage', path, message: `unknown option ${optionName(word)}${spec === root ? '' : ` (put options after the verb: ${usageHead(path)} <verb> ${word.split('=')[0]} ...)`}` };
    return {
      kind: 'usage',
      path,
      message: `unknown ${spec === root ? 'command' : 'verb'} '${word}'${suggest(
        word,
        spec.commands.map((c) => c.name),
      )}`,
    };
  }
  if (!spec.run) {
    // A group without its verb: say which verbs there are.
    return spec === root ? { kind: 'help', path } : { kind: 'usage', path, message: `missing verb (one of: ${(spec.commands ?? []).map((c) => c.name).join(', ')})`, showHelp: true };
  }
  return parseLeaf(root, spec, path, argv.slice(i), env);
}

function optionName(raw: string): string {
  return raw.split('=')[0] as string;
}

function parseLeaf(root: CommandSpec, spec: CommandSpec, path: string[], rest: readonly string[], env: NodeJS.ProcessEnv): Parsed {
  const options = [...(spec.options ?? []), HELP];
  const config: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const o of options) config[o.name] = { type: o.value === undefined ? 'boolean' : 'string', ...(o.name === 'help' ? { short: 'h' } : {}) };
  // Leash has no short option but -h: a word with one leading dash is an argument (a key id is
  // base64url and may start with '-'), so it is shielded from parseArgs' short-option groups.
  const SHIELD = '\u0000';
  const shielded = rest.map((a) => (/^-[^-]/.test(a) && a !== '-h' ? SHIELD + a : a));
  const unshield = (v: string) => (v.startsWith(SHIELD) ? v.slice(1) : v);
  // Not strict: unknown options and missing values come back as tokens, and the messages are ours.
  const { tokens } = parseArgs({ args: shielded, options: config, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) return { kind: 'help', path };
  const usage = (message: string): Parsed => ({ kind: 'usage', path, message });
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positionals.push(unshield(t.value));
      continue;
    }
    if (t.kind !== 'option') continue;
    const o = options.find((x) => x.name === t.name);
    if (!o) {
      // Never echo an inline value: it may be a secret typed on the wrong flag.
      const elsewhere = siblingsWith(root, path, t.name);
      if (elsewhere.length > 0) return usage(`${t.rawName} applies to ${elsewhere.join(', ')} only`);
      return usage(
        `unknown option ${t.rawName}${suggest(
          t.name,
          options.filter((x) => !x.hidden).map((x) => x.name),
          '--',
        )}`,
      );
    }
    if (o.value === undefined) {
      if (t.inlineValue) return usage(`${t.rawName} takes no value`);
      flags.add(o.name);
      continue;
    }
    if (t.value === undefined || t.value === '') return usage(`--${o.name} needs a value`);
    const v = unshield(t.value);
    const list = values.get(o.name) ?? [];
    if (list.length > 0 && !o.multiple) return usage(`--${o.name} given more than once`);
    if (o.choices && !o.choices.includes(v)) return usage(`--${o.name} must be ${orList(o.choices)} (got '${v}')`);
    values.set(o.name, [...list, v]);
  }
  const args = spec.args ?? [];
  const variadic = args.at(-1)?.variadic === true;
  if (!variadic && positionals.length > args.length) return usage(`unexpected argument '${positionals[args.length] as string}'`);
  const needed = args.filter((a) => !a.optional);
  if (positionals.length < needed.length) return usage(`needs a <${(needed[positionals.length] as ArgSpec).name}>`);
  for (const [n, a] of args.entries()) {
    const given = a.variadic ? positionals.slice(n) : positionals[n] === undefined ? [] : [positionals[n] as string];
    const bad = a.choices ? given.find((v) => !a.choices!.includes(v)) : undefined;
    if (bad !== undefined) return usage(`<${a.name}> must be ${orList(a.choices!)} (got '${bad}')`);
  }
  const value = (name: string): string | undefined => {
    const o = options.find((x) => x.name === name);
    if (!o) throw new TypeError(`${usageHead(path)} has no option --${name}`);
    return values.get(name)?.[0] ?? (o.env ? env[o.env] || undefined : undefined);
  };
  const missing = (spec.options ?? []).filter((o) => o.required && value(o.name) === undefined);
  if (missing.length === 1 && missing[0]?.missing) return usage(missing[0].missing);
  if (missing.length > 0) return usage(`missing ${missing.map((o) => `--${o.name}${o.env ? ` (or $${o.env})` : ''}`).join(', ')}`);
  const inv: Invocation = {
    path,
    args: positionals,
    string: value,
    strings: (name) => values.get(name) ?? [],
    has: (name) => flags.has(name),
    given: (name) => values.has(name) || flags.has(name),
    port: (name) => {
      const v = value(name);
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v) || Number(v) > 65535) throw new UsageError(`--${name} must be an integer from 0 to 65535 (got '${v}')`);
      return Number(v);
    },
  };
  return { kind: 'run', spec, inv };
}

/** The verbs next to this one that take the option (`--force applies to rotate only`). */
function siblingsWith(root: CommandSpec, path: readonly string[], option: string): string[] {
  const parent = findCommand(root, path.slice(0, -1));
  if (!parent || path.length === 0) return [];
  return (parent.commands ?? []).filter((c) => c.name !== path.at(-1) && (c.options ?? []).some((o) => o.name === option && !o.hidden)).map((c) => c.name);
}

function orList(items: readonly string[]): string {
  return items.length === 1 ? (items[0] as string) : `${items.slice(0, -1).join(', ')} or ${items.at(-1) as string}`;
}

/** `(did you mean rotate?)` for a near miss: a shared prefix or one edit away. */
function suggest(word: string, names: readonly string[], prefix = ''): string {
  const w = word.replace(/^-+/, '');
  const near = names.find((n) => (w.length >= 3 && n.startsWith(w)) || editDistance(n, w) <= 1 + Number(w.length > 6));
  return near ? ` (did you mean ${prefix}${near}?)` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const keep = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = keep;
    }
  }
  return row[b.length] as number;
}

function usageHead(path: readonly string[]): string {
  return ['leash', ...path].join(' ');
}

/** `leash keys revoke <kid> --reason <text> [options]`: the one-line synopsis. */
export function synopsis(path: readonly string[], spec: CommandSpec): string[] {
  const lines: string[] = [];
  if (spec.run) {
    const parts = [usageHead(path)];
    for (const a of spec.args ?? []) parts.push(`${a.optional ? '[' : ''}<${a.name}>${a.variadic ? '...' : ''}${a.optional ? ']' : ''}`);
    for (const o of spec.options ?? []) if (o.required && !o.hidden) parts.push(`--${o.name} <${o.value ?? ''}>`);
    if ((spec.options ?? []).some((o) => !o.required && !o.hidden)) parts.push('[options]');
    lines.push(parts.join(' '));
  }
  if (spec.commands) lines.push(`${usageHead(path)} <${path.length === 0 ? 'command' : 'verb'}> [options]`);
  return lines;
}

function optionLabel(o: OptionSpec): string {
  return `${o.name === 'help' ? '-h, ' : ''}--${o.name}${o.value === undefined ? '' : ` <${o.value}>`}`;
}

function optionText(o: OptionSpec): string {
  const notes: string[] = [];
  if (o.choices) notes.push(`one of: ${o.choices.join(', ')}`);
  if (o.required) notes.push(o.env ? `required, or $${o.env}` : 'required');
  else if (o.env) notes.push(`default: $${o.env}`);
  if (o.multiple) notes.push('may repeat');
  return `${o.summary}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
}

/** A paragraph cut into lines of at most `width` (a word longer than that stays whole). */
function wrap(text: string, width = 100, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const w of text.split(' ')) {
    if (line !== '' && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else line = line === '' ? indent + w : `${line} ${w}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** Two columns, the second wrapped at `width`, as every section of a help text is laid out. */
function columns(rows: ReadonlyArray<readonly [string, string]>, width = 100): string[] {
  const left = Math.min(28, Math.max(...rows.map(([l]) => l.length)) + 2);
  const indent = ' '.repeat(left + 2);
  const lines: string[] = [];
  for (const [label, text] of rows) {
    // A label wider than the column gets a line of its own.
    if (label.length > left - 2) lines.push(`  ${label}`, ...wrap(text, width, indent));
    else {
      const [first, ...rest] = wrap(text, width - left - 2);
      lines.push(`  ${label.padEnd(left)}${first ?? ''}`, ...rest.map((l) => indent + l));
    }
  }
  return lines;
}

/** The `--help` text of a command (the root when `path` is empty). */
export function formatHelp(root: CommandSpec, path: readonly string[]): string {
  const spec = findCommand(root, path);
  if (!spec) throw new TypeError(`no command ${path.join(' ')}`);
  const [first, ...more] = synopsis(path, spec);
  const out: string[] = [`usage: ${first ?? ''}`, ...more.map((l) => `       ${l}`), ''];
  out.push(...wrap(spec.description ?? `${spec.summary.charAt(0).toUpperCase()}${spec.summary.slice(1)}.`), '');
  if (spec.commands) {
    out.push(path.length === 0 ? 'commands:' : 'verbs:', ...columns(spec.commands.map((c) => [c.name, c.summary])), '');
  }
  if (spec.args && spec.args.length > 0) {
    out.push('arguments:', ...columns(spec.args.map((a) => [`<${a.name}>`, `${a.summary}${a.choices ? ` (one of: ${a.choices.join(', ')})` : ''}`])), '');
  }
  const options = [...(spec.run ? (spec.options ?? []) : []), ...(path.length === 0 ? [{ name: 'version', summary: 'print the version of leash-broker' }] : []), HELP].filter((o) => !o.hidden);
  out.push('options:', ...columns(options.map((o) => [optionLabel(o), optionText(o)])), '');
  if (spec.commands) out.push(`Run '${usageHead(path)} <${path.length === 0 ? 'command' : 'verb'}> --help' for its arguments and options.`);
  out.push(...wrap(`exit status: ${spec.exit ?? '0 done, 1 failed, 2 usage error'}`));
  return `${out.join('\n')}\n`;
}

/** What a usage error prints: the problem, the synopsis, and where the whole help is. */
export function formatUsageError(root: CommandSpec, path: readonly string[], message: string, showHelp = false): string {
  if (showHelp) return `${usageHead(path)}: ${message}\n\n${formatHelp(root, path)}`;
  const spec = findCommand(root, path) ?? root;
  const lines = synopsis(path, spec);
  return `${usageHead(path)}: ${message}\nusage: ${lines.join(`\n       `)}\nRun '${usageHead(path)} --help' for more.\n`;
}
