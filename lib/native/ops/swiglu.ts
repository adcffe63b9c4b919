/** SwiGLU pieces: h = silu(gate) · up (the MLP's down(silu(gate(x)) · up(x)) middle) and backward. */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

type SiluMulNative = (args: { gate: Tensor; up: Tensor }) => Tensor;
type SiluMulBackwardNative = (args: { gate: Tensor; up: Tensor; dOut: Tensor }) => { dGate: Tensor; dUp: Tensor };

/** gate, up: float32 [N, F] → silu(gate) · up [N, F]. */
export function siluMul(gate: Tensor, up: Tensor): Tensor {
  return nativeFunction<SiluMulNative>("siluMul")({ gate, up });
}

export function siluMulBackward(gate: Tensor, up: Tensor, dOut: Tensor): { dGate: Tensor; dUp: Tensor } {
  return nativeFunction<SiluMulBackwardNative>("siluMulBackward")({ gate, up, dOut });
}
