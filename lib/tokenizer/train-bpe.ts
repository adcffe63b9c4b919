/**
 * A byte-level BPE trainer that writes a Hugging Face tokenizer.json, for the small offline models
 * of `rlhf-native init-model` and for tests.
 *
 * The tokenizer it makes is shaped like Llama 3's: text is split by Llama 3's regex (contractions,
 * letter runs with one leading non-letter, digits in groups of up to three, punctuation runs,
 * newline runs, other whitespace runs), each piece's UTF-8 bytes are written as GPT-2's printable
 * byte characters (the ByteLevel pre-tokenizer), and BPE merges those. All 256 byte tokens are in
 * the vocabulary, so every UTF-8 text encodes and decodes losslessly. Special tokens are added
 * tokens with the ids after the vocabulary.
 *
 * Training is the standard algorithm (Sennrich et al.; Hugging Face's BpeTrainer): count every
 * adjacent pair of tokens over the pre-tokenized words, weighted by word frequency; merge the most
 * frequent pair everywhere; repeat until the vocabulary is full or no pair is frequent enough.
 * Ties go to the pair with the smaller (left id, right id), so the result depends on the corpus
 * alone.
 */
import * as fs from "fs";
import * as path from "path";
import { SequencePreTokenizer } from "@huggingface/tokenizers";

import { RlhfError } from "../errors";
import { presetChatTemplate, tokenizerDataPath } from "./chat-template";

/** Llama 3's pre-tokenizer split (tokenizer.json's Regex, Oniguruma syntax). */
const LLAMA3_SPLIT_PATTERN = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

const PRE_TOKENIZER = {
  type: "Sequence" as const,
  pretokenizers: [
    { type: "Split" as const, pattern: { Regex: LLAMA3_SPLIT_PATTERN }, behavior: "Isolated" as const, invert: false },
    { type: "ByteLevel" as const, add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
};

/** The special tokens of the chat tokenizer init-model uses (ChatML, as Qwen and SmolLM2 have them). */
export const CHAT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;

export interface TrainBpeOptions {
  /**
   * Total number of ids: the 256 byte tokens, the learned merges and the special tokens. Fewer
   * come out when the corpus runs out of pairs that occur `minFrequency` times (the shipped
   * corpus gives about 800); the returned vocabulary is the truth.
   */
  vocabSize: number;
  /** Added special tokens, given the last ids in this order (default: none). */
  specialTokens?: readonly string[];
  /** Stop when the most frequent pair occurs fewer times than this (default 2). */
  minFrequency?: number;
}

/** The tokenizer.json the trainer writes. */
export interface ByteLevelBpeJson {
  version: "1.0";
  truncation: null;
  padding: null;
  added_tokens: {
    id: number;
    content: string;
    single_word: false;
    lstrip: false;
    rstrip: false;
    normalized: false;
    special: true;
  }[];
  normalizer: null;
  pre_tokenizer: typeof PRE_TOKENIZER;
  post_processor: { type: "ByteLevel"; add_prefix_space: true; trim_offsets: false; use_regex: true };
  decoder: { type: "ByteLevel"; add_prefix_space: true; trim_offsets: true; use_regex: true };
  model: {
    type: "BPE";
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: false;
    byte_fallback: false;
    ignore_merges: false;
    /** token → id; ids 0–255 are the byte tokens in GPT-2's order, then the merges' tokens. */
    vocab: Record<string, number>;
    /** In the order learned; a merge's rank is its index. */
    merges: [string, string][];
  };
}

/**
 * GPT-2's byte alphabet, in token-id order: printable bytes (! to ~, ¡ to ¬, ® to ÿ) stand for
 * themselves and come first; the other 68 (controls, space, ...) become U+0100 onward in byte
 * order, so no token holds whitespace. The ByteLevel pre-tokenizer writes bytes the same way.
 */
const BYTE_TOKENS = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const tokens: string[] = [];
  for (let b = 0; b < 256; ++b) if (printable(b)) tokens.push(String.fromCharCode(b));
  for (let b = 0, extra = 0; b < 256; ++b) if (!printable(b)) tokens.push(String.fromCharCode(256 + extra++));
  return tokens;
})();

/** Pair (a, b) as one map key; ids stay below 2^20 so the key is an exact double. */
const PAIR_SHIFT = 1 << 20;
const pairKey = (a: number, b: number) => a * PAIR_SHIFT + b;

