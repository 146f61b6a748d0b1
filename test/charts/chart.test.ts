import { expect, it, beforeAll, afterAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse, stringify } from 'yaml';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { freePort, loadedFrom } from '../support/broker.js';
import { redisAvailable, startRedis } from '../support/redis.js';
import { startVaultContract } from '../support/vault-contract.js';
import { waitFor } from '../support/wait.js';
import { CHART, ChartRenderer, GO_ENV, HA, ISSUER, K8S_MODELS, RENDER_SRC, ROOT, describeChart, goAvailable, leashConfigText, only, podSpec, validateK8s } from './render.js';
import type { K8sObject, Rendered } from './render.js';

/**
 * The Helm chart, rendered without helm (none exists for Debian or npm) by the small Go
 * renderer in charts/tools/render (text/template + sprig + Helm's own functions), then
 * checked: the objects and their hardening, no secret inlined, the config checksum, and the
 * ConfigMap's Leash config through Leash's own validator and policy compiler.
 */

let chart: ChartRenderer | undefined;
let work: string;
const run = (values: unknown[], extra: string[] = []) => chart!.run(values, extra);
const render = (values: unknown[], extra: string[] = []): Rendered => chart!.render(values, extra);

beforeAll(() => {
  if (!goAvailable()) return;
  chart = ChartRenderer.build();
  work = chart.work;
}, 180_000);

afterAll(() => {
  chart?.close();
});

