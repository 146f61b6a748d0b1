/**
 * The anchored glob language of bindings and conditions: `*` matches any run (possibly
 * empty) of characters other than `/` and `:`; every other character is literal. A glob
 * always matches the whole string.
 *
 * Matching runs a small NFA over the pattern instead of a backtracking RegExp: the string
 * is attacker-controlled (an attested claim), and `a*a*a*b`-style patterns would make a
 * RegExp backtrack polynomially in its length. The NFA is O(|pattern| × |string|).
 */

export type GlobMatcher = (s: string) => boolean;

/** One pattern position: a literal UTF-16 code unit, or STAR. */
const STAR = -1;

const SLASH = 0x2f;
const COLON = 0x3a;

function isSeparator(c: number): boolean {
  return c === SLASH || c === COLON;
}

/** Code units of the pattern, with runs of `*` collapsed (`**` means the same as `*`). */
function tokenize(glob: string): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob.charCodeAt(i);
    if (c === 0x2a) {
      if (out[out.length - 1] !== STAR) out.push(STAR);
    } else {
      out.push(c);
    }
  }
  return Int32Array.from(out);
}

/** Follows the ε-moves: a star may match nothing, so its state also enables the next one. */
function close(tokens: Int32Array, states: Uint8Array): void {
  for (let i = 0; i < tokens.length; i++) {
    if (states[i] === 1 && tokens[i] === STAR) states[i + 1] = 1;
  }
}

function nfaMatch(tokens: Int32Array, s: string): boolean {
  const m = tokens.length;
  let cur = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  cur[0] = 1;
  close(tokens, cur);
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    next.fill(0);
    let alive = false;
    for (let i = 0; i < m; i++) {
      if (cur[i] !== 1) continue;
      const t = tokens[i];
      if (t === STAR) {
        if (!isSeparator(c)) {
          next[i] = 1;
          alive = true;
        }
      } else if (t === c) {
        next[i + 1] = 1;
        alive = true;
      }
    }
    if (!alive) return false;
    close(tokens, next);
    [cur, next] = [next, cur];
  }
  return cur[m] === 1;
}

/** Whether the glob has a wildcard at all; a glob without `*` is an exact string. */
export function hasWildcard(glob: string): boolean {
  return glob.includes('*');
}

/** Compile a glob once into an anchored whole-string matcher. */
export function compileGlob(glob: string): GlobMatcher {
  if (typeof glob !== 'string') throw new TypeError('compileGlob: glob must be a string');
  if (!hasWildcard(glob)) return (s) => s === glob;
  const tokens = tokenize(glob);
  return (s) => typeof s === 'string' && nfaMatch(tokens, s);
}

/**
 * Whether some string matches both globs (an exact string is a glob without `*`).
 * Breadth-first search over the product of the two pattern NFAs: a pair of positions
 * (i, j) moves on a character both sides can consume. A star can consume any
 * non-separator, so star-vs-literal advances the literal side only when the literal is
 * not a separator; star-vs-star consumes a fresh character and stays put, which never
 * helps reach the end, so it is not explored. The answer is exact, not a heuristic.
 */
export function globsIntersect(a: string, b: string): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') throw new TypeError('globsIntersect: globs must be strings');
  if (!hasWildcard(a) && !hasWildcard(b)) return a === b;
  if (!hasWildcard(a)) return compileGlob(b)(a);
  if (!hasWildcard(b)) return compileGlob(a)(b);
  const ta = tokenize(a);
  const tb = tokenize(b);
  const m = ta.length;
  const n = tb.length;
  const width = n + 1;
  const seen = new Uint8Array((m + 1) * width);
  const queue: number[] = [0];
  seen[0] = 1;
  const push = (i: number, j: number) => {
    const key = i * width + j;
    if (seen[key] === 0) {
      seen[key] = 1;
      queue.push(key);
    }
  };
  for (let q = 0; q < queue.length; q++) {
    const key = queue[q] as number;
    const i = Math.floor(key / width);
    const j = key % width;
    if (i === m && j === n) return true;
    const x = i < m ? (ta[i] as number) : undefined;
    const y = j < n ? (tb[j] as number) : undefined;
    // ε-moves: a star may match the empty string.
    if (x === STAR) push(i + 1, j);
    if (y === STAR) push(i, j + 1);
    if (x === undefined || y === undefined) continue;
    if (x !== STAR && y !== STAR) {
      if (x === y) push(i + 1, j + 1);
    } else if (x === STAR && y !== STAR) {
      if (!isSeparator(y)) push(i, j + 1);
    } else if (y === STAR && x !== STAR) {
      if (!isSeparator(x)) push(i + 1, j);
    }
  }
  return false;
}
