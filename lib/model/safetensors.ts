/**
 * Reading and writing safetensors files, single or sharded as Hugging Face saves them.
 *
 * Reading: `openSafetensors(fileOrFolder)` parses and validates every header up front, then
 * `load(name)` allocates that one native tensor and streams its bytes into it from the file in
 * chunks of READ_CHUNK_BYTES (positioned reads into one reused buffer, converted where needed).
 * Loading a whole model tensor by tensor therefore holds the weights once, plus one chunk.
 *
 * Writing: tensors are written one at a time into a temporary file renamed over the target when
 * complete, in the reference library's layout (see `writeSafetensors`): files we write are
 * byte-identical to what `safetensors.torch.save_file` writes for the same tensors and metadata
 * (up to the order of the metadata keys, which the reference writes in hash order).
 */
import { randomBytes } from "crypto";
import * as fs from "fs";
import { endianness } from "os";
import * as path from "path";

import { RlhfError } from "../errors";
import { DType, floats, ints, Tensor, zeros } from "../native";
import {
  compareForWriting,
  compareNames,
  dtypeBytes,
  Header,
  HeaderEntry,
  MAX_HEADER_BYTES,
  parseHeader,
  SafetensorsDType,
  serializeHeader,
} from "./safetensors-header";

export type { SafetensorsDType } from "./safetensors-header";

/** File names transformers uses (modeling_utils: SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME). */
export const SAFETENSORS_FILE = "model.safetensors";
export const SAFETENSORS_INDEX_FILE = "model.safetensors.index.json";
/**
 * Tensors load through a buffer of this many bytes (plus twice that when widening 16-bit floats
 * to float32): the memory a load needs beyond the weights themselves.
 */
export const READ_CHUNK_BYTES = 8 * 1024 * 1024;
/** huggingface_hub's default max_shard_size (5 GB). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

// Typed arrays view file bytes directly; the format is little-endian.
if (endianness() !== "LE") throw new Error("rlhf-native reads safetensors only on little-endian hosts");

// ---------------------------------------------------------------------------------------------
// Reading

export interface SafetensorsTensorInfo {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
  /** The file holding the tensor. */
  readonly file: string;
}

export interface SafetensorsFile {
  readonly path: string;
  /** The file's "__metadata__" map ({} when absent). */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Safetensors dtypes load() converts, and the native dtype each loads as by default. */
const LOADABLE: Partial<Record<SafetensorsDType, DType>> = {
  F32: "float32",
  BF16: "bfloat16",
  F16: "float32",
  F64: "float32",
  I32: "int32",
};

interface OpenFile extends SafetensorsFile {
  fd: number;
  /** File offset of the data buffer: 8 + header length. */
  dataStart: number;
}

interface Located {
  file: OpenFile;
  entry: HeaderEntry;
}

/** An open safetensors model: one file, or the shards of an index. Call close() when done. */
export class SafetensorsReader {
  /** The safetensors files (a sharded model's sorted by name). */
  readonly files: readonly SafetensorsFile[];
  private readonly fds: number[];
  private readonly tensors: ReadonlyMap<string, Located>;
  /** Raw bytes of one chunk of a tensor. */
  private scratch: Buffer | undefined;
  /** One chunk of BF16 or F16 widened to float32. */
  private wide: Float32Array | undefined;
  private closed = false;

  /** @internal Use openSafetensors(). */
  constructor(
    files: readonly OpenFile[],
    /** The model.safetensors.index.json of a sharded model. */
    readonly indexFile: string | undefined,
    located: Iterable<[string, Located]>,
  ) {
    this.files = files.map((f) => ({ path: f.path, metadata: f.metadata }));
    this.fds = files.map((f) => f.fd);
    this.tensors = new Map(located);
  }

  /** Tensor names, sorted (as the safetensors library's keys()). */
  names(): string[] {
    return [...this.tensors.keys()].sort(compareNames);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const { file, entry } = this.locate(name);
    return { dtype: entry.dtype, shape: [...entry.shape], byteLength: entry.end - entry.begin, file: file.path };
  }

