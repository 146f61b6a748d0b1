import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';

/** Where a JSON pointer of a policy file is, as a 1-based line and column. */
export interface SourceMap {
  readonly path: string;
  locate(pointer: string): { line: number; column: number };
}

const unescape = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');

/**
 * Resolve JSON pointers in a YAML (or JSON: a YAML subset) policy file to lines: a map
 * entry points at its key, a list item at its start. A pointer to something not written
 * (a default) resolves to the nearest ancestor that is.
 */
export function sourceMap(path: string, text: string): SourceMap {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text.replace(/^\uFEFF/, ''), { lineCounter, keepSourceTokens: false });
  const top = { line: 1, column: 1 };
  return {
    path,
    locate(pointer) {
      let node: unknown = doc.contents;
      let offset: number | undefined = (doc.contents as Node | null)?.range?.[0];
      for (const raw of pointer.split('/').slice(1)) {
        const seg = unescape(raw);
        if (isMap(node)) {
          const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === seg);
          if (!pair) break;
          const keyRange = (pair.key as Node | null)?.range;
          if (keyRange) offset = keyRange[0];
          node = pair.value;
        } else if (isSeq(node)) {
          const item = node.items[Number(seg)] as Node | undefined;
          if (!/^\d+$/.test(seg) || !item) break;
          if (item.range) offset = item.range[0];
          node = item;
        } else {
          break;
        }
      }
      if (offset === undefined) return top;
      const pos = lineCounter.linePos(offset);
      return { line: pos.line, column: pos.col };
    },
  };
}
