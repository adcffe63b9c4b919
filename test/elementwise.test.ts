import { addInto, floats, nativeFunction, scope, tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { expectNoLeak } from "./helpers/memory";
import { Rng } from "./helpers/random";

describe("addInto", () => {
  const rng = new Rng(7);

  const shapes: Array<[string, number[]]> = [
    ["residual stream [B, T, D]", [2, 37, 96]],
    ["large (threaded) [N, D]", [300, 257]],
    ["rank 1", [5]],
    ["one element", [1, 1]],
    ["empty", [0, 4]],
  ];
  for (const [name, shape] of shapes) {
    it(`adds in place and returns dst: ${name}`, () => {
      scope(() => {
        const n = shape.reduce((a, b) => a * b, 1);
        const d = rng.normals(n, 3);
        const s = rng.normals(n);
        const dst = tensor("float32", shape, d);
        const out = addInto(dst, tensor("float32", shape, s));
        expect(out).toBe(dst);
        expect(out.shape).toEqual(shape);
        expectClose(floats(dst), d.map((v, i) => v + s[i]), { rtol: 1e-6, atol: 1e-7 });
      });
    });
  }

  it("reads src through a contiguous view", () => {
    scope(() => {
      const src = tensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]);
      const dst = tensor("float32", [6], [10, 20, 30, 40, 50, 60]);
      addInto(dst, src.reshape([6]));
      expect(Array.from(floats(dst))).toEqual([11, 22, 33, 44, 55, 66]);
    });
  });

  it("rejects mismatched shapes and dtypes, shared memory, strided views and unknown options", () => {
    scope(() => {
      const a = tensor("float32", [2, 3]);
      expect(() => addInto(a, tensor("float32", [3, 2]))).toThrow(/addInto: 'src' must have shape \[B0, B1\]/);
      expect(() => addInto(a, tensor("float32", [2, 3, 1]))).toThrow(/addInto: 'src' must have shape/);
      expect(() => addInto(a, tensor("int32", [2, 3]))).toThrow(/'src' must be a float32 tensor/);
      expect(() => addInto(tensor("int32", [2, 3]), a)).toThrow(/'dst' must be a float32 tensor/);
      expect(() => addInto(a, a)).toThrow(/'dst' and 'src' must not share memory/);
      expect(() => addInto(a, a.reshape([2, 3]))).toThrow(/must not share memory/);
      expect(() => addInto(tensor("float32", [3, 2]), a.transpose(0, 1))).toThrow(/contiguous/);
      const raw = nativeFunction<(args: object) => unknown>("addInto");
      expect(() => raw({ dst: a, src: a.clone(), alpha: 2 })).toThrow(/addInto: unknown option 'alpha'/);
    });
  });

  it("leaks no native memory", () => {
    expectNoLeak(() => {
      const dst = tensor("float32", [16, 33], rng.normals(16 * 33));
      addInto(dst, tensor("float32", [16, 33], rng.normals(16 * 33)));
    });
  });
});
