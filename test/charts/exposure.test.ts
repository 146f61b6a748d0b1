import { expect, it, beforeAll, afterAll } from '@jest/globals';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse, stringify } from 'yaml';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { freePort } from '../support/broker.js';
import { tlsRequest } from '../support/mtls.js';
import { waitFor } from '../support/wait.js';
import { testTls } from '../support/x509.js';
import { CHART, ChartRenderer, HA, ISSUER, K8S_MODELS, describeChart, goAvailable, leashConfigText, only, podSpec, validateK8s } from './render.js';
import type { K8sObject, Rendered } from './render.js';

/**
 * How the chart exposes Leash: the NetworkPolicy (clients to the API port, Prometheus to the
 * management port, the Ingress controller when there is an Ingress), the Ingress and its
 * agreement with the issuer URL, TLS on the API port, the ServiceMonitor's selection label,
 * and how replicas spread. NetworkPolicies are judged by evaluating them for concrete pods
 * (the semantics of networking.k8s.io/v1), not by reading their text.
 */

let chart: ChartRenderer | undefined;
const run = (values: unknown[], extra: string[] = []) => chart!.run(values, extra);
const render = (values: unknown[], extra: string[] = []): Rendered => chart!.render(values, extra);
const MONITORING = ['--api-versions', 'monitoring.coreos.com/v1'];

beforeAll(() => {
  if (!goAvailable()) return;
  chart = ChartRenderer.build();
}, 180_000);

afterAll(() => {
  chart?.close();
});

// ---- NetworkPolicy semantics (networking.k8s.io/v1), for the peers the chart renders.

type Labels = Record<string, string>;
type Selector = { matchLabels?: Labels; matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[] };
type Peer = { namespaceSelector?: Selector; podSelector?: Selector; ipBlock?: unknown };
type Rule = { ports?: { port: string | number; protocol?: string }[]; from?: Peer[] };
type Policy = { spec: { podSelector: Selector; policyTypes: string[]; ingress?: Rule[] }; metadata: { name: string } };
/** A pod that opens a connection: its namespace's labels (kubernetes.io/metadata.name included) and its own. */
type Source = { namespace: Labels; pod: Labels };

function selects(selector: Selector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    const ok = { In: inValues, NotIn: !inValues, Exists: has, DoesNotExist: !has }[e.operator];
    if (!ok) return false;
  }
  return true;
}

/**
 * Whether `policy` admits a TCP connection from `source` to `port` (a container port name) of a
 * Leash pod with `podLabels` in namespace `releaseNamespace`. Rules are OR-ed; a rule without
 * `from` admits every source, without `ports` every port; a peer's namespaceSelector and
 * podSelector are AND-ed; a podSelector alone means the policy's own namespace; ipBlock peers
 * match by address, which pods here do not have, so they admit none of them.
 */
function admits(policy: Policy, podLabels: Labels, releaseNamespace: string, source: Source, port: string): boolean {
  if (!selects(policy.spec.podSelector, podLabels) || !policy.spec.policyTypes.includes('Ingress')) return true;
  return (policy.spec.ingress ?? []).some((rule) => {
    const portOk = rule.ports === undefined || rule.ports.some((p) => p.port === port && (p.protocol ?? 'TCP') === 'TCP');
    const fromOk =
      rule.from === undefined ||
      rule.from.some((peer) => {
        if (peer.ipBlock !== undefined) return false;
        const nsOk = peer.namespaceSelector ? selects(peer.namespaceSelector, source.namespace) : source.namespace['kubernetes.io/metadata.name'] === releaseNamespace;
        const podOk = peer.podSelector ? selects(peer.podSelector, source.pod) : true;
        return nsOk && podOk;
      });
    return portOk && fromOk;
  });
}

const ns = (name: string, labels: Labels = {}): Labels => ({ 'kubernetes.io/metadata.name': name, ...labels });
const PROMETHEUS: Source = { namespace: ns('monitoring'), pod: { 'app.kubernetes.io/name': 'prometheus', 'operator.prometheus.io/name': 'kube-prometheus-stack-prometheus' } };
const GRAFANA: Source = { namespace: ns('monitoring'), pod: { 'app.kubernetes.io/name': 'grafana' } };
const STRANGER: Source = { namespace: ns('default'), pod: { app: 'anything', 'app.kubernetes.io/name': 'prometheus' } };
const INGRESS_NGINX: Source = { namespace: ns('ingress-nginx'), pod: { 'app.kubernetes.io/name': 'ingress-nginx' } };
const NEIGHBOUR: Source = { namespace: ns('default'), pod: { app: 'in-leash-namespace' } };

