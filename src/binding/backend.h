// The backend this addon was built for: rlhf::cpu (binding.gyp) or rlhf::cuda (CMakeLists.txt with
// nvcc, RLHF_WITH_CUDA). Bindings call `backend::<op>` and manage storage with backend::deviceAlloc
// and friends, so one binding source serves both addons.
#pragma once

#include "../kernels.h"

#ifdef RLHF_WITH_CUDA
#include "../../cuda/kernels_cuda.h"
namespace rlhf::binding {
namespace backend = ::rlhf::cuda;
inline constexpr const char* kBackendName = "cuda";
}  // namespace rlhf::binding
#else
#include "../cpu/device.h"
namespace rlhf::binding {
namespace backend = ::rlhf::cpu;
inline constexpr const char* kBackendName = "cpu";
}  // namespace rlhf::binding
#endif