  /**
   * Reads one tensor into a new native tensor of `dtype`: F32, BF16, F16 and F64 tensors load as
   * "float32" or "bfloat16" (default: bfloat16 for BF16, else float32; conversions to bfloat16
   * round to nearest even, BF16 to float32 is exact), I32 tensors as "int32". The bytes stream
   * from the file in chunks of at most READ_CHUNK_BYTES into the new tensor.
   */
  load(name: string, dtype?: DType): Tensor {
    const { file, entry } = this.locate(name);
    const natural = LOADABLE[entry.dtype];
    const where = `tensor "${name}" in ${file.path}`;
    if (!natural) {
      throw new RlhfError(`${where} is ${entry.dtype}; rlhf-native loads F32, BF16, F16, F64 and I32 tensors`);
    }
    const target = dtype ?? natural;
    if ((natural === "int32") !== (target === "int32")) {
      throw new RlhfError(`${where} is ${entry.dtype} and cannot load as ${target} (expected ${natural === "int32" ? "int32" : "float32 or bfloat16"})`);
    }
    const out = zeros(target, entry.shape);
    try {
      const elementBytes = (dtypeBytes(entry.dtype, 1) as number);
      const perChunk = Math.floor(READ_CHUNK_BYTES / elementBytes);
      for (let first = 0; first < out.numel; first += perChunk) {
        const count = Math.min(perChunk, out.numel - first);
        const bytes = this.read(file, entry, first * elementBytes, count * elementBytes);
        out.copyFrom(this.decode(entry.dtype, target, bytes, count), first);
      }
    } catch (err) {
      out.dispose();
      throw err;
    }
    return out;
  }

  /**
   * The weight source a decoder is built from: loads a tensor by its Hugging Face name as `dtype`,
   * or gives undefined for names the model lacks (e.g. lm_head.weight when tied to the embedding).
   */
  weightGetter(dtype?: DType): (name: string) => Tensor | undefined {
    return (name) => (this.has(name) ? this.load(name, dtype) : undefined);
  }

  /** Closes the files and frees the read buffer; the reader cannot load after this. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.scratch = undefined;
    this.wide = undefined;
    for (const fd of this.fds) fs.closeSync(fd);
  }

  private locate(name: string): Located {
    if (this.closed) throw new Error("this SafetensorsReader is closed");
    const loc = this.tensors.get(name);
    if (!loc) {
      const where = this.indexFile ?? this.files[0].path;
      throw new RlhfError(`${where} has no tensor "${name}" (it has ${this.tensors.size} tensors)`);
    }
    return loc;
  }

  /** Bytes begin .. begin + length of a tensor's data, in the read buffer (valid until the next read). */
  private read(file: OpenFile, entry: HeaderEntry, begin: number, length: number): Buffer {
    if (!this.scratch) {
      let largest = 0;
      for (const { entry: e } of this.tensors.values()) largest = Math.max(largest, e.end - e.begin);
      this.scratch = Buffer.allocUnsafeSlow(Math.min(largest, READ_CHUNK_BYTES));
    }
    const bytes = this.scratch.subarray(0, length);
    const ended = () => `${file.path} ended while reading tensor "${entry.name}" (was it modified?)`;
    readExactly(file.fd, bytes, file.dataStart + entry.begin + begin, ended);
    return bytes;
  }

  /**
   * `count` elements of `dtype` in `bytes` as a source for copyFrom() into a `target` tensor:
   * typed-array views where the addon takes them as they are (raw bfloat16 bits included), else
   * converted to float32 in a reused buffer.
   */
  private decode(dtype: SafetensorsDType, target: DType, bytes: Buffer, count: number): ArrayLike<number> {
    const { buffer, byteOffset } = bytes;
    switch (dtype) {
      case "F32":
        return new Float32Array(buffer, byteOffset, count);
      case "F64":
        return new Float64Array(buffer, byteOffset, count);
      case "I32":
        return new Int32Array(buffer, byteOffset, count);
      case "BF16": {
        const bits = new Uint16Array(buffer, byteOffset, count);
        if (target === "bfloat16") return bits;
        // A bfloat16 is the upper half of the float32 with the same value.
        const wide = this.wideBuffer(count);
        const wideBits = new Uint32Array(wide.buffer, 0, count);
        for (let i = 0; i < count; ++i) wideBits[i] = bits[i] << 16;
        return wide;
      }
      default: {
        // F16 (load() admits no other dtype here).
        const bits = new Uint16Array(buffer, byteOffset, count);
        const wide = this.wideBuffer(count);
        const table = halfTable();
        for (let i = 0; i < count; ++i) wide[i] = table[bits[i]];
        return wide;
      }
    }
  }

