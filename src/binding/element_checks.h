// Checks on the contents of input tensors (token ids in range, masks of 0/1, finite values), shared
// by the op bindings. A failure names the key, the rule, the first offending value and its
// position: "'keyMask' must hold 0 (masked) or 1 (attend), got 2 at [1, 3]".
#pragma once

#include <string>
#include <vector>

#include "args.h"

namespace rlhf::binding {

// "[i]" or "[i, j, ...]": the position of flat element `flat` in a row-major tensor of `shape`.
std::string formatIndex(const std::vector<int64_t>& shape, int64_t flat);

// Fails unless ok(x) holds for every element of contiguous t (read as T). Counting the failures first, with
// no early exit, keeps the common valid case a straight loop the compiler can vectorise; `ok`
// should use the non-short-circuit & and | for the same reason.
template <typename T, typename Ok>
void checkElements(const OpArgs& args, const char* key, const TensorWrap& t, const std::string& rule, Ok ok) {
  const HostSpan host(t, true);  // contents staged on the host on a GPU backend
  const T* data = host.as<T>();
  const int64_t n = t.numel();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += !ok(data[i]);
  if (bad == 0) return;
  for (int64_t i = 0; i < n; ++i) {
    if (!ok(data[i])) {
      args.failRange("'" + std::string(key) + "' " + rule + ", got " + formatNumber(static_cast<double>(data[i])) +
                     " at " + formatIndex(t.shape(), i));
    }
  }
}

}  // namespace rlhf::binding