describeChart('Helm chart: values and metadata', () => {
  it("the renderer's own tests pass (go test: include, tpl, toYaml, values merge, fail, required, kubeVersion)", () => {
    const r = spawnSync('go', ['test', '-count=1', '.'], { cwd: RENDER_SRC, env: GO_ENV, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/^ok\s/m);
    expect(r.status).toBe(0);
  }, 120_000);

  it('Chart.yaml is apiVersion v2 and its appVersion is package.json version', () => {
    const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, string>;
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart.apiVersion).toBe('v2');
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('values.schema.json is current: its config is schemas/leash-config.schema.json (run node charts/tools/values-schema.mjs)', () => {
    const base = JSON.parse(readFileSync(join(ROOT, 'charts/tools/values-schema.base.json'), 'utf8')) as { properties: Record<string, unknown> };
    const { $schema: _d, $id: _i, ...config } = JSON.parse(readFileSync(join(ROOT, 'schemas/leash-config.schema.json'), 'utf8')) as Record<string, unknown>;
    const actual = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as { properties: { config: Record<string, unknown> } };
    expect(actual.properties.config).toEqual(config);
    expect({ ...actual, properties: { ...actual.properties, config: {} } }).toEqual({ ...base, properties: { ...base.properties, config: {} } });
  });

  const ajv = new Ajv({ allErrors: true, strict: false });
  // Helm's validators check `format: uri`; ajv needs it named (Leash's loader does the same).
  ajv.addFormat('uri', (v: string) => URL.canParse(v));
  const validate = ajv.compile(JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as object);

  it('values.yaml, and the merged values of every example, validate against values.schema.json', () => {
    expect(validate(parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')))).toBe(true);
    for (const v of [ISSUER, HA]) {
      const merged = render([v], ['--api-versions', 'monitoring.coreos.com/v1']).values;
      expect(validate(merged) ? [] : validate.errors).toEqual([]);
    }
  });

  it('the schema refuses what helm should refuse before rendering', () => {
    const merged = render([ISSUER]).values;
    const bad = (patch: Record<string, unknown>) => validate({ ...merged, ...patch });
    expect(bad({ replicaCount: 2 })).toBe(false); // a typo of `replicas`
    expect(bad({ secretEnv: { VAULT_TOKEN: 's.realtokenvalue' } })).toBe(false); // a literal secret
    expect(bad({ config: { ...(merged.config as object), plugins: [{ id: 'x' }] } })).toBe(false); // Leash's own schema
    expect(bad({ containerPort: 80 })).toBe(false); // needs a capability the pod drops
    expect(bad({ extraEnv: [{ name: 'A' }] })).toBe(false);
    expect(bad({ usagePort: { enabled: true, workers: -1 } })).toBe(false);
    expect(bad({ usagePort: { enabled: true, port: 8081 } })).toBe(false); // a typo of containerPort
    expect(bad({ config: { ...(merged.config as object), settings: { issuer: 'not a url' } } })).toBe(false);
  });
});

describeChart('Helm chart: single replica on SQLite', () => {
  let r: Rendered;
  beforeAll(() => {
    r = render([ISSUER]);
  });

  it('renders ConfigMap, Deployment, PVC, Service, ServiceAccount and nothing replica-only', () => {
    expect(r.objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Service', 'ServiceAccount']);
    const deployment = only(r, 'Deployment').spec as { replicas: number; strategy: { type: string } };
    expect(deployment.replicas).toBe(1);
    expect(deployment.strategy.type).toBe('Recreate');
  });

  it('probes /healthz (liveness, startup) and /readyz (readiness) on the management port, with a preStop sleep', () => {
    const c = podSpec(r).containers[0]!;
    expect(c.ports).toEqual([
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'management', containerPort: 9090, protocol: 'TCP' },
    ]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'management' });
    expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'management' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'management' });
    expect(c.lifecycle?.preStop.exec.command).toEqual(['sleep', '5']);
    // No CPU limit in the default values: one worker (the node's cores are not the pod's).
    expect(c.args).toEqual(['serve', '--config', '/etc/leash/leash.yaml', '--workers', '1']);
  });

  it('workers follow the CPU limit rounded down (at least 1), unless `workers` is set', () => {
    const workersOf = (values: Record<string, unknown>) => {
      const args = podSpec(render([ISSUER, values])).containers[0]!.args as string[];
      return args[args.indexOf('--workers') + 1];
    };
    expect(workersOf({ resources: { limits: { cpu: '2', memory: '512Mi' } } })).toBe('2');
    expect(workersOf({ resources: { limits: { cpu: 4 } } })).toBe('4');
    expect(workersOf({ resources: { limits: { cpu: '2500m' } } })).toBe('2');
    expect(workersOf({ resources: { limits: { cpu: '1500m' } } })).toBe('1');
    expect(workersOf({ resources: { limits: { cpu: '500m' } } })).toBe('1');
    expect(workersOf({ resources: { limits: { cpu: 0.5 } } })).toBe('1');
    expect(workersOf({ resources: { limits: { cpu: '2' } }, workers: 3 })).toBe('3');
  });

  it('the Service carries the API port only; the config binds the management port on the pod', () => {
    expect((only(r, 'Service').spec as { ports: unknown[] }).ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    const cfg = parse(leashConfigText(r)) as { settings: { management: unknown } };
    expect(cfg.settings.management).toEqual({ listen: { host: '0.0.0.0', port: 9090 } });
  });

  it("the shutdown fits the pod's termination grace: preStop sleep + settings.shutdown_grace < terminationGracePeriodSeconds, or the render fails", () => {
    const pod = podSpec(r) as unknown as { terminationGracePeriodSeconds: number };
    expect(pod.terminationGracePeriodSeconds).toBe(30); // 5 s preStop + 10 s default grace fit
    const tooShort = run([ISSUER, { terminationGracePeriodSeconds: 15 }]);
    expect(tooShort.status).toBe(1);
    expect(tooShort.stderr).toContain('terminationGracePeriodSeconds (15) must exceed preStopSleepSeconds (5) plus config.settings.shutdown_grace (10)');
    const longGrace = run([ISSUER, { config: { settings: { shutdown_grace: 30 } } }]);
    expect(longGrace.status).toBe(1);
    expect(longGrace.stderr).toContain('plus config.settings.shutdown_grace (30)');
    expect(render([ISSUER, { config: { settings: { shutdown_grace: 30 } }, terminationGracePeriodSeconds: 45 }]).objects.length).toBeGreaterThan(0);
    const samePort = run([ISSUER, { managementPort: 8080 }]);
    expect(samePort.status).toBe(1);
    expect(samePort.stderr).toContain('managementPort and containerPort are both 8080');
  });

  it('is hardened: non-root, read-only root, no capabilities, RuntimeDefault seccomp, tmp on an emptyDir, no API token', () => {
    const pod = podSpec(r);
    const c = pod.containers[0]!;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(c.volumeMounts.find((m) => m.mountPath === '/tmp')?.name).toBe('tmp');
    expect(pod.volumes.find((v) => v.name === 'tmp')).toHaveProperty('emptyDir');
    expect(pod.automountServiceAccountToken).toBe(false);
    // The config folder, not a subPath: a subPath mount never sees ConfigMap updates, so no hot reload.
    expect(c.volumeMounts.find((m) => m.name === 'config')).toEqual({ name: 'config', mountPath: '/etc/leash', readOnly: true });
  });

  it('keeps SQLite and the local keys on the PVC', () => {
    const pod = podSpec(r);
    expect(pod.containers[0]!.volumeMounts.find((m) => m.name === 'data')?.mountPath).toBe('/var/lib/leash');
    expect(pod.volumes.find((v) => v.name === 'data')).toEqual({ name: 'data', persistentVolumeClaim: { claimName: 'leash-data' } });
    const cfg = parse(leashConfigText(r)) as { settings: { store: { path: string }; keys: { dir: string }; listen: unknown } };
    expect(cfg.settings.store.path).toBe('/var/lib/leash/leash.db');
    expect(cfg.settings.keys.dir).toBe('/var/lib/leash/keys');
    expect(cfg.settings.listen).toEqual({ host: '0.0.0.0', port: 8080 });
  });

  it("the ConfigMap's config passes Leash's validator and policy compiler", () => {
    const config = parseConfig(parse(leashConfigText(r)));
    expect(config.settings.production).toBe(true);
    expect(compilePolicy(config).plugins.size).toBe(0);
  });

  it('the rendered config starts a real broker that answers the probe paths and /metrics, and hot-reloads a ConfigMap update', async () => {
    const dir = mkdtempSync(join(work, 'broker-'));
    const port = await freePort();
    // Only the pod's paths and port are moved (to a temp dir, a free loopback port).
    const podLocal = (x: Rendered): string => {
      const input = parse(leashConfigText(x)) as { settings: Record<string, Record<string, unknown>> };
      input.settings.store!.path = join(dir, 'leash.db');
      input.settings.keys!.dir = join(dir, 'keys');
      input.settings.listen = { host: '127.0.0.1', port };
      input.settings.management = { listen: { host: '127.0.0.1', port: 0 } };
      return stringify(input);
    };
    // The folder as the kubelet lays out a ConfigMap volume: leash.yaml -> ..data/leash.yaml,
    // ..data -> a timestamped folder; an update swaps ..data atomically.
    const mount = join(dir, 'etc-leash');
    let version = 0;
    const publish = (text: string) => {
      const ts = `..2026_11_25_00_00_0${++version}.000000001`;
      mkdirSync(join(mount, ts), { recursive: true });
      writeFileSync(join(mount, ts, 'leash.yaml'), text);
      symlinkSync(ts, join(mount, '..data_tmp'));
      renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    };
    publish(podLocal(r));
    symlinkSync('..data/leash.yaml', join(mount, 'leash.yaml'));
    const path = join(mount, 'leash.yaml');

    const { Broker } = await import('../../src/broker.js');
    const { startReloadWatch } = await import('../../src/cli/commands.js');
    const broker = await Broker.create(await loadConfigFile(path), { defaultMetrics: false, write: () => undefined, auditWrite: () => undefined });
    const watch = startReloadWatch(broker, path);
    try {
      await broker.listen(port, '127.0.0.1');
      const base = `http://127.0.0.1:${port}`;
      const management = broker.managementUrl!;
      expect((await fetch(`${management}/healthz`)).status).toBe(200);
      expect((await fetch(`${management}/readyz`)).status).toBe(200);
      const metrics = await fetch(`${management}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('leash_');
      for (const path of ['/healthz', '/readyz', '/metrics']) expect([path, (await fetch(`${base}${path}`)).status]).toEqual([path, 404]);
      expect((await fetch(`${base}/jwks`)).status).toBe(200);

      expect(broker.config.plugins).toEqual([]);
      publish(podLocal(render([ISSUER, { config: { plugins: HA.config.plugins } }])));
      await waitFor(async () => broker.config.plugins.length === 1, 10_000);
      expect(broker.config.plugins[0]!.id).toBe('crm-reader');
    } finally {
      watch.close();
      await broker.close();
    }
  });

  it('the config checksum annotation changes when, and only when, the config changes', () => {
    const sum = (x: Rendered) => (only(x, 'Deployment').spec as { template: { metadata: { annotations?: Record<string, string> } } }).template.metadata.annotations?.['checksum/config'];
    expect(sum(r)).toMatch(/^[0-9a-f]{64}$/);
    expect(sum(render([ISSUER, { service: { port: 8081 } }]))).toBe(sum(r));
    expect(sum(render([ISSUER, { config: { settings: { tokens: { default_ttl: 120 } } } }]))).not.toBe(sum(r));
    expect(sum(render([ISSUER, { rollOnConfigChange: false }]))).toBeUndefined();
  });

  it('refuses replicas > 1 on SQLite, and on local keys, with the reason', () => {
    const sqlite = run([ISSUER, { replicas: 2 }]);
    expect(sqlite.status).toBe(1);
    expect(sqlite.stderr).toContain('replicas is 2 but config.settings.store.kind is sqlite');
    expect(sqlite.stdout).toBe('');
    const localKeys = run([ISSUER, { replicas: 2, config: { settings: { store: { kind: 'redis' } } } }]);
    expect(localKeys.status).toBe(1);
    expect(localKeys.stderr).toContain('config.settings.keys.backend is local');
  });

  it('refuses to render without an issuer', () => {
    const r2 = run([]);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain('config.settings.issuer is required');
  });
});

describeChart('Helm chart: HA on Redis with Vault keys and Vault kubernetes auth', () => {
  let r: Rendered;
  beforeAll(() => {
    r = render([HA], ['--api-versions', 'monitoring.coreos.com/v1']);
  });

  it('renders the HA set: PDB, NetworkPolicy, ServiceMonitor and its metrics Service, no PVC, rolling updates', () => {
    expect(r.objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount', 'ServiceMonitor']);
    const spec = only(r, 'Deployment').spec as { replicas: number; strategy: { type: string; rollingUpdate: unknown } };
    expect(spec.replicas).toBe(3);
    expect(spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    expect(only(r, 'PodDisruptionBudget')).toMatchObject({ apiVersion: 'policy/v1', spec: { minAvailable: 1 } });
    expect(podSpec(r).volumes.map((v) => v.name)).not.toContain('data');
  });

  it('Prometheus scrapes the management port through a Service of its own, never the API Service', () => {
    const monitor = only(r, 'ServiceMonitor') as K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: unknown[] } };
    expect(monitor).toMatchObject({ apiVersion: 'monitoring.coreos.com/v1', spec: { endpoints: [{ port: 'management', path: '/metrics' }] } });
    const services = r.objects.filter((o) => o.kind === 'Service') as (K8sObject & { metadata: { labels: Record<string, string> }; spec: { type: string; ports: { name: string }[] } })[];
    const selected = services.filter((svc) => Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels[k] === v));
    expect(selected.map((svc) => svc.metadata.name)).toEqual(['leash-metrics']);
    expect(selected[0]!.spec).toMatchObject({ type: 'ClusterIP', ports: [{ name: 'management', port: 9090, targetPort: 'management' }] });
    const api = services.find((svc) => svc.metadata.name === 'leash')!;
    expect(api.spec.ports.map((p) => p.name)).toEqual(['http']);
  });

  it('the NetworkPolicy admits clients to the API port and, in a rule of its own, Prometheus to the management port', () => {
    const ingress = (only(r, 'NetworkPolicy').spec as { ingress: { ports: { port: string }[]; from: unknown[] }[] }).ingress;
    expect(ingress).toEqual([
      { ports: [{ port: 'http', protocol: 'TCP' }], from: HA.networkPolicy.ingressFrom },
      { ports: [{ port: 'management', protocol: 'TCP' }], from: HA.networkPolicy.metricsFrom },
    ]);
    // No metricsFrom: no pod may reach the management port (the kubelet's probes are not pod traffic).
    const closed = render([HA, { serviceMonitor: { enabled: false }, networkPolicy: { metricsFrom: [] } }]);
    expect((only(closed, 'NetworkPolicy').spec as { ingress: unknown[] }).ingress).toEqual([{ ports: [{ port: 'http', protocol: 'TCP' }], from: HA.networkPolicy.ingressFrom }]);
    // A ServiceMonitor that the NetworkPolicy would starve is refused.
    const starved = run([HA, { networkPolicy: { metricsFrom: [] } }], ['--api-versions', 'monitoring.coreos.com/v1']);
    expect(starved.status).toBe(1);
    expect(starved.stderr).toContain('needs networkPolicy.metricsFrom');
  });

  it("Vault's kubernetes auth reads a projected token with Vault's audience, and the config points at it", () => {
    const pod = podSpec(r);
    const vol = pod.volumes.find((v) => v.name === 'vault-token') as unknown as { projected: { sources: { serviceAccountToken: Record<string, unknown> }[] } };
    expect(vol.projected.sources[0]!.serviceAccountToken).toEqual({ path: 'token', audience: 'vault', expirationSeconds: 3600 });
    expect(pod.containers[0]!.volumeMounts.find((m) => m.name === 'vault-token')?.mountPath).toBe('/var/run/secrets/vault');
    const cfg = parse(leashConfigText(r)) as { settings: { vault: { auth: { jwt_file: string } } } };
    expect(cfg.settings.vault.auth.jwt_file).toBe('/var/run/secrets/vault/token');
    expect(pod.serviceAccountName).toBe(only(r, 'ServiceAccount').metadata.name);
  });

  it('secrets come from Secret references only', () => {
    const c = podSpec(r).containers[0]!;
    expect(c.env?.find((e) => e.name === 'LEASH_REDIS_PASSWORD')).toEqual({ name: 'LEASH_REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: 'leash-redis', key: 'password' } } });
    expect(c.envFrom).toEqual([{ secretRef: { name: 'leash-extra' } }]);
    expect(r.objects.some((o) => o.kind === 'Secret')).toBe(false);
  });

  it('refuses a Redis password in the URL and a literal secret-like env value', () => {
    const inUrl = run([HA, { config: { settings: { store: { url: 'redis://:hunter2@redis:6379' } } } }]);
    expect(inUrl.status).toBe(1);
    expect(inUrl.stderr).toContain('store.url holds a password');
    expect(inUrl.stdout).not.toContain('hunter2');
    const literal = run([HA, { extraEnv: [{ name: 'VAULT_TOKEN', value: 's.hunter2' }] }]);
    expect(literal.status).toBe(1);
    expect(literal.stderr).toContain('extraEnv VAULT_TOKEN has a literal value');
    // Non-secret values are fine.
    expect(render([HA, { extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=384' }] }], ['--api-versions', 'monitoring.coreos.com/v1']).text).toContain('--max-old-space-size=384');
  });

  it("the ConfigMap's config passes Leash's validator and policy compiler", () => {
    const config = parseConfig(parse(leashConfigText(r)));
    expect(config.settings.store.kind).toBe('redis');
    expect(config.settings.keys.backend).toBe('vault-kv');
    expect(config.settings.vault?.auth.method).toBe('kubernetes');
    expect([...compilePolicy(config).plugins.keys()]).toEqual(['crm-reader']);
  });

  it('the rendered config runs two real replicas on one Redis and Vault (contract server, kubernetes login) that share their keys', async () => {
    if (!redisAvailable('chart HA replicas')) return;
    const redis = await startRedis();
    const saToken = 'projected-sa-token-for-vault';
    const vault = await startVaultContract({ kubernetes: { role: 'leash', jwt: saToken } });
    const dir = mkdtempSync(join(work, 'ha-'));
    const brokers: { close(): Promise<void> }[] = [];
    try {
      // What the kubelet's projected volume would hold at the path the config names.
      const jwtFile = join(dir, 'token');
      writeFileSync(jwtFile, saToken);
      const urls: string[] = [];
      const managementUrls: string[] = [];
      const { Broker } = await import('../../src/broker.js');
      for (let i = 0; i < 2; i++) {
        // Only the pod's environment is swapped: Redis and Vault addresses, the token path, the port.
        const input = parse(leashConfigText(r)) as { settings: Record<string, Record<string, unknown>> };
        const vaultSettings = input.settings.vault as { address: string; auth: { jwt_file: string } };
        input.settings.store!.url = redis.url;
        vaultSettings.address = vault.url;
        vaultSettings.auth.jwt_file = jwtFile;
        const port = await freePort();
        input.settings.listen = { host: '127.0.0.1', port };
        input.settings.management = { listen: { host: '127.0.0.1', port: 0 } };
        const broker = await Broker.create(loadedFrom(input, dir), { defaultMetrics: false, write: () => undefined, auditWrite: () => undefined });
        brokers.push(broker);
        await broker.listen(port, '127.0.0.1');
        urls.push(`http://127.0.0.1:${port}`);
        managementUrls.push(broker.managementUrl!);
      }
      for (const url of managementUrls) expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const jwks: string[] = [];
      for (const url of urls) {
        const set = (await (await fetch(`${url}/jwks`)).json()) as { keys: { kid: string }[] };
        expect(set.keys.length).toBeGreaterThan(0);
        jwks.push(
          set.keys
            .map((k) => k.kid)
            .sort()
            .join(','),
        );
      }
      expect(jwks[1]).toBe(jwks[0]);
      expect(vault.calls.some((c) => c.path === 'auth/kubernetes/login' && c.status === 200)).toBe(true);
    } finally {
      for (const b of brokers) await b.close();
      await vault.close();
      await redis.cleanup();
    }
  }, 60_000);

  it('a ServiceMonitor without the Prometheus Operator API fails with the reason', () => {
    const r2 = run([HA]);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain('monitoring.coreos.com/v1');
  });

  it('with existingConfigMap, no ConfigMap or checksum is rendered and the pod mounts the named one', () => {
    const r2 = render([HA, { existingConfigMap: 'leash-policy', serviceMonitor: { enabled: false } }]);
    expect(r2.objects.map((o) => o.kind)).not.toContain('ConfigMap');
    const pod = podSpec(r2);
    expect(pod.volumes.find((v) => v.name === 'config')).toEqual({ name: 'config', configMap: { name: 'leash-policy' } });
    expect(r2.text).not.toContain('checksum/config');
  });
});

describeChart('Helm chart: usage reports on a port of their own (usagePort)', () => {
  const USAGE = { usagePort: { enabled: true } };
  type Port = { name: string; port?: number; containerPort?: number; targetPort?: string };

  it('the pod, the Service and the config carry the usage port; other settings.usage keys stay', () => {
    const r = render([ISSUER, USAGE, { config: { settings: { usage: { retention_days: 7 } } } }]);
    expect(podSpec(r).containers[0]!.ports.map((p) => [p.name, p.containerPort])).toEqual([
      ['http', 8080],
      ['management', 9090],
      ['usage', 8081],
    ]);
    expect((only(r, 'Service').spec as { ports: Port[] }).ports).toEqual([
      { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
      { name: 'usage', port: 8081, targetPort: 'usage', protocol: 'TCP' },
    ]);
    const config = parseConfig(parse(leashConfigText(r)));
    expect(config.settings.usage.listen).toEqual({ host: '0.0.0.0', port: 8081, workers: 1 });
    expect(config.settings.usage.retention_days).toBe(7);
    // workers 0 and another port pass through as given.
    const r2 = render([ISSUER, { usagePort: { enabled: true, containerPort: 9443, servicePort: 443, workers: 0 } }]);
    expect((parse(leashConfigText(r2)) as { settings: { usage: { listen: unknown } } }).settings.usage.listen).toEqual({ host: '0.0.0.0', port: 9443, workers: 0 });
    expect((only(r2, 'Service').spec as { ports: Port[] }).ports[1]).toMatchObject({ name: 'usage', port: 443, targetPort: 'usage' });
  });

  it('the NetworkPolicy admits usageFrom to the usage port in a rule of its own (empty: anyone)', () => {
    const usageFrom = [{ podSelector: { matchLabels: { 'leash.dev/reports-usage': 'true' } } }];
    const r = render([HA, USAGE, { networkPolicy: { usageFrom } }], ['--api-versions', 'monitoring.coreos.com/v1']);
    const ingress = (only(r, 'NetworkPolicy').spec as { ingress: unknown[] }).ingress;
    expect(ingress).toEqual([
      { ports: [{ port: 'http', protocol: 'TCP' }], from: HA.networkPolicy.ingressFrom },
      { ports: [{ port: 'usage', protocol: 'TCP' }], from: usageFrom },
      { ports: [{ port: 'management', protocol: 'TCP' }], from: HA.networkPolicy.metricsFrom },
    ]);
    const open = render([HA, USAGE], ['--api-versions', 'monitoring.coreos.com/v1']);
    expect((only(open, 'NetworkPolicy').spec as { ingress: unknown[] }).ingress[1]).toEqual({ ports: [{ port: 'usage', protocol: 'TCP' }] });
    expect(validateK8s(r) + validateK8s(open)).toBe(14); // 7 + 7 objects
  });

  it('refuses settings.usage.listen in config (the chart sets it) and a usage port that is another port', () => {
    const inConfig = run([ISSUER, { config: { settings: { usage: { listen: { host: '0.0.0.0', port: 8081 } } } } }]);
    expect(inConfig.status).toBe(1);
    expect(inConfig.stderr).toContain('config.settings.usage.listen is set');
    for (const containerPort of [8080, 9090]) {
      const clash = run([ISSUER, { usagePort: { enabled: true, containerPort } }]);
      expect(clash.status).toBe(1);
      expect(clash.stderr).toContain(`usagePort.containerPort ${containerPort} is also the API or management port`);
    }
  });
});

describeChart('Helm chart: every rendered manifest', () => {
  it('validates against the Kubernetes API schemas (kubernetes-models), in every example', () => {
    const sets = [
      render([ISSUER]),
      render([ISSUER, { persistence: { enabled: false }, extraCA: { configMapName: '' }, podAnnotations: { a: 'b' }, serviceAccount: { create: false, name: 'leash-sa' } }]),
      render([HA], ['--api-versions', 'monitoring.coreos.com/v1']),
      render([HA, { existingConfigMap: 'leash-policy', serviceMonitor: { enabled: false }, networkPolicy: { egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }] } }]),
    ];
    let checked = 0;
    for (const r of sets) {
      for (const o of r.objects) {
        if (o.apiVersion === 'monitoring.coreos.com/v1') continue; // a CRD: not in kubernetes-models' core set
        const validate = K8S_MODELS[`${o.apiVersion}/${o.kind}`];
        expect(validate).toBeDefined();
        expect(() => validate!(o)).not.toThrow();
        checked++;
      }
    }
    expect(checked).toBe(20); // 5 + 3 + 7 + 5 objects: every kind of every set was checked
  });

  it('the Kubernetes schema check catches a broken manifest (it can fail)', () => {
    const deployment = structuredClone(only(render([ISSUER]), 'Deployment'));
    (deployment.spec as { template: { spec: { containers: { ports: { containerPort: unknown }[] }[] } } }).template.spec.containers[0]!.ports[0]!.containerPort = '8080';
    expect(() => K8S_MODELS['apps/v1/Deployment']!(deployment)).toThrow(/containerPort must be integer/);
  });

  it('the default-values config fails validation inside Leash too when the issuer is http and production is on', () => {
    // The chart does not second-guess Leash: Leash's own validator is the judge of the config.
    const r = render([{ config: { settings: { issuer: 'http://leash.example.com' } } }]);
    expect(() => parseConfig(parse(leashConfigText(r)))).toThrow(/settings\/issuer/);
  });

  it('a null in an override file removes a default, as in Helm', () => {
    const resources = (x: Rendered) => (podSpec(x).containers[0] as unknown as { resources: Record<string, unknown> }).resources;
    expect(resources(render([ISSUER]))).toHaveProperty('limits');
    expect(resources(render([ISSUER, { resources: { limits: null } }]))).toEqual({ requests: { cpu: '100m', memory: '128Mi' } });
  });

  it('numbers survive the values round trip as integers (Helm reads values as float64)', () => {
    const r = render([ISSUER, { config: { settings: { keys: { key_lifetime: 2592000 } } }, replicas: 1 }]);
    expect(leashConfigText(r)).toContain('key_lifetime: 2592000');
    expect(r.text).not.toMatch(/e\+0/);
  });
});
