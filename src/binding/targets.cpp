#include "targets.h"

#include <limits>
#include <string>

namespace rlhf::binding {

int32_t readIgnoreIndex(OpArgs& args) {
  return static_cast<int32_t>(args.integer("ignoreIndex", -100, std::numeric_limits<int32_t>::min(),
                                           std::numeric_limits<int32_t>::max()));
}

void checkTargets(const OpArgs& args, const char* key, const TensorWrap& targets, int64_t vocab, int32_t ignoreIndex) {
  const int32_t* ids = targets.data<int32_t>();
  const int64_t n = targets.numel();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = ids[i];
    if (t == ignoreIndex || (t >= 0 && t < vocab)) continue;
    args.failRange("'" + std::string(key) + "[" + std::to_string(i) + "]' = " + std::to_string(t) +
                   " is not a token id in [0, " + std::to_string(vocab) + ") nor the ignoreIndex " +
                   std::to_string(ignoreIndex));
  }
}

}  // namespace rlhf::binding
