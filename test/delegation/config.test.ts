import { describe, expect, it } from '@jest/globals';
import { parseConfig } from '../../src/config/load.js';
import { patched, problemsOf } from '../config/fixtures.js';

const second = {
  id: 'summarizer',
  owner: 'team-ai@example.com',
  risk: 'low',
  bindings: [{ issuer: 'cluster', subject: 'system:serviceaccount:plugins:summarizer' }],
  grants: [{ audience: 'https://crm.example.com/api', scopes: ['contacts:read'], effect: 'read' }],
};

describe('delegation config', () => {
  it('accepts delegate_to naming another plugin, and delegation settings with defaults', () => {
    const cfg = parseConfig(
      patched((c) => {
        c.plugins[0].delegate_to = ['summarizer'];
        c.plugins.push(second);
      }),
    );
    expect(cfg.plugins[0]!.delegate_to).toEqual(['summarizer']);
    expect(cfg.plugins[1]!.delegate_to).toEqual([]);
    expect(cfg.settings.delegation).toEqual({ max_depth: 3, toxic_combinations: [{ upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'deny' }] });
  });

  it('refuses delegate_to naming an unknown plugin or the plugin itself, at the exact path', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].delegate_to = ['ghost'])))).toEqual([{ path: '/plugins/0/delegate_to/0', message: "names no plugin: 'ghost'" }]);
    expect(problemsOf(patched((c) => (c.plugins[0].delegate_to = ['crm-reader'])))).toEqual([{ path: '/plugins/0/delegate_to/0', message: 'a plugin cannot delegate to itself' }]);
  });

  it('refuses an out-of-range max_depth and an unknown toxic effect', () => {
    expect(problemsOf(patched((c) => (c.settings = { delegation: { max_depth: 0 } }))).map((p) => p.path)).toContain('/settings/delegation/max_depth');
    expect(problemsOf(patched((c) => (c.settings = { delegation: { toxic_combinations: [{ upstream: 'read-secret', downstream: 'exfiltrate' }] } }))).map((p) => p.path)).toContain(
      '/settings/delegation/toxic_combinations/0/upstream',
    );
  });
});
