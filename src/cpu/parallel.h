// A small persistent thread pool for the CPU kernels. The thread count comes from RLHF_NUM_THREADS
// (default: every core). Calls made from inside a parallel region run inline on the calling thread,
// so a threaded op may call another threaded op (e.g. attention calling sgemm) without oversubscribing.
#pragma once

#include <cstdint>
#include <functional>

namespace rlhf::cpu {

int numThreads();
void setNumThreads(int n);  // n >= 1; replaces the pool

// fn(task, thread) for every task in [0, nTasks), handed out dynamically; thread is in [0, numThreads()).
// The first exception thrown by a task is rethrown on the caller after all tasks stop.
void parallelTasks(int64_t nTasks, const std::function<void(int64_t task, int thread)>& fn);

// fn(begin, end) over [0, n) in contiguous ranges of at least `grain` items (one range per thread at most).
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

// True while the calling thread is executing inside parallelTasks/parallelFor.
bool insideParallelRegion();

}  // namespace rlhf::cpu
