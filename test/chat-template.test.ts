/**
 * Chat templates render byte for byte as transformers renders them. Expected strings are the
 * verified examples of shared/reference/dataset-strategies.md (§3.4, §5) or follow by hand from
 * Python Jinja's rules and the template text.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
  CHAT_TEMPLATE_PRESETS,
  ChatMessage,
  ChatTemplate,
  ChatTemplateError,
  ChatTemplateTokenizer,
  loadChatTemplate,
  presetChatTemplate,
} from "../lib/tokenizer";
import { RlhfError } from "../lib/errors";

const LLAMA3_SPECIALS = { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" };
const preset = (name: string, specialTokens: Record<string, string> = {}) =>
  loadChatTemplate(name, { tokenizer: { chatTemplate: null, specialTokensMap: specialTokens, source: "test" } });

const user = (content: string): ChatMessage => ({ role: "user", content });
const assistant = (content: string): ChatMessage => ({ role: "assistant", content });
const system = (content: string): ChatMessage => ({ role: "system", content });

/** The conversation of axolotl's chat_template tests. */
const HELLO_GOODBYE = [user("hello"), assistant("hello"), user("goodbye")];

/** What ORPO's chat_template.argilla does with a rendered prompt: the full render minus its prefix. */
function completionAfter(template: ChatTemplate, prompt: ChatMessage[], answer: string): string {
  const head = template.render(prompt, { addGenerationPrompt: true });
  const full = template.render([...prompt, assistant(answer)]);
  expect(full.startsWith(head)).toBe(true);
  return full.slice(head.length);
}

