import { floats, matmul, matmulBackward, scope, tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";

/** Naive float64 C[b] = op(A[b]) · op(B[b]); a rank-2 operand (batchA/B = 0) is broadcast. */
function refMatmul(
  a: Float64Array, b: Float64Array, batch: number, m: number, n: number, k: number,
  transA: boolean, transB: boolean, aBatched: boolean, bBatched: boolean,
): Float64Array {
  const c = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; ++t) {
    const ao = aBatched ? t * m * k : 0;
    const bo = bBatched ? t * k * n : 0;
    for (let i = 0; i < m; ++i) {
      for (let j = 0; j < n; ++j) {
        let s = 0;
        for (let p = 0; p < k; ++p) {
          const av = transA ? a[ao + p * m + i] : a[ao + i * k + p];
          const bv = transB ? b[bo + j * k + p] : b[bo + p * n + j];
          s += av * bv;
        }
        c[t * m * n + i * n + j] = s;
      }
    }
  }
  return c;
}

const shapes: Array<[string, number, number, number]> = [
  ["square", 64, 64, 64],
  ["odd", 7, 259, 3],
  ["length one", 1, 5, 1],
  ["tall", 130, 17, 33],
];

describe("matmul", () => {
  const rng = new Rng(1);
  for (const [name, m, n, k] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        it(`matches a float64 reference: ${name} ${m}x${n}x${k} transA=${transA} transB=${transB}`, () => {
          scope(() => {
            const a = rng.normals(m * k);
            const b = rng.normals(k * n);
            const A = tensor("float32", transA ? [k, m] : [m, k], a);
            const B = tensor("float32", transB ? [n, k] : [k, n], b);
            const C = matmul(A, B, { transA, transB });
            expect(C.shape).toEqual([m, n]);
            expectClose(floats(C), refMatmul(a, b, 1, m, n, k, transA, transB, false, false), { rtol: 1e-4, atol: 1e-4 });
          });
        });
      }
    }
  }

  it("batches, broadcasts a rank-2 operand, scales by alpha and accumulates", () => {
    scope(() => {
      const [batch, m, n, k] = [3, 5, 6, 4];
      const a = rng.normals(batch * m * k);
      const b = rng.normals(n * k);
      const A = tensor("float32", [batch, m, k], a);
      const B = tensor("float32", [n, k], b);
      const expected = refMatmul(a, b, batch, m, n, k, false, true, true, false);
      const C = matmul(A, B, { transB: true, alpha: 2 });
      expectClose(floats(C), expected.map((v) => 2 * v), { rtol: 1e-4, atol: 1e-4 });
      const out = tensor("float32", [batch, m, n], new Float64Array(batch * m * n).fill(1));
      const same = matmul(A, B, { transB: true, out, accumulate: true });
      expect(same).toBe(out);
      expectClose(floats(out), expected.map((v) => v + 1), { rtol: 1e-4, atol: 1e-4 });
    });
  });

  it("is exact on hand-computed values", () => {
    scope(() => {
      // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
      const C = matmul(tensor("float32", [2, 2], [1, 2, 3, 4]), tensor("float32", [2, 2], [5, 6, 7, 8]));
      expect(Array.from(floats(C))).toEqual([19, 22, 43, 50]);
    });
  });

  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    it(`backward matches finite differences (transA=${transA}, transB=${transB}, batched and broadcast)`, () => {
      scope(() => {
        const [batch, m, n, k] = [2, 3, 5, 4];
        const a = rng.normals(batch * m * k);
        const b = rng.normals(n * k);
        const w = rng.normals(batch * m * n);
        const A = tensor("float32", transA ? [batch, k, m] : [batch, m, k], a);
        const B = tensor("float32", transB ? [n, k] : [k, n], b);
        const { dA, dB } = matmulBackward(A, B, tensor("float32", [batch, m, n], w), { transA, transB });
        const loss = (x: Float64Array, y: Float64Array) =>
          weightedSum(w, refMatmul(x, y, batch, m, n, k, transA, transB, true, false));
        expectGradientMatches(floats(dA!), (x) => loss(x, b), a, { label: "dA" });
        expectGradientMatches(floats(dB!), (y) => loss(a, y), b, { label: "dB" });
      });
    });
  }
});
