#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace rlhf::cpu {
namespace {

thread_local bool tInsideRegion = false;

using TaskFn = std::function<void(int64_t, int)>;

// Workers spin briefly after each job before sleeping on the condition variable: a sleeping thread
// takes tens of microseconds to wake (measured ~40 us on a 2-vCPU VM), which would dominate the
// small back-to-back ops of a decode step. The spin is bounded (kSpinIterations pauses, ~50 us), so
// an idle pool costs nothing.
constexpr int kSpinIterations = 20000;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : size_(std::max(1, threads)) {
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return size_; }

  void run(int64_t nTasks, const TaskFn& fn) {
    std::lock_guard<std::mutex> runLock(runMu_);  // one job at a time
    fn_ = &fn;
    nTasks_ = nTasks;
    error_ = nullptr;
    next_.store(0);
    active_.store(static_cast<int>(workers_.size()));
    {
      // Publishing under the mutex: a worker about to sleep either sees the new generation in its
      // wait predicate or is already waiting when notify_all runs.
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    drain(0);
    for (int i = 0; i < kSpinIterations && active_.load(std::memory_order_acquire) != 0; ++i) cpuRelax();
    if (active_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [this] { return active_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Runs tasks of the current job until none are left.
  void drain(int thread) {
    tInsideRegion = true;
    for (;;) {
      const int64_t task = next_.fetch_add(1);
      if (task >= nTasks_) break;
      try {
        (*fn_)(task, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(nTasks_);  // stop handing out work
      }
    }
    tInsideRegion = false;
  }

  void workerLoop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      for (int i = 0; i < kSpinIterations && generation_.load(std::memory_order_acquire) == seen && !stop_.load();
           ++i) {
        cpuRelax();
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
      }
      if (stop_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      drain(thread);
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu_);  // pairs with the caller's predicate check
        done_.notify_one();
      }
    }
  }

  const int size_;
  std::vector<std::thread> workers_;
  std::mutex runMu_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  const TaskFn* fn_ = nullptr;
  int64_t nTasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

int defaultThreadCount() {
  if (const char* env = std::getenv("RLHF_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

std::mutex gPoolMu;
std::unique_ptr<ThreadPool> gPool;

ThreadPool& pool() {
  std::lock_guard<std::mutex> lock(gPoolMu);
  if (!gPool) gPool = std::make_unique<ThreadPool>(defaultThreadCount());
  return *gPool;
}

}  // namespace

int numThreads() { return pool().size(); }

void setNumThreads(int n) {
  std::lock_guard<std::mutex> lock(gPoolMu);
  gPool = std::make_unique<ThreadPool>(std::max(1, n));
}

bool insideParallelRegion() { return tInsideRegion; }

void parallelTasks(int64_t nTasks, const TaskFn& fn) {
  if (nTasks <= 0) return;
  ThreadPool& p = pool();
  if (nTasks == 1 || p.size() == 1 || tInsideRegion) {
    for (int64_t t = 0; t < nTasks; ++t) fn(t, 0);
    return;
  }
  p.run(nTasks, fn);
}

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t maxRanges = (n + grain - 1) / grain;
  const int64_t ranges = std::min<int64_t>(maxRanges, tInsideRegion ? 1 : numThreads());
  if (ranges <= 1) {
    fn(0, n);
    return;
  }
  const int64_t step = (n + ranges - 1) / ranges;
  parallelTasks(ranges, [&](int64_t r, int) {
    const int64_t begin = r * step;
    const int64_t end = std::min(n, begin + step);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace rlhf::cpu
