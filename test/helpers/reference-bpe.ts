/**
 * An independent byte-level BPE encoder for tests, written from the algorithm's description
 * (GPT-2's encoder.py: bytes as printable characters, then merge the lowest-ranked adjacent pair
 * everywhere until no ranked pair is left), reading a tokenizer.json's vocab and merges directly.
 * It shares no code with lib/tokenizer or @huggingface/tokenizers.
 */

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 onward. */
function gpt2ByteChars(): string[] {
  const chars = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; ++b) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}

export interface ReferenceBpeSpec {
  /** tokenizer.json's model.vocab. */
  vocab: Record<string, number>;
  /** tokenizer.json's model.merges ("a b" strings or [a, b] pairs). */
  merges: (string | [string, string])[];
  /** The pre-tokenizer's split, as a global JS regex that matches every character of the text. */
  split: RegExp;
  /** Added tokens matched whole before anything else: text → id. */
  added?: Record<string, number>;
  /** Look a whole piece up before merging (tokenizer.json's model.ignore_merges). */
  ignoreMerges?: boolean;
  /** The normalizer (e.g. NFC), applied to text between added tokens. */
  normalize?: (text: string) => string;
}

export class ReferenceBpe {
  private readonly byteChars = gpt2ByteChars();
  private readonly ranks = new Map<string, number>();

  constructor(private readonly spec: ReferenceBpeSpec) {
    spec.merges.forEach((m, i) => {
      const [a, b] = typeof m === "string" ? m.split(" ") : m;
      this.ranks.set(`${a}\u0000${b}`, i);
    });
  }

  encode(text: string): number[] {
    const added = Object.keys(this.spec.added ?? {}).sort((x, y) => y.length - x.length);
    const ids: number[] = [];
    let rest = text;
    while (rest.length > 0) {
      // The leftmost added token, the longest one at that position.
      let at = rest.length;
      let hit: string | undefined;
      for (const token of added) {
        const i = rest.indexOf(token);
        if (i >= 0 && (i < at || (i === at && hit !== undefined && token.length > hit.length))) {
          at = i;
          hit = token;
        }
      }
      ids.push(...this.encodeText(rest.slice(0, at)));
      if (hit === undefined) break;
      ids.push((this.spec.added as Record<string, number>)[hit]);
      rest = rest.slice(at + hit.length);
    }
    return ids;
  }

  private encodeText(text: string): number[] {
    const normalized = this.spec.normalize ? this.spec.normalize(text) : text;
    const ids: number[] = [];
    let covered = 0;
    for (const match of normalized.matchAll(this.spec.split)) {
      if (match.index !== covered) throw new Error(`reference split left a gap at ${covered}`);
      covered += match[0].length;
      ids.push(...this.encodePiece(match[0]));
    }
    if (covered !== normalized.length) throw new Error("reference split did not reach the end");
    return ids;
  }

  private encodePiece(piece: string): number[] {
    const bytes = new TextEncoder().encode(piece);
    let symbols = Array.from(bytes, (b) => this.byteChars[b]);
    const whole = symbols.join("");
    if (this.spec.ignoreMerges && this.spec.vocab[whole] !== undefined) return [this.spec.vocab[whole]];
    for (;;) {
      let best = Infinity;
      for (let i = 0; i + 1 < symbols.length; ++i) {
        const rank = this.ranks.get(`${symbols[i]}\u0000${symbols[i + 1]}`);
        if (rank !== undefined && rank < best) best = rank;
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; ++i) {
        if (i + 1 < symbols.length && this.ranks.get(`${symbols[i]}\u0000${symbols[i + 1]}`) === best) {
          merged.push(symbols[i] + symbols[i + 1]);
          ++i;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols.map((s) => {
      const id = this.spec.vocab[s];
      if (id === undefined) throw new Error(`reference BPE: "${s}" is not in the vocabulary`);
      return id;
    });
  }
}

/** Llama 3's split, with its (?i:...) contractions spelled out for JavaScript. */
export const LLAMA3_SPLIT = /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** Qwen2's split: Llama 3's, with single digits. */
export const QWEN2_SPLIT = /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
