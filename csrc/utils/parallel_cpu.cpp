// The worker pool behind crossjepa::parallel_for (see utils/cpu.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

#include "utils/cpu.h"

#ifndef _WIN32
#include <pthread.h>
#endif

namespace crossjepa {
namespace {

// Long enough for back-to-back calls to find a worker awake, short enough not to take much of a core that
// another process needs.
constexpr int kSpins = 2000;

inline void pause() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

// Returns once `word` differs from `old`: spins briefly, then sleeps in the kernel (futex).
inline uint32_t wait_change(const AtomicWord& word, uint32_t old) {
  for (int spin = 0; spin < kSpins; ++spin) {
    const uint32_t now = word.load(std::memory_order_acquire);
    if (now != old) return now;
    pause();
  }
  uint32_t now;
  while ((now = word.load(std::memory_order_acquire)) == old) word.wait(old, std::memory_order_acquire);
  return now;
}

// One job at a time. A job (epoch e) has `units` chunks; claim_ packs (e, next chunk) so that a worker that
// wakes late can only claim chunks of the job still running. The job's fields live in slot e & 1: the job
// after next reuses a slot only once every chunk of this one is finished, and by then claim_ has moved on, so
// a stale reader's claim fails.
class Pool {
 public:
  std::mutex mutex;  // held by the caller of the running job

  void run(int64_t units, int workers, c10::function_ref<void(int64_t, int64_t)> body, int64_t n, int64_t grain) {
    while (started_ < workers) {
      std::thread([this, id = started_] { work_loop(id); }).detach();
      ++started_;
    }
    const uint32_t e = epoch_.load(std::memory_order_relaxed) + 1;
    Job& job = jobs_[e & 1];
    job.units.store(static_cast<uint32_t>(units), std::memory_order_relaxed);
    job.workers.store(workers, std::memory_order_relaxed);
    job.body = &body;
    job.n = n;
    job.grain = grain;
    finished_.store(0, std::memory_order_relaxed);
    claim_.store(static_cast<uint64_t>(e) << 32, std::memory_order_release);
    epoch_.store(e, std::memory_order_release);
    epoch_.notify_all();
    work(e);
    uint32_t done = finished_.load(std::memory_order_acquire);
    while (done != units) done = wait_change(finished_, done);
  }

 private:
  // units and workers may be read by a worker that woke late while the job after next fills the slot;
  // body, n and grain are read only by a thread holding a claimed chunk, while the job runs.
  struct Job {
    std::atomic<uint32_t> units{0};
    std::atomic<int> workers{0};
    const c10::function_ref<void(int64_t, int64_t)>* body = nullptr;
    int64_t n = 0;
    int64_t grain = 1;
  };

  void work_loop(int id) {
    uint32_t seen = epoch_.load(std::memory_order_acquire);
    for (;;) {
      seen = wait_change(epoch_, seen);
      if (id < jobs_[seen & 1].workers.load(std::memory_order_relaxed)) work(seen);
    }
  }

  // Claims and runs chunks of job e until none is left (or job e is over).
  void work(uint32_t e) {
    const Job& job = jobs_[e & 1];
    uint64_t claim = claim_.load(std::memory_order_acquire);
    for (;;) {
      if (claim >> 32 != e) return;
      const uint32_t units = job.units.load(std::memory_order_relaxed);
      const auto unit = static_cast<uint32_t>(claim);
      if (unit >= units) return;
      if (!claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        continue;  // claim now holds the current value
      }
      const int64_t begin = unit * job.grain;
      (*job.body)(begin, std::min(job.n, begin + job.grain));
      if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == units) finished_.notify_one();
      claim = claim_.load(std::memory_order_acquire);
    }
  }

  Job jobs_[2];
  std::atomic<uint64_t> claim_{0};
  AtomicWord epoch_{0};
  AtomicWord finished_{0};
  int started_ = 0;  // worker threads started (guarded by mutex)
};

std::atomic<Pool*> pool{nullptr};
// libgomp is not fork-safe: a team region in a child forked after the parent used one can hang.
std::atomic<bool> forked{false};

// A forked child has none of the parent's threads (and maybe a locked mutex): it starts a new pool, and uses
// only that. The old pool is left alone, like the pool itself at exit, since its detached workers may still
// be waiting on it.
#ifndef _WIN32  // no fork there
const int fork_handler = pthread_atfork(nullptr, nullptr, [] {
  pool.store(nullptr, std::memory_order_relaxed);
  forked.store(true, std::memory_order_relaxed);
});
#endif

Pool& get_pool() {
  Pool* current = pool.load(std::memory_order_acquire);
  if (current != nullptr) return *current;
  auto* fresh = new Pool();
  if (pool.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;
  return *current;
}

#ifdef _OPENMP
using Clock = std::chrono::steady_clock;

// A team region whose caller waited this long for a teammate (beyond its own share of the work) met a
// thread that was not running: another process holds a core.
constexpr int64_t kStallNs = 200'000;
// After a stall, calls use our pool for this long, then try the team again (a retry in a still-busy period
// costs one stalled region).
constexpr int64_t kPoolPeriodNs = 250'000'000;
std::atomic<int64_t> pool_until_ns{0};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// OpenMP's team, with chunks claimed from a shared counter (no schedule barrier inside). Returns whether the
// calling thread stalled waiting for a teammate.
bool run_team(int64_t units, int threads, int64_t n, int64_t grain,
              c10::function_ref<void(int64_t, int64_t)> body) {
  std::atomic<int64_t> next{0};
  int64_t caller_busy_ns = 0;
  const int64_t start = now_ns();
#pragma omp parallel num_threads(threads)
  {
    const bool caller = omp_get_thread_num() == 0;
    for (int64_t unit; (unit = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const int64_t t0 = caller ? now_ns() : 0;
      const int64_t begin = unit * grain;
      body(begin, std::min(n, begin + grain));
      if (caller) caller_busy_ns += now_ns() - t0;
    }
  }
  const int64_t waited = now_ns() - start - caller_busy_ns;
  return waited > std::max(kStallNs, caller_busy_ns / 2);
}
#endif

}  // namespace

// OpenMP's team first: right after torch's own ops (OpenMP too) its threads are awake and spinning, so a
// region starts at once, while a pool of ours would find the other cores taken by those spinning threads.
// When a region stalls (a teammate had no core: another process is running), calls go to our pool, whose
// caller never waits for a thread that has not claimed work, and the team is tried again later.
void parallel_for(int64_t n, int64_t grain, int threads, c10::function_ref<void(int64_t, int64_t)> body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, (n + UINT32_MAX - 1) / UINT32_MAX);
  const int64_t units = (n + grain - 1) / grain;
  const int workers = static_cast<int>(std::min<int64_t>(threads, units)) - 1;
  if (workers < 1) return body(0, n);
#ifdef _OPENMP
  if (!forked.load(std::memory_order_relaxed) && !omp_in_parallel() &&
      now_ns() >= pool_until_ns.load(std::memory_order_relaxed)) {
    if (run_team(units, workers + 1, n, grain, body)) {
      pool_until_ns.store(now_ns() + kPoolPeriodNs, std::memory_order_relaxed);
    }
    return;
  }
#endif
  Pool& p = get_pool();
  std::unique_lock<std::mutex> lock(p.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return body(0, n);
  p.run(units, workers, body, n, grain);
}

}  // namespace crossjepa
