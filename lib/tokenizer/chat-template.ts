/**
 * Chat templates rendered as Hugging Face transformers renders them (`apply_chat_template(...,
 * tokenize=False)`), and the `chat_template:` choices of an axolotl config.
 *
 * transformers compiles a template with Python Jinja2 (`trim_blocks`, `lstrip_blocks`, one trailing
 * newline of the source dropped, every newline of the source normalized to "\n"), adds the globals
 * `raise_exception(message)` and `strftime_now(format)` and a `tojson` filter that keeps non-ASCII
 * text and key order, and renders with `messages`, `tools`, `documents`, `add_generation_prompt`,
 * the tokenizer's named special tokens (`bos_token`, `eos_token`, ...) and the caller's extra
 * variables (which override the special tokens). `@huggingface/jinja` does the lexing and the
 * whitespace control; this module supplies the rest: the newline normalization, the globals (our
 * own, so that `raise_exception` surfaces as a ChatTemplateError of its own), Python's `strip`
 * family (jinja-python.ts), `tools`/`documents` as none rather than undefined, and
 * `continue_final_message`.
 *
 * Differences left (checked against Python Jinja2 with transformers' environment): `length` and
 * slices count UTF-16 units where Python counts code points (only characters beyond U+FFFF, such
 * as emoji, differ); printing a value that is not text differs (`{{ none }}` prints nothing where
 * Python prints "None", `{{ true }}` "true" for "True", a mapping prints as JSON); the `{%+ %}` and
 * `{% +%}` whitespace modifiers are not parsed. The shipped presets and common model templates use
 * none of these.
 */
import * as fs from "fs";
import * as path from "path";
import { Environment, Interpreter, parse, tokenize } from "@huggingface/jinja";

import { RlhfError } from "../errors";
import { pythonStringGlobals, usePythonStrip } from "./jinja-python";
import { pyRstrip, pyStrip } from "./python-strip";

/** A JSON value, as messages, tools and template variables are. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * One chat message: `role` and `content` (a string, or a list of parts such as `{type: "text",
 * text}`), plus whatever else a template reads (`tool_calls`, `name`, `reasoning_content`, ...).
 */
export interface ChatMessage {
  role: string;
  content?: JsonValue;
  [key: string]: JsonValue | undefined;
}

export interface ChatRenderOptions {
  /** Append the header that starts the assistant's reply (default false). */
  addGenerationPrompt?: boolean;
  /**
   * End the text inside the last message, so that generation continues it: transformers'
   * `continue_final_message` (TRL uses it for a conversation that ends with an assistant turn).
   */
  continueFinalMessage?: boolean;
  /** Tool (function) schemas; none by default. */
  tools?: readonly JsonValue[] | null;
  /** Documents for retrieval-augmented templates; none by default. */
  documents?: readonly JsonValue[] | null;
  /**
   * Extra template variables (axolotl's `chat_template_kwargs`, e.g. `enable_thinking`); as in
   * transformers they override the special tokens of the same name.
   */
  variables?: Readonly<Record<string, JsonValue>>;
  /** The clock `strftime_now` reads (default: now). */
  now?: Date;
}

/** A template failed: bad Jinja, an error while rendering, or the template's own `raise_exception`. */
export class ChatTemplateError extends RlhfError {
  constructor(
    message: string,
    /** The template's name: a preset, "tokenizer_default", "jinja", or what the caller named it. */
    readonly templateName: string,
    /** The message the template passed to `raise_exception`, when that is what failed. */
    readonly raised?: string,
  ) {
    super(message);
    this.name = "ChatTemplateError";
  }
}

/** Thrown by our `raise_exception` global and turned into a ChatTemplateError by `render`. */
class RaisedByTemplate extends Error {}

type Program = ReturnType<typeof parse>;

/** Variables the render call itself sets; an extra variable may not take these names. */
const RESERVED_VARIABLES = new Set(["messages", "tools", "documents", "add_generation_prompt"]);

/** What transformers appends to the last message for `continue_final_message`. */
const CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG ";

/** A compiled chat template bound to a tokenizer's special tokens. */
export class ChatTemplate {
  /** Used in error messages. */
  readonly name: string;
  /** The special-token variables every render gets. */
  readonly specialTokens: Readonly<Record<string, string>>;
  private readonly program: Program;

