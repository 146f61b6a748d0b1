import { describe, expect, it } from '@jest/globals';
import { parseConfig } from '../../src/config/load.js';
import { patched, problemsOf } from '../config/fixtures.js';

/** Config rules of approvals and step-up that the JSON Schema cannot express. */
describe('approval and step-up config rules', () => {
  it('approval step-up without a step_up block is accepted (defaults apply)', () => {
    const cfg = parseConfig(patched((c) => (c.plugins[0].grants[0].approval = 'step-up')));
    expect(cfg.plugins[0]!.grants[0]!.approval).toBe('step-up');
  });

  it('a step_up block that asks for nothing is refused', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].grants[0].step_up = {})))).toEqual([{ path: '/plugins/0/grants/0/step_up', message: expect.stringMatching(/asks for nothing/) }]);
  });

  it('step-up DPoP only on credentials that can be bound to a key', () => {
    const problems = problemsOf(
      patched((c) => {
        Object.assign(c.plugins[0].grants[0], {
          kind: 'aws-sts',
          step_up: { dpop: true },
          aws: { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] },
        });
      }),
    );
    expect(problems).toEqual([{ path: '/plugins/0/grants/0/step_up/dpop', message: expect.stringMatching(/cannot be sender-constrained/) }]);
  });

  it('the webhook is http(s), and https in production', () => {
    expect(problemsOf(patched((c) => (c.settings = { ...c.settings, approvals: { webhook: { url: 'ftp://hooks.example.com/x' } } })))).toEqual([
      { path: '/settings/approvals/webhook/url', message: 'must be an http:// or https:// URL' },
    ]);
    const prod = problemsOf(
      patched((c) => {
        c.settings = { ...c.settings, issuer: 'https://leash.example.com', production: true, approvals: { webhook: { url: 'http://hooks.example.com/x', format: 'slack' } } };
      }),
    );
    expect(prod).toContainEqual({ path: '/settings/approvals/webhook/url', message: expect.stringMatching(/must be an https:\/\/ URL when settings.production/) });
  });
});