describe("chatml preset", () => {
  const chatml = preset("chatml");

  it("renders a system message, a user turn and the generation prompt", () => {
    expect(chatml.render([system("SYS"), user("hello")], { addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("renders axolotl's dummy conversation for the chosen answer", () => {
    expect(chatml.render([user("[[dummy_message]]"), assistant("goodbye")])).toBe(
      "<|im_start|>user\n[[dummy_message]]<|im_end|>\n<|im_start|>assistant\ngoodbye<|im_end|>\n",
    );
    // No trimming: a trailing space survives.
    expect(chatml.render([assistant("bye ")])).toBe("<|im_start|>assistant\nbye <|im_end|>\n");
  });

  it("renders ORPO's multi-turn example", () => {
    const prompt = [system("SYS"), user("U1"), assistant("A1"), user("U2")];
    expect(chatml.render(prompt, { addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(completionAfter(chatml, prompt, "C")).toBe("C<|im_end|>\n");
  });

  it("renders an empty conversation as nothing, or just the generation prompt", () => {
    expect(chatml.render([])).toBe("");
    expect(chatml.render([], { addGenerationPrompt: true })).toBe("<|im_start|>assistant\n");
  });
});

describe("llama3 preset", () => {
  const llama3 = preset("llama3", LLAMA3_SPECIALS);

  it("renders the verified multi-turn prompt with BOS first", () => {
    expect(llama3.render(HELLO_GOODBYE, { addGenerationPrompt: true })).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>user<|end_header_id|>\n\ngoodbye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
    expect(llama3.render([user("hello")], { addGenerationPrompt: true })).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("trims content with Jinja's trim and joins text parts", () => {
    expect(llama3.render([assistant("  bye \n")])).toBe("<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\nbye<|eot_id|>");
    const parts: ChatMessage = { role: "user", content: [{ type: "text", text: " a" }, { type: "image" }, { type: "text", text: "b " }] };
    expect(llama3.render([parts])).toBe("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nab<|eot_id|>");
  });

  it("renders ORPO's example with bos <s>", () => {
    const withS = preset("llama3", { bos_token: "<s>" });
    const prompt = [system("SYS"), user("U1"), assistant("A1"), user("U2")];
    const head = withS.render(prompt, { addGenerationPrompt: true });
    expect(head.startsWith("<s><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>")).toBe(true);
    expect(head.endsWith("<|start_header_id|>assistant<|end_header_id|>\n\n")).toBe(true);
    expect(completionAfter(withS, prompt, "C")).toBe("C<|eot_id|>");
  });

  it("fails like Python Jinja when the tokenizer has no BOS (undefined + text)", () => {
    expect(() => preset("llama3").render([user("x")])).toThrow(ChatTemplateError);
  });
});

describe("qwen_25 preset", () => {
  const qwen = preset("qwen_25", { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" });
  const DEFAULT_SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

  it("adds Qwen's default system message when the conversation has none", () => {
    expect(qwen.render([user("hello")], { addGenerationPrompt: true })).toBe(
      DEFAULT_SYSTEM + "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(qwen.render([system("SYS"), user("hello"), assistant("hi")])).toBe(
      "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n",
    );
  });

  it("renders tools, tool calls and tool responses with tojson", () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { city: "Zürich" } } }];
    const messages: ChatMessage[] = [
      user("weather?"),
      { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Zürich" } } }] },
      { role: "tool", content: "22C" },
    ];
    expect(qwen.render(messages, { tools, addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n" +
        "You may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "Zürich"}}}\n</tools>\n\n' +
        "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\nweather?<|im_end|>\n" +
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call><|im_end|>\n' +
        "<|im_start|>user\n<tool_response>\n22C\n</tool_response><|im_end|>\n" +
        "<|im_start|>assistant\n",
    );
  });
});

describe("alpaca preset", () => {
  const alpaca = preset("alpaca", { bos_token: "<s>", eos_token: "</s>" });

  it("renders the verified generation prompt", () => {
    expect(alpaca.render([user("hello")], { addGenerationPrompt: true })).toBe("<s>### Instruction:\nhello\n\n### Response:\n");
  });

  it("renders a system message and an answer ending in eos", () => {
    expect(alpaca.render([system("SYS"), user("hi"), assistant("hello")])).toBe("<s>SYS\n\n### Instruction:\nhi\n\n### Response:\nhello</s>");
  });
});

describe("transformers' Jinja environment", () => {
  const render = (source: string, messages: ChatMessage[] = [], options = {}) => new ChatTemplate(source, { name: "t" }).render(messages, options);

  it("drops one trailing newline of the source and reads CRLF as LF", () => {
    expect(render("x\n")).toBe("x");
    expect(render("x\n\n")).toBe("x\n");
    expect(render("a\r\nb\rc\r\n")).toBe("a\nb\nc");
  });

  it("applies trim_blocks and lstrip_blocks to block tags only", () => {
    expect(render("{% for m in messages %}\n    {{ m.content }}\n{% endfor %}\n", [user("a"), user("b")])).toBe("    a\n    b\n");
    expect(render("<x>\n  {% if true %}\n  yes\n  {% endif %}\n</x>")).toBe("<x>\n  yes\n</x>");
    expect(render("  {# note #}\n  {{ 'v' }}  \n")).toBe("  v  ");
  });

  it("passes tools and documents as none, and the special tokens and extra variables", () => {
    expect(render("{% if tools is none and documents is none %}none{% endif %}")).toBe("none");
    const t = new ChatTemplate("[{{ bos_token }}|{{ eos_token }}|{{ flag }}]", { specialTokens: { eos_token: "</s>" } });
    expect(t.render([])).toBe("[|</s>|]");
    // Extra variables override the special tokens, as kwargs do in transformers.
    expect(t.render([], { variables: { eos_token: "E", flag: "F" } })).toBe("[|E|F]");
    expect(() => t.render([], { variables: { messages: [] } })).toThrow(/"messages" is set by the renderer itself/);
  });

  it("serializes tojson without ASCII escapes, in key order", () => {
    const tools = [{ name: "f", b: 1, a: "é\n\"" }];
    expect(render("{{ tools | tojson }}", [], { tools })).toBe('[{"name": "f", "b": 1, "a": "é\\n\\""}]');
    expect(render("{{ tools[0] | tojson(indent=2) }}", [], { tools: [{ a: [1, 2] }] })).toBe('{\n  "a": [\n    1,\n    2\n  ]\n}');
  });

  it("strips as Python does: chars arguments, Python's whitespace for trim", () => {
    const strips = "{{ m.lstrip('\\n') }}|{{ m.rstrip(' \\n') }}|{{ m.strip('ab') }}|{{ m.strip() }}|{{ m|trim }}|{{ m|trim('x') }}";
    const one = (content: string) => render("{% set m = messages[0].content %}" + strips, [user(content)]);
    expect(one("\n\n hi \n")).toBe(" hi \n|\n\n hi|\n\n hi \n|hi|hi|\n\n hi \n");
    expect(one("abxcxba")).toBe("abxcxba|abxcxba|xcx|abxcxba|abxcxba|abxcxba");
    // U+0085 and U+001C are Python whitespace, U+FEFF is not (JavaScript's trim says the opposite).
    expect(one("\u0085x\u001c\ufeff")).toBe("\u0085x\u001c\ufeff|\u0085x\u001c\ufeff|\u0085x\u001c\ufeff|x\u001c\ufeff|x\u001c\ufeff|\u0085x\u001c\ufeff");
    expect(one("\u0085x\u001c")).toBe("\u0085x\u001c|\u0085x\u001c|\u0085x\u001c|x|x|\u0085x\u001c");
    expect(one("x🙂x")).toBe("x🙂x|x🙂x|x🙂x|x🙂x|x🙂x|🙂");
    expect(() => render("{{ messages[0].strip() }}", [user("x")])).toThrow(/strip\(\) needs a string/);
  });

  it("has range and strftime_now, and lets a variable shadow a global", () => {
    expect(render("{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}")).toBe("012|135");
    const now = new Date(2025, 2, 5, 14, 7, 9);
    expect(render("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A %B %-d %H:%M:%S %p %j %%') }}", [], { now })).toBe(
      "05 Mar 2025|Wednesday March %-d 14:07:09 PM 064 %",
    );
    expect(render("{{ range }}", [], { variables: { range: "mine" } })).toBe("mine");
  });

  it("surfaces raise_exception as a ChatTemplateError carrying the template's message", () => {
    const strict = new ChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}ok", {
      name: "strict",
    });
    expect(strict.render([user("x")])).toBe("ok");
    let error: unknown;
    try {
      strict.render([assistant("x")]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ChatTemplateError);
    expect(error).toBeInstanceOf(RlhfError);
    expect((error as ChatTemplateError).raised).toBe("Conversation must start with a user message");
    expect((error as ChatTemplateError).templateName).toBe("strict");
    expect((error as Error).message).toBe('chat template "strict" rejected the conversation: Conversation must start with a user message');
  });

  it("reports bad Jinja and render failures as ChatTemplateErrors", () => {
    expect(() => new ChatTemplate("{% if %}", { name: "broken" })).toThrow(/chat template "broken" is not valid Jinja/);
    const failing = () => render("{{ messages[0].content.nothing() }}", [user("x")]);
    expect(failing).toThrow(ChatTemplateError);
    expect(failing).toThrow(/chat template "t" failed to render/);
  });
});

describe("continueFinalMessage", () => {
  it("ends inside the last message when the template keeps it verbatim", () => {
    expect(preset("chatml").render([user("hi"), assistant("Sure, ")], { continueFinalMessage: true })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nSure, ",
    );
  });

  it("strips trailing whitespace when the template trims the content", () => {
    expect(preset("llama3", LLAMA3_SPECIALS).render([user("hi"), assistant("Sure ")], { continueFinalMessage: true })).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nSure",
    );
  });

  it("continues the last text part of a list content", () => {
    const last: ChatMessage = { role: "assistant", content: [{ type: "text", text: "One" }, { type: "text", text: " two" }, { type: "image" }] };
    expect(preset("llama3", LLAMA3_SPECIALS).render([last], { continueFinalMessage: true })).toBe(
      "<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\nOne two",
    );
  });

  it("rejects what transformers rejects", () => {
    const chatml = preset("chatml");
    expect(() => chatml.render([user("hi")], { continueFinalMessage: true, addGenerationPrompt: true })).toThrow(/cannot both be set/);
    expect(() => chatml.render([{ role: "assistant", content: null }], { continueFinalMessage: true })).toThrow(/no "content" to continue/);
    expect(() => new ChatTemplate("{{ 'fixed' }}").render([user("x")], { continueFinalMessage: true })).toThrow(/never reads "content"/);
    expect(() => new ChatTemplate("{% for m in messages %}{{ m.content[:1] }}{% endfor %}").render([user("xyz")], { continueFinalMessage: true })).toThrow(
      /does not reproduce the final message/,
    );
  });
});

describe("chat_template choices", () => {
  const withTemplate: ChatTemplateTokenizer = { chatTemplate: "own {{ eos_token }}", specialTokensMap: { eos_token: "</s>" }, source: "/models/x" };
  const without: ChatTemplateTokenizer = { chatTemplate: null, specialTokensMap: { eos_token: "</s>" }, source: "/models/y" };

  it("ships axolotl's presets byte for byte", () => {
    expect([...CHAT_TEMPLATE_PRESETS]).toEqual(["alpaca", "chatml", "llama3", "qwen_25"]);
    for (const name of CHAT_TEMPLATE_PRESETS) expect(loadChatTemplate(name).source).toBe(presetChatTemplate(name));
    expect(presetChatTemplate("chatml")).toBe(
      "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}" +
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}\n",
    );
  });

  it("uses the tokenizer's own template for tokenizer_default (also when unset)", () => {
    for (const choice of [undefined, null, "", "tokenizer_default"]) {
      const t = loadChatTemplate(choice, { tokenizer: withTemplate });
      expect([t.name, t.render([])]).toEqual(["tokenizer_default", "own </s>"]);
    }
    expect(() => loadChatTemplate("tokenizer_default", { tokenizer: without })).toThrow(
      /chat_template: tokenizer_default, but the tokenizer in \/models\/y has no chat template .* set chat_template to one of alpaca, chatml, llama3, qwen_25, or jinja/,
    );
    expect(() => loadChatTemplate("tokenizer_default")).toThrow(/needs the model's tokenizer/);
  });

  it("falls back to a preset with tokenizer_default_fallback_<preset>", () => {
    expect(loadChatTemplate("tokenizer_default_fallback_chatml", { tokenizer: withTemplate }).render([])).toBe("own </s>");
    const fallback = loadChatTemplate("tokenizer_default_fallback_alpaca", { tokenizer: without });
    expect([fallback.name, fallback.render([assistant("a")])]).toEqual(["alpaca", "### Response:\na</s>"]);
    expect(() => loadChatTemplate("tokenizer_default_fallback_nope", { tokenizer: without })).toThrow(/"nope" is not a preset/);
  });

  it("reads chat_template_jinja as text or as a file", () => {
    expect(loadChatTemplate("jinja", { jinja: "{{ messages[0].content }}!", tokenizer: without }).render([user("hi")])).toBe("hi!");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-jinja-"));
    const file = path.join(dir, "t.jinja");
    fs.writeFileSync(file, "[{{ eos_token }}]\n");
    expect(loadChatTemplate("jinja", { jinja: file, tokenizer: without }).render([])).toBe("[</s>]");
    fs.rmSync(dir, { recursive: true });
    expect(() => loadChatTemplate("jinja", {})).toThrow(/chat_template: jinja needs the template in chat_template_jinja/);
  });

  it("rejects an unknown name", () => {
    expect(() => loadChatTemplate("vicuna")).toThrow(
      /chat_template: unknown template "vicuna"; expected one of alpaca, chatml, llama3, qwen_25, tokenizer_default, jinja or tokenizer_default_fallback_<preset>/,
    );
  });
});
