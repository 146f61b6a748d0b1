import { describe, expect, it } from '@jest/globals';
import { parseConfig } from '../../src/config/load.js';
import { minimalConfig, patched, problemsOf } from './fixtures.js';

const plugin = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  owner: 'team@example.com',
  risk: 'low',
  bindings: [{ issuer: 'cluster', subject: `system:serviceaccount:plugins:${id}` }],
  grants: [{ audience: `https://${id}.example.com`, scopes: ['read'], effect: 'read' }],
  ...extra,
});
const jwksKey = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' };
const sha = (c: string) => c.repeat(64);

/** One row per rule the schema cannot express: the config breaks exactly that rule, once. */
const rules: Array<{ rule: string; patch: (c: Record<string, any>) => void; path: string; message: RegExp }> = [
  {
    rule: 'the console signs in with one of admin.issuers',
    patch: (c) => {
      c.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'leash-console', jwks: { discovery: true } }] };
      c.settings = { console: { enabled: true, issuer: 'https://other.example.com', client_id: 'leash-console' } };
    },
    path: '/settings/console/issuer',
    message: /must be one of admin\.issuers/,
  },
  {
    rule: "the console's client id is its admin issuer's audience (the ID token is verified as an admin token)",
    patch: (c) => {
      c.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'leash-admin', jwks: { discovery: true } }] };
      c.settings = { console: { enabled: true, issuer: 'https://idp.example.com', client_id: 'leash-console' } };
    },
    path: '/settings/console/client_id',
    message: /must equal the audience of admin issuer https:\/\/idp\.example\.com \(leash-admin\)/,
  },
  {
    rule: 'an enabled console names its client id',
    patch: (c) => {
      c.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'leash-console', jwks: { discovery: true } }] };
      c.settings = { console: { enabled: true, issuer: 'https://idp.example.com' } };
    },
    path: '/settings/console/client_id',
    message: /required when the console is enabled/,
  },
  {
    rule: "'dpop: required' only on credentials that can be bound to a key",
    patch: (c) => {
      c.plugins[0].grants[0].kind = 'aws-sts';
      c.plugins[0].grants[0].dpop = 'required';
      c.plugins[0].grants[0].aws = { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] };
    },
    path: '/plugins/0/grants/0/dpop',
    message: /'aws-sts' credentials cannot be sender-constrained/,
  },
  {
    rule: 'AWS web identity federation takes RSA or ECDSA signatures only: no EdDSA keys with web-identity aws-sts grants',
    patch: (c) => {
      c.settings = { keys: { algorithm: 'EdDSA' } };
      c.plugins[0].grants[0].kind = 'aws-sts';
      c.plugins[0].grants[0].aws = { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] };
    },
    path: '/plugins/0/grants/0/aws/mode',
    message: /is 'web-identity', which AWS STS accepts only with RSA or ECDSA signatures, but settings\.keys\.algorithm is 'EdDSA'/,
  },
  {
    rule: "a 'vault' grant names the path that issues its secret",
    patch: (c) => {
      c.settings = { vault: { address: 'https://vault.example.com:8200' } };
      c.plugins[0].grants[0].kind = 'vault';
    },
    path: '/plugins/0/grants/0/vault',
    message: /is required for kind 'vault'/,
  },
  {
    rule: "'vault' applies only to 'vault' grants",
    patch: (c) => {
      c.settings = { vault: { address: 'https://vault.example.com:8200' } };
      c.plugins[0].grants[0].vault = { path: 'database/creds/crm' };
    },
    path: '/plugins/0/grants/0/vault',
    message: /only applies to kind 'vault'/,
  },
  {
    rule: "a 'vault' grant needs settings.vault",
    patch: (c) => {
      c.plugins[0].grants[0].kind = 'vault';
      c.plugins[0].grants[0].vault = { path: 'database/creds/crm' };
    },
    path: '/plugins/0/grants/0/kind',
    message: /'vault' grants need settings\.vault/,
  },
  {
    rule: "a 'vault' grant with method read sends no params",
    patch: (c) => {
      c.settings = { vault: { address: 'https://vault.example.com:8200' } };
      c.plugins[0].grants[0].kind = 'vault';
      c.plugins[0].grants[0].vault = { path: 'database/creds/crm', params: { ttl: '5m' } };
    },
    path: '/plugins/0/grants/0/vault/params',
    message: /only applies to method 'write'/,
  },
  {
    rule: "a 'vault' grant cannot require DPoP",
    patch: (c) => {
      c.settings = { vault: { address: 'https://vault.example.com:8200' } };
      c.plugins[0].grants[0].kind = 'vault';
      c.plugins[0].grants[0].vault = { path: 'database/creds/crm' };
      c.plugins[0].grants[0].dpop = 'required';
    },
    path: '/plugins/0/grants/0/dpop',
    message: /'vault' credentials cannot be sender-constrained/,
  },
  {
    rule: 'a vault-kv key backend needs settings.vault',
    patch: (c) => (c.settings = { keys: { backend: 'vault-kv' } }),
    path: '/settings/keys/backend',
    message: /'vault-kv' needs settings\.vault/,
  },
  {
    rule: 'a vault-transit key backend needs settings.vault',
    patch: (c) => (c.settings = { keys: { backend: 'vault-transit' } }),
    path: '/settings/keys/backend',
    message: /'vault-transit' needs settings\.vault/,
  },
  {
    rule: "an 'aws-sts' grant names its role and narrowing",
    patch: (c) => (c.plugins[0].grants[0].kind = 'aws-sts'),
    path: '/plugins/0/grants/0/aws',
    message: /is required for kind 'aws-sts'/,
  },
  {
    rule: "'aws' applies only to 'aws-sts' grants",
    patch: (c) => (c.plugins[0].grants[0].aws = { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] }),
    path: '/plugins/0/grants/0/aws',
    message: /only applies to kind 'aws-sts'/,
  },
  {
    rule: "the session policy fits within AWS's 2048-character limit",
    patch: (c) => {
      c.plugins[0].grants[0].kind = 'aws-sts';
      c.plugins[0].grants[0].aws = { role_arn: 'arn:aws:iam::123456789012:role/r', actions: Array.from({ length: 100 }, (_, i) => `s3:GetObjectWithAVeryLongName${i}`), resources: ['*'] };
    },
    path: '/plugins/0/grants/0/aws',
    message: /2048/,
  },
  {
    rule: 'a resource server has exactly one client authentication (neither given)',
    patch: (c) => (c.resource_servers = [{ id: 'crm-api', audiences: ['https://crm.example.com/api'] }]),
    path: '/resource_servers/0',
    message: /needs exactly one of client_secret_sha256 or jwks/,
  },
  {
    rule: 'a resource server has exactly one client authentication (both given)',
    patch: (c) => (c.resource_servers = [{ id: 'crm-api', audiences: ['https://crm.example.com/api'], client_secret_sha256: sha('a'), jwks: { inline: { keys: [jwksKey] } } }]),
    path: '/resource_servers/0',
    message: /needs exactly one of client_secret_sha256 or jwks/,
  },
  {
    rule: 'resource server ids are unique',
    patch: (c) =>
      (c.resource_servers = [
        { id: 'crm-api', audiences: ['a'], client_secret_sha256: sha('a') },
        { id: 'crm-api', audiences: ['b'], client_secret_sha256: sha('b') },
      ]),
    path: '/resource_servers/1/id',
    message: /duplicate resource server id 'crm-api'/,
  },
  {
    rule: 'trusted issuer names are unique',
    patch: (c) => c.trusted_issuers.push({ ...c.trusted_issuers[0], issuer: 'https://other.example.com' }),
    path: '/trusted_issuers/1/name',
    message: /duplicate trusted issuer name 'cluster' \(already used at \/trusted_issuers\/0\)/,
  },
  {
    rule: 'plugin ids are unique',
    patch: (c) => c.plugins.push(plugin('other'), plugin('crm-reader')),
    path: '/plugins/2/id',
    message: /duplicate plugin id 'crm-reader' \(already used at \/plugins\/0\)/,
  },
  {
    rule: 'a binding names an existing trusted issuer',
    patch: (c) => c.plugins[0].bindings.push({ issuer: 'prod-cluster', subject: 'x' }),
    path: '/plugins/0/bindings/1/issuer',
    message: /names no trusted issuer: 'prod-cluster' \(known: 'cluster'\)/,
  },
  {
    rule: 'a subject match has exactly one of equals/glob (both given)',
    patch: (c) => (c.plugins[0].bindings[0].subject = { equals: 'a', glob: 'a*' }),
    path: '/plugins/0/bindings/0/subject',
    message: /needs exactly one of 'equals', 'glob' \(found 'equals' and 'glob'\)/,
  },
  {
    rule: 'a subject match has exactly one of equals/glob (none given)',
    patch: (c) => (c.plugins[0].bindings[0].subject = {}),
    path: '/plugins/0/bindings/0/subject',
    message: /found none/,
  },
  {
    rule: 'a claim match has exactly one of equals/glob',
    patch: (c) => (c.plugins[0].bindings[0].claims = { 'kubernetes.io/namespace': 'plugins', team: {} }),
    path: '/plugins/0/bindings/0/claims/team',
    message: /needs exactly one of 'equals', 'glob'/,
  },
  {
    rule: 'a condition has exactly one of equals/in/glob/present',
    patch: (c) =>
      (c.plugins[0].grants[0].conditions = [
        { attr: 'task.env', equals: 'prod' },
        { attr: 'task.env', equals: 'prod', in: ['prod'] },
      ]),
    path: '/plugins/0/grants/0/conditions/1',
    message: /needs exactly one of 'equals', 'in', 'glob', 'present' \(found 'equals' and 'in'\)/,
  },
  {
    rule: 'a condition with no test at all',
    patch: (c) => (c.plugins[0].grants[0].conditions = [{ attr: 'task.env' }]),
    path: '/plugins/0/grants/0/conditions/0',
    message: /found none/,
  },
  {
    rule: 'a trusted issuer jwks has exactly one source',
    patch: (c) => (c.trusted_issuers[0].jwks = { file: 'a.json', uri: 'https://k8s.example.com/jwks' }),
    path: '/trusted_issuers/0/jwks',
    message: /needs exactly one of 'inline', 'file', 'uri', 'discovery' \(found 'file' and 'uri'\)/,
  },
  {
    rule: 'discovery: false is not a jwks source',
    patch: (c) => (c.trusted_issuers[0].jwks = { discovery: false }),
    path: '/trusted_issuers/0/jwks',
    message: /found none/,
  },
  {
    rule: 'an admin issuer jwks has exactly one source',
    patch: (c) => (c.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'admin', jwks: { inline: { keys: [jwksKey] }, discovery: true } }] }),
    path: '/admin/issuers/0/jwks',
    message: /found 'inline' and 'discovery'/,
  },
  {
    rule: 'default_scopes are among scopes',
    patch: (c) => (c.plugins[0].grants[0].default_scopes = ['contacts:read', 'contacts:delete']),
    path: '/plugins/0/grants/0/default_scopes/1',
    message: /'contacts:delete' is not one of this grant's scopes/,
  },
  {
    rule: "a grant's max_ttl is at most settings.tokens.max_ttl",
    patch: (c) => {
      c.settings = { tokens: { max_ttl: 600, default_ttl: 300 } };
      c.plugins[0].grants[0].max_ttl = 601;
    },
    path: '/plugins/0/grants/0/max_ttl',
    message: /must not exceed settings\.tokens\.max_ttl \(601 > 600\)/,
  },
  {
    rule: 'the default token ttl is at most the max',
    patch: (c) => {
      c.settings = { tokens: { max_ttl: 200, default_ttl: 300 } };
      c.plugins[0].grants[0].max_ttl = 100;
    },
    path: '/settings/tokens/default_ttl',
    message: /must not exceed settings\.tokens\.max_ttl \(300 > 200\)/,
  },
  {
    rule: 'a grant without max_ttl whose default exceeds settings.tokens.max_ttl says it is the default',
    patch: (c) => (c.settings = { tokens: { max_ttl: 120, default_ttl: 60 } }),
    path: '/plugins/0/grants/0/max_ttl',
    message: /is missing, and its default \(300\) exceeds settings\.tokens\.max_ttl \(120\): set max_ttl on this grant/,
  },
  {
    rule: 'the default task ttl is at most the max',
    patch: (c) => (c.settings = { tasks: { max_ttl: 600 } }),
    path: '/settings/tasks/default_ttl',
    message: /must not exceed settings\.tasks\.max_ttl \(3600 > 600\)/,
  },
  {
    rule: 'one grant per audience within a plugin',
    patch: (c) => c.plugins[0].grants.push({ audience: 'https://crm.example.com/api', scopes: ['contacts:write'], effect: 'write' }),
    path: '/plugins/0/grants/1/audience',
    message: /duplicate audience 'https:\/\/crm\.example\.com\/api' in this plugin \(already granted at \/plugins\/0\/grants\/0\)/,
  },
  {
    rule: 'the same audience in two different plugins is fine, in one plugin it is not (only the second plugin is reported)',
    patch: (c) =>
      c.plugins.push(
        plugin('b', {
          grants: [
            { audience: 'https://crm.example.com/api', scopes: ['x'], effect: 'read' },
            { audience: 'https://crm.example.com/api', scopes: ['y'], effect: 'read' },
          ],
        }),
      ),
    path: '/plugins/1/grants/1/audience',
    message: /duplicate audience/,
  },
  {
    rule: "a time window's from is before its to",
    patch: (c) => (c.plugins[0].grants[0].time = { from: '18:00', to: '09:00' }),
    path: '/plugins/0/grants/0/time',
    message: /'from' \(18:00\) must be before 'to' \(09:00\)/,
  },
  {
    rule: 'an empty time window (from = to)',
    patch: (c) => (c.plugins[0].grants[0].time = { from: '09:00', to: '09:00' }),
    path: '/plugins/0/grants/0/time',
    message: /must be before/,
  },
  {
    rule: "a time window's to is not past 24:00",
    patch: (c) => (c.plugins[0].grants[0].time = { from: '09:00', to: '24:30' }),
    path: '/plugins/0/grants/0/time/to',
    message: /must not be later than 24:00/,
  },
  {
    rule: 'spiffe issuers need a trust_domain',
    patch: (c) => c.trusted_issuers.push({ name: 'mesh', kind: 'spiffe', issuer: 'https://spire.example.com', audience: 'leash', jwks: { discovery: true } }),
    path: '/trusted_issuers/1/trust_domain',
    message: /is required for kind 'spiffe'/,
  },
  {
    rule: 'an x509-svid issuer needs its bundle',
    patch: (c) => c.trusted_issuers.push({ name: 'x509', kind: 'x509-svid', issuer: 'spiffe://example.org', trust_domain: 'example.org' }),
    path: '/trusted_issuers/1/bundle_file',
    message: /is required for kind 'x509-svid'/,
  },
  {
    rule: 'an x509-svid issuer has no JWKS',
    patch: (c) =>
      c.trusted_issuers.push({ name: 'x509', kind: 'x509-svid', issuer: 'spiffe://example.org', trust_domain: 'example.org', bundle_file: 'b.pem', jwks: { uri: 'https://example.org/jwks' } }),
    path: '/trusted_issuers/1/jwks',
    message: /does not apply to kind 'x509-svid'/,
  },
  {
    rule: "an x509-svid issuer's issuer is its trust domain's SPIFFE ID",
    patch: (c) => c.trusted_issuers.push({ name: 'x509', kind: 'x509-svid', issuer: 'spiffe://other.org', trust_domain: 'example.org', bundle_file: 'b.pem' }),
    path: '/trusted_issuers/1/issuer',
    message: /must be 'spiffe:\/\/example.org'/,
  },
  {
    rule: 'bundle_file only on x509-svid issuers',
    patch: (c) => (c.trusted_issuers[0].bundle_file = 'b.pem'),
    path: '/trusted_issuers/0/bundle_file',
    message: /only applies to kind 'x509-svid'/,
  },
  {
    rule: 'a JWT issuer needs an audience',
    patch: (c) => delete c.trusted_issuers[0].audience,
    path: '/trusted_issuers/0/audience',
    message: /is required for kind 'kubernetes'/,
  },
  {
    rule: 'client_ca_file without client certificates',
    patch: (c) => (c.settings = { ...c.settings, tls: { cert_file: 'a.crt', key_file: 'a.key', client_auth: 'none', client_ca_file: 'ca.pem' } }),
    path: '/settings/tls/client_ca_file',
    message: /only applies when client_auth/,
  },
  {
    rule: "a plugin's key has no discovery",
    patch: (c) => (c.plugins[0].client_auth = { method: 'private_key_jwt', jwks: { uri: 'https://vendor.example/jwks', discovery: true } }),
    path: '/plugins/0/client_auth/jwks/discovery',
    message: /no discovery document/,
  },
  {
    rule: 'private_key_jwt needs a JWKS',
    patch: (c) => (c.plugins[0].client_auth = { method: 'private_key_jwt' }),
    path: '/plugins/0/client_auth/jwks',
    message: /is required for private_key_jwt/,
  },
  {
    rule: 'tls_client_auth names exactly one certificate subject',
    patch: (c) => {
      c.settings = { ...c.settings, tls: { cert_file: 'a.crt', key_file: 'a.key', client_auth: 'optional', client_ca_file: 'ca.pem' } };
      c.plugins[0].client_auth = { method: 'tls_client_auth', tls_client_auth_san_dns: 'a.example.com', tls_client_auth_san_uri: 'spiffe://example.org/a' };
    },
    path: '/plugins/0/client_auth',
    message: /exactly one of .*found tls_client_auth_san_dns, tls_client_auth_san_uri/,
  },
  {
    rule: 'tls_client_auth needs a CA to chain to',
    patch: (c) => {
      c.settings = { ...c.settings, tls: { cert_file: 'a.crt', key_file: 'a.key', client_auth: 'optional' } };
      c.plugins[0].client_auth = { method: 'tls_client_auth', tls_client_auth_san_dns: 'a.example.com' };
    },
    path: '/plugins/0/client_auth/ca_file',
    message: /needs the CA/,
  },
  {
    rule: 'a certificate method needs certificates to reach Leash',
    patch: (c) => (c.plugins[0].client_auth = { method: 'tls_client_auth', tls_client_auth_san_dns: 'a.example.com', ca_file: 'ca.pem' }),
    path: '/plugins/0/client_auth/method',
    message: /needs client certificates to reach Leash/,
  },
  {
    rule: 'self_signed_tls_client_auth is not offered where the handshake refuses self-signed certificates',
    patch: (c) => {
      c.settings = { ...c.settings, tls: { cert_file: 'a.crt', key_file: 'a.key', client_auth: 'required', client_ca_file: 'ca.pem' } };
      c.plugins[0].client_auth = { method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [jwksKey] } } };
    },
    path: '/plugins/0/client_auth/method',
    message: /required makes the handshake refuse/,
  },
  {
    rule: 'a tls_client_auth subject on another method is not silently ignored',
    patch: (c) => (c.plugins[0].client_auth = { method: 'private_key_jwt', jwks: { inline: { keys: [jwksKey] } }, tls_client_auth_subject_dn: 'CN=a' }),
    path: '/plugins/0/client_auth/tls_client_auth_subject_dn',
    message: /only applies to method tls_client_auth/,
  },
  {
    rule: 'trust_domain on a non-spiffe issuer is not silently ignored',
    patch: (c) => (c.trusted_issuers[0].trust_domain = 'example.org'),
    path: '/trusted_issuers/0/trust_domain',
    message: /only applies to kinds 'spiffe' and 'x509-svid' \(this issuer is 'kubernetes'\)/,
  },
  {
    rule: 'admin api key ids are unique',
    patch: (c) =>
      (c.admin = {
        api_keys: [
          { id: 'ops', sha256: sha('a'), roles: ['ops'] },
          { id: 'ops', sha256: sha('b'), roles: ['security'] },
        ],
      }),
    path: '/admin/api_keys/1/id',
    message: /duplicate admin api key id 'ops'/,
  },
  {
    rule: 'admin api key hashes are unique (one key, one actor)',
    patch: (c) =>
      (c.admin = {
        api_keys: [
          { id: 'ops', sha256: sha('a'), roles: ['ops'] },
          { id: 'sec', sha256: sha('a'), roles: ['security'] },
        ],
      }),
    path: '/admin/api_keys/1/sha256',
    message: /duplicate admin api key hash/,
  },
  {
    rule: 'production requires an https issuer',
    patch: (c) => (c.settings = { production: true, issuer: 'http://leash.example.com', store: { path: '/var/lib/leash.db' } }),
    path: '/settings/issuer',
    message: /must be an https:\/\/ URL when settings\.production is true/,
  },
  {
    rule: 'production refuses the default http issuer too',
    patch: (c) => (c.settings = { production: true, store: { path: '/var/lib/leash.db' } }),
    path: '/settings/issuer',
    message: /https/,
  },
  {
    rule: 'production refuses an in-memory store',
    patch: (c) => (c.settings = { production: true, issuer: 'https://leash.example.com', store: { path: ':memory:' } }),
    path: '/settings/store/path',
    message: /must not be ':memory:' when settings\.production is true/,
  },
];