/** Who reaches which port of the Leash pods, as a table: `${who} ${port}` for every admitted pair. */
function reachability(r: Rendered, sources: Record<string, Source>): string[] {
  const policy = only(r, 'NetworkPolicy') as unknown as Policy;
  const pod = (only(r, 'Deployment').spec as { template: { metadata: { labels: Labels } } }).template.metadata.labels;
  const ports = podSpec(r).containers[0]!.ports.map((p) => p.name);
  expect(ports).toEqual(['http', 'management']);
  const admitted: string[] = [];
  for (const [who, source] of Object.entries(sources)) for (const port of ports) if (admits(policy, pod, 'default', source, port)) admitted.push(`${who} ${port}`);
  return admitted;
}

/** The README's HA values file, as an operator would copy it. */
function readmeHaValues(): Record<string, unknown> {
  const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
  const block = /```yaml\n(# leash-ha-values\.yaml\n[\s\S]*?)```/.exec(readme);
  expect(block).not.toBeNull();
  return parse(block![1]!) as Record<string, unknown>;
}

describeChart('Helm chart: NetworkPolicy, by evaluation', () => {
  const CLIENT_LABEL = { 'leash.dev/client': 'true' };
  const CLIENT: Source = { namespace: ns('plugins', CLIENT_LABEL), pod: { app: 'crm-reader' } };
  const sources = { prometheus: PROMETHEUS, grafana: GRAFANA, client: CLIENT, stranger: STRANGER, neighbour: NEIGHBOUR, 'ingress-nginx': INGRESS_NGINX };

  it("the README's HA example: clients reach the API port only, Prometheus the management port only, nobody else either", () => {
    const values = readmeHaValues();
    expect(values.serviceMonitor).toEqual({ enabled: true });
    const r = render([values], MONITORING);
    expect(reachability(r, sources)).toEqual(['prometheus management', 'client http']);
    // What the ServiceMonitor scrapes is the port that rule opens: the metrics Service's target is the management container port.
    const metrics = r.objects.find((o) => o.kind === 'Service' && o.metadata.name.endsWith('-metrics')) as K8sObject & { spec: { ports: { targetPort: string }[] } };
    expect(metrics.spec.ports.map((p) => p.targetPort)).toEqual(['management']);
    expect((only(r, 'ServiceMonitor').spec as { endpoints: { port: string }[] }).endpoints.map((e) => e.port)).toEqual(['management']);
  });

  it('the evaluation can fail: without metricsFrom Prometheus reaches nothing, and an empty ingressFrom opens the API port (only) to anyone', () => {
    const values = readmeHaValues();
    const closed = render([values, { serviceMonitor: { enabled: false }, networkPolicy: { metricsFrom: [] } }]);
    expect(reachability(closed, sources)).toEqual(['client http']);
    const open = render([values, { networkPolicy: { ingressFrom: [] } }], MONITORING);
    expect(reachability(open, sources)).toEqual(['prometheus http', 'prometheus management', 'grafana http', 'client http', 'stranger http', 'neighbour http', 'ingress-nginx http']);
  });

  it('with an Ingress, the controller reaches the API port (ingressControllerFrom), never the management port; without it the render fails', () => {
    const values = readmeHaValues();
    const controller = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } } }];
    const withIngress = render([values, { ingress: { enabled: true, tls: { secretName: 'leash-cert' } }, networkPolicy: { ingressControllerFrom: controller } }], MONITORING);
    expect(reachability(withIngress, sources)).toEqual(['prometheus management', 'client http', 'ingress-nginx http']);
    // ingressControllerFrom without an Ingress opens nothing.
    expect(reachability(render([values, { networkPolicy: { ingressControllerFrom: controller } }], MONITORING), sources)).toEqual(['prometheus management', 'client http']);
    const blocked = run([values, { ingress: { enabled: true, tls: { secretName: 'leash-cert' } } }], MONITORING);
    expect(blocked.status).toBe(1);
    expect(blocked.stderr).toContain('needs networkPolicy.ingressControllerFrom');
    expect(blocked.stdout).toBe('');
  });

  it('matchExpressions peers are honoured (the evaluator is not matchLabels-only)', () => {
    const values = readmeHaValues();
    const r = render([values, { networkPolicy: { ingressFrom: [{ namespaceSelector: { matchExpressions: [{ key: 'leash.dev/client', operator: 'Exists' }] } }] } }], MONITORING);
    expect(reachability(r, { client: CLIENT, stranger: STRANGER })).toEqual(['client http']);
  });
});