/** Learns byte-level BPE merges from `corpus` and returns the tokenizer.json object. */
export function trainByteLevelBpe(corpus: string | readonly string[], options: TrainBpeOptions): ByteLevelBpeJson {
  const specials = [...(options.specialTokens ?? [])];
  const minFrequency = options.minFrequency ?? 2;
  const { vocabSize } = options;
  if (new Set(specials).size !== specials.length || specials.some((s) => s === "")) {
    throw new RlhfError(`BPE training: special tokens must be distinct non-empty strings, got ${JSON.stringify(specials)}`);
  }
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specials.length || vocabSize > PAIR_SHIFT) {
    throw new RlhfError(`BPE training: vocabSize must be an integer from ${256 + specials.length} (256 bytes + ${specials.length} special tokens) to ${PAIR_SHIFT}, got ${vocabSize}`);
  }
  if (!Number.isInteger(minFrequency) || minFrequency < 1) {
    throw new RlhfError(`BPE training: minFrequency must be a positive integer, got ${minFrequency}`);
  }

  const tokens = BYTE_TOKENS.slice();
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  const { words, counts } = countWords(typeof corpus === "string" ? [corpus] : corpus, specials, idOf);
  const pairs = new PairStats(words, counts);

  const merges: [string, string][] = [];
  const recorded = new Set<number>();
  while (tokens.length + specials.length < vocabSize) {
    const best = pairs.popBest(minFrequency);
    if (best === undefined) break;
    const [a, b] = best;
    const text = tokens[a] + tokens[b];
    // Two different pairs can spell the same token ("a"+"bc", "ab"+"c"): it keeps its first id,
    // as in Hugging Face's trainer, and a pair merged again is not listed twice.
    let id = idOf.get(text);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(text);
      idOf.set(text, id);
    }
    if (!recorded.has(pairKey(a, b))) {
      recorded.add(pairKey(a, b));
      merges.push([tokens[a], tokens[b]]);
    }
    pairs.merge(a, b, id);
  }

  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => ({
      id: tokens.length + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: structuredClone(PRE_TOKENIZER),
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
      merges,
    },
  };
}

/**
 * The distinct pre-tokenized words of the corpus as byte-token ids, with their counts. Special
 * tokens are cut out first: encoding matches them whole, so their text never reaches BPE.
 */
function countWords(texts: readonly string[], specials: readonly string[], idOf: ReadonlyMap<string, number>): { words: number[][]; counts: number[] } {
  const preTokenizer = new SequencePreTokenizer(PRE_TOKENIZER);
  const escaped = specials.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const specialSplit = escaped.length > 0 ? new RegExp(escaped.join("|"), "u") : undefined;
  const frequency = new Map<string, number>();
  for (const text of texts) {
    for (const chunk of specialSplit ? text.split(specialSplit) : [text]) {
      if (chunk === "") continue;
      for (const word of preTokenizer.pre_tokenize(chunk)) frequency.set(word, (frequency.get(word) ?? 0) + 1);
    }
  }
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [word, count] of frequency) {
    // Every character of a ByteLevel piece is one of the 256 byte characters.
    words.push(Array.from(word, (ch) => idOf.get(ch) as number));
    counts.push(count);
  }
  return { words, counts };
}

/**
 * Pair counts over the words, the words each pair occurs in, and a max-heap of (count, pair)
 * entries. Entries go stale when counts change; a popped entry whose count is no longer current
 * is pushed again with the current count (the lazy update of Hugging Face's trainer).
 */
class PairStats {
  private readonly count = new Map<number, number>();
  private readonly where = new Map<number, Set<number>>();
  private readonly heap: { key: number; count: number }[] = [];

  constructor(
    private readonly words: number[][],
    private readonly wordCounts: readonly number[],
  ) {
    for (let w = 0; w < words.length; ++w) this.addWord(w, 1);
    for (const [key, count] of this.count) this.push(key, count);
  }

  /** The most frequent pair with at least `minFrequency` occurrences, removed from the heap. */
  popBest(minFrequency: number): [number, number] | undefined {
    for (;;) {
      const top = this.pop();
      if (top === undefined) return undefined;
      const current = this.count.get(top.key) ?? 0;
      if (current !== top.count) {
        if (current > 0) this.push(top.key, current);
        continue;
      }
      if (current < minFrequency) return undefined;
      return [Math.floor(top.key / PAIR_SHIFT), top.key % PAIR_SHIFT];
    }
  }

