/**
 * Import rules for src/, generated from the layers in tools/layers.json (the one place they
 * are written down). `npm test` runs them (test/architecture/layers.test.ts, through
 * tools/layers.ts, which also refuses cycles between folders); `npm run layers` prints
 * every violation. Type-only imports count: a type import ties two folders as much as any.
 */
const { layers } = require('./tools/layers.json');

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Matches every module of the given units (a folder with everything under it, or a file). */
const unitsPath = (units) => `^src/(${units.map(escapeRegExp).join('|')})(/|$)`;
const unitsOf = (layer) => Object.keys(layer.units);
/**
 * Packages an SDK feature needs and the SDK package declares as optional peers: loaded with
 * `import()` inside the feature, so a plugin that does not use it installs nothing more.
 */
const SDK_OPTIONAL_PEERS = ['@aws-sdk/client-sts'];
const optionalPeersPath = `(^|/)node_modules/(${SDK_OPTIONAL_PEERS.map(escapeRegExp).join('|')})/`;
/**
 * The SDK's MCP helpers (src/client/mcp/, its own entry point `leash-client/mcp`) are built
 * on the MCP SDK, an optional peer a plugin installs only to use them; the rest of the SDK
 * never imports them. Matched resolved or not: the MCP SDK's export map may not resolve here.
 */
const MCP_SDK_PATH = '(^|/)(node_modules/)?@modelcontextprotocol/sdk/';

const layerRules = layers.slice(1).map((layer, i) => {
  const above = layers.slice(0, i + 1);
  return {
    name: `layer-${layer.name}`,
    comment: `${layer.name} (${unitsOf(layer).join(', ')}) must not import a layer above it: ${above.map((l) => l.name).join(', ')}`,
    severity: 'error',
    from: { path: unitsPath(unitsOf(layer)) },
    to: { path: unitsPath(above.flatMap(unitsOf)) },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'sdk-runs-on-jose-alone',
      comment: 'at run time the SDK needs jose and node built-ins only (its MCP helpers, the MCP SDK too)',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { dependencyTypesNot: ['core', 'local', 'type-only'], pathNot: `(^|/)node_modules/jose/|${optionalPeersPath}|${MCP_SDK_PATH}` },
    },
    {
      name: 'sdk-mcp-helpers-only-on-request',
      comment: 'the SDK core never imports its MCP helpers (src/client/mcp/): the MCP SDK is an optional peer',
      severity: 'error',
      from: { path: '^src/client/', pathNot: '^src/client/mcp/' },
      to: { path: `^src/client/mcp/|${MCP_SDK_PATH}` },
    },
    {
      name: 'sdk-optional-peers-load-lazily',
      comment: 'an optional peer of the SDK is imported with import() where its feature runs, never at load',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: optionalPeersPath, dependencyTypesNot: ['dynamic-import', 'type-only'] },
    },
    {
      name: 'sdk-types-of-jose-and-express',
      comment: "the SDK may name express types (its middleware) and its optional peers' types, nothing else from a package but jose",
      severity: 'error',
      from: { path: '^src/client/' },
      to: {
        dependencyTypes: ['type-only'],
        path: '(^|/)node_modules/',
        pathNot: `(^|/)node_modules/(jose|express|@types/express|@types/express-serve-static-core)/|${optionalPeersPath}|${MCP_SDK_PATH}`,
      },
    },
    {
      name: 'http-stays-in-the-entry-layer',
      comment: 'express and oidc-provider belong to the entry layer (and the SDK middleware): a domain or foundation folder exports functions, never a router',
      severity: 'error',
      from: { path: '^src/', pathNot: unitsPath([...unitsOf(layers[0]), ...unitsOf(layers[layers.length - 1])]) },
      to: { path: '(^|/)node_modules/(express|@types/express|@types/express-serve-static-core|oidc-provider|@types/oidc-provider|koa|@types/koa)/' },
    },
    {
      name: 'store-backends-apart',
      comment: 'a store backend (src/store/<kind>/) imports no other backend; what backends share lives in src/store/shared/, which imports none',
      severity: 'error',
      from: { path: '^src/store/([^/]+)/' },
      to: { path: '^src/store/[^/]+/', pathNot: '^src/store/($1|shared)/' },
    },
    {
      name: 'src-not-to-tests-or-bench',
      comment: 'test/ and bench/ use src/, never the other way round',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'resolvable',
      comment: 'a relative import the checker cannot resolve would escape every rule above (a package with types only, such as sarif, cannot be a folder of src/)',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true, path: '^\\.' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    // Build output (the SDK's own package builds into src/client/dist/) is not source.
    exclude: { path: '(^|/)dist/' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