describeChart('Helm chart: Ingress', () => {
  const TLS_INGRESS = { ingress: { enabled: true, className: 'nginx', annotations: { 'nginx.ingress.kubernetes.io/proxy-body-size': '64k' }, tls: { secretName: 'leash-cert' } } };
  type IngressSpec = {
    ingressClassName?: string;
    tls?: { hosts: string[]; secretName: string }[];
    rules: { host: string; http: { paths: { path: string; pathType: string; backend: { service: { name: string; port: { name: string } } } }[] } }[];
  };
  const ingressOf = (r: Rendered) => only(r, 'Ingress') as K8sObject & { spec: IngressSpec };

  it('is off by default', () => {
    expect(render([ISSUER]).objects.map((o) => o.kind)).not.toContain('Ingress');
  });

  it("serves the issuer's host over TLS to the API Service's http port, with class and annotations, and validates as a networking.k8s.io/v1 Ingress", () => {
    const r = render([ISSUER, TLS_INGRESS]);
    const ingress = ingressOf(r);
    expect(ingress.metadata.annotations).toEqual({ 'nginx.ingress.kubernetes.io/proxy-body-size': '64k' });
    expect(ingress.spec).toEqual({
      ingressClassName: 'nginx',
      tls: [{ hosts: ['leash.example.com'], secretName: 'leash-cert' }],
      rules: [{ host: 'leash.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'leash', port: { name: 'http' } } } }] } }],
    });
    // The backend exists: the API Service by that name, with a port named http.
    const api = r.objects.find((o) => o.kind === 'Service' && o.metadata.name === 'leash') as K8sObject & { spec: { ports: { name: string }[] } };
    expect(api.spec.ports.map((p) => p.name)).toEqual(['http']);
    expect(validateK8s(r)).toBe(6);
  });

  it('accepts what agrees with the issuer: an explicit or wildcard host, TLS terminated elsewhere, an issuer path under a Prefix path', () => {
    expect(ingressOf(render([ISSUER, TLS_INGRESS, { ingress: { host: 'leash.example.com' } }])).spec.rules[0]!.host).toBe('leash.example.com');
    expect(ingressOf(render([ISSUER, TLS_INGRESS, { ingress: { host: '*.example.com' } }])).spec.tls).toEqual([{ hosts: ['*.example.com'], secretName: 'leash-cert' }]);
    const external = ingressOf(
      render([ISSUER, { ingress: { enabled: true, tls: { external: true }, annotations: { 'alb.ingress.kubernetes.io/certificate-arn': 'arn:aws:acm:eu-west-1:123456789012:certificate/x' } } }]),
    );
    expect(external.spec.tls).toBeUndefined();
    const withPath = render([{ config: { settings: { issuer: 'https://example.com/leash' } } }, TLS_INGRESS, { ingress: { paths: [{ path: '/leash', pathType: 'Prefix' }] } }]);
    expect(ingressOf(withPath).spec.rules[0]!.http.paths[0]!.path).toBe('/leash');
    expect(validateK8s(withPath)).toBe(6);
  });

  it('fails rendering, naming both URLs, when the Ingress would serve another host, scheme, port or path than the issuer', () => {
    const cases: [unknown[], string][] = [
      [
        [ISSUER, TLS_INGRESS, { ingress: { host: 'auth.example.com' } }],
        'config.settings.issuer is https://leash.example.com (host leash.example.com) but the Ingress serves host auth.example.com (ingress.host)',
      ],
      [[ISSUER, TLS_INGRESS, { ingress: { host: '*.example.org' } }], 'but the Ingress serves host *.example.org'],
      [[ISSUER, TLS_INGRESS, { ingress: { host: '*.com' } }], 'but the Ingress serves host *.com'], // a wildcard covers one label only
      [[ISSUER, { ingress: { enabled: true } }], 'config.settings.issuer is https://leash.example.com but the Ingress serves http (no ingress.tls.secretName)'],
      [[{ config: { settings: { issuer: 'http://leash.example.com', production: false } } }, TLS_INGRESS], 'config.settings.issuer is http://leash.example.com but the Ingress serves https'],
      [
        [{ config: { settings: { issuer: 'https://leash.example.com:8443' } } }, TLS_INGRESS],
        'config.settings.issuer is https://leash.example.com:8443, on port 8443, but an Ingress serves https on port 443',
      ],
      [[ISSUER, TLS_INGRESS, { ingress: { paths: [{ path: '/api', pathType: 'Prefix' }] } }], 'no Prefix path in ingress.paths covers /'],
      [
        [{ config: { settings: { issuer: 'https://example.com/leash' } } }, TLS_INGRESS, { ingress: { paths: [{ path: '/leash', pathType: 'Exact' }] } }],
        'no Prefix path in ingress.paths covers /leash',
      ],
      [[{ config: { settings: { issuer: 'https://example.com/leashed' } } }, TLS_INGRESS, { ingress: { paths: [{ path: '/leash', pathType: 'Prefix' }] } }], 'covers /leashed'], // a path prefix is by segment
      [[{ config: { settings: { issuer: 'https://10.0.0.7' } } }, TLS_INGRESS], 'the Ingress host would be 10.0.0.7, an IP address'],
    ];
    for (const [values, message] of cases) {
      const r = run(values);
      expect([message, r.status, r.stdout]).toEqual([message, 1, '']);
      expect(r.stderr).toContain(message);
    }
    // The default port of the scheme, written out, is the same URL.
    expect(ingressOf(render([{ config: { settings: { issuer: 'https://leash.example.com:443' } } }, TLS_INGRESS])).spec.rules[0]!.host).toBe('leash.example.com');
  });

  it('with an existingConfigMap the chart does not know the issuer: ingress.host is required, and checked against config.settings.issuer when that is given', () => {
    const noIssuer = run([{ existingConfigMap: 'leash-policy', config: { settings: null } }, TLS_INGRESS]);
    expect(noIssuer.status).toBe(1);
    expect(noIssuer.stderr).toContain('ingress.host is required when config.settings.issuer is not given');
    expect(ingressOf(render([{ existingConfigMap: 'leash-policy', config: { settings: null } }, TLS_INGRESS, { ingress: { host: 'leash.example.com' } }])).spec.rules[0]!.host).toBe(
      'leash.example.com',
    );
    expect(run([{ existingConfigMap: 'leash-policy' }, ISSUER, TLS_INGRESS, { ingress: { host: 'other.example.com' } }]).stderr).toContain('but the Ingress serves host other.example.com');
  });
});

describeChart('Helm chart: TLS on the API port', () => {
  const TLS = { tls: { enabled: true, secretName: 'leash-tls' } };

  it('mounts the kubernetes.io/tls Secret read-only (0440, as a folder) and sets settings.tls to its files; the Service says https; probes stay on plain HTTP', () => {
    const r = render([ISSUER, TLS]);
    const pod = podSpec(r);
    expect(pod.volumes.find((v) => v.name === 'tls')).toEqual({ name: 'tls', secret: { secretName: 'leash-tls', defaultMode: 0o440 } });
    expect(pod.containers[0]!.volumeMounts.find((m) => m.name === 'tls')).toEqual({ name: 'tls', mountPath: '/etc/leash-tls', readOnly: true });
    expect(pod.securityContext.fsGroup).toBe(1000);
    const cfg = parse(leashConfigText(r)) as { settings: { tls: unknown } };
    expect(cfg.settings.tls).toEqual({ cert_file: '/etc/leash-tls/tls.crt', key_file: '/etc/leash-tls/tls.key', client_auth: 'optional', min_version: 'TLSv1.2' });
    expect(parseConfig(cfg).settings.tls?.cert_file).toBe('/etc/leash-tls/tls.crt');
    expect((only(r, 'Service').spec as { ports: unknown[] }).ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', appProtocol: 'https' }]);
    const probe = pod.containers[0]!.readinessProbe.httpGet as { port: string; scheme?: string };
    expect([probe.port, probe.scheme]).toEqual(['management', undefined]);
    expect(validateK8s(r)).toBe(5);
    // Off by default: no volume, no settings.tls, plain http Service.
    const plain = render([ISSUER]);
    expect(podSpec(plain).volumes.map((v) => v.name)).not.toContain('tls');
    expect((parse(leashConfigText(plain)) as { settings: Record<string, unknown> }).settings).not.toHaveProperty('tls');
    expect(plain.text).not.toContain('appProtocol');
  });

  it('a client CA from a ConfigMap or a Secret becomes settings.tls.client_ca_file, with client_auth and min_version from values', () => {
    for (const [source, volume] of [
      [{ configMapName: 'spiffe-bundle' }, { configMap: { name: 'spiffe-bundle' } }],
      [{ secretName: 'client-ca', key: 'bundle.pem' }, { secret: { secretName: 'client-ca' } }],
    ] as const) {
      const r = render([ISSUER, TLS, { tls: { clientAuth: 'required', minVersion: 'TLSv1.3', clientCA: source } }]);
      const pod = podSpec(r);
      expect(pod.volumes.find((v) => v.name === 'client-ca')).toEqual({ name: 'client-ca', ...volume });
      expect(pod.containers[0]!.volumeMounts.find((m) => m.name === 'client-ca')).toEqual({ name: 'client-ca', mountPath: '/etc/leash-client-ca', readOnly: true });
      const tls = parseConfig(parse(leashConfigText(r))).settings.tls;
      expect(tls).toEqual({
        cert_file: '/etc/leash-tls/tls.crt',
        key_file: '/etc/leash-tls/tls.key',
        client_auth: 'required',
        min_version: 'TLSv1.3',
        client_ca_file: `/etc/leash-client-ca/${'key' in source ? source.key : 'ca.crt'}`,
      });
      expect(validateK8s(r)).toBe(5);
    }
  });

  it('refuses what would not start or not mean what it says, with the reason', () => {
    const cases: [unknown[], string][] = [
      [[ISSUER, { tls: { enabled: true } }], 'tls.enabled needs tls.secretName'],
      [[ISSUER, { config: { settings: { tls: { cert_file: 'tls/leash.crt', key_file: 'tls/leash.key' } } } }], "config.settings.tls names files the pod does not have: use the chart's tls values"],
      [[ISSUER, TLS, { tls: { clientCA: { configMapName: 'a', secretName: 'b' } } }], 'tls.clientCA: give configMapName or secretName, not both'],
      [[ISSUER, TLS, { tls: { clientAuth: 'none', clientCA: { configMapName: 'a' } } }], 'tls.clientCA is set but tls.clientAuth is none'],
      [[ISSUER, { tls: { clientCA: { configMapName: 'a' } } }], 'tls.clientCA is set but tls.enabled is false'],
      [[ISSUER, TLS, { podSecurityContext: { fsGroup: null } }], 'tls.enabled needs podSecurityContext.fsGroup'],
    ];
    for (const [values, message] of cases) {
      const r = run(values);
      expect([message, r.status, r.stdout]).toEqual([message, 1, '']);
      expect(r.stderr).toContain(message);
    }
  });

  it('the rendered TLS config starts a real broker that serves HTTPS with the mounted certificate, picks up a renewed Secret without a restart, and keeps plain HTTP probes', async () => {
    const r = render([ISSUER, TLS]);
    const dir = mkdtempSync(join(chart!.work, 'tls-'));
    // The Secret's folder as the kubelet lays out a secret volume: tls.crt -> ..data/tls.crt,
    // ..data -> a timestamped folder; a renewed Secret swaps ..data atomically.
    const mount = join(dir, 'etc-leash-tls');
    mkdirSync(mount);
    let version = 0;
    const publish = (pair: { cert: string; key: string }) => {
      const ts = `..2026_12_05_00_00_0${++version}.000000001`;
      mkdirSync(join(mount, ts));
      writeFileSync(join(mount, ts, 'tls.crt'), pair.cert);
      writeFileSync(join(mount, ts, 'tls.key'), pair.key);
      symlinkSync(ts, join(mount, '..data_tmp'));
      renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    };
    const first = testTls();
    publish(first);
    for (const f of ['tls.crt', 'tls.key']) symlinkSync(`..data/${f}`, join(mount, f));

    // Only the pod's paths move (the Secret's folder, the data volume) and the port.
    const input = parse(leashConfigText(r)) as { settings: Record<string, Record<string, unknown>> };
    const tls = input.settings.tls!;
    expect([tls.cert_file, tls.key_file]).toEqual(['/etc/leash-tls/tls.crt', '/etc/leash-tls/tls.key']);
    tls.cert_file = join(mount, 'tls.crt');
    tls.key_file = join(mount, 'tls.key');
    input.settings.store!.path = join(dir, 'leash.db');
    input.settings.keys!.dir = join(dir, 'keys');
    const port = await freePort();
    input.settings.listen = { host: '127.0.0.1', port };
    input.settings.management = { listen: { host: '127.0.0.1', port: 0 } };
    const configPath = join(dir, 'leash.yaml');
    writeFileSync(configPath, stringify(input));

    const { Broker } = await import('../../src/broker.js');
    const { startReloadWatch } = await import('../../src/cli/commands.js');
    const broker = await Broker.create(await loadConfigFile(configPath), { defaultMetrics: false, write: () => undefined, auditWrite: () => undefined });
    const watch = startReloadWatch(broker, configPath);
    try {
      const url = await broker.listen(port, '127.0.0.1');
      expect(url).toBe(`https://127.0.0.1:${port}`);
      const before = await tlsRequest(url, { ca: first.ca }, { path: '/jwks' });
      expect(before.status).toBe(200);
      expect(Array.isArray(before.body.keys)).toBe(true);
      // Plain HTTP on the API port is not served.
      await expect(fetch(`http://127.0.0.1:${port}/jwks`)).rejects.toThrow();
      expect(broker.managementUrl).toMatch(/^http:\/\//);
      expect((await fetch(`${broker.managementUrl!}/readyz`)).status).toBe(200);

      // cert-manager renews: a new certificate (of a new CA here) in the same Secret.
      const renewed = testTls();
      publish(renewed);
      await waitFor(async () => (await tlsRequest(url, { ca: renewed.ca }, { path: '/jwks' })).status === 200, 10_000);
      await expect(tlsRequest(url, { ca: first.ca }, { path: '/jwks' })).rejects.toThrow();
    } finally {
      watch.close();
      await broker.close();
    }
  });
});

describeChart('Helm chart: topology spread', () => {
  type Constraint = { maxSkew: number; topologyKey: string; whenUnsatisfiable: string; labelSelector: { matchLabels: Labels }; matchLabelKeys?: string[] };
  const spread = (r: Rendered) => podSpec(r).topologySpreadConstraints as Constraint[] | undefined;

  it('replicas > 1: one constraint per zone and one per node, selecting this release’s pods of the current ReplicaSet', () => {
    const r = render([HA], MONITORING);
    const podLabels = (only(r, 'Deployment').spec as { template: { metadata: { labels: Labels } } }).template.metadata.labels;
    const constraints = spread(r)!;
    expect(constraints.map((c) => [c.topologyKey, c.maxSkew, c.whenUnsatisfiable]).sort()).toEqual([
      ['kubernetes.io/hostname', 1, 'ScheduleAnyway'],
      ['topology.kubernetes.io/zone', 1, 'ScheduleAnyway'],
    ]);
    for (const c of constraints) {
      expect(selects(c.labelSelector, podLabels)).toBe(true);
      expect(c.labelSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'leash', 'app.kubernetes.io/instance': 'leash' });
      expect(c.matchLabelKeys).toEqual(['pod-template-hash']);
    }
    expect(validateK8s(r)).toBe(7);
  });

  it('one replica: none, whatever the backend', () => {
    expect(spread(render([ISSUER]))).toBeUndefined();
    expect(spread(render([HA, { replicas: 1 }], MONITORING))).toBeUndefined();
  });

  it('overridable: stricter per key, off, or replaced by explicit constraints (used as given, with one replica too)', () => {
    const strict = spread(render([HA, { defaultTopologySpread: { hostname: 'DoNotSchedule' } }], MONITORING))!;
    expect(Object.fromEntries(strict.map((c) => [c.topologyKey, c.whenUnsatisfiable]))).toEqual({ 'kubernetes.io/hostname': 'DoNotSchedule', 'topology.kubernetes.io/zone': 'ScheduleAnyway' });
    expect(spread(render([HA, { defaultTopologySpread: { enabled: false } }], MONITORING))).toBeUndefined();
    const own = [{ maxSkew: 2, topologyKey: 'example.com/rack', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'leash' } } }];
    expect(spread(render([HA, { topologySpreadConstraints: own }], MONITORING))).toEqual(own);
    expect(spread(render([ISSUER, { topologySpreadConstraints: own }]))).toEqual(own);
  });
});

describeChart('Helm chart: ServiceMonitor selection', () => {
  const monitorLabels = (values: unknown[]) => only(render([HA, ...values], MONITORING), 'ServiceMonitor').metadata.labels!;
  // kube-prometheus-stack's default Prometheus selects ServiceMonitors with matchLabels {release: <its Helm release name>}.
  const kubePrometheusStack = (release: string): Selector => ({ matchLabels: { release } });

  it('carries release: kube-prometheus-stack by default, so that stack installed under its chart name selects it', () => {
    const labels = monitorLabels([]);
    expect(labels.release).toBe('kube-prometheus-stack');
    expect(selects(kubePrometheusStack('kube-prometheus-stack'), labels)).toBe(true);
    expect(selects(kubePrometheusStack('prometheus'), labels)).toBe(false);
  });

  it('serviceMonitor.release names another release; empty drops the label; serviceMonitor.labels adds labels and its release wins', () => {
    expect(selects(kubePrometheusStack('prometheus'), monitorLabels([{ serviceMonitor: { release: 'prometheus' } }]))).toBe(true);
    expect(monitorLabels([{ serviceMonitor: { release: '' } }])).not.toHaveProperty('release');
    const labels = monitorLabels([{ serviceMonitor: { labels: { team: 'identity', release: 'mon' } } }]);
    expect(labels).toMatchObject({ team: 'identity', release: 'mon', 'app.kubernetes.io/name': 'leash' });
  });
});

describeChart('Helm chart: the new values against values.schema.json', () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addFormat('uri', (v: string) => URL.canParse(v));
  const validate = ajv.compile(JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as object);

  it('every example of this file validates, and the schema refuses malformed exposure values', () => {
    const examples: unknown[][] = [
      [readmeHaValues()],
      [ISSUER, { ingress: { enabled: true, host: '*.example.com', tls: { secretName: 'c' } } }],
      [ISSUER, { tls: { enabled: true, secretName: 's', clientAuth: 'required', clientCA: { configMapName: 'ca' } } }],
      [
        HA,
        {
          defaultTopologySpread: { hostname: 'DoNotSchedule' },
          serviceMonitor: { release: 'prometheus', labels: { team: 'x' } },
          networkPolicy: { ingressControllerFrom: [{ namespaceSelector: {} }] },
        },
      ],
    ];
    for (const values of examples) {
      const merged = render(values, MONITORING).values;
      expect(validate(merged) ? [] : validate.errors).toEqual([]);
    }
    const merged = render([ISSUER]).values;
    const bad = (patch: Record<string, unknown>) => validate({ ...merged, ...patch });
    const ingress = merged.ingress as Record<string, unknown>;
    expect(bad({ ingress: { ...ingress, host: 'https://leash.example.com' } })).toBe(false); // a URL, not a host
    expect(bad({ ingress: { ...ingress, paths: [{ path: 'token', pathType: 'Prefix' }] } })).toBe(false);
    expect(bad({ ingress: { ...ingress, paths: [] } })).toBe(false);
    expect(bad({ ingress: { ...ingress, tlsSecret: 'x' } })).toBe(false);
    expect(bad({ tls: { enabled: true } })).toBe(false); // no Secret
    expect(bad({ tls: { enabled: true, secretName: 's', clientAuth: 'sometimes' } })).toBe(false);
    expect(bad({ defaultTopologySpread: { zone: 'Never' } })).toBe(false);
    expect(bad({ serviceMonitor: { ...(merged.serviceMonitor as object), release: 3 } })).toBe(false);
  });
});

// The shared K8S_MODELS table knows the Ingress; a broken one is caught (the check can fail).
describeChart('Helm chart: the Ingress shape check', () => {
  it('catches an Ingress with a backend port of the wrong type', () => {
    const ingress = structuredClone(only(render([ISSUER, { ingress: { enabled: true, tls: { secretName: 'c' } } }]), 'Ingress')) as unknown as {
      spec: { rules: { http: { paths: { backend: { service: { port: unknown } } }[] } }[] };
    };
    ingress.spec.rules[0]!.http.paths[0]!.backend.service.port = { number: '443' };
    expect(() => K8S_MODELS['networking.k8s.io/v1/Ingress']!(ingress)).toThrow(/number must be integer/);
  });
});
