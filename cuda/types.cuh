// Element types on the device: the interface's bf16 (bits only) is read as __nv_bfloat16; every
// kernel converts its inputs to float32, computes, and converts the result back.
#pragma once

#include <cuda_bf16.h>

#include "../src/dtype.h"

namespace rlhf::cuda {

template <typename T>
struct DeviceTypeOf {
  using type = T;
};
template <>
struct DeviceTypeOf<bf16> {
  using type = __nv_bfloat16;
};
// float -> float, bf16 -> __nv_bfloat16.
template <typename T>
using DeviceType = typename DeviceTypeOf<T>::type;

// The interface's pointers as device element pointers (bf16 and __nv_bfloat16 share size and
// layout: two bytes holding the bfloat16 bits).
template <typename T>
inline DeviceType<T>* devicePtr(T* p) {
  return reinterpret_cast<DeviceType<T>*>(p);
}
template <typename T>
inline const DeviceType<T>* devicePtr(const T* p) {
  return reinterpret_cast<const DeviceType<T>*>(p);
}

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

// float32 -> the storage type (bfloat16 rounds to nearest even).
template <typename D>
__device__ __forceinline__ D fromFloat(float x);
template <>
__device__ __forceinline__ float fromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

}  // namespace rlhf::cuda
