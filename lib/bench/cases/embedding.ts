/** Embedding gather and scatter-add vs naive single-threaded C++ loops, in GB/s moved. */
import { tensor } from "../../native/factories";
import { embedding, embeddingBackward, embeddingBackwardNaive, embeddingNaive } from "../../native/ops/embedding";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData, randomIds } from "../random";

function forwardAndBackward(vocab: number, dim: number, tokens: number, quick: boolean): BenchCase[] {
  const shape = `V ${vocab}, D ${dim}, ${tokens} tokens`;
  const setup = () => ({
    table: tensor("float32", [vocab, dim], randomData(vocab * dim, 1)),
    ids: tensor("int32", [tokens], randomIds(tokens, vocab, 2)),
    dOut: tensor("float32", [tokens, dim], randomData(tokens * dim, 3)),
    dTable: tensor("float32", [vocab, dim]),
  });
  const gb = (rowsMoved: number) => (rowsMoved * tokens * dim * 4) / 1e9;
  return [
    {
      kernel: "embedding",
      shape: `${shape} forward`,
      quick,
      run: (options) =>
        scope(() => {
          const { table, ids } = setup();
          const ours = measure(() => scope(() => void embedding(table, ids)), options);
          const naive = measure(() => scope(() => void embeddingNaive(table, ids)), options);
          // Reads a table row and writes an output row per token.
          return {
            kernel: "embedding", shape: `${shape} forward`, ours,
            work: { amount: gb(2), unit: "GB" as const }, baseline: { name: "naive loop", ...naive },
          };
        }),
    },
    {
      kernel: "embedding",
      shape: `${shape} backward`,
      quick,
      run: (options) =>
        scope(() => {
          const { ids, dOut, dTable } = setup();
          const ours = measure(() => void embeddingBackward(dOut, ids, dTable), options);
          const naive = measure(() => void embeddingBackwardNaive(dOut, ids, dTable), options);
          // Reads a dOut row, reads and writes a dTable row per token.
          return {
            kernel: "embedding", shape: `${shape} backward`, ours,
            work: { amount: gb(3), unit: "GB" as const }, baseline: { name: "naive loop", ...naive },
          };
        }),
    },
  ];
}

export const embeddingCases: BenchCase[] = [
  ...forwardAndBackward(8192, 1024, 4096, true),
  ...forwardAndBackward(32000, 256, 16384, false),
];