describe('semantic rules: each broken rule is reported at its exact path', () => {
  it.each(rules)('$rule -> $path', ({ patch, path, message }) => {
    expect(problemsOf(patched(patch))).toEqual([{ path, message: expect.stringMatching(message) }]);
  });
});

describe('semantic rules: what they accept', () => {
  it.each([
    [
      'a spiffe issuer with a trust_domain',
      (c: Record<string, any>) =>
        c.trusted_issuers.push({ name: 'mesh', kind: 'spiffe', issuer: 'https://spire.example.com', audience: 'leash', jwks: { discovery: true }, trust_domain: 'example.org' }),
    ],
    ['discovery: false next to a file', (c: Record<string, any>) => (c.trusted_issuers[0].jwks = { file: 'a.json', discovery: false })],
    ['present: false as the one condition test', (c: Record<string, any>) => (c.plugins[0].grants[0].conditions = [{ attr: 'request.actor_token', present: false }])],
    ['a grant max_ttl equal to the ceiling', (c: Record<string, any>) => (c.plugins[0].grants[0].max_ttl = 3600)],
    ['a whole-day time window', (c: Record<string, any>) => (c.plugins[0].grants[0].time = { from: '00:00', to: '24:00', days: ['mon'] })],
    ['production with https issuer and a file store', (c: Record<string, any>) => (c.settings = { production: true, issuer: 'https://leash.example.com', store: { path: '/var/lib/leash/leash.db' } })],
    [
      'a vault read grant with settings.vault',
      (c: Record<string, any>) => {
        c.settings = { vault: { address: 'https://vault.example.com:8200' } };
        Object.assign(c.plugins[0].grants[0], { kind: 'vault', vault: { path: 'database/creds/crm' } });
      },
    ],
    [
      'a vault write grant with params',
      (c: Record<string, any>) => {
        c.settings = { vault: { address: 'https://vault.example.com:8200' } };
        Object.assign(c.plugins[0].grants[0], { kind: 'vault', vault: { path: 'pki/issue/plugins', method: 'write', params: { common_name: 'crm.plugins.example.com' } } });
      },
    ],
    ['a vault-transit key backend with settings.vault', (c: Record<string, any>) => (c.settings = { vault: { address: 'https://vault.example.com:8200' }, keys: { backend: 'vault-transit' } })],
    [
      'EdDSA keys with an assume-role aws-sts grant (Leash signs nothing AWS verifies)',
      (c: Record<string, any>) => {
        c.settings = { keys: { algorithm: 'EdDSA' } };
        Object.assign(c.plugins[0].grants[0], { kind: 'aws-sts', aws: { role_arn: 'arn:aws:iam::123456789012:role/r', mode: 'assume-role', actions: ['s3:GetObject'], resources: ['*'] } });
      },
    ],
    [
      'ES256 keys with a web-identity aws-sts grant',
      (c: Record<string, any>) => {
        c.settings = { keys: { algorithm: 'ES256' } };
        Object.assign(c.plugins[0].grants[0], { kind: 'aws-sts', aws: { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] } });
      },
    ],
    ['the same audience granted to two plugins', (c: Record<string, any>) => c.plugins.push(plugin('other', { grants: [{ audience: 'https://crm.example.com/api', scopes: ['x'], effect: 'read' }] }))],
  ])('accepts %s', (_name, patch) => {
    expect(() => parseConfig(patched(patch))).not.toThrow();
  });
});