  /** Replaces every (a, b) in every word, left to right, by `id`, and updates the counts. */
  merge(a: number, b: number, id: number): void {
    const key = pairKey(a, b);
    const touched = new Set<number>();
    for (const w of this.where.get(key) ?? []) {
      const word = this.words[w];
      let found = false;
      for (let i = 0; i + 1 < word.length; ++i) {
        if (word[i] === a && word[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue;
      this.addWord(w, -1, touched);
      const merged: number[] = [];
      for (let i = 0; i < word.length; ++i) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          merged.push(id);
          ++i;
        } else {
          merged.push(word[i]);
        }
      }
      this.words[w] = merged;
      this.addWord(w, 1, touched);
    }
    this.where.delete(key);
    for (const k of touched) {
      const c = this.count.get(k) ?? 0;
      if (c > 0) this.push(k, c);
      else this.count.delete(k);
    }
  }

  /** Adds (sign 1) or removes (sign -1) word w's pairs, weighted by its count. */
  private addWord(w: number, sign: 1 | -1, touched?: Set<number>): void {
    const word = this.words[w];
    const weight = sign * this.wordCounts[w];
    for (let i = 0; i + 1 < word.length; ++i) {
      const key = pairKey(word[i], word[i + 1]);
      this.count.set(key, (this.count.get(key) ?? 0) + weight);
      touched?.add(key);
      if (sign > 0) {
        let set = this.where.get(key);
        if (set === undefined) this.where.set(key, (set = new Set()));
        set.add(w);
      }
    }
  }

  /** Heap order: higher count first, then the smaller pair key (left id, then right id). */
  private before(i: number, j: number): boolean {
    const x = this.heap[i];
    const y = this.heap[j];
    return x.count !== y.count ? x.count > y.count : x.key < y.key;
  }

  private push(key: number, count: number): void {
    const heap = this.heap;
    heap.push({ key, count });
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  private pop(): { key: number; count: number } | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0];
    const last = heap.pop() as { key: number; count: number };
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && this.before(l, m)) m = l;
        if (r < heap.length && this.before(r, m)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    }
    return top;
  }
}

/** The English text shipped for training the offline tokenizer (data/corpus/english.txt). */
export function defaultCorpus(): string {
  return fs.readFileSync(tokenizerDataPath("corpus", "english.txt"), "utf8");
}

/** tokenizer.json and tokenizer_config.json of a trained chat tokenizer. */
export interface TrainedTokenizerFiles {
  tokenizer: ByteLevelBpeJson;
  config: Record<string, unknown>;
}

/**
 * A small ChatML tokenizer as Hugging Face would load it: BPE trained on `corpus` (default: the
 * shipped English text), special tokens <|endoftext|> (pad), <|im_start|>, <|im_end|> (eos), no
 * BOS (like Qwen2.5), and axolotl's `chatml` template.
 */
export function trainChatTokenizer(options: { vocabSize: number; corpus?: string | readonly string[] }): TrainedTokenizerFiles {
  const tokenizer = trainByteLevelBpe(options.corpus ?? defaultCorpus(), { vocabSize: options.vocabSize, specialTokens: CHAT_SPECIAL_TOKENS });
  const addedTokensDecoder = Object.fromEntries(
    tokenizer.added_tokens.map(({ id, ...token }) => [String(id), token]),
  );
  return {
    tokenizer,
    config: {
      added_tokens_decoder: addedTokensDecoder,
      bos_token: null,
      eos_token: "<|im_end|>",
      pad_token: "<|endoftext|>",
      unk_token: null,
      chat_template: presetChatTemplate("chatml"),
      clean_up_tokenization_spaces: false,
      model_max_length: 131072,
      tokenizer_class: "PreTrainedTokenizerFast",
    },
  };
}

/**
 * Writes tokenizer.json and tokenizer_config.json into `dir` (created if needed). Each file is
 * written under a temporary name and renamed, so a crash never leaves a half-written file.
 */
export function saveTokenizerFiles(dir: string, files: TrainedTokenizerFiles): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of [["tokenizer.json", files.tokenizer], ["tokenizer_config.json", files.config]] as const) {
    const target = path.join(dir, name);
    const temp = `${target}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(temp, JSON.stringify(content, null, 2) + "\n");
      fs.renameSync(temp, target);
    } catch (e) {
      fs.rmSync(temp, { force: true });
      throw new RlhfError(`cannot write ${target}: ${(e as Error).message}`);
    }
  }
}