  private wideBuffer(count: number): Float32Array {
    if (!this.wide) this.wide = new Float32Array(READ_CHUNK_BYTES / 2);
    return this.wide.subarray(0, count);
  }
}

/**
 * Opens a safetensors model: a `.safetensors` file, a `.safetensors.index.json` (sharded), or a
 * folder holding model.safetensors or model.safetensors.index.json (checked in that order, as
 * transformers does). Every header is read and validated now; tensors are read by load().
 */
export function openSafetensors(fileOrFolder: string): SafetensorsReader {
  const target = path.resolve(fileOrFolder);
  const stat = statOrUndefined(target);
  if (!stat) throw new RlhfError(`no such file or folder: ${target}`);
  if (stat.isDirectory()) {
    for (const name of [SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE]) {
      const candidate = path.join(target, name);
      if (statOrUndefined(candidate)?.isFile()) return openSafetensors(candidate);
    }
    throw new RlhfError(`${target} has neither ${SAFETENSORS_FILE} nor ${SAFETENSORS_INDEX_FILE}${describeOtherWeights(target)}`);
  }
  if (target.endsWith(".index.json")) return openSharded(target);
  const file = openFile(target);
  return new SafetensorsReader([file], undefined, file.entries.map((e) => [e.name, { file, entry: e }]));
}

/** A hint naming weight files in formats we do not read (PyTorch pickles, GGUF, ...). */
function describeOtherWeights(folder: string): string {
  const others = fs.readdirSync(folder).filter((n) => /\.(bin|pt|pth|ckpt|gguf|h5|msgpack)$/.test(n));
  if (others.length === 0) return "";
  return ` (it has ${others.slice(0, 3).join(", ")}${others.length > 3 ? ", ..." : ""}: only safetensors weights are read; convert them, e.g. with transformers' save_pretrained(safe_serialization=True))`;
}

/** A sharded model's index: which shard holds each tensor. */
export interface ShardIndex {
  /** Tensor name → shard file name (relative to the index's folder). */
  readonly weightMap: ReadonlyMap<string, string>;
  /** The shard file names, sorted (model-00001-of-0000N first). */
  readonly shards: readonly string[];
}

/** Reads and validates a model.safetensors.index.json (without opening the shards). */
export function readShardIndex(indexFile: string): ShardIndex {
  const fail = (problem: string): never => {
    throw new RlhfError(`invalid safetensors index ${indexFile}: ${problem}`);
  };
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, "utf8"));
  } catch (err) {
    return fail((err as Error).message);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    return fail(`expected an object with "weight_map": {tensor name: shard file}`);
  }
  const weightMap = new Map<string, string>();
  const shards = new Set<string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
      fail(`weight_map["${name}"] must be a shard file name inside the model folder, got ${JSON.stringify(shard)}`);
    }
    weightMap.set(name, shard as string);
    shards.add(shard as string);
  }
  if (shards.size === 0) fail("weight_map is empty");
  return { weightMap, shards: [...shards].sort(compareNames) };
}

