import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { floats, ints, scope, Tensor, tensor } from "../lib";
import {
  openSafetensors,
  READ_CHUNK_BYTES,
  SafetensorsReader,
  writeSafetensors,
  writeShardedSafetensors,
} from "../lib/model/safetensors";
import { expectNoLeak } from "./helpers/memory";
import { Rng } from "./helpers/random";
import { itRejects, Rejection } from "./helpers/rejects";
import { runTypeScript } from "./helpers/ts-child";

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rlhf-safetensors-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileCount = 0;
/** A new path in the temporary folder. */
const tmpPath = (name: string) => path.join(tmp, `${++fileCount}-${name}`);

/**
 * The bytes of a safetensors file as the format specifies: the header length N as a little-endian
 * u64, N bytes of JSON (padded with spaces to a multiple of 8 unless `pad` is false), the data.
 */
function safetensorsBytes(headerJson: string, data: ArrayLike<number>, pad = true): Buffer {
  const json = Buffer.from(headerJson, "utf8");
  const header = pad ? Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]) : json;
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, Buffer.from(Array.from(data))]);
}

function writeFile(name: string, bytes: Uint8Array): string {
  const file = tmpPath(name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Little-endian bytes of 16-bit patterns. */
const u16 = (...bits: number[]) => bits.flatMap((b) => [b & 0xff, b >>> 8]);

const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

/** The nearest bfloat16 to a float32 (ties to even), computed on the bit pattern. */
function bf16(x: number): number {
  if (Number.isNaN(x)) return NaN;
  bitsF32[0] = x;
  bitsU32[0] = ((bitsU32[0] + 0x7fff + ((bitsU32[0] >>> 16) & 1)) >>> 0) & 0xffff0000;
  return bitsF32[0];
}

/** Exact equality of long arrays, reporting the first difference. */
function expectSame(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) ++i;
  expect(i === actual.length ? "equal" : `[${i}]: ${actual[i]} != ${expected[i]}`).toBe("equal");
}

/** Opens, runs `fn`, closes. */
function withReader<R>(file: string, fn: (r: SafetensorsReader) => R): R {
  const reader = openSafetensors(file);
  try {
    return fn(reader);
  } finally {
    reader.close();
  }
}

describe("safetensors files written by the reference library", () => {
  // What safetensors.torch.save_file writes for these tensors with metadata={"format": "pt"}:
  // __metadata__ first, tensors by decreasing dtype alignment (F64, F32, I32, BF16, F16), then name.
  const header =
    '{"__metadata__":{"format":"pt"},' +
    '"scalar":{"dtype":"F64","shape":[],"data_offsets":[0,8]},' +
    '"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[8,8]},' +
    '"model.norm.weight":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},' +
    '"pos":{"dtype":"I32","shape":[2,2],"data_offsets":[20,36]},' +
    '"emb":{"dtype":"BF16","shape":[2,3],"data_offsets":[36,48]},' +
    '"half":{"dtype":"F16","shape":[5],"data_offsets":[48,58]}}';
  const data = [
    // scalar: 0.1 as float64 = 0x3fb999999999999a
    0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f,
    // model.norm.weight: 1 = 0x3f800000, -2 = 0xc0000000, 0.5 = 0x3f000000
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x3f,
    // pos: 0, 1, -1, 2^31 - 1
    0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    // emb: 1, -1, 3, 0.25, +inf, 2^-133 (the smallest positive bfloat16 subnormal)
    ...u16(0x3f80, 0xbf80, 0x4040, 0x3e80, 0x7f80, 0x0001),
    // half: 1, -2, 65504 (the largest half), 2^-24 (the smallest half subnormal), -inf
    ...u16(0x3c00, 0xc000, 0x7bff, 0x0001, 0xfc00),
  ];

  it("reads names, dtypes, shapes, metadata and values", () => {
    const file = writeFile("reference.safetensors", safetensorsBytes(header, data));
    withReader(file, (r) => {
      expect(r.names()).toEqual(["emb", "empty", "half", "model.norm.weight", "pos", "scalar"]);
      expect(r.files).toEqual([{ path: file, metadata: { format: "pt" } }]);
      expect(r.indexFile).toBeUndefined();
      expect(r.has("pos")).toBe(true);
      expect(r.has("missing")).toBe(false);
      expect(r.info("emb")).toEqual({ dtype: "BF16", shape: [2, 3], byteLength: 12, file });
      expect(r.info("scalar")).toEqual({ dtype: "F64", shape: [], byteLength: 8, file });
      scope(() => {
        const norm = r.load("model.norm.weight");
        expect([norm.dtype, norm.shape]).toEqual(["float32", [3]]);
        expect(Array.from(floats(norm))).toEqual([1, -2, 0.5]);
        const pos = r.load("pos");
        expect([pos.dtype, pos.shape]).toEqual(["int32", [2, 2]]);
        expect(Array.from(ints(pos))).toEqual([0, 1, -1, 2147483647]);
        const emb = r.load("emb");
        expect(emb.dtype).toBe("bfloat16");
        expect(Array.from(floats(emb))).toEqual([1, -1, 3, 0.25, Infinity, 2 ** -133]);
        expect(Array.from(floats(r.load("emb", "float32")))).toEqual([1, -1, 3, 0.25, Infinity, 2 ** -133]);
        const half = r.load("half");
        expect(half.dtype).toBe("float32");
        expect(Array.from(floats(half))).toEqual([1, -2, 65504, 2 ** -24, -Infinity]);
        // 65504 = 0x477fe000 in float32: its lower half 0xe000 is past half-way, so it rounds up
        // to bfloat16 0x4780 = 65536.
        expect(Array.from(floats(r.load("half", "bfloat16")))).toEqual([1, -2, 65536, 2 ** -24, -Infinity]);
        const scalar = r.load("scalar");
        expect([scalar.dtype, scalar.shape]).toEqual(["float32", []]);
        expect(floats(scalar)[0]).toBe(Math.fround(0.1));
        const empty = r.load("empty");
        expect([empty.shape, empty.numel]).toEqual([[0, 4], 0]);
        const weight = r.weightGetter("bfloat16");
        expect(weight("lm_head.weight")).toBeUndefined();
        const norm16 = weight("model.norm.weight") as Tensor;
        expect([norm16.dtype, Array.from(floats(norm16))]).toEqual(["bfloat16", [1, -2, 0.5]]);
      });
    });
  });

  it("accepts a header without padding or metadata, with tensors in any order", () => {
    // Older writers did not pad; JSON key order is free (offsets decide the layout).
    const file = writeFile(
      "unpadded.safetensors",
      safetensorsBytes(
        '{"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}, "a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        [0, 0, 0x80, 0x3f, 5, 0, 0, 0],
        false,
      ),
    );
    withReader(file, (r) => {
      expect(r.files[0].metadata).toEqual({});
      scope(() => {
        expect(Array.from(floats(r.load("a")))).toEqual([1]);
        expect(Array.from(ints(r.load("b")))).toEqual([5]);
      });
    });
  });

  it("loads without leaking native memory", () => {
    const file = writeFile("leak.safetensors", safetensorsBytes(header, data));
    withReader(file, (r) => expectNoLeak(() => r.names().forEach((n) => r.load(n))));
  });
});

describe("writeSafetensors", () => {
  it("writes the reference library's bytes", () => {
    const file = tmpPath("written.safetensors");
    scope(() => {
      writeSafetensors(
        file,
        {
          z: tensor("float32", [2], [1, -2]),
          a: tensor("bfloat16", [3], [1, 2, 0.5]),
          m: tensor("int32", [], [7]),
          b: tensor("float32", [0], []),
        },
        { metadata: { note: "hi" } },
      );
    });
    // Sorted by decreasing dtype alignment (F32, I32, BF16), then by name; format "pt" added.
    const expected = safetensorsBytes(
      '{"__metadata__":{"format":"pt","note":"hi"},' +
        '"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},' +
        '"z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"m":{"dtype":"I32","shape":[],"data_offsets":[8,12]},' +
        '"a":{"dtype":"BF16","shape":[3],"data_offsets":[12,18]}}',
      [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 7, 0, 0, 0, ...u16(0x3f80, 0x4000, 0x3f00)],
    );
    const actual = fs.readFileSync(file);
    expect(actual.toString("hex")).toBe(expected.toString("hex"));
    // The header length is a multiple of 8 and the padding is spaces.
    const n = Number(actual.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(actual.subarray(8, 8 + n).toString("utf8")).toMatch(/\} *$/);
  });

  const shapes = [[], [0], [1], [3, 5], [2, 0, 3], [7, 1, 3]];

  it("round-trips float32, bfloat16 and int32 tensors of odd shapes", () => {
    const rng = new Rng(7);
    scope(() => {
      const expected = new Map<string, { dtype: string; shape: number[]; values: number[] }>();
      const tensors: [string, Tensor][] = [];
      shapes.forEach((shape, i) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const f = Array.from(rng.normals(n, 3));
        const ints32 = Array.from(rng.ints(n, -(2 ** 31), 2 ** 31));
        tensors.push([`f32.${i}`, tensor("float32", shape, f)], [`bf16.${i}`, tensor("bfloat16", shape, f)], [`i32.${i}`, tensor("int32", shape, ints32)]);
        expected.set(`f32.${i}`, { dtype: "F32", shape, values: f });
        expected.set(`bf16.${i}`, { dtype: "BF16", shape, values: f.map(bf16) });
        expected.set(`i32.${i}`, { dtype: "I32", shape, values: ints32 });
      });
      const file = tmpPath("roundtrip.safetensors");
      writeSafetensors(file, tensors);
      withReader(file, (r) => {
        expect(r.names().length).toBe(expected.size);
        for (const [name, e] of expected) {
          expect(r.info(name)).toMatchObject({ dtype: e.dtype, shape: e.shape });
          const t = r.load(name);
          expect(t.shape).toEqual(e.shape);
          expect(Array.from(t.toArray())).toEqual(e.values);
          if (e.dtype === "F32") expect(Array.from(floats(r.load(name, "bfloat16")))).toEqual(e.values.map(bf16));
          if (e.dtype === "BF16") expect(Array.from(floats(r.load(name, "float32")))).toEqual(e.values);
        }
      });
    });
  });

  it("stores float tensors as asDtype, and views in row-major order", () => {
    const rng = new Rng(11);
    scope(() => {
      const values = Array.from(rng.normals(15, 100));
      const source = tensor("float32", [3, 5], values);
      const file = tmpPath("as-bf16.safetensors");
      writeSafetensors(file, [["w", source], ["t", source.transpose(0, 1)], ["ids", tensor("int32", [2], [1, 2])]], { asDtype: "bfloat16" });
      withReader(file, (r) => {
        expect(r.info("w")).toMatchObject({ dtype: "BF16", byteLength: 30 });
        expect(r.info("ids").dtype).toBe("I32");
        expect(Array.from(floats(r.load("w", "float32")))).toEqual(values.map(bf16));
        const transposed = [];
        for (let j = 0; j < 5; ++j) for (let i = 0; i < 3; ++i) transposed.push(bf16(values[i * 5 + j]));
        expect(r.info("t").shape).toEqual([5, 3]);
        expect(Array.from(floats(r.load("t")))).toEqual(transposed);
      });
      const wide = tmpPath("as-f32.safetensors");
      writeSafetensors(wide, { w: source.to("bfloat16") }, { asDtype: "float32" });
      withReader(wide, (r) => {
        expect(r.info("w").dtype).toBe("F32");
        expect(Array.from(floats(r.load("w")))).toEqual(values.map(bf16));
      });
    });
  });

  it("streams tensors larger than the read chunk", () => {
    // 3 chunks for float32; BF16 widened to float32 goes through the conversion buffer in 2 chunks.
    const n = Math.floor((2.5 * READ_CHUNK_BYTES) / 4);
    const values = new Float32Array(n);
    for (let i = 0; i < n; ++i) values[i] = ((i * 7919) % 1000) - 500.25;
    scope(() => {
      const file = tmpPath("large.safetensors");
      writeSafetensors(file, [["f", tensor("float32", [n], values)], ["b", tensor("bfloat16", [n], values)]]);
      withReader(file, (r) => {
        expectSame(floats(r.load("f")), values);
        expectSame(floats(r.load("b", "float32")), values.map(bf16));
      });
    });
  });

  it("creates the folder, and leaves an existing file intact when a write fails", () => {
    const file = path.join(tmpPath("nested"), "deeper", "model.safetensors");
    scope(() => writeSafetensors(file, { a: tensor("float32", [1], [1]) }));
    const before = fs.readFileSync(file);
    const failing = {
      dtype: "float32",
      shape: [2],
      numel: 2,
      disposed: false,
      toArray: () => {
        throw new Error("device lost");
      },
    } as unknown as Tensor;
    scope(() => expect(() => writeSafetensors(file, { a: tensor("float32", [1], [2]), b: failing })).toThrow("device lost"));
    expect(fs.readFileSync(file)).toEqual(before);
    expect(fs.readdirSync(path.dirname(file))).toEqual(["model.safetensors"]);
  });
});

