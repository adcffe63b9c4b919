/**
 * The safetensors header: its dtypes, parsing with full validation, and serialization.
 *
 * A file is: 8 bytes N (unsigned little-endian), N bytes of UTF-8 JSON (padded with spaces), then
 * the data buffer. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]},
 * offsets relative to the data buffer; the optional "__metadata__" key holds a string-to-string
 * map. Rules enforced here as the reference Rust library does (safetensors/src/tensor.rs):
 * end − begin = prod(shape)·bits/8, the tensors cover the data buffer exactly (no holes, no
 * overlaps), the buffer ends where the file ends, and N ≤ 100 MB.
 */
import { RlhfError } from "../errors";

/**
 * Every dtype of the format with its size in bits, in the reference library's enum order, which
 * is increasing alignment: its writer sorts tensors by this order, descending, then by name.
 */
const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_BITS;

const DTYPE_RANK = new Map(Object.keys(DTYPE_BITS).map((d, i) => [d, i]));

/** The reference library refuses headers longer than this (a guard against hostile files). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor's bytes lie in the data buffer. */
export interface HeaderEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Byte offsets relative to the start of the data buffer; end is one past the last byte. */
  readonly begin: number;
  readonly end: number;
}

export interface Header {
  /** The __metadata__ map ({} when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The tensors in file order (increasing offsets). */
  readonly entries: readonly HeaderEntry[];
}

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === "string" && DTYPE_RANK.has(value);
}

/** Bytes taken by `numel` elements of `dtype`, or undefined when that is not a whole number of bytes. */
export function dtypeBytes(dtype: SafetensorsDType, numel: number): number | undefined {
  const bits = numel * DTYPE_BITS[dtype];
  return bits % 8 === 0 ? bits / 8 : undefined;
}

/** Orders names as UTF-8 byte strings, as Rust's `str::cmp` does (equal to code point order). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The reference writer's tensor order: decreasing dtype alignment, then name. */
export function compareForWriting(a: { name: string; dtype: SafetensorsDType }, b: { name: string; dtype: SafetensorsDType }): number {
  const byDtype = (DTYPE_RANK.get(b.dtype) as number) - (DTYPE_RANK.get(a.dtype) as number);
  return byDtype !== 0 ? byDtype : compareNames(a.name, b.name);
}

function describe(value: unknown): string {
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Parses and validates the JSON header of `file` (`headerBytes`, the N bytes after the length
 * prefix), whose data buffer holds `dataBytes` bytes (file size − 8 − N).
 */
export function parseHeader(file: string, headerBytes: Uint8Array, dataBytes: number): Header {
  const fail = (problem: string): never => {
    throw new RlhfError(`invalid safetensors file ${file}: ${problem}`);
  };
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    return fail("the header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(`the header is not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return fail(`the header must be a JSON object, got ${describe(json)}`);
  }

  let metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(value, fail);
      continue;
    }
    entries.push(parseEntry(name, value, dataBytes, fail));
  }

  // The tensors must tile the data buffer: sorted by offset, each begins where the previous ends.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: HeaderEntry | undefined;
  for (const e of entries) {
    if (e.begin > covered) fail(`bytes ${covered}..${e.begin} of the data are not part of any tensor (a hole before tensor "${e.name}")`);
    if (e.begin < covered && previous) {
      fail(`tensor "${e.name}" (bytes ${e.begin}..${e.end}) overlaps tensor "${previous.name}" (bytes ${previous.begin}..${previous.end})`);
    }
    covered = e.end;
    previous = e;
  }
  if (covered !== dataBytes) {
    fail(`the data buffer holds ${dataBytes} bytes but the tensors cover ${covered}: ${dataBytes - covered} trailing bytes`);
  }
  return { metadata, entries };
}

function parseMetadata(value: unknown, fail: (problem: string) => never): Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail(`"__metadata__" must be an object of strings, got ${describe(value)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== "string") fail(`"__metadata__"."${k}" must be a string, got ${describe(v)}`);
    out[k] = v as string;
  }
  return out;
}

function parseEntry(name: string, value: unknown, dataBytes: number, fail: (problem: string) => never): HeaderEntry {
  const where = `tensor "${name}"`;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail(`${where}: expected {"dtype", "shape", "data_offsets"}, got ${describe(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isSafetensorsDType(dtype)) {
    return fail(`${where}: unknown dtype ${describe(dtype)} (expected one of ${Object.keys(DTYPE_BITS).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    return fail(`${where}: "shape" must be an array of non-negative integers, got ${describe(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger) || offsets[0] > offsets[1]) {
    return fail(`${where}: "data_offsets" must be [begin, end] with 0 <= begin <= end, got ${describe(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    fail(`${where}: data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataBytes} bytes; is the file truncated?)`);
  }
  let numel = 1;
  for (const d of shape) numel *= d;
  const bytes = Number.isSafeInteger(numel) ? dtypeBytes(dtype, numel) : undefined;
  if (bytes === undefined) fail(`${where}: ${dtype} [${shape.join(", ")}] is not a whole number of bytes`);
  if (bytes !== end - begin) {
    fail(`${where}: ${dtype} [${shape.join(", ")}] needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * The header bytes (JSON padded with spaces to a multiple of 8, as the reference writer does) for
 * `entries` laid out in the given order: "__metadata__" first, then the tensors by offset, in the
 * reference writer's compact JSON.
 */
export function serializeHeader(metadata: Readonly<Record<string, string>>, entries: readonly HeaderEntry[]): Buffer {
  const parts: string[] = [];
  if (Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const e of entries) {
    const info = `{"dtype":"${e.dtype}","shape":[${e.shape.join(",")}],"data_offsets":[${e.begin},${e.end}]}`;
    parts.push(`${JSON.stringify(e.name)}:${info}`);
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  return padded;
}
