/** Embedding lookup (token ids → rows of the table) and its backward (scatter-add into the table). */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

type EmbeddingNative = (args: { table: Tensor; ids: Tensor }) => Tensor;
type EmbeddingBackwardNative = (args: { dOut: Tensor; ids: Tensor; dTable: Tensor }) => Tensor;

/**
 * table: float32 [V, D]; ids: int32 of any shape (e.g. [B, T]), each in [0, V) (a bad id throws,
 * naming its position). Returns float32 [...ids.shape, D].
 */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  return nativeFunction<EmbeddingNative>("embedding")({ table, ids });
}

/**
 * Adds dOut[...i] to dTable[ids[...i]] in place (repeated ids sum: deterministically on the CPU
 * backend, in the order of the GPU's atomic adds on CUDA) and returns dTable. dOut: float32
 * [...ids.shape, D] (or bfloat16 on CUDA); dTable: float32 [V, D] (zero it for a fresh gradient).
 */
export function embeddingBackward(dOut: Tensor, ids: Tensor, dTable: Tensor): Tensor {
  return nativeFunction<EmbeddingBackwardNative>("embeddingBackward")({ dOut, ids, dTable });
}

/** Single-threaded element-by-element loops with the same contracts: benchmark baselines. */
export function embeddingNaive(table: Tensor, ids: Tensor): Tensor {
  return nativeFunction<EmbeddingNative>("embeddingNaive")({ table, ids });
}

export function embeddingBackwardNaive(dOut: Tensor, ids: Tensor, dTable: Tensor): Tensor {
  return nativeFunction<EmbeddingBackwardNative>("embeddingBackwardNaive")({ dOut, ids, dTable });
}
