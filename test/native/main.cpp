// Runs every registered native test and prints "native: N passed, N failed, N skipped".
// Exit status is non-zero when a test failed. An optional argument filters tests by substring.
#include <cstdio>
#include <exception>
#include <sstream>

#include "harness.h"

namespace rlhf::test {
namespace {

struct Entry {
  const char* name;
  std::function<void()> fn;
};

std::vector<Entry>& tests() {
  static std::vector<Entry> all;
  return all;
}

int gFailuresInTest = 0;

}  // namespace

void registerTest(const char* name, std::function<void()> fn) { tests().push_back({name, std::move(fn)}); }

void reportFailure(const char* file, int line, const std::string& message) {
  ++gFailuresInTest;
  std::fprintf(stderr, "    %s:%d: %s\n", file, line, message.c_str());
}

void checkAllClose(const char* file, int line, const char* label, const float* got, const double* want, size_t n,
                   double rtol, double atol) {
  int reported = 0;
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<double>(got[i]) == want[i]) continue;  // also equal infinities; NaN never passes
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(diff <= atol + rtol * std::fabs(want[i]))) {
      if (reported++ < 5) {
        std::ostringstream msg;
        msg << label << "[" << i << "]: got " << got[i] << ", want " << want[i] << " (diff " << diff << ")";
        reportFailure(file, line, msg.str());
      }
    }
  }
}

std::vector<float> randomNormals(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

}  // namespace rlhf::test

int main(int argc, char** argv) {
  using namespace rlhf::test;
  const std::string filter = argc > 1 ? argv[1] : "";
  int passed = 0, failed = 0, skipped = 0;
  for (const auto& t : tests()) {
    if (!filter.empty() && std::string(t.name).find(filter) == std::string::npos) continue;
    gFailuresInTest = 0;
    try {
      t.fn();
    } catch (const Skipped& s) {
      std::printf("  skip %s (%s)\n", t.name, s.reason.c_str());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      reportFailure(__FILE__, __LINE__, std::string("exception: ") + e.what());
    }
    if (gFailuresInTest) {
      std::printf("  FAIL %s\n", t.name);
      ++failed;
    } else {
      std::printf("  ok   %s\n", t.name);
      ++passed;
    }
  }
  std::printf("native: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
