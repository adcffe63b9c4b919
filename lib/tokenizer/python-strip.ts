/**
 * Python's `str.strip([chars])`, `lstrip`, `rstrip`. Without `chars` Python strips the characters
 * for which `str.isspace()` is true, which is not JavaScript's `trim()` set: Python strips
 * U+001C–U+001F and U+0085 and keeps U+FEFF. With `chars` it strips any of those code points.
 */

const PY_WHITESPACE = new Set(
  [
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
    0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
  ].map((c) => String.fromCharCode(c)),
);

/** The set of code points to strip: `chars`' code points, or Python's whitespace when none given. */
function stripSet(chars: string | null | undefined): ReadonlySet<string> {
  return chars === undefined || chars === null ? PY_WHITESPACE : new Set(Array.from(chars));
}

/** Python's `s.lstrip(chars)`. */
export function pyLstrip(s: string, chars?: string | null): string {
  const set = stripSet(chars);
  let start = 0;
  while (start < s.length) {
    const ch = String.fromCodePoint(s.codePointAt(start) as number);
    if (!set.has(ch)) break;
    start += ch.length;
  }
  return s.slice(start);
}

/** Python's `s.rstrip(chars)`. */
export function pyRstrip(s: string, chars?: string | null): string {
  const set = stripSet(chars);
  let end = s.length;
  while (end > 0) {
    // The code point that ends at `end`: a surrogate pair, or one unit.
    const pair = end >= 2 && /[\uDC00-\uDFFF]/.test(s[end - 1]) && /[\uD800-\uDBFF]/.test(s[end - 2]);
    const ch = s.slice(end - (pair ? 2 : 1), end);
    if (!set.has(ch)) break;
    end -= ch.length;
  }
  return s.slice(0, end);
}

/** Python's `s.strip(chars)`. */
export function pyStrip(s: string, chars?: string | null): string {
  return pyLstrip(pyRstrip(s, chars), chars);
}