describe("sharded models", () => {
  const f32 = (n: number, start: number) => tensor("float32", [n], Array.from({ length: n }, (_, i) => start + i));

  it("split as huggingface_hub does, with transformers' index, and read back", () => {
    const folder = tmpPath("sharded");
    scope(() => {
      // Sizes 40, 40, 100, 24, 8 bytes with a 64-byte limit: "c.big" exceeds the limit and gets a
      // shard of its own at once, while the open shard holding "a.second" continues.
      const result = writeShardedSafetensors(
        folder,
        [["b.first", f32(10, 0)], ["a.second", f32(10, 100)], ["c.big", f32(25, 200)], ["d.small", f32(6, 300)], ["e.ids", tensor("int32", [2], [4, 5])]],
        64,
      );
      const shard = (i: number) => path.join(folder, `model-0000${i}-of-00004.safetensors`);
      expect(result).toEqual({ files: [1, 2, 3, 4].map(shard), indexFile: path.join(folder, "model.safetensors.index.json") });
      expect(fs.readFileSync(result.indexFile as string, "utf8")).toBe(
        `{
  "metadata": {
    "total_size": 212
  },
  "weight_map": {
    "a.second": "model-00003-of-00004.safetensors",
    "b.first": "model-00001-of-00004.safetensors",
    "c.big": "model-00002-of-00004.safetensors",
    "d.small": "model-00003-of-00004.safetensors",
    "e.ids": "model-00004-of-00004.safetensors"
  }
}
`,
      );
      withReader(folder, (r) => {
        expect(r.indexFile).toBe(result.indexFile);
        expect(r.files.map((f) => f.path)).toEqual([1, 2, 3, 4].map(shard));
        expect(r.files.every((f) => f.metadata.format === "pt")).toBe(true);
        expect(r.names()).toEqual(["a.second", "b.first", "c.big", "d.small", "e.ids"]);
        expect(r.info("d.small").file).toBe(shard(3));
        expect(Array.from(floats(r.load("a.second")))).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
        expect(Array.from(floats(r.load("c.big")))).toEqual(Array.from({ length: 25 }, (_, i) => 200 + i));
        expect(Array.from(ints(r.load("e.ids")))).toEqual([4, 5]);
      });
    });
  });

  it("size shards by the stored dtype, and replace an earlier save's files", () => {
    const folder = tmpPath("resharded");
    scope(() => {
      writeShardedSafetensors(folder, [["x", f32(10, 0)], ["y", f32(10, 0)], ["z", f32(10, 0)]], 50);
      expect(fs.readdirSync(folder).sort()).toEqual([
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
      ]);
      fs.writeFileSync(path.join(folder, "config.json"), "{}");
      // As bfloat16 the three tensors take 20 bytes each: two shards of 40 and 20.
      const second = writeShardedSafetensors(folder, [["x", f32(10, 0)], ["y", f32(10, 0)], ["z", f32(10, 0)]], 50, { asDtype: "bfloat16" });
      expect(second.files.map((f) => path.basename(f))).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
      expect(fs.readdirSync(folder).sort()).toEqual([
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
      ]);
      // Small enough for one file: model.safetensors, no index, no stale shards.
      const single = writeShardedSafetensors(folder, [["x", f32(10, 0)]], 50);
      expect(single).toEqual({ files: [path.join(folder, "model.safetensors")] });
      expect(fs.readdirSync(folder).sort()).toEqual(["config.json", "model.safetensors"]);
      withReader(folder, (r) => expect(r.names()).toEqual(["x"]));
    });
  });
});

