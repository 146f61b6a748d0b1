/**
 * Transit signing latency as Leash sees it: sequential JWS signs through the real client
 * (node-vault over loopback HTTP) against the Vault contract server, which signs with
 * node:crypto. A real Vault adds its own request handling, storage and network hops on
 * top; this is the floor of what the vault-transit backend costs per token.
 */
import { createHash } from 'node:crypto';
import { createVaultClient } from '../src/vault/node-vault-client.js';

export interface SignLatency {
  readonly signs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
}

export async function measureTransitSign(vault: { url: string; rootToken: string }, signs = 1000): Promise<SignLatency> {
  const client = createVaultClient({ address: vault.url, timeoutMs: 5000, token: () => vault.rootToken });
  const key = `bench-${Date.now()}`;
  await client.transitCreateKey('transit', key, 'ecdsa-p256');
  // A signing input of a typical Leash token's size.
  const input = Buffer.from(`${'x'.repeat(360)}.${createHash('sha256').update(key).digest('base64url')}`, 'ascii');
  for (let i = 0; i < 50; i++) await client.transitSign('transit', key, 1, input, 'ecdsa-p256');
  const samples: number[] = [];
  for (let i = 0; i < signs; i++) {
    const t0 = performance.now();
    await client.transitSign('transit', key, 1, input, 'ecdsa-p256');
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] as number;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return { signs, p50Ms: round(at(0.5)), p99Ms: round(at(0.99)), meanMs: round(samples.reduce((a, b) => a + b, 0) / samples.length) };
}
