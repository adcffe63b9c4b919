/**
 * The byte-level BPE trainer: merges checked by hand on a tiny corpus, the written tokenizer.json
 * checked against an independent reference encoder, lossless round trips through
 * @huggingface/tokenizers, special tokens, determinism, and the files init-model writes.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
  CHAT_SPECIAL_TOKENS,
  defaultCorpus,
  loadChatTemplate,
  loadTokenizer,
  saveTokenizerFiles,
  Tokenizer,
  trainByteLevelBpe,
  trainChatTokenizer,
} from "../lib/tokenizer";
import { Rng } from "./helpers/random";
import { LLAMA3_SPLIT, ReferenceBpe } from "./helpers/reference-bpe";

const fromJson = (json: object, config: object = {}) => Tokenizer.fromFiles({ tokenizer: json, config, source: "trained" });
/** The vocabulary's tokens in id order (an object lists integer-like keys such as "0" first). */
const byId = (vocab: Record<string, number>) => Object.entries(vocab).sort((a, b) => a[1] - b[1]).map(([token]) => token);

describe("trainByteLevelBpe", () => {
  it("learns the textbook merges of aaabdaaabac", () => {
    // Pairs: aa 4 (overlapping), ab 2, the rest 1 → merge aa. Then "aa a b d aa a b a c": aa+a 2 and
    // a+b 2 tie; (a, b) has the smaller ids (bytes come before merges) → merge ab. Then aa+ab 2 →
    // merge. Everything left occurs once, below the default minimum of 2.
    const json = trainByteLevelBpe("aaabdaaabac", { vocabSize: 1000 });
    expect(json.model.merges).toEqual([
      ["a", "a"],
      ["a", "b"],
      ["aa", "ab"],
    ]);
    expect(byId(json.model.vocab).slice(256)).toEqual(["aa", "ab", "aaab"]);
    const tok = fromJson(json);
    const v = json.model.vocab;
    expect(tok.encode("aaabdaaabac")).toEqual([v.aaab, v.d, v.aaab, v.a, v.c]);
  });

  it("writes GPT-2's byte alphabet as the first 256 tokens", () => {
    const json = trainByteLevelBpe("", { vocabSize: 256 });
    const tokens = byId(json.model.vocab);
    expect(tokens).toHaveLength(256);
    // Printable ASCII first (id 0 is "!"), then Latin-1 (¡ is 94, ÿ is 187); the other bytes follow
    // as U+0100 onward: byte 0 is Ā (188), newline (10) Ċ (198), space (32) Ġ (220), as in GPT-2.
    expect([tokens[0], tokens[93], tokens[94], tokens[187]]).toEqual(["!", "~", "¡", "ÿ"]);
    expect([json.model.vocab["Ā"], json.model.vocab["Ċ"], json.model.vocab["Ġ"]]).toEqual([188, 198, 220]);
    expect(new Set(tokens).size).toBe(256);
  });

  it("stops at the vocabulary size, special tokens included, and gives them the last ids", () => {
    const json = trainByteLevelBpe(defaultCorpus(), { vocabSize: 400, specialTokens: CHAT_SPECIAL_TOKENS });
    expect(Object.keys(json.model.vocab)).toHaveLength(397);
    expect(json.added_tokens.map((t) => [t.content, t.id, t.special])).toEqual([
      ["<|endoftext|>", 397, true],
      ["<|im_start|>", 398, true],
      ["<|im_end|>", 399, true],
    ]);
    expect(fromJson(json).vocabSize).toBe(400);
    // Every merge's parts and result are in the vocabulary (Hugging Face refuses the file otherwise).
    for (const [a, b] of json.model.merges) {
      expect([json.model.vocab[a], json.model.vocab[b], json.model.vocab[a + b]].every((id) => id !== undefined)).toBe(true);
    }
  });

  it("never learns across a special token", () => {
    const json = trainByteLevelBpe("xy<|sep|>zw ".repeat(20), { vocabSize: 300, specialTokens: ["<|sep|>"], minFrequency: 1 });
    const merged = byId(json.model.vocab).slice(256);
    expect(merged).toEqual(expect.arrayContaining(["xy", "zw"]));
    expect(merged.filter((t) => /[<|>]/.test(t))).toEqual([]);
  });

  it("is deterministic", () => {
    const a = JSON.stringify(trainByteLevelBpe(defaultCorpus(), { vocabSize: 700, specialTokens: CHAT_SPECIAL_TOKENS }));
    const b = JSON.stringify(trainByteLevelBpe(defaultCorpus(), { vocabSize: 700, specialTokens: CHAT_SPECIAL_TOKENS }));
    expect(a).toBe(b);
    // The corpus split into two texts counts the same words.
    const corpus = defaultCorpus();
    const cut = corpus.indexOf("\n\n", 3000) + 2;
    expect(JSON.stringify(trainByteLevelBpe([corpus.slice(0, cut), corpus.slice(cut)], { vocabSize: 700, specialTokens: CHAT_SPECIAL_TOKENS }))).toBe(a);
  });

  it("rejects bad options", () => {
    expect(() => trainByteLevelBpe("x", { vocabSize: 257, specialTokens: ["a", "b"] })).toThrow(/vocabSize must be an integer from 258/);
    expect(() => trainByteLevelBpe("x", { vocabSize: 300.5 })).toThrow(/vocabSize must be an integer/);
    expect(() => trainByteLevelBpe("x", { vocabSize: 300, specialTokens: ["a", "a"] })).toThrow(/distinct non-empty/);
    expect(() => trainByteLevelBpe("x", { vocabSize: 300, minFrequency: 0 })).toThrow(/minFrequency must be a positive integer/);
  });
});