function openSharded(indexFile: string): SafetensorsReader {
  const { weightMap, shards } = readShardIndex(indexFile);
  const folder = path.dirname(indexFile);
  const missing = shards.filter((s) => !statOrUndefined(path.join(folder, s))?.isFile());
  if (missing.length > 0) {
    throw new RlhfError(`${indexFile} names shards that are missing from ${folder}: ${missing.join(", ")}`);
  }
  const opened: (OpenFile & { entries: readonly HeaderEntry[] })[] = [];
  try {
    for (const s of shards) opened.push(openFile(path.join(folder, s)));
    // Like transformers, every tensor of every listed shard is part of the model; the weight map
    // must agree with the shards' contents.
    const located = new Map<string, Located>();
    for (const file of opened) {
      for (const entry of file.entries) {
        const other = located.get(entry.name);
        if (other) {
          throw new RlhfError(`tensor "${entry.name}" is in two shards of ${indexFile}: ${other.file.path} and ${file.path}`);
        }
        located.set(entry.name, { file, entry });
      }
    }
    for (const [name, shard] of weightMap) {
      const found = located.get(name);
      if (!found || found.file.path !== path.join(folder, shard)) {
        throw new RlhfError(
          `${indexFile} maps tensor "${name}" to ${shard}, but ` +
            (found ? `it is in ${path.basename(found.file.path)}` : "no shard has it"),
        );
      }
    }
    return new SafetensorsReader(opened, indexFile, located);
  } catch (err) {
    for (const f of opened) fs.closeSync(f.fd);
    throw err;
  }
}

/** Opens one file and validates its header; the descriptor stays open for load(). */
function openFile(file: string): OpenFile & { entries: readonly HeaderEntry[] } {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    throw new RlhfError(`cannot open ${file}: ${(err as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const header = readHeader(file, fd, size);
    return { path: file, fd, dataStart: header.dataStart, metadata: header.metadata, entries: header.entries };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function readHeader(file: string, fd: number, size: number): Header & { dataStart: number } {
  const fail = (problem: string): never => {
    throw new RlhfError(`invalid safetensors file ${file}: ${problem}`);
  };
  if (size < 8) fail(`it has ${size} bytes; a safetensors file starts with an 8-byte header length`);
  const prefix = Buffer.alloc(8);
  readExactly(fd, prefix, 0, () => `${file} ended while reading its header`);
  const n = prefix.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`its header length ${n} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  const headerBytes = Number(n);
  if (8 + headerBytes > size) {
    fail(`its header length ${headerBytes} runs past the end of the file (${size} bytes): truncated, or not a safetensors file`);
  }
  const json = Buffer.alloc(headerBytes);
  readExactly(fd, json, 8, () => `${file} ended while reading its header`);
  return { ...parseHeader(file, json, size - 8 - headerBytes), dataStart: 8 + headerBytes };
}

/** Fills `buffer` from `fd` at `position` (readSync may return fewer bytes than asked). */
function readExactly(fd: number, buffer: Uint8Array, position: number, ended: () => string): void {
  let done = 0;
  while (done < buffer.length) {
    const n = fs.readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) throw new RlhfError(ended());
    done += n;
  }
}

let halfValues: Float32Array | undefined;

/** The float32 value of every IEEE half-precision bit pattern. */
function halfTable(): Float32Array {
  if (!halfValues) {
    halfValues = new Float32Array(65536);
    for (let h = 0; h < 65536; ++h) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      halfValues[h] =
        exponent === 0
          ? sign * mantissa * 2 ** -24 // zero and subnormals
          : exponent === 31
            ? mantissa
              ? NaN
              : sign * Infinity
            : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
    }
  }
  return halfValues;
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Named tensors: an object, or [name, tensor] pairs (an array or a Map). */
export type NamedTensors = Readonly<Record<string, Tensor>> | Iterable<readonly [string, Tensor]>;

export interface WriteSafetensorsOptions {
  /**
   * The "__metadata__" string map. `format: "pt"` is added unless given: transformers refuses to
   * load weights whose format is not one it knows, and writes "pt" itself.
   */
  metadata?: Readonly<Record<string, string>>;
  /** Store float tensors in this dtype (e.g. "bfloat16" to halve the file); int32 stays I32. */
  asDtype?: "float32" | "bfloat16";
}

interface Planned {
  name: string;
  tensor: Tensor;
  dtype: SafetensorsDType;
  bytes: number;
}

