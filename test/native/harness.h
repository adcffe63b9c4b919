// A minimal test harness for the native test executable (no dependencies): TEST(name) registers a
// test; CHECK/CHECK_CLOSE record failures; SKIP(reason) marks a test skipped (e.g. no GPU).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace rlhf::test {

struct Failure {};
struct Skipped {
  std::string reason;
};

void registerTest(const char* name, std::function<void()> fn);
void reportFailure(const char* file, int line, const std::string& message);

// Checks |got - want| <= atol + rtol * |want| for every element; reports the worst few.
void checkAllClose(const char* file, int line, const char* label, const float* got, const double* want, size_t n,
                   double rtol, double atol);

// Deterministic normal(0, scale) values.
std::vector<float> randomNormals(size_t n, uint32_t seed, float scale = 1.0f);

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registerTest(name, std::move(fn)); }
};

}  // namespace rlhf::test

#define RLHF_TEST_CONCAT2(a, b) a##b
#define RLHF_TEST_CONCAT(a, b) RLHF_TEST_CONCAT2(a, b)
#define TEST(name)                                                                                   \
  static void RLHF_TEST_CONCAT(test_, name)();                                                       \
  static ::rlhf::test::Registrar RLHF_TEST_CONCAT(registrar_, name)(#name, RLHF_TEST_CONCAT(test_, name)); \
  static void RLHF_TEST_CONCAT(test_, name)()

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) ::rlhf::test::reportFailure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_ALL_CLOSE(label, got, want, n, rtol, atol) \
  ::rlhf::test::checkAllClose(__FILE__, __LINE__, label, got, want, n, rtol, atol)

#define SKIP(reason) throw ::rlhf::test::Skipped{reason}