describe('semantic rules: collected, not thrown one at a time', () => {
  it('reports every broken rule of one config together', () => {
    const problems = problemsOf(
      patched((c) => {
        c.settings = { production: true, store: { path: ':memory:' }, tasks: { default_ttl: 90000 } };
        c.plugins.push(plugin('crm-reader'));
        c.plugins[0].grants[0].default_scopes = ['nope'];
        c.plugins[0].grants[0].max_ttl = 7200;
        c.plugins[0].bindings[0].issuer = 'ghost';
      }),
    );
    expect(problems.map((p) => p.path).sort()).toEqual(
      [
        '/settings/issuer',
        '/settings/store/path',
        '/settings/tasks/default_ttl',
        '/plugins/1/id',
        '/plugins/0/grants/0/default_scopes/0',
        '/plugins/0/grants/0/max_ttl',
        '/plugins/0/bindings/0/issuer',
      ].sort(),
    );
  });

  it('still runs when the schema found problems elsewhere, without crashing on wrong shapes', () => {
    const problems = problemsOf(
      patched((c) => {
        c.plugins[0].grants = 'everything';
        c.trusted_issuers[0].jwks = 'somewhere';
        c.plugins.push(plugin('crm-reader'));
      }),
    );
    expect(problems.map((p) => p.path).sort()).toEqual(['/plugins/0/grants', '/plugins/1/id', '/trusted_issuers/0/jwks'].sort());
  });

  it('leaves the minimal config valid (the table above starts from a good config)', () => {
    expect(() => parseConfig(minimalConfig())).not.toThrow();
  });
});
