#!/usr/bin/env node
// Writes charts/leash/values.schema.json: the chart's own values (values-schema.base.json)
// with `config` being Leash's config JSON Schema (schemas/leash-config.schema.json, itself
// generated from src/config/schema.ts), so helm checks the policy with the same schema as
// `leash validate` on install. test/charts/chart.test.ts fails when the file is stale.
// Run: node charts/tools/values-schema.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('../../', import.meta.url);
const read = (path) => JSON.parse(readFileSync(new URL(path, root), 'utf8'));

export function valuesSchema() {
  const base = read('charts/tools/values-schema.base.json');
  const { $schema: _dialect, $id: _id, ...config } = read('schemas/leash-config.schema.json');
  base.properties.config = config;
  return `${JSON.stringify(base, null, 2)}\n`;
}

if (process.argv[1] && new URL(`file://${process.argv[1]}`).href === import.meta.url) {
  writeFileSync(new URL('charts/leash/values.schema.json', root), valuesSchema());
  process.stdout.write('wrote charts/leash/values.schema.json\n');
}