describe("the trained tokenizer", () => {
  const json = trainByteLevelBpe(defaultCorpus(), { vocabSize: 600, specialTokens: CHAT_SPECIAL_TOKENS });
  const tok = fromJson(json, { eos_token: "<|im_end|>" });
  const reference = new ReferenceBpe({
    vocab: json.model.vocab,
    merges: json.model.merges,
    split: LLAMA3_SPLIT,
    added: Object.fromEntries(json.added_tokens.map((t) => [t.content, t.id])),
  });

  const texts = [
    "The keeper lit the lamp at dusk. Wind north-east. All well.",
    "plain ASCII: ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
    "accents: naïve café résumé Ångström Æsir façade",
    "emoji: 🤗 👍🏽 👨‍👩‍👧 🏳️‍🌈",
    "CJK: 東京タワー 北京 서울 ひらがな",
    "whitespace:   three\t\ttabs\n\n\nnewlines\r\n  \u00a0nbsp \u3000 ideographic   ",
    "control \u0000\u0001\u001f\u007f bytes",
    "",
  ];

  it("round-trips any text losslessly", () => {
    const rng = new Rng(7);
    const random = Array.from({ length: 200 }, () =>
      String.fromCodePoint(...Array.from({ length: rng.int(1, 20) }, () => {
        // Any scalar value: skip the surrogate range, which UTF-8 cannot hold.
        const cp = rng.int(0, 0x10ffff - 0x800);
        return cp < 0xd800 ? cp : cp + 0x800;
      })),
    );
    for (const text of [...texts, ...random]) expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it("encodes as the standard BPE algorithm does over its vocab and merges", () => {
    for (const text of texts) expect({ text, ids: tok.encode(text) }).toEqual({ text, ids: reference.encode(text) });
    // Common words of the corpus became single tokens.
    expect(tok.encode(" the")).toEqual([json.model.vocab["Ġthe"]]);
  });

  it("keeps special tokens as single ids", () => {
    const ids = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|endoftext|>");
    expect(ids[0]).toBe(598);
    expect(ids.filter((id) => id >= 597)).toEqual([598, 599, 597]);
    expect(tok.decode(ids)).toBe("<|im_start|>user\nhi<|im_end|>\n<|endoftext|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("user\nhi\n");
    expect(tok.eosTokenId).toBe(599);
  });
});

describe("trainChatTokenizer and saveTokenizerFiles", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-bpe-"));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it("writes a folder that loads as a ChatML tokenizer", () => {
    const dir = path.join(root, "new", "tokenizer");
    saveTokenizerFiles(dir, trainChatTokenizer({ vocabSize: 512 }));
    expect(fs.readdirSync(dir).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    const tok = loadTokenizer(dir);
    expect([tok.vocabSize, tok.bosToken, tok.eosToken, tok.eosTokenId, tok.padToken, tok.padTokenId]).toEqual([512, null, "<|im_end|>", 511, "<|endoftext|>", 509]);
    const prompt = loadChatTemplate(undefined, { tokenizer: tok }).render([{ role: "user", content: "Hi there" }], { addGenerationPrompt: true });
    expect(prompt).toBe("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    expect(tok.decode(tok.encode(prompt))).toBe(prompt);
  });

  it("replaces existing files whole", () => {
    const dir = path.join(root, "replaced");
    saveTokenizerFiles(dir, trainChatTokenizer({ vocabSize: 300 }));
    saveTokenizerFiles(dir, trainChatTokenizer({ vocabSize: 400 }));
    expect(fs.readdirSync(dir).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    expect(loadTokenizer(dir).vocabSize).toBe(400);
  });
});
