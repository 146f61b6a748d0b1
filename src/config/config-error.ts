/** One problem in a configuration file, with the JSON-pointer-like path where it is. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
  /** The guardrail's id, when the problem is a guardrail violation. */
  readonly guardrail?: string;
}

/** Every problem found, reported at once. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  ${p.path || '/'}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
