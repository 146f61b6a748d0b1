import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { checkLayering, pictureInDoc, readLayers, renderPicture, REPO_ROOT, type LayerProblem } from '../../tools/layers.js';

const show = (problems: readonly LayerProblem[]): string[] => problems.map((p) => `${p.rule}: ${p.from}${p.to ? ` → ${p.to}` : ''} (${p.message})`);

describe('the layers of src/', () => {
  it('hold: no import of a layer above, no cycle between units, every unit in one layer', async () => {
    expect(show(await checkLayering())).toEqual([]);
  });

  it('are the picture in docs/architecture.md (npm run architecture redraws it)', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs/architecture.md'), 'utf8');
    expect(pictureInDoc(doc)).toBe(renderPicture(readLayers()));
  });
});

/**
 * A copy of src/ with imports put back that the layering refactor removed (or that would
 * break it the same way), each of which the check must refuse: the four named in the
 * refactor issue, and one per other kind of rule. Type-only imports on purpose: they count.
 */
describe('the check refuses, in a copy of src/', () => {
  let root: string;
  let problems: LayerProblem[];

  const inject = (file: string, line: string): void => appendFileSync(join(root, file), `\n${line}\n`);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'leash-layers-'));
    cpSync(join(REPO_ROOT, 'src'), join(root, 'src'), { recursive: true });
    cpSync(join(REPO_ROOT, 'tsconfig.json'), join(root, 'tsconfig.json'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
    // The four imports that tied 16 of 21 folders into one cycle.
    inject('src/config/semantic.ts', "import type { CredentialIssuer } from '../issuance/credential-issuer.js';");
    inject('src/policy/grants.ts', "import type { CredentialIssuer } from '../issuance/credential-issuer.js';");
    inject('src/store/sqlite/sqlite-store.ts', "import type { ChainVerdict } from '../../audit/chain.js';");
    inject('src/revocation/feed/set-push.ts', "import type { ResourceServerAuthenticator } from '../../http/oauth/client-auth.js';");
    // One store backend reaching into another (the Redis store once imported sqlite/), and shared/ into a backend.
    inject('src/store/redis/tasks.ts', "import type { SqliteHandle } from '../sqlite/handle.js';");
    inject('src/store/shared/retention.ts', "import type { RedisConnection } from '../redis/connection.js';");
    // The SDK importing the broker, a package at run time, another package's types.
    inject('src/client/verifier.ts', "import type { Clock } from '../time/clock.js';");
    inject('src/client/plugin-client.ts', "import 'express';");
    inject('src/client/replay-memory.ts', "import type { Redis } from 'ioredis';");
    inject('src/client/errors.ts', "import type { Log } from 'sarif';");
    // An optional peer of the SDK loaded at module load instead of with import().
    inject('src/client/chain-jti.ts', "import '@aws-sdk/client-sts';");
    // The SDK core reaching for its MCP helpers (the MCP SDK is an optional peer).
    inject('src/client/htu.ts', "import '@modelcontextprotocol/sdk/client/auth.js';");
    // A domain folder serving HTTP; src/ reaching into test/; a folder in no layer.
    inject('src/tasks/task-service.ts', "import type { Router } from 'express';");
    mkdirSync(join(root, 'test'));
    writeFileSync(join(root, 'test/probe.ts'), 'export const probe = 1;\n');
    inject('src/quotas/quotas.ts', "import { probe } from '../../test/probe.js';");
    inject('src/time/backoff.ts', "import '../nowhere.js';");
    mkdirSync(join(root, 'src/unlisted'));
    writeFileSync(join(root, 'src/unlisted/probe.ts'), 'export const probe = 1;\n');
    problems = await checkLayering(root);
  }, 60_000);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const refused = (rule: string, from: string, to?: RegExp | string): void => {
    const hit = problems.some((p) => p.rule === rule && p.from === from && (to === undefined || (typeof to === 'string' ? p.to === to : to.test(p.to ?? ''))));
    if (!hit) throw new Error(`expected ${rule}: ${from} → ${String(to)}; the check said:\n${show(problems).join('\n')}`);
  };

  it('config/semantic.ts → issuance/ (a foundation folder importing the domain)', () => {
    refused('layer-foundation', 'src/config/semantic.ts', 'src/issuance/credential-issuer.ts');
  });

  it('policy/grants.ts → issuance/ (a cycle: issuance imports policy)', () => {
    refused('no-unit-cycle', 'src/policy/grants.ts', 'src/issuance/credential-issuer.ts');
  });

  it('store/*-store.ts → audit/chain.ts (the store importing the domain)', () => {
    refused('layer-foundation', 'src/store/sqlite/sqlite-store.ts', 'src/audit/chain.ts');
  });

  it('store/redis → store/sqlite, store/shared → a backend (backends share only store/shared/)', () => {
    refused('store-backends-apart', 'src/store/redis/tasks.ts', 'src/store/sqlite/handle.ts');
    refused('store-backends-apart', 'src/store/shared/retention.ts', 'src/store/redis/connection.ts');
  });

  it('revocation/feed → http/oauth/client-auth.ts (the domain importing the entry layer)', () => {
    refused('layer-domain', 'src/revocation/feed/set-push.ts', 'src/http/oauth/client-auth.ts');
  });

  it('the SDK importing the broker, or any package but jose at run time (an optional peer only with import()), or types but express', () => {
    refused('layer-sdk', 'src/client/verifier.ts', 'src/time/clock.ts');
    refused('sdk-runs-on-jose-alone', 'src/client/plugin-client.ts', /node_modules\/express\//);
    refused('sdk-types-of-jose-and-express', 'src/client/replay-memory.ts', /node_modules\/ioredis\//);
    refused('sdk-runs-on-jose-alone', 'src/client/errors.ts', 'sarif');
    refused('sdk-optional-peers-load-lazily', 'src/client/chain-jti.ts', /node_modules\/@aws-sdk\/client-sts\//);
    refused('sdk-mcp-helpers-only-on-request', 'src/client/htu.ts', /@modelcontextprotocol\/sdk\//);
  });

  it('express below the entry layer, src/ importing test/, an import that resolves nowhere, a folder in no layer', () => {
    refused('http-stays-in-the-entry-layer', 'src/tasks/task-service.ts', /node_modules\/(@types\/)?express\//);
    refused('src-not-to-tests-or-bench', 'src/quotas/quotas.ts', 'test/probe.ts');
    refused('resolvable', 'src/time/backoff.ts', '../nowhere.js');
    refused('unit-unassigned', 'src/unlisted');
  });
});
