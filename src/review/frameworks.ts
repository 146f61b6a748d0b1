/**
 * The three frameworks findings are mapped to, with their published ids and names (not
 * paraphrased). docs/review.md prints these tables and cites the sources.
 */

export const NHI_SOURCE = 'https://owasp.org/www-project-non-human-identities-top-10/2025/top-10-2025';
export const ASI_SOURCE = 'https://genai.owasp.org/resource/owasp-top-10-for-agentic-applications-for-2026/';
export const MAESTRO_SOURCE = 'https://cloudsecurityalliance.org/blog/2025/02/06/agentic-ai-threat-modeling-framework-maestro';

/** OWASP Top 10 Non-Human Identities Risks – 2025. */
export const NHI = {
  NHI1: 'Improper Offboarding',
  NHI2: 'Secret Leakage',
  NHI3: 'Vulnerable Third-Party NHI',
  NHI4: 'Insecure Authentication',
  NHI5: 'Overprivileged NHI',
  NHI6: 'Insecure Cloud Deployment Configurations',
  NHI7: 'Long-Lived Secrets',
  NHI8: 'Environment Isolation',
  NHI9: 'NHI Reuse',
  NHI10: 'Human Use of NHI',
} as const;

/** OWASP Top 10 for Agentic Applications 2026. */
export const ASI = {
  ASI01: 'Agent Goal Hijack',
  ASI02: 'Tool Misuse and Exploitation',
  ASI03: 'Identity and Privilege Abuse',
  ASI04: 'Agentic Supply Chain Vulnerabilities',
  ASI05: 'Unexpected Code Execution (RCE)',
  ASI06: 'Memory & Context Poisoning',
  ASI07: 'Insecure Inter-Agent Communication',
  ASI08: 'Cascading Failures',
  ASI09: 'Human-Agent Trust Exploitation',
  ASI10: 'Rogue Agents',
} as const;

/** CSA MAESTRO's seven layers (L6 cuts across the others). */
export const MAESTRO = {
  L1: 'Foundation Models',
  L2: 'Data Operations',
  L3: 'Agent Frameworks',
  L4: 'Deployment and Infrastructure',
  L5: 'Evaluation and Observability',
  L6: 'Security and Compliance',
  L7: 'Agent Ecosystem',
} as const;

export type NhiId = keyof typeof NHI;
export type AsiId = keyof typeof ASI;
export type MaestroId = keyof typeof MAESTRO;

export interface Mappings {
  readonly nhi: readonly NhiId[];
  readonly asi: readonly AsiId[];
  readonly maestro: readonly MaestroId[];
}

/** `NHI5:2025 Overprivileged NHI`, `ASI03 Identity and Privilege Abuse`, `MAESTRO L3 Agent Frameworks`. */
export function mappingLabels(m: Mappings): string[] {
  return [...m.nhi.map((id) => `${id}:2025 ${NHI[id]}`), ...m.asi.map((id) => `${id} ${ASI[id]}`), ...m.maestro.map((id) => `MAESTRO ${id} ${MAESTRO[id]}`)];
}