describe("bad files and arguments", () => {
  const f32Header = (offsets: string, shape = "[2]", dtype = "F32") =>
    `{"w":{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}}`;
  const open = (name: string, bytes: Uint8Array) => () => openSafetensors(writeFile(name, bytes));
  const eight = [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40];

  /** A sharded model whose index is `index` and whose shard holds tensor "x". */
  function sharded(index: unknown): () => SafetensorsReader {
    return () => {
      const folder = tmpPath("bad-index");
      fs.mkdirSync(folder);
      fs.writeFileSync(path.join(folder, "model-00001-of-00002.safetensors"), safetensorsBytes(f32Header("[0,8]").replace('"w"', '"x"'), eight));
      fs.writeFileSync(path.join(folder, "model.safetensors.index.json"), typeof index === "string" ? index : JSON.stringify(index));
      return openSafetensors(folder);
    };
  }

  const truncated = () => {
    const file = tmpPath("truncated.safetensors");
    scope(() => writeSafetensors(file, { w: tensor("float32", [4], [1, 2, 3, 4]) }));
    fs.truncateSync(file, fs.statSync(file).size - 6);
    return openSafetensors(file);
  };

  const withTensors = (fn: (r: SafetensorsReader) => unknown) => () =>
    withReader(
      writeFile(
        "kinds.safetensors",
        safetensorsBytes('{"i64":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"i32":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},"f":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}', new Array(20).fill(0)),
      ),
      fn,
    );

  const cases: Rejection[] = [
    ["a missing file", () => openSafetensors(path.join(tmp, "nope.safetensors")), /no such file or folder: .*nope\.safetensors/],
    ["a file shorter than the length prefix", open("tiny.safetensors", Buffer.from([1, 2, 3])), /tiny\.safetensors: it has 3 bytes; a safetensors file starts with an 8-byte header length/],
    ["a header length beyond the file", open("long.safetensors", Buffer.concat([Buffer.from([0xe8, 3, 0, 0, 0, 0, 0, 0]), Buffer.from("{}        ")])), /long\.safetensors: its header length 1000 runs past the end of the file \(18 bytes\)/],
    ["a header length over the format's limit", open("huge.safetensors", Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0x7b, 0x7d])), /its header length 1099511627776 exceeds the format's limit/],
    ["a truncated file", truncated, /truncated\.safetensors: tensor "w": data_offsets \[0, 16\] run past the end of the data buffer \(10 bytes; is the file truncated\?\)/],
    ["a header that is not JSON", open("json.safetensors", safetensorsBytes('{"w": {"dtype": ', [])), /json\.safetensors: the header is not valid JSON/],
    ["a header that is not UTF-8", open("utf8.safetensors", safetensorsBytes("{}", []).fill(0xff, 8, 9)), /utf8\.safetensors: the header is not valid UTF-8/],
    ["a header that is not an object", open("array.safetensors", safetensorsBytes("[1, 2]", [])), /the header must be a JSON object, got \[1,2\]/],
    ["an unknown dtype", open("dtype.safetensors", safetensorsBytes(f32Header("[0,8]", "[2]", "F17"), eight)), /dtype\.safetensors: tensor "w": unknown dtype "F17" \(expected one of BOOL, F4, .*F64, I64, U64\)/],
    ["a negative dimension", open("shape.safetensors", safetensorsBytes(f32Header("[0,8]", "[-2]"), eight)), /tensor "w": "shape" must be an array of non-negative integers, got \[-2\]/],
    ["reversed data_offsets", open("reversed.safetensors", safetensorsBytes(f32Header("[8,0]"), eight)), /tensor "w": "data_offsets" must be \[begin, end\] with 0 <= begin <= end, got \[8,0\]/],
    ["data_offsets outside the data", open("outside.safetensors", safetensorsBytes(f32Header("[0,16]", "[4]"), eight)), /tensor "w": data_offsets \[0, 16\] run past the end of the data buffer \(8 bytes/],
    ["a size that disagrees with the shape", open("size.safetensors", safetensorsBytes(f32Header("[0,8]", "[3]"), eight)), /tensor "w": F32 \[3\] needs 12 bytes but data_offsets \[0, 8\] hold 8/],
    ["a sub-byte size", open("f4.safetensors", safetensorsBytes(f32Header("[0,1]", "[3]", "F4"), [0])), /tensor "w": F4 \[3\] is not a whole number of bytes/],
    ["a hole in the data", open("hole.safetensors", safetensorsBytes('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', new Array(12).fill(0))), /bytes 4\.\.8 of the data are not part of any tensor \(a hole before tensor "b"\)/],
    ["overlapping tensors", open("overlap.safetensors", safetensorsBytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight)), /tensor "b" \(bytes 4\.\.8\) overlaps tensor "a" \(bytes 0\.\.8\)/],
    ["trailing bytes after the tensors", open("trailing.safetensors", safetensorsBytes(f32Header("[0,8]"), [...eight, 1, 2, 3, 4])), /the data buffer holds 12 bytes but the tensors cover 8: 4 trailing bytes/],
    ["metadata that is not a string map", open("meta.safetensors", safetensorsBytes('{"__metadata__":{"step":1}}', [])), /"__metadata__"\."step" must be a string, got 1/],
    ["a folder without safetensors weights", () => {
      const folder = tmpPath("pytorch-only");
      fs.mkdirSync(folder);
      fs.writeFileSync(path.join(folder, "pytorch_model.bin"), "");
      return openSafetensors(folder);
    }, /has neither model\.safetensors nor model\.safetensors\.index\.json \(it has pytorch_model\.bin: only safetensors weights are read/],
    ["an index that is not JSON", sharded("{weight_map"), /invalid safetensors index .*model\.safetensors\.index\.json: /],
    ["an index without a weight map", sharded({ metadata: {} }), /expected an object with "weight_map": \{tensor name: shard file\}/],
    ["an index naming a missing shard", sharded({ weight_map: { x: "model-00001-of-00002.safetensors", y: "model-00002-of-00002.safetensors" } }), /names shards that are missing from .*: model-00002-of-00002\.safetensors/],
    ["an index naming a shard outside the folder", sharded({ weight_map: { x: "../model.safetensors" } }), /weight_map\["x"\] must be a shard file name inside the model folder, got "\.\.\/model\.safetensors"/],
    ["an index that disagrees with its shards", sharded({ weight_map: { x: "model-00001-of-00002.safetensors", gone: "model-00001-of-00002.safetensors" } }), /maps tensor "gone" to model-00001-of-00002\.safetensors, but no shard has it/],
    ["loading an unknown tensor", withTensors((r) => r.load("nope")), /kinds\.safetensors has no tensor "nope" \(it has 3 tensors\)/],
    ["loading a dtype we do not convert", withTensors((r) => r.load("i64")), /tensor "i64" in .*kinds\.safetensors is I64; rlhf-native loads F32, BF16, F16, F64 and I32 tensors/],
    ["loading integers as floats", withTensors((r) => r.load("i32", "float32")), /tensor "i32" in .* is I32 and cannot load as float32 \(expected int32\)/],
    ["loading floats as integers", withTensors((r) => r.load("f", "int32")), /tensor "f" in .* is F32 and cannot load as int32 \(expected float32 or bfloat16\)/],
    ["writing one name twice", () => writeSafetensors(tmpPath("twice.safetensors"), [["a", tensor("float32", [1])], ["a", tensor("float32", [1])]]), /tensor "a" is given twice/],
    ["writing a disposed tensor", () => {
      const t = tensor("float32", [1]);
      t.dispose();
      return writeSafetensors(tmpPath("disposed.safetensors"), { t });
    }, /writing .*disposed\.safetensors: tensor "t" was disposed/],
    ["writing a tensor named __metadata__", () => writeSafetensors(tmpPath("meta.safetensors"), [["__metadata__", tensor("float32", [1])]]), /"__metadata__" is not a valid tensor name/],
    ["a shard size that is not positive", () => writeShardedSafetensors(tmpPath("shards"), {}, 0), /the maximum shard size must be a positive number of bytes, got 0/],
  ];
  itRejects(cases);

  it("refuses to load after close()", () => {
    const file = writeFile("closed.safetensors", safetensorsBytes(f32Header("[0,8]"), eight));
    const r = openSafetensors(file);
    r.close();
    r.close();
    expect(() => r.load("w")).toThrow(/closed/);
  });
});

