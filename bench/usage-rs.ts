/**
 * A resource server for the usage benchmark: express, requireLeashToken with the verifier
 * against the Leash child, and (with `usage`) createUsageReporter reporting every call to
 * it (or to `usageUrl`). Announces its URL on stdout like the servers of bench/run.ts.
 */
import express from 'express';
import { createLeashVerifier, createUsageReporter, requireLeashToken } from '../src/client/index.js';
import { freePort } from '../test/support/net.js';
import { announceReady, onShutdown } from './protocol.js';

interface RsInput {
  readonly issuer: string;
  readonly audience: string;
  readonly usage: boolean;
  /** Where reports go instead of the issuer (bench/usage.ts's sink). */
  readonly usageUrl?: string;
  readonly clientId: string;
  readonly secret: string;
  /** The reporter's transport: its node:http default, or globalThis.fetch (to compare). */
  readonly transport?: 'node' | 'fetch';
}

async function main(): Promise<void> {
  const input = JSON.parse(process.env.LEASH_BENCH_RS ?? '{}') as RsInput;
  const verifier = createLeashVerifier({ issuer: input.issuer, audience: input.audience });
  const reporter = input.usage
    ? createUsageReporter({
        issuer: input.issuer,
        ...(input.usageUrl ? { usageUrl: input.usageUrl } : {}),
        clientId: input.clientId,
        clientSecret: input.secret,
        batchSize: 100,
        maxQueue: 100_000,
        ...(input.transport === 'fetch' ? { fetch: globalThis.fetch } : {}),
      })
    : undefined;
  const app = express();
  app.get('/contacts/:id', requireLeashToken(verifier, reporter ? { usage: reporter } : {}), (req, res) => {
    res.json({ id: req.params.id, name: 'Ada Lovelace', email: 'ada@example.com' });
  });
  const port = await freePort();
  const server = app.listen(port, '127.0.0.1');
  server.keepAliveTimeout = 65_000;
  onShutdown(async () => {
    await reporter?.close();
    server.close();
  });
  process.on('SIGUSR2', () => {
    process.stderr.write(`reporter ${JSON.stringify(reporter?.stats() ?? {})}\n`);
  });
  announceReady({ url: `http://127.0.0.1:${port}`, task: '', clientId: input.clientId, resource: input.audience });
}

main().catch((err: unknown) => {
  process.stderr.write(`usage rs failed: ${String(err)}\n`);
  process.exit(1);
});
