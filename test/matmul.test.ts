import {
  floats, matmul, matmulBackward, memoryStats, numThreads, resetPeakBytes, scope, setNumThreads, tensor,
} from "../lib";
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

  for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    it(`matches a float64 reference on a large odd shape 300x517x129 (transA=${transA}, transB=${transB})`, () => {
      scope(() => {
        const [m, n, k] = [300, 517, 129];
        const a = rng.normals(m * k);
        const b = rng.normals(k * n);
        const A = tensor("float32", transA ? [k, m] : [m, k], a);
        const B = tensor("float32", transB ? [n, k] : [k, n], b);
        const C = matmul(A, B, { transA, transB, alpha: -0.5 });
        const expected = refMatmul(a, b, 1, m, n, k, transA, transB, false, false).map((v) => -0.5 * v);
        expectClose(floats(C), expected, { rtol: 1e-4, atol: 1e-4 });
      });
    });
  }

  it("gives bitwise identical results with 1 and 2 threads", () => {
    const saved = numThreads();
    try {
      // A threaded product (several row blocks and K-blocks), a vocabulary-like one (few rows,
      // many columns) and a batch of small products spread over the threads.
      const cases: Array<[number[], number[], boolean]> = [
        [[160, 400], [300, 400], true],
        [[64, 96], [96, 2000], false],
        [[8, 64, 100], [8, 100, 96], false],
      ];
      for (const [aShape, bShape, transB] of cases) {
        const a = rng.normals(aShape.reduce((x, y) => x * y));
        const b = rng.normals(bShape.reduce((x, y) => x * y));
        // The raw float32 bits of each result.
        const [one, two] = [1, 2].map((threads) => {
          setNumThreads(threads);
          return scope(() => {
            const c = floats(matmul(tensor("float32", aShape, a), tensor("float32", bShape, b), { transB }));
            return new Uint32Array(Float32Array.from(c).buffer);
          });
        });
        expect(two.length).toBe(one.length);
        expect(one.findIndex((bits, i) => bits !== two[i])).toBe(-1);
      }
    } finally {
      setNumThreads(saved);
    }
  });

  // Items of 64x96x100 are too small for sgemm to thread, but 8 of them add up to enough work to
  // spread the batch over the threads.
  const [spreadBatch, sm, sn, sk] = [8, 64, 96, 100];

  it("spreads a batch of small products over the threads, batched or broadcast", () => {
    scope(() => {
      for (const [aBatched, bBatched] of [[true, true], [true, false], [false, true]] as const) {
        const a = rng.normals((aBatched ? spreadBatch : 1) * sk * sm);
        const b = rng.normals((bBatched ? spreadBatch : 1) * sn * sk);
        const A = tensor("float32", aBatched ? [spreadBatch, sk, sm] : [sk, sm], a);
        const B = tensor("float32", bBatched ? [spreadBatch, sn, sk] : [sn, sk], b);
        const C = matmul(A, B, { transA: true, transB: true });
        expect(C.shape).toEqual([spreadBatch, sm, sn]);
        const expected = refMatmul(a, b, spreadBatch, sm, sn, sk, true, true, aBatched, bBatched);
        expectClose(floats(C), expected, { rtol: 1e-4, atol: 1e-4 });
      }
    });
  });

  for (const aBatched of [true, false]) {
    const layout = aBatched ? "batched" : "broadcast";
    it(`backward of a batch of small products matches dA = dC·Bᵀ, dB = Aᵀ·dC (A ${layout})`, () => {
      scope(() => {
        const a = rng.normals((aBatched ? spreadBatch : 1) * sm * sk);
        const b = rng.normals(spreadBatch * sk * sn);
        const dC = rng.normals(spreadBatch * sm * sn);
        const A = tensor("float32", aBatched ? [spreadBatch, sm, sk] : [sm, sk], a);
        const B = tensor("float32", [spreadBatch, sk, sn], b);
        const { dA, dB } = matmulBackward(A, B, tensor("float32", [spreadBatch, sm, sn], dC));
        // Per item dA[t] = dC[t]·B[t]ᵀ (summed over t when A is broadcast) and dB[t] = A[t]ᵀ·dC[t].
        const perItemDA = refMatmul(dC, b, spreadBatch, sm, sk, sn, false, true, true, true);
        const expectedDA = aBatched ? perItemDA : new Float64Array(sm * sk);
        if (!aBatched) {
          for (let t = 0; t < spreadBatch; ++t) {
            for (let i = 0; i < sm * sk; ++i) expectedDA[i] += perItemDA[t * sm * sk + i];
          }
        }
        const expectedDB = refMatmul(a, dC, spreadBatch, sk, sn, sm, true, false, aBatched, true);
        expectClose(floats(dA!), expectedDA, { rtol: 1e-4, atol: 1e-4 }, "dA");
        expectClose(floats(dB!), expectedDB, { rtol: 1e-4, atol: 1e-4 }, "dB");
      });
    });
  }

  it("frees its packing scratch and keeps it far below the size of the output", () => {
    const start = memoryStats().liveBytes;
    scope(() => {
      const [m, n, k] = [512, 4096, 32];
      const A = tensor("float32", [m, k], rng.normals(m * k));
      const B = tensor("float32", [n, k], rng.normals(n * k));
      const out = tensor("float32", [m, n]);
      const dA = tensor("float32", [m, k]);
      const dB = tensor("float32", [n, k]);
      const before = memoryStats();
      resetPeakBytes();
      matmul(A, B, { transB: true, out });
      matmulBackward(A, B, out, { transB: true, dA, dB });
      const after = memoryStats();
      expect(after.liveBytes).toBe(before.liveBytes);
      expect(after.peakBytes - before.liveBytes).toBeLessThan((m * n * 4) / 8);
    });
    expect(memoryStats().liveBytes).toBe(start);
  });
});
