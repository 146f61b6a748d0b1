import { describe, expect } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';

/**
 * The chart tests' renderer: charts/tools/render (Go text/template + sprig + Helm's own
 * functions; no helm binary exists for Debian or npm), built once per test file into a
 * temp folder, and helpers to read what it renders.
 */

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const CHART = join(ROOT, 'charts/leash');
export const RENDER_SRC = join(ROOT, 'charts/tools/render');
const GO_HINT = 'the Go toolchain was not found (Debian: apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-github-masterminds-semver-dev golang-gopkg-yaml.v2-dev)';

// GOPATH mode over Debian's packaged Go sources: no module download is needed (or possible).
export const GO_ENV = { ...process.env, GO111MODULE: 'off', GOPATH: process.env.LEASH_GOPATH ?? '/usr/share/gocode', GOFLAGS: '', GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'leash-go-cache') };

export function goAvailable(): boolean {
  const found = spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
  if (found) return true;
  if (process.env.CI) throw new Error(`chart tests: ${GO_HINT} (CI is set, so the suite fails instead of skipping)`);
  process.stderr.write(`[skip] chart tests: ${GO_HINT}\n`);
  return false;
}

export const describeChart: typeof describe.skip = goAvailable() ? describe : describe.skip;

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };
export type Container = {
  args: string[];
  ports: { name: string; containerPort: number; protocol: string }[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  envFrom?: { secretRef: { name: string } }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string } };
  lifecycle?: { preStop: { exec: { command: string[] } } };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
};
export type PodSpec = {
  securityContext: Record<string, unknown>;
  automountServiceAccountToken: boolean;
  serviceAccountName: string;
  containers: Container[];
  volumes: { name: string; [k: string]: unknown }[];
  topologySpreadConstraints?: Record<string, unknown>[];
};

export interface Rendered {
  readonly objects: K8sObject[];
  readonly text: string;
  readonly values: Record<string, unknown>;
}

export interface RenderRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly valuesOut: string;
}

/** The renderer binary and its scratch folder (values files, merged values, test state). */
export class ChartRenderer {
  private seq = 0;
  private constructor(
    readonly work: string,
    private readonly binary: string,
  ) {}

  static build(): ChartRenderer {
    const work = mkdtempSync(join(tmpdir(), 'leash-chart-'));
    const binary = join(work, 'render');
    execFileSync('go', ['build', '-o', binary, '.'], { cwd: RENDER_SRC, env: GO_ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    return new ChartRenderer(work, binary);
  }

  /** Runs the renderer over values files (each a values object, later wins); never throws. */
  run(values: unknown[], extra: string[] = []): RenderRun {
    const valuesOut = join(this.work, `merged-${++this.seq}.json`);
    const args = [...values.flatMap((v) => ['-f', this.valuesFile(v)]), '--values-out', valuesOut, ...extra, CHART];
    const r = spawnSync(this.binary, args, { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, valuesOut };
  }

  /** Renders, expecting success, and parses every manifest. */
  render(values: unknown[], extra: string[] = []): Rendered {
    const r = this.run(values, extra);
    if (r.status !== 0) throw new Error(`render failed: ${r.stderr}`);
    const objects = parseAllDocuments(r.stdout).map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS() as K8sObject;
    });
    return { objects, text: r.stdout, values: JSON.parse(readFileSync(r.valuesOut, 'utf8')) as Record<string, unknown> };
  }

  close(): void {
    rmSync(this.work, { recursive: true, force: true });
  }

  private valuesFile(values: unknown): string {
    const path = join(this.work, `values-${++this.seq}.yaml`);
    writeFileSync(path, stringify(values));
    return path;
  }
}

export const only = (r: Rendered, kind: string): K8sObject => {
  const found = r.objects.filter((o) => o.kind === kind);
  expect(found).toHaveLength(1);
  return found[0]!;
};
export const podSpec = (r: Rendered): PodSpec => (only(r, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;
export const leashConfigText = (r: Rendered): string => (only(r, 'ConfigMap').data as Record<string, string>)['leash.yaml']!;

/** Kubernetes' OpenAPI schemas (kubernetes-models): types, required fields, enums. They allow unknown fields. */
export const K8S_MODELS: Record<string, (o: unknown) => void> = {
  'apps/v1/Deployment': (o) => new Deployment(o as never).validate(),
  'v1/ConfigMap': (o) => new ConfigMap(o as never).validate(),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o as never).validate(),
  'v1/Service': (o) => new Service(o as never).validate(),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as never).validate(),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as never).validate(),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o as never).validate(),
  'networking.k8s.io/v1/Ingress': (o) => new Ingress(o as never).validate(),
};

/** Validates every rendered object but the ServiceMonitor (a CRD) against K8S_MODELS; returns how many were checked. */
export function validateK8s(r: Rendered): number {
  let checked = 0;
  for (const o of r.objects) {
    if (o.apiVersion === 'monitoring.coreos.com/v1') continue; // a CRD: not in kubernetes-models' core set
    const validate = K8S_MODELS[`${o.apiVersion}/${o.kind}`];
    expect([`${o.apiVersion}/${o.kind}`, validate]).toEqual([`${o.apiVersion}/${o.kind}`, expect.any(Function)]);
    expect(() => validate!(o)).not.toThrow();
    checked++;
  }
  return checked;
}

export const ISSUER = { config: { settings: { issuer: 'https://leash.example.com' } } };

// Secrets that must never appear in a rendered manifest: the tests put them only where a
// correct chart would not copy them (Secret names and keys are fine, values are not).
export const HA = {
  replicas: 3,
  config: {
    settings: {
      issuer: 'https://leash.example.com',
      store: { kind: 'redis', url: 'rediss://redis.leash.svc:6379', key_prefix: 'leash:' },
      keys: { backend: 'vault-kv' },
      vault: { address: 'https://vault.vault.svc:8200', auth: { method: 'kubernetes', role: 'leash' } },
    },
    admin: { api_keys: [{ id: 'orchestrator', sha256: '50c657fbae841a50725f70b19a239b0ee17b56c4855f83eb9e04411984aa13a8', roles: ['orchestrator'] }] },
    plugins: [
      {
        id: 'crm-reader',
        owner: 'team-crm@example.com',
        risk: 'low',
        bindings: [{ issuer: 'cluster', subject: 'system:serviceaccount:plugins:crm-reader' }],
        grants: [{ audience: 'https://crm.example.com/api', scopes: ['contacts:read'], effect: 'read', max_ttl: 300 }],
      },
    ],
  },
  secretEnv: { LEASH_REDIS_PASSWORD: { secretName: 'leash-redis', key: 'password' } },
  envFromSecrets: ['leash-extra'],
  networkPolicy: {
    enabled: true,
    ingressFrom: [{ namespaceSelector: { matchLabels: { 'leash/client': 'true' } } }],
    metricsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }],
  },
  serviceMonitor: { enabled: true },
};