describe("memory", () => {
  // A child process writes a 200 MB Llama-shaped model (its largest tensor, the embedding, is a
  // third of it) as shards, and a fresh one loads every tensor as float32 while sampling its RSS.
  // Peak growth may exceed the weights by the loader's buffers (READ_CHUNK_BYTES for reading plus
  // twice that for widening 16-bit floats: 24 MiB) — inside the 20% margin — plus 16 MiB for V8
  // heap growth and allocator bookkeeping during the loop.
  const child = path.join(__dirname, "helpers", "load-rss-child.ts");
  const SLACK = 16 * 1024 * 1024;

  for (const stored of ["F32", "BF16"]) {
    it(`loads a sharded ${stored} model tensor by tensor holding the weights about once`, () => {
      const folder = tmpPath(`rss-${stored}`);
      runTypeScript(child, ["write", folder, stored]);
      const m = JSON.parse(runTypeScript(child, ["load", folder])) as {
        weightBytes: number;
        baselineRss: number;
        peakRssSampled: number;
        peakRssHwm: number | null;
        files: number;
      };
      expect(m.files).toBeGreaterThan(1);
      expect(m.weightBytes).toBe(209_752_064);
      const limit = 1.2 * m.weightBytes + SLACK;
      expect(m.peakRssSampled - m.baselineRss).toBeLessThanOrEqual(limit);
      // The kernel's exact peak, where /proc/self/clear_refs could reset it.
      if (m.peakRssHwm !== null) expect(m.peakRssHwm - m.baselineRss).toBeLessThanOrEqual(limit);
      // Each tensor really went to native memory: the growth is at least the weights.
      expect(Math.max(m.peakRssSampled, m.peakRssHwm ?? 0) - m.baselineRss).toBeGreaterThan(0.9 * m.weightBytes);
      fs.rmSync(folder, { recursive: true, force: true });
    });
  }
});
