#include "targets.h"

#include <limits>
#include <string>

#include "element_checks.h"

namespace rlhf::binding {

int32_t readIgnoreIndex(OpArgs& args) {
  return static_cast<int32_t>(args.integer("ignoreIndex", -100, std::numeric_limits<int32_t>::min(),
                                           std::numeric_limits<int32_t>::max()));
}

void checkTargets(const OpArgs& args, const char* key, const TensorWrap& targets, int64_t vocab, int32_t ignoreIndex) {
  checkElements<int32_t>(
      args, key, targets,
      "must hold token ids in [0, " + std::to_string(vocab) + ") or the ignoreIndex " + std::to_string(ignoreIndex),
      [vocab, ignoreIndex](int32_t t) { return (t == ignoreIndex) | ((t >= 0) & (t < vocab)); });
}

}  // namespace rlhf::binding
