/**
 * Bad input from JavaScript must throw a JS error that says what was wrong — never crash the
 * process. Each case below is a distinct kind of mistake; after all of them the addon still works.
 */
import { floats, matmul, native, setNumThreads, siluMul, tensor, Tensor, zeros } from "../lib";
import { itRejects, Rejection } from "./helpers/rejects";


/** Tensors shared by the cases (created lazily so a failure in one case cannot poison another). */
const f32 = (shape: number[]) => tensor("float32", shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5));

const tensorCases: Rejection[] = [
  ["unknown dtype", () => tensor("float16" as never, [2]), /dtype must be "float32", "bfloat16" or "int32"/],
  ["shape is not an array", () => tensor("float32", 4 as never), /shape must be an array/],
  ["negative dimension", () => tensor("float32", [2, -1]), /shape\[1\] must be a non-negative integer, got -1/],
  ["fractional dimension", () => tensor("float32", [2.5]), /shape\[0\] must be a non-negative integer/],
  ["absurdly large shape", () => zeros("float32", [1e9, 1e9]), /more than any host can hold/],
  ["data length differs from the shape", () => tensor("float32", [2, 2], [1, 2, 3]), /has 3 elements but the shape needs 4/],
  ["data is not numeric", () => tensor("float32", [1], "x" as never), /must be a typed array or an array of numbers/],
  ["array element is not a number", () => tensor("float32", [2], [1, "2"] as never), /element 1 of the data is not a number/],
  ["int32 data with a fraction", () => tensor("int32", [2], [1, 2.5]), /element 1 \(2.5\) is not an int32 value/],
  ["int32 data out of range", () => tensor("int32", [1], [2 ** 31]), /is not an int32 value/],
  ["Uint16Array for a float32 tensor", () => tensor("float32", [1], new Uint16Array(1)), /Float32Array, Float64Array, Int32Array/],
  ["constructing Tensor directly", () => new (native() as unknown as { Tensor: new () => unknown }).Tensor(), /created with tensor\(\), zeros\(\) or an op/],
  ["reshape to a different size", () => f32([2, 3]).reshape([4, 2]), /does not match the 6 elements/],
  ["reshape of a non-contiguous view", () => f32([2, 3]).transpose(0, 1).reshape([6]), /needs a contiguous tensor/],
  ["transpose dimension out of range", () => f32([2, 3]).transpose(0, 2), /dim1 2 is out of range for a tensor of rank 2/],
  ["use after dispose", () => { const t = f32([2]); t.dispose(); return t.toArray(); }, /disposed tensor/],
  ["float to int32 conversion", () => f32([2]).to("int32"), /cannot convert a float32 tensor to int32/],
  ["copyFrom a tensor of another shape", () => f32([2, 2]).copyFrom(f32([4])), /source is float32 \[4\] but this tensor is float32 \[2, 2\]/],
  ["copyFrom with an offset into a view", () => f32([2, 3]).transpose(0, 1).copyFrom([1], 0), /copyFrom\(source, offset\) needs a contiguous tensor/],
  ["copyFrom with an offset past the end", () => f32([2, 2]).copyFrom([1, 2], 3), /2 elements from offset 3 overrun the 4 elements of float32 \[2, 2\]/],
  ["copyFrom with a negative offset", () => f32([2]).copyFrom([1], -1), /offset must be an integer in \[0, 2\], got -1/],
  ["copyFrom a tensor with an offset", () => f32([2]).copyFrom(f32([1]), 0), /source must be a typed array or an array of numbers/],
  ["fill with a non-number", () => f32([2]).fill("1" as never), /fill\(value\): value must be a number/],
  ["setNumThreads(0)", () => setNumThreads(0), /n must be an integer in \[1, 1024\]/],
];

const opCases: Rejection[] = [
  ["op called without an options object", () => (native() as unknown as { matmul: (x: number) => unknown }).matmul(5), /matmul: expects one options object, got 5/],
  ["op called with a tensor instead of options", () => (native() as unknown as { matmul: (x: Tensor) => unknown }).matmul(f32([2])), /expects one options object, got float32 \[2\]/],
  ["required tensor missing", () => siluMul(f32([2, 2]), undefined as never), /'up' is required: a float32 tensor of shape \[N, F\]/],
  ["wrong dtype", () => siluMul(f32([2, 2]), tensor("int32", [2, 2])), /'up' must be a float32 tensor, got int32 \[2, 2\]/],
  ["mixed float dtypes", () => siluMul(f32([2, 2]), f32([2, 2]).to("bfloat16")), /'up' is bfloat16 but 'gate' is float32: the float tensors of an op share one dtype/],
  ["bfloat16 on the CPU backend", () => siluMul(f32([2, 2]).to("bfloat16"), f32([2, 2]).to("bfloat16")), /'gate' is bfloat16, but the cpu backend computes in float32: convert it with \.to\("float32"\)/],
  ["wrong rank", () => matmul(f32([2, 2, 2, 2]), f32([2, 2])), /'a' must have rank 2 or 3/],
  ["inner dimensions disagree", () => matmul(f32([2, 3]), f32([2, 3])), /'b' must have shape \[K, N\] \(K = 3 from 'a'\), got float32 \[2, 3\]/],
  ["batch sizes disagree", () => matmul(f32([2, 2, 3]), f32([3, 3, 4])), /'b' must have shape \[batch, K, N\] \(batch = 2 from 'a'/],
  ["shapes of elementwise inputs disagree", () => siluMul(f32([2, 3]), f32([3, 2])), /'up' must have shape \[N, F\]/],
  ["non-contiguous input", () => matmul(f32([3, 2]).transpose(0, 1), f32([3, 2])), /'a' must be contiguous/],
  ["disposed input", () => { const a = f32([2, 2]); a.dispose(); return matmul(a, f32([2, 2])); }, /'a' was disposed/],
  ["misspelt option", () => (native() as unknown as { matmul: (o: object) => unknown }).matmul({ a: f32([2, 2]), b: f32([2, 2]), tranposeB: true }), /unknown option 'tranposeB'/],
  ["non-finite scalar", () => matmul(f32([2, 2]), f32([2, 2]), { alpha: NaN }), /'alpha' must be finite, got NaN/],
  ["scalar of the wrong type", () => matmul(f32([2, 2]), f32([2, 2]), { transA: "yes" as never }), /'transA' must be a boolean, got "yes"/],
  ["accumulate with nothing to accumulate into", () => matmul(f32([2, 2]), f32([2, 2]), { accumulate: true }), /needs an 'out' tensor/],
  ["output of the wrong shape", () => matmul(f32([2, 3]), f32([3, 4]), { out: f32([2, 3]) }), /'out' must have shape \[M, N\]/],
  ["output aliasing an input", () => { const a = f32([2, 2]); return matmul(a, f32([2, 2]), { out: a }); }, /'out' and 'a' must not share memory/],
  ["a plain object posing as a tensor", () => siluMul({ dtype: "float32", shape: [2, 2] } as unknown as Tensor, f32([2, 2])), /'gate' must be a tensor, got an object/],
];

describe("bad input throws a clear error and the process survives", () => {
  const all = [...tensorCases, ...opCases];

  it("covers at least 25 distinct kinds of bad input", () => {
    expect(new Set(all.map(([name]) => name)).size).toBeGreaterThanOrEqual(25);
  });

  itRejects(all);

  it("still computes correctly afterwards", () => {
    const c = matmul(tensor("float32", [1, 2], [1, 2]), tensor("float32", [2, 1], [3, 4]));
    expect(Array.from(floats(c))).toEqual([11]);
    c.dispose();
  });
});