  /**
   * @param source the Jinja text, exactly as the tokenizer or preset file has it.
   * @param options.name used in error messages (default "chat template").
   * @param options.specialTokens `bos_token`, `eos_token`, ... as template variables: the
   *   tokenizer's `specialTokensMap`.
   */
  constructor(
    readonly source: string,
    options: { name?: string; specialTokens?: Readonly<Record<string, string>> } = {},
  ) {
    this.name = options.name ?? "chat template";
    this.specialTokens = { ...(options.specialTokens ?? {}) };
    try {
      // Python Jinja reads every "\r\n" or "\r" of the source as "\n", also inside string literals.
      const normalized = source.replace(/\r\n?/g, "\n");
      this.program = parse(tokenize(normalized, { lstrip_blocks: true, trim_blocks: true }));
    } catch (e) {
      throw new ChatTemplateError(`chat template "${this.name}" is not valid Jinja: ${errorText(e)}`, this.name);
    }
    usePythonStrip(this.program);
  }

  /** Renders a conversation to the prompt text, as `apply_chat_template(tokenize=False)` does. */
  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): string {
    const addGenerationPrompt = options.addGenerationPrompt ?? false;
    if (!options.continueFinalMessage) return this.renderOnce(messages, addGenerationPrompt, options);

    if (addGenerationPrompt) {
      throw new RlhfError("continueFinalMessage and addGenerationPrompt cannot both be set: one continues the last message, the other starts a new one");
    }
    const { conversation, finalText } = this.tagFinalMessage(messages);
    const rendered = this.renderOnce(conversation, false, options);
    const tag = CONTINUE_TAG.trimEnd();
    if (!rendered.includes(pyStrip(finalText)) || !rendered.includes(tag)) {
      throw new ChatTemplateError(
        `chat template "${this.name}" does not reproduce the final message, so it cannot be continued (the template changes or drops it)`,
        this.name,
      );
    }
    const at = rendered.lastIndexOf(tag);
    // A template that keeps the text verbatim keeps the tag's trailing space; one that trims the
    // content loses it, and then transformers strips the whitespace before the tag too.
    return rendered.startsWith(CONTINUE_TAG, at) ? rendered.slice(0, at) : pyRstrip(rendered.slice(0, at));
  }

  /** The conversation with the tag appended to the last message's text, and that text. */
  private tagFinalMessage(messages: readonly ChatMessage[]): { conversation: ChatMessage[]; finalText: string } {
    const last = messages.at(-1);
    if (last === undefined || last.content === undefined || last.content === null) {
      throw new RlhfError('continueFinalMessage: the final message has no "content" to continue');
    }
    if (!this.source.includes("content")) {
      throw new ChatTemplateError(`chat template "${this.name}" never reads "content", so the final message cannot be continued`, this.name);
    }
    const conversation = messages.slice(0, -1);
    const content = last.content;
    if (typeof content === "string") {
      conversation.push({ ...last, content: content + CONTINUE_TAG });
      return { conversation, finalText: content };
    }
    if (Array.isArray(content)) {
      // The last part that has text (transformers searches from the end).
      for (let i = content.length - 1; i >= 0; --i) {
        const part = content[i];
        if (part !== null && typeof part === "object" && !Array.isArray(part) && typeof part.text === "string") {
          const parts = content.slice();
          parts[i] = { ...part, text: part.text + CONTINUE_TAG };
          conversation.push({ ...last, content: parts });
          return { conversation, finalText: part.text };
        }
      }
    }
    throw new RlhfError("continueFinalMessage: the final message has no text to continue");
  }

  private renderOnce(messages: readonly ChatMessage[], addGenerationPrompt: boolean, options: ChatRenderOptions): string {
    for (const name of Object.keys(options.variables ?? {})) {
      if (RESERVED_VARIABLES.has(name)) {
        throw new RlhfError(`chat template variable "${name}" is set by the renderer itself and cannot be passed as an extra variable`);
      }
    }
    const variables = { ...this.specialTokens, ...(options.variables ?? {}) };
    // Globals live in a parent scope so that a caller's variable of the same name shadows them,
    // as keyword arguments shadow globals in Python Jinja.
    const globals = hfGlobals(options.now ?? new Date());
    const env = new Environment(globals);
    for (const [name, value] of Object.entries(variables)) env.set(name, value);
    env.set("messages", messages);
    env.set("tools", options.tools ?? null);
    env.set("documents", options.documents ?? null);
    env.set("add_generation_prompt", addGenerationPrompt);
    try {
      const out = new Interpreter(env).run(this.program).value;
      if (typeof out !== "string") throw new Error(`rendered to ${typeof out}, not text`);
      return out;
    } catch (e) {
      if (e instanceof RaisedByTemplate) {
        throw new ChatTemplateError(`chat template "${this.name}" rejected the conversation: ${e.message}`, this.name, e.message);
      }
      throw new ChatTemplateError(`chat template "${this.name}" failed to render: ${errorText(e)}`, this.name);
    }
  }
}

