// Target-id options shared by the bindings of the ops that index a vocabulary with per-token
// targets (log-prob gather, cross-entropy).
#pragma once

#include <cstdint>

#include "args.h"

namespace rlhf::binding {

// 'ignoreIndex': any int32, default −100 (PyTorch's and TRL's label mask).
int32_t readIgnoreIndex(OpArgs& args);

// Throws a RangeError naming the first position whose id is neither in [0, vocab) nor ignoreIndex.
void checkTargets(const OpArgs& args, const char* key, const TensorWrap& targets, int64_t vocab, int32_t ignoreIndex);

}  // namespace rlhf::binding