/**
 * Writes `tensors` to `file` (its folder is created). float32 tensors are stored as F32, bfloat16
 * as BF16, int32 as I32, or float tensors as `asDtype`. The layout is the reference library's
 * (safetensors `serialize`): tensors sorted by decreasing dtype alignment then by name — so each
 * tensor starts at a multiple of its element size — the header in compact JSON with
 * "__metadata__" first, padded with spaces to a multiple of 8 bytes. Tensors are copied out one at
 * a time into a temporary file, renamed over `file` once complete.
 */
export function writeSafetensors(file: string, tensors: NamedTensors, options: WriteSafetensorsOptions = {}): void {
  writePlanned(file, plan(tensors, options.asDtype, file), options.metadata);
}

export interface ShardedWriteResult {
  /** The safetensors files written, in shard order. */
  files: string[];
  /** model.safetensors.index.json, when the model was split into several shards. */
  indexFile?: string;
}

/**
 * Saves a model into `folder` as transformers' save_pretrained does: a single model.safetensors
 * when its tensors (in their stored dtype) fit in `maxShardBytes`, else shards
 * model-00001-of-0000N.safetensors plus model.safetensors.index.json ({"metadata": {"total_size"},
 * "weight_map"}, sorted keys, two-space indent). Shards are filled in the tensors' order and a new
 * one starts when the next tensor would overflow the current one; a tensor larger than the limit
 * gets a shard of its own (huggingface_hub's split_state_dict_into_shards). Weight files of an
 * earlier save in `folder` that this one does not overwrite are deleted afterwards, so that no
 * stale model.safetensors or shard shadows the new weights.
 */
export function writeShardedSafetensors(
  folder: string,
  tensors: NamedTensors,
  maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES,
  options: WriteSafetensorsOptions = {},
): ShardedWriteResult {
  if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0) {
    throw new RlhfError(`the maximum shard size must be a positive number of bytes, got ${maxShardBytes}`);
  }
  const planned = plan(tensors, options.asDtype, folder);
  const shards: Planned[][] = [];
  let current: Planned[] = [];
  let currentBytes = 0;
  let totalBytes = 0;
  for (const p of planned) {
    totalBytes += p.bytes;
    if (p.bytes > maxShardBytes) {
      shards.push([p]);
      continue;
    }
    if (currentBytes + p.bytes > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(p);
    currentBytes += p.bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);

  const result: ShardedWriteResult = { files: [] };
  if (shards.length === 1) {
    result.files.push(path.join(folder, SAFETENSORS_FILE));
    writePlanned(result.files[0], shards[0], options.metadata);
  } else {
    const count = String(shards.length).padStart(5, "0");
    const weightMap: [string, string][] = [];
    shards.forEach((shard, i) => {
      const name = `model-${String(i + 1).padStart(5, "0")}-of-${count}.safetensors`;
      result.files.push(path.join(folder, name));
      writePlanned(result.files[i], shard, options.metadata);
      for (const p of shard) weightMap.push([p.name, name]);
    });
    result.indexFile = path.join(folder, SAFETENSORS_INDEX_FILE);
    writeAtomically(result.indexFile, (fd) => writeAll(fd, Buffer.from(indexJson(totalBytes, weightMap), "utf8"), 0));
  }
  removeStaleWeights(folder, new Set([...result.files, ...(result.indexFile ? [result.indexFile] : [])]));
  return result;
}

