// Overlap checks for ops that take lists of tensors and write some of them in place (optimizer
// steps, gradient clipping). Tensors overlap when their element ranges intersect in memory, so
// disjoint views of one flat buffer are fine while a tensor listed twice, or aliased through a
// view, is an error (it would be updated twice, or read after being written).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "args.h"

namespace rlhf::binding {

struct MemorySpan {
  const TensorWrap* tensor;
  std::string key;  // e.g. "params[3]"
  bool written;     // read-only spans may overlap each other
};

// Throws naming two overlapping spans where at least one of them is written. O(n log n).
inline void checkNoOverlap(const OpArgs& args, std::vector<MemorySpan> spans) {
  struct Range {
    const char* begin;
    const char* end;
    const MemorySpan* span;
  };
  std::vector<Range> ranges;
  for (const MemorySpan& s : spans) {
    const char* begin = s.tensor->data<char>();
    const int64_t bytes = s.tensor->numel() * static_cast<int64_t>(dtypeSize(s.tensor->dtype()));
    if (bytes > 0) ranges.push_back({begin, begin + bytes, &s});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  // Every earlier range begins no later than the current one, so the current one overlaps some
  // earlier range of a kind iff it overlaps the one of that kind that ends last.
  const Range* lastEndingAny = nullptr;
  const Range* lastEndingWritten = nullptr;
  for (const Range& r : ranges) {
    const Range* other = r.span->written ? lastEndingAny : lastEndingWritten;
    if (other && other->end > r.begin) {
      args.fail("'" + other->span->key + "' and '" + r.span->key + "' share memory; every tensor written in place " +
                "must have its own memory");
    }
    if (!lastEndingAny || r.end > lastEndingAny->end) lastEndingAny = &r;
    if (r.span->written && (!lastEndingWritten || r.end > lastEndingWritten->end)) lastEndingWritten = &r;
  }
}

}  // namespace rlhf::binding
