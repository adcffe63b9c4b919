import { spawnSync } from "child_process";
import * as path from "path";

import { floats, ints, keep, matmul, matmulBackward, memoryStats, scope, tensor, Tensor, zeros } from "../lib";

/** Bytes live in native memory right now. */
const live = () => memoryStats().liveBytes;

describe("tensors", () => {
  it("hold float32, int32 and bfloat16 data with shape, strides and sizes", () => {
    scope(() => {
      const f = tensor("float32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]));
      expect(f.dtype).toBe("float32");
      expect(f.shape).toEqual([2, 3]);
      expect(f.strides).toEqual([3, 1]);
      expect(f.numel).toBe(6);
      expect(f.byteLength).toBe(24);
      expect(Array.from(floats(f))).toEqual([1, 2, 3, 4, 5, 6]);

      const i = tensor("int32", [3], [7, -8, 2147483647]);
      expect(Array.from(ints(i))).toEqual([7, -8, 2147483647]);

      const b = tensor("bfloat16", [2], [1.5, -2]);
      expect(b.byteLength).toBe(4);
      expect(Array.from(floats(b))).toEqual([1.5, -2]);

      expect(Array.from(floats(zeros("float32", [4])))).toEqual([0, 0, 0, 0]);
      expect(zeros("float32", [0, 5]).numel).toBe(0);
      expect(tensor("float32", [], [3.5]).numel).toBe(1);
    });
  });

  it("rounds float32 to bfloat16 to nearest even, keeping NaN and infinities", () => {
    scope(() => {
      // bfloat16 keeps 8 significand bits: values between 1 and 2 are spaced by 2^-7 = 0.0078125.
      // 1 + 2^-8 is exactly half-way between 1 and 1 + 2^-7: ties go to the even one, 1.
      // 1 + 3·2^-8 is half-way between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6 = 1.015625.
      // 1 + 2^-8 + 2^-20 is just above half-way: rounds up to 1.0078125.
      // 3.4e38 exceeds the largest bfloat16 (≈ 3.3895e38) by more than half an ulp: +Infinity.
      const input = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 3.4e38, NaN, -Infinity, -0];
      const b = tensor("bfloat16", [input.length], input);
      const out = Array.from(floats(b));
      expect(out.slice(0, 4)).toEqual([1, 1.015625, 1.0078125, Infinity]);
      expect(Number.isNaN(out[4])).toBe(true);
      expect(out[5]).toBe(-Infinity);
      expect(Object.is(out[6], -0)).toBe(true);
    });
  });

  it("accepts raw bfloat16 bits and converts between dtypes", () => {
    scope(() => {
      // 0x3fc0 = sign 0, exponent 0x7f (2^0), mantissa 0x40 (0.5) -> 1.5; 0xc000 -> -2.
      const b = tensor("bfloat16", [2], new Uint16Array([0x3fc0, 0xc000]));
      expect(Array.from(floats(b))).toEqual([1.5, -2]);
      const f = b.to("float32");
      expect(f.dtype).toBe("float32");
      expect(Array.from(floats(f))).toEqual([1.5, -2]);
      const back = tensor("float32", [2], [0.1, 1e-3]).to("bfloat16");
      // 0.1 = 0x3dcccccd in float32 -> bfloat16 0x3dcd (round up) = 0.10009765625
      expect(floats(back)[0]).toBe(0.10009765625);
      expect(Array.from(floats(tensor("int32", [2], [3, -4]).to("float32")))).toEqual([3, -4]);
    });
  });

  it("makes views that share memory: reshape, transpose, contiguous", () => {
    scope(() => {
      const t = tensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]);
      const r = t.reshape([3, -1]);
      expect(r.shape).toEqual([3, 2]);
      const tr = t.transpose(0, 1);
      expect(tr.shape).toEqual([3, 2]);
      expect(tr.strides).toEqual([1, 3]);
      expect(tr.isContiguous).toBe(false);
      expect(Array.from(floats(tr))).toEqual([1, 4, 2, 5, 3, 6]);
      const c = tr.contiguous();
      expect(c.isContiguous).toBe(true);
      expect(Array.from(floats(c))).toEqual([1, 4, 2, 5, 3, 6]);
      // Writing through a view is visible in the original.
      r.fill(9);
      expect(Array.from(floats(t))).toEqual([9, 9, 9, 9, 9, 9]);
      // copyFrom respects the destination's strides.
      tr.copyFrom([1, 2, 3, 4, 5, 6]);
      expect(Array.from(floats(t))).toEqual([1, 3, 5, 2, 4, 6]);
      // copyFrom between overlapping views reads the source fully before writing.
      const sq = tensor("float32", [2, 2], [1, 2, 3, 4]);
      sq.copyFrom(sq.transpose(0, 1).contiguous());
      expect(Array.from(floats(sq))).toEqual([1, 3, 2, 4]);
      const clone = sq.clone();
      clone.fill(0);
      expect(Array.from(floats(sq))).toEqual([1, 3, 2, 4]);
    });
  });

  it("copyFrom(source, offset) fills a range of elements, raw or converted, leaving the rest", () => {
    scope(() => {
      const f = tensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]);
      f.copyFrom(new Float32Array([-1, -2]), 2);
      f.copyFrom([7.5], 5);
      f.copyFrom([], 6);
      expect(Array.from(floats(f))).toEqual([1, 2, -1, -2, 5, 7.5]);

      // Raw bfloat16 bits (0x3fc0 = 1.5, 0xc000 = -2) and float values rounded to nearest even:
      // 1 + 2^-8 lies half-way between bfloat16 neighbours 1 and 1 + 2^-7 and goes to the even one, 1.
      const b = zeros("bfloat16", [4]);
      b.copyFrom(new Uint16Array([0x3fc0, 0xc000]), 1);
      b.copyFrom(new Float32Array([1 + 2 ** -8]), 3);
      expect(Array.from(floats(b))).toEqual([0, 1.5, -2, 1]);

      const i = zeros("int32", [3]);
      i.copyFrom(new Int32Array([-7, 2147483647]), 1);
      expect(Array.from(ints(i))).toEqual([0, -7, 2147483647]);
    });
  });

  it("frees memory on dispose, once the last view is gone", () => {
    const before = live();
    const t = tensor("float32", [1000]);
    expect(live()).toBe(before + 4000);
    const v = t.reshape([10, 100]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(live()).toBe(before + 4000); // the view still holds the storage
    t.dispose(); // twice is harmless
    v.dispose();
    expect(live()).toBe(before);
    expect(() => t.toArray()).toThrow(/disposed/);
  });

  it("scope() disposes what it created except what it returns", () => {
    const before = live();
    let inner: Tensor | undefined;
    const result = scope(() => {
      inner = tensor("float32", [10]);
      const a = tensor("float32", [2, 2], [1, 2, 3, 4]);
      const kept = tensor("float32", [3]);
      return { product: matmul(a, a), list: [kept], note: "not a tensor" };
    });
    expect(inner!.disposed).toBe(true);
    expect(result.product.disposed).toBe(false);
    expect(result.list[0].disposed).toBe(false);
    expect(Array.from(floats(result.product))).toEqual([7, 10, 15, 22]);
    result.product.dispose();
    result.list[0].dispose();
    expect(live()).toBe(before);
  });

  it("scope() keeps the tensors of a returned op result (an object made by the addon)", () => {
    const result = scope(() => {
      const a = tensor("float32", [2, 2], [1, 2, 3, 4]);
      return matmulBackward(a, a, tensor("float32", [2, 2], [1, 0, 0, 1]));
    });
    expect(result.dA!.disposed).toBe(false);
    expect(result.dB!.disposed).toBe(false);
    result.dA!.dispose();
    result.dB!.dispose();
  });

  it("nested scopes hand returned tensors to the enclosing scope; keep() opts out", () => {
    const before = live();
    let fromInner: Tensor | undefined;
    let kept: Tensor | undefined;
    scope(() => {
      fromInner = scope(() => tensor("float32", [4]));
      expect(fromInner.disposed).toBe(false);
      kept = keep(tensor("float32", [4]));
    });
    expect(fromInner!.disposed).toBe(true);
    expect(kept!.disposed).toBe(false);
    kept!.dispose();
    expect(live()).toBe(before);
  });

  it("scope() disposes everything when its function throws, and refuses async functions", () => {
    const before = live();
    expect(() =>
      scope(() => {
        tensor("float32", [100]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(live()).toBe(before);
    expect(() => scope(async () => tensor("float32", [100]))).toThrow(/synchronous/);
    expect(live()).toBe(before);
  });

  it("an `out` tensor passed to an op keeps its owner", () => {
    const out = tensor("float32", [2, 2]);
    scope(() => {
      const a = tensor("float32", [2, 2], [1, 0, 0, 1]);
      const r = matmul(a, a, { out });
      expect(r).toBe(out);
    });
    expect(out.disposed).toBe(false);
    out.dispose();
  });

  it("does not grow over many scoped steps", () => {
    const before = live();
    const w = tensor("float32", [64, 64], new Float32Array(64 * 64).fill(0.01));
    for (let step = 0; step < 500; ++step) {
      scope(() => {
        const x = tensor("float32", [16, 64], new Float32Array(16 * 64).fill(1));
        matmul(matmul(x, w, { transB: true }), w);
      });
    }
    w.dispose();
    expect(live()).toBe(before);
  });

  it("sizes the CPU thread pool from RLHF_NUM_THREADS", () => {
    const root = path.resolve(__dirname, "..");
    const script = `
      const addon = require(${JSON.stringify(path.join(root, "node_modules/node-gyp-build"))})(${JSON.stringify(root)});
      console.log(addon.numThreads());
    `;
    const run = spawnSync(process.execPath, ["-e", script], {
      encoding: "utf8",
      env: { ...process.env, RLHF_NUM_THREADS: "3" },
    });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe("3");
  });

  it("frees undisposed tensors when they are garbage-collected (finalizer)", () => {
    // A child process with --expose-gc: allocate 200 MB in tensors nobody disposes, drop them, gc().
    const root = path.resolve(__dirname, "..");
    const script = `
      const addon = require(${JSON.stringify(path.join(root, "node_modules/node-gyp-build"))})(${JSON.stringify(root)});
      let ts = [];
      for (let i = 0; i < 50; ++i) ts.push(addon.zeros("float32", [1024, 1024]));
      const during = addon.memoryStats().liveBytes;
      ts = null;
      // Node runs N-API finalizers after the collection, from the event loop: gc, then yield.
      (async () => {
        for (let i = 0; i < 20 && addon.memoryStats().liveBytes > 0; ++i) {
          global.gc();
          await new Promise((resolve) => setImmediate(resolve));
        }
        console.log(JSON.stringify({ during, after: addon.memoryStats().liveBytes }));
      })();
    `;
    const run = spawnSync(process.execPath, ["--expose-gc", "-e", script], { encoding: "utf8" });
    expect(run.status).toBe(0);
    const { during, after } = JSON.parse(run.stdout.trim()) as { during: number; after: number };
    expect(during).toBe(50 * 1024 * 1024 * 4);
    expect(after).toBe(0);
  });
});
