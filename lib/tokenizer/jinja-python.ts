/**
 * Python string semantics that `@huggingface/jinja` lacks, patched into a parsed template.
 *
 * Its `s.strip()`, `s.lstrip()`, `s.rstrip()` ignore the `chars` argument (Qwen3's template calls
 * `content.lstrip('\n')`, which must keep a leading space), and its `trim` filter strips
 * JavaScript's whitespace rather than Python's. We rewrite those calls in the parsed program into
 * calls of our own globals, `__py_strip(s, chars)` and friends, which follow Python exactly.
 * The interpreter dispatches on each node's `type` string, so plain objects of the node shapes
 * (`{type: "CallExpression", callee, args}`, `{type: "Identifier", value}`) evaluate as parsed ones.
 */
import type { parse } from "@huggingface/jinja";

import { pyLstrip, pyRstrip, pyStrip } from "./python-strip";

type Program = ReturnType<typeof parse>;

/** A node of the parsed template, as far as this rewrite needs to see it. */
interface Node {
  type: string;
  [field: string]: unknown;
}

const STRIP_FUNCTIONS = {
  strip: pyStrip,
  lstrip: pyLstrip,
  rstrip: pyRstrip,
} as const;

const globalName = (method: keyof typeof STRIP_FUNCTIONS) => `__py_${method}`;

/** The globals the rewritten calls use, to declare in the render environment. */
export function pythonStringGlobals(): Record<string, (...args: unknown[]) => string> {
  const out: Record<string, (...args: unknown[]) => string> = {};
  for (const [method, strip] of Object.entries(STRIP_FUNCTIONS)) {
    out[globalName(method as keyof typeof STRIP_FUNCTIONS)] = (value: unknown, chars?: unknown) => {
      if (typeof value !== "string") throw new Error(`${method}() needs a string, got ${value === undefined ? "an undefined value" : typeof value}`);
      if (chars !== undefined && chars !== null && typeof chars !== "string") throw new Error(`${method}() chars must be a string or none`);
      return strip(value, chars);
    };
  }
  return out;
}

/** Rewrites `x.strip(...)`, `x.lstrip(...)`, `x.rstrip(...)` and `x | trim(...)` in place. */
export function usePythonStrip(program: Program): void {
  rewrite(program as unknown as Node);
}

const isNode = (value: unknown): value is Node =>
  typeof value === "object" && value !== null && typeof (value as Node).type === "string";

const isStripMethod = (name: unknown): name is keyof typeof STRIP_FUNCTIONS =>
  typeof name === "string" && Object.prototype.hasOwnProperty.call(STRIP_FUNCTIONS, name);

const call = (name: string, args: unknown[]): Node => ({ type: "CallExpression", callee: { type: "Identifier", value: name }, args });

function rewrite(node: Node): Node {
  for (const [field, value] of Object.entries(node)) {
    if (Array.isArray(value)) node[field] = value.map((v) => (isNode(v) ? rewrite(v) : v));
    else if (isNode(value)) node[field] = rewrite(value);
  }
  if (node.type === "CallExpression" && isNode(node.callee) && node.callee.type === "MemberExpression" && !node.callee.computed) {
    const property = node.callee.property;
    if (isNode(property) && property.type === "Identifier" && isStripMethod(property.value)) {
      return call(globalName(property.value), [node.callee.object, ...(node.args as unknown[])]);
    }
  }
  if (node.type === "FilterExpression" && isNode(node.filter)) {
    const filter = node.filter;
    // Jinja's trim(value, chars=None) is Python's value.strip(chars).
    if (filter.type === "Identifier" && filter.value === "trim") return call(globalName("strip"), [node.operand]);
    if (filter.type === "CallExpression" && isNode(filter.callee) && filter.callee.type === "Identifier" && filter.callee.value === "trim") {
      return call(globalName("strip"), [node.operand, ...(filter.args as unknown[])]);
    }
  }
  return node;
}
