/** The map under `key` in a map of maps, created empty the first time (usage keeps its per-group state this way: no joined key strings per call). */
export function innerMap<K, V>(outer: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let inner = outer.get(key);
  if (!inner) outer.set(key, (inner = new Map<K, V>()));
  return inner;
}
