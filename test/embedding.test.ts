import {
  embedding,
  embeddingBackward,
  floats,
  numThreads,
  scope,
  setNumThreads,
  tensor,
} from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

/** Float64 gather: out[i, :] = table[ids[i], :]. */
function refEmbedding(table: Float64Array, ids: ArrayLike<number>, dim: number): Float64Array {
  const out = new Float64Array(ids.length * dim);
  for (let i = 0; i < ids.length; ++i) {
    for (let j = 0; j < dim; ++j) out[i * dim + j] = table[ids[i] * dim + j];
  }
  return out;
}

// [name, vocab, dim, ids shape]
const cases: Array<[string, number, number, number[]]> = [
  ["realistic", 1000, 64, [4, 32]],
  ["odd vocab 259, dim 5", 259, 5, [3, 7]],
  ["length one", 17, 3, [1]],
  ["rank 3 ids", 31, 9, [2, 3, 4]],
];

describe("embedding", () => {
  const rng = new Rng(21);

  for (const [name, vocab, dim, idShape] of cases) {
    it(`gathers rows like a float64 reference: ${name}`, () => {
      scope(() => {
        const n = idShape.reduce((a, b) => a * b, 1);
        const table = rng.normals(vocab * dim);
        const ids = rng.ints(n, 0, vocab);
        ids[0] = vocab - 1; // both ends of the range
        if (n > 1) ids[n - 1] = 0;
        const out = embedding(tensor("float32", [vocab, dim], table), tensor("int32", idShape, ids));
        expect(out.shape).toEqual([...idShape, dim]);
        // A gather copies float32 values exactly.
        expect(Array.from(floats(out))).toEqual(Array.from(refEmbedding(table, ids, dim)));
      });
    });
  }

  for (const [name, vocab, dim, idShape] of cases.slice(1)) {
    it(`backward matches finite differences: ${name}`, () => {
      scope(() => {
        const n = idShape.reduce((a, b) => a * b, 1);
        const table = rng.normals(vocab * dim);
        const ids = rng.ints(n, 0, vocab);
        for (let i = 1; i < n; i += 3) ids[i] = ids[0]; // repeated ids sum
        const w = rng.normals(n * dim);
        const dTable = embeddingBackward(
          tensor("float32", [...idShape, dim], w), tensor("int32", idShape, ids), tensor("float32", [vocab, dim]),
        );
        // Every element: the rows hit (once or repeatedly) and the untouched rows (gradient 0).
        const f = (t: Float64Array) => weightedSum(w, refEmbedding(t, ids, dim));
        expectGradientMatches(floats(dTable), f, table, { maxChecks: table.length });
      });
    });
  }

  it("backward accumulates into dTable, summing repeated ids in token order (bit-exact, any thread count)", () => {
    const threads = numThreads();
    try {
      scope(() => {
        const [vocab, dim, n] = [50, 37, 4000];
        const ids = rng.ints(n, 0, 4); // every id repeated ~1000 times
        ids[7] = 49;
        const dOut = rng.normals(n * dim);
        const start = rng.normals(vocab * dim);
        // The documented order: dTable[ids[i]] += dOut[i] for i = 0, 1, ... in float32.
        const want = Float32Array.from(start);
        for (let i = 0; i < n; ++i) {
          for (let j = 0; j < dim; ++j) want[ids[i] * dim + j] = Math.fround(want[ids[i] * dim + j] + dOut[i * dim + j]);
        }
        const idsT = tensor("int32", [n], ids);
        const dOutT = tensor("float32", [n, dim], dOut);
        for (const t of [1, 2, 3]) {
          setNumThreads(t);
          const dTable = tensor("float32", [vocab, dim], start);
          const same = embeddingBackward(dOutT, idsT, dTable);
          expect(same).toBe(dTable);
          expect(Array.from(floats(dTable))).toEqual(Array.from(want));
        }
      });
    } finally {
      setNumThreads(threads);
    }
  });

  it("rejects ids out of range, naming the first bad position and value", () => {
    scope(() => {
      const table = tensor("float32", [259, 5]);
      const bad = tensor("int32", [2, 3], [0, 1, 2, 3, 259, -1]);
      expect(() => embedding(table, bad)).toThrow(
        "rlhf-native embedding: 'ids' must be in [0, 259) (the rows of 'table'), got 259 at [1, 1]",
      );
      const negative = tensor("int32", [3], [4, -2, 300]);
      expect(() => embedding(table, negative)).toThrow(/got -2 at \[1\]/);
      expect(() => embeddingBackward(tensor("float32", [3, 5]), negative, tensor("float32", [259, 5]))).toThrow(
        /embeddingBackward: 'ids' must be in \[0, 259\) \(the rows of 'dTable'\), got -2 at \[1\]/,
      );
    });
  });

  it("rejects wrong dtypes and shapes, and an aliased dTable", () => {
    scope(() => {
      const table = tensor("float32", [10, 4]);
      const ids = tensor("int32", [2, 3], [0, 1, 2, 3, 4, 5]);
      expect(() => embedding(table, tensor("float32", [3], [1, 2, 3]))).toThrow(/'ids' must be a int32 tensor/);
      expect(() => embedding(tensor("float32", [10]), ids)).toThrow(/'table' must have shape \[V, D\]/);
      expect(() => embeddingBackward(tensor("float32", [2, 4]), ids, table)).toThrow(/'dOut' must have shape \[B0, B1, D\]/);
      expect(() => embeddingBackward(tensor("float32", [2, 3, 5]), ids, table)).toThrow(/'dTable' must have shape/);
      const flat = tensor("float32", [10, 4]);
      expect(() => embeddingBackward(flat.reshape([1, 10, 4]), tensor("int32", [1, 10]), flat)).toThrow(
        /'dTable' and 'dOut' must not share memory/,
      );
    });
  });

  it("handles zero tokens", () => {
    scope(() => {
      const out = embedding(tensor("float32", [4, 3]), tensor("int32", [0]));
      expect(out.shape).toEqual([0, 3]);
      const dTable = tensor("float32", [4, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      embeddingBackward(tensor("float32", [0, 3]), tensor("int32", [0]), dTable);
      expectClose(floats(dTable), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    });
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const table = tensor("float32", [259, 5], rng.normals(259 * 5));
      const ids = tensor("int32", [3, 7], rng.ints(21, 0, 259));
      const out = embedding(table, ids);
      embeddingBackward(out, ids, tensor("float32", [259, 5]));
    });
  });
});