/** The index as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n". */
function indexJson(totalSize: number, weightMap: [string, string][]): string {
  const entries = [...weightMap].sort((a, b) => compareNames(a[0], b[0]));
  const lines = entries.map(([name, shard]) => `    ${JSON.stringify(name)}: ${JSON.stringify(shard)}`);
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${lines.join(",\n")}\n  }\n}\n`;
}

function removeStaleWeights(folder: string, keep: Set<string>): void {
  const weightFile = /^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$/;
  for (const name of fs.readdirSync(folder)) {
    const file = path.join(folder, name);
    if (weightFile.test(name) && !keep.has(file)) fs.rmSync(file, { force: true });
  }
}

/** Validates the tensors and decides each one's stored dtype and size, in the given order. */
function plan(tensors: NamedTensors, asDtype: "float32" | "bfloat16" | undefined, target: string): Planned[] {
  const pairs: Iterable<readonly [string, Tensor]> =
    Symbol.iterator in tensors ? (tensors as Iterable<readonly [string, Tensor]>) : Object.entries(tensors);
  const seen = new Set<string>();
  const out: Planned[] = [];
  for (const [name, t] of pairs) {
    const where = `writing ${target}: tensor "${name}"`;
    if (typeof name !== "string" || name === "" || name === "__metadata__") {
      throw new RlhfError(`writing ${target}: ${JSON.stringify(name)} is not a valid tensor name`);
    }
    if (seen.has(name)) throw new RlhfError(`${where} is given twice`);
    if (t.disposed) throw new RlhfError(`${where} was disposed`);
    seen.add(name);
    const dtype: SafetensorsDType = t.dtype === "int32" ? "I32" : (asDtype ?? t.dtype) === "bfloat16" ? "BF16" : "F32";
    out.push({ name, tensor: t, dtype, bytes: dtypeBytes(dtype, t.numel) as number });
  }
  return out;
}

function writePlanned(file: string, planned: readonly Planned[], metadata: Readonly<Record<string, string>> = {}): void {
  const ordered = [...planned].sort(compareForWriting);
  const entries: HeaderEntry[] = [];
  let offset = 0;
  for (const p of ordered) {
    entries.push({ name: p.name, dtype: p.dtype, shape: p.tensor.shape, begin: offset, end: offset + p.bytes });
    offset += p.bytes;
  }
  const header = serializeHeader({ format: "pt", ...metadata }, entries);
  writeAtomically(file, (fd) => {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    writeAll(fd, prefix, 0);
    writeAll(fd, header, 8);
    let position = 8 + header.length;
    for (const p of ordered) {
      writeTensor(fd, p, position);
      position += p.bytes;
    }
  });
}

/** Elements converted per write when narrowing to bfloat16 (1 Mi elements: a 2 MB chunk). */
const BF16_CHUNK = 1 << 20;

/** Writes one tensor's elements (row-major, whatever its strides) at `position`. */
function writeTensor(fd: number, p: Planned, position: number): void {
  if (p.dtype === "I32") {
    const values = ints(p.tensor);
    writeAll(fd, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), position);
    return;
  }
  if (p.dtype === "F32") {
    // bfloat16 tensors widen exactly.
    const values = floats(p.tensor);
    writeAll(fd, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), position);
    return;
  }
  // BF16: the native conversion rounds float32 to nearest even; the widened copy that toArray()
  // returns then holds each bfloat16 exactly in its upper 16 bits (odd halves, little-endian).
  const narrow = p.tensor.dtype === "bfloat16" ? p.tensor : p.tensor.to("bfloat16");
  const values = floats(narrow);
  if (narrow !== p.tensor) narrow.dispose();
  const halves = new Uint16Array(values.buffer, values.byteOffset, values.length * 2);
  const chunk = new Uint16Array(Math.min(values.length, BF16_CHUNK));
  for (let start = 0; start < values.length; start += chunk.length) {
    const count = Math.min(chunk.length, values.length - start);
    for (let j = 0; j < count; ++j) chunk[j] = halves[2 * (start + j) + 1];
    writeAll(fd, new Uint8Array(chunk.buffer, 0, count * 2), position + start * 2);
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/**
 * Runs `write` on a new temporary file beside `file`, flushes it to disk and renames it over
 * `file`: readers see the old file or the complete new one, never a partial one.
 */
function writeAtomically(file: string, write: (fd: number) => void): void {
  const folder = path.dirname(file);
  const temp = path.join(folder, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  let fd: number | undefined;
  try {
    fs.mkdirSync(folder, { recursive: true });
    fd = fs.openSync(temp, "wx");
    write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    if ((err as NodeJS.ErrnoException).syscall) throw new RlhfError(`cannot write ${file}: ${(err as Error).message}`);
    throw err;
  }
}