/** The globals transformers' environment adds to Jinja's (true/false/none in both spellings). */
function hfGlobals(now: Date): Environment {
  const env = new Environment();
  for (const [name, value] of [["true", true], ["false", false], ["none", null], ["True", true], ["False", false], ["None", null]] as const) {
    env.set(name, value);
  }
  env.set("raise_exception", (message: unknown) => {
    throw new RaisedByTemplate(String(message));
  });
  env.set("strftime_now", (format: unknown) => strftime(now, String(format)));
  env.set("range", pythonRange);
  for (const [name, fn] of Object.entries(pythonStringGlobals())) env.set(name, fn);
  return env;
}

/** Python's `range(stop)` / `range(start, stop[, step])` over integers. */
function pythonRange(...args: unknown[]): number[] {
  const nums = args.map((a) => {
    if (typeof a !== "number" || !Number.isInteger(a)) throw new Error(`range() takes integers, got ${String(a)}`);
    return a;
  });
  if (nums.length < 1 || nums.length > 3) throw new Error(`range() takes 1 to 3 arguments, got ${nums.length}`);
  const [start, stop, step] = nums.length === 1 ? [0, nums[0], 1] : [nums[0], nums[1], nums[2] ?? 1];
  if (step === 0) throw new Error("range() step must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/**
 * Python's `datetime.strftime` in the C locale (what transformers' `strftime_now` formats with),
 * local time; directives beyond these common ones are left as written.
 */
function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const startOfYear = new Date(date.getFullYear(), 0, 1);
  const dayOfYear = Math.round((new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime() - startOfYear.getTime()) / 86400000) + 1;
  const hour12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  return format.replace(/%[aAbBdmyYHIMSpj%]/g, (d) => {
    switch (d) {
      case "%a": return DAYS[date.getDay()].slice(0, 3);
      case "%A": return DAYS[date.getDay()];
      case "%b": return MONTHS[date.getMonth()].slice(0, 3);
      case "%B": return MONTHS[date.getMonth()];
      case "%d": return pad(date.getDate());
      case "%m": return pad(date.getMonth() + 1);
      case "%y": return pad(date.getFullYear() % 100);
      case "%Y": return String(date.getFullYear());
      case "%H": return pad(date.getHours());
      case "%I": return pad(hour12);
      case "%M": return pad(date.getMinutes());
      case "%S": return pad(date.getSeconds());
      case "%p": return date.getHours() < 12 ? "AM" : "PM";
      case "%j": return pad(dayOfYear, 3);
      default: return "%";
    }
  });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// axolotl's `chat_template:` choices

/** The built-in templates a config may name, shipped as data in data/chat-templates/. */
export const CHAT_TEMPLATE_PRESETS = ["alpaca", "chatml", "llama3", "qwen_25"] as const;
export type ChatTemplatePreset = (typeof CHAT_TEMPLATE_PRESETS)[number];

/**
 * The data folder: lib/tokenizer/data. This file runs as lib/tokenizer/*.ts (tests) or
 * dist/tokenizer/*.js (the package); both sit two levels below the package root, and lib/ ships.
 */
const DATA_DIR = path.resolve(__dirname, "..", "..", "lib", "tokenizer", "data");

/** Path of a file in lib/tokenizer/data. */
export function tokenizerDataPath(...parts: string[]): string {
  return path.join(DATA_DIR, ...parts);
}

const presetCache = new Map<ChatTemplatePreset, string>();

function isPreset(name: string): name is ChatTemplatePreset {
  return (CHAT_TEMPLATE_PRESETS as readonly string[]).includes(name);
}

/** The Jinja text of a preset, as axolotl ships it. */
export function presetChatTemplate(name: ChatTemplatePreset): string {
  let text = presetCache.get(name);
  if (text === undefined) {
    text = fs.readFileSync(tokenizerDataPath("chat-templates", `${name}.jinja`), "utf8");
    presetCache.set(name, text);
  }
  return text;
}

/** What a template choice needs from the tokenizer: its own template and its special tokens. */
export interface ChatTemplateTokenizer {
  /** The tokenizer's default template, or null when it has none. */
  readonly chatTemplate: string | null;
  /** `bos_token`, `eos_token`, ... (the named special tokens that are set). */
  readonly specialTokensMap: Readonly<Record<string, string>>;
  /** Where the tokenizer was read from, for messages. */
  readonly source: string;
}

const DEFAULT_CHOICE = "tokenizer_default";
const FALLBACK_PREFIX = "tokenizer_default_fallback_";

/**
 * The template a config's `chat_template:` (and `chat_template_jinja:`) selects, bound to the
 * tokenizer's special tokens, as axolotl's `get_chat_template` chooses it:
 * - unset or `tokenizer_default`: the tokenizer's own template (an error when it has none);
 * - `tokenizer_default_fallback_<preset>`: the tokenizer's own template, else the preset;
 * - `jinja`: `chat_template_jinja`, a template text or the path of a file that holds one;
 * - `chatml`, `llama3`, `qwen_25`, `alpaca`: axolotl's preset of that name.
 */
export function loadChatTemplate(
  choice: string | null | undefined,
  options: { tokenizer?: ChatTemplateTokenizer; jinja?: string | null } = {},
): ChatTemplate {
  const name = choice || DEFAULT_CHOICE;
  const bind = (source: string) => new ChatTemplate(source, { name, specialTokens: options.tokenizer?.specialTokensMap });
  if (name === "jinja") {
    const jinja = options.jinja;
    if (!jinja) throw new RlhfError("chat_template: jinja needs the template in chat_template_jinja (its text, or the path of a .jinja file)");
    return bind(readTemplateOrText(jinja));
  }
  if (name === DEFAULT_CHOICE || name.startsWith(FALLBACK_PREFIX)) {
    const tokenizer = options.tokenizer;
    if (tokenizer === undefined) throw new RlhfError(`chat_template: ${name} needs the model's tokenizer`);
    if (tokenizer.chatTemplate !== null) return bind(tokenizer.chatTemplate);
    const fallback = name.slice(FALLBACK_PREFIX.length);
    if (name === DEFAULT_CHOICE || !isPreset(fallback)) {
      const hint = name === DEFAULT_CHOICE ? "" : ` and "${fallback}" is not a preset`;
      throw new RlhfError(
        `chat_template: ${name}, but the tokenizer in ${tokenizer.source} has no chat template (no "chat_template" in ` +
          `tokenizer_config.json, no chat_template.jinja)${hint}; set chat_template to one of ${CHAT_TEMPLATE_PRESETS.join(", ")}, or jinja`,
      );
    }
    return new ChatTemplate(presetChatTemplate(fallback), { name: fallback, specialTokens: tokenizer.specialTokensMap });
  }
  if (isPreset(name)) return bind(presetChatTemplate(name));
  throw new RlhfError(
    `chat_template: unknown template "${name}"; expected one of ${[...CHAT_TEMPLATE_PRESETS, DEFAULT_CHOICE, "jinja"].join(", ")} ` +
      `or ${FALLBACK_PREFIX}<preset>`,
  );
}

/** axolotl reads `chat_template_jinja` as a file when it names an existing file, else as the text. */
function readTemplateOrText(value: string): string {
  let isFile = false;
  try {
    isFile = fs.statSync(value).isFile();
  } catch {
    return value;
  }
  if (!isFile) return value;
  try {
    return fs.readFileSync(value, "utf8");
  } catch (e) {
    throw new RlhfError(`chat_template_jinja: cannot read ${value}: ${errorText(e)}`);
  }
}
