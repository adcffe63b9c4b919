/** Elementwise arithmetic on tensors: the decoder's residual additions. */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

type AddIntoNative = (args: { dst: Tensor; src: Tensor }) => Tensor;

/**
 * dst += src elementwise, in place; returns dst. dst and src: float32 (or bfloat16 on the CUDA
 * backend), the same shape and dtype, contiguous, with separate memory.
 */
export function addInto(dst: Tensor, src: Tensor): Tensor {
  return nativeFunction<AddIntoNative>("addInto")({ dst, src });
}
