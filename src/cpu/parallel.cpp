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

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : size_(std::max(1, threads)) {
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return size_; }

  void run(int64_t nTasks, const TaskFn& fn) {
    std::lock_guard<std::mutex> runLock(runMu_);  // one job at a time
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      nTasks_ = nTasks;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return active_ == 0; });
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
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      drain(thread);
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  const int size_;
  std::vector<std::thread> workers_;
  std::mutex runMu_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  const TaskFn* fn_ = nullptr;
  int64_t nTasks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  bool stop_ = false;
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
