import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';

const leash = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000 });

describe('leash validate: CEL conditions and identity rules', () => {
  it('reports every CEL expression that does not check, with its path, and exits 1', () => {
    const run = leash(['validate', 'test/cli/fixtures/cel-policy.yaml']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("/plugins/0/grants/0/conditions/1/expr: unknown variable 'workload.claim.ref'");
    expect(run.stderr).toMatch(/\/plugins\/0\/grants\/0\/conditions\/2\/expr: may cost up to [\d,]+ units, above the limit of 5,000/);
    expect(run.stderr).not.toContain('conditions/0');
  }, 60000);

  it('refuses a gitlab binding any project matches, and gitlab.com under the generic oidc kind', () => {
    const run = leash(['validate', 'test/cli/fixtures/gitlab-any-project.yaml']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('/plugins/0/bindings/0: a gitlab binding must pin the project and constrain the ref');
    expect(run.stderr).toContain("/trusted_issuers/1/kind: 'oidc' cannot be used for https://gitlab.com");
  }, 60000);
});
