import { ConfigError, type ConfigProblem } from '../../src/config/config-error.js';
import { parseConfig } from '../../src/config/load.js';

/** The smallest valid config: one trusted issuer, one plugin with one grant. A fresh copy each call. */
export function minimalConfig(): Record<string, any> {
  return {
    version: 1,
    trusted_issuers: [{ name: 'cluster', kind: 'kubernetes', issuer: 'https://k8s.example.com', audience: 'leash', jwks: { file: 'cluster.jwks.json' } }],
    plugins: [
      {
        id: 'crm-reader',
        owner: 'team-crm@example.com',
        risk: 'low',
        bindings: [{ issuer: 'cluster', subject: 'system:serviceaccount:plugins:crm-reader' }],
        grants: [{ audience: 'https://crm.example.com/api', scopes: ['contacts:read', 'contacts:search'], effect: 'read' }],
      },
    ],
  };
}

/** The problems parseConfig reports for `input`; fails the test if it does not throw a ConfigError. */
export function problemsOf(input: unknown): readonly ConfigProblem[] {
  try {
    parseConfig(input);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

export function patched(patch: (cfg: Record<string, any>) => void): Record<string, any> {
  const cfg = minimalConfig();
  patch(cfg);
  return cfg;
}
