// Helpers shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/FunctionRef.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "utils/atomic_word.h"

#ifdef _OPENMP
#include <omp.h>
#else  // built without OpenMP: every parallel region runs on one thread
inline int omp_get_thread_num() { return 0; }
inline int omp_get_num_threads() { return 1; }
#endif

// Hot loops have an AVX2 version (intrinsics, compiled with a per-function target attribute) chosen at run
// time, next to a portable one, so one binary runs on any x86-64 CPU without -march=native.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CROSSJEPA_HAVE_AVX2_PATH 1
#define CROSSJEPA_TARGET_AVX2 __attribute__((target("avx2")))
#include <immintrin.h>
#else
#define CROSSJEPA_HAVE_AVX2_PATH 0
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#endif

namespace crossjepa {

// Whether to take the AVX2 paths: the CPU has AVX2 and CROSSJEPA_DISABLE_AVX2 is not "1" (the tests use it to
// check the portable paths give the same results). Decided once.
inline bool use_avx2() {
#if CROSSJEPA_HAVE_AVX2_PATH
  static const bool enabled = [] {
    const char* disable = std::getenv("CROSSJEPA_DISABLE_AVX2");
    return __builtin_cpu_supports("avx2") && !(disable != nullptr && disable[0] == '1');
  }();
  return enabled;
#else
  return false;
#endif
}

// Squared distance in the order every kernel and the torch reference use: dx*dx + dy*dy + dz*dz, left to
// right, each product rounded (builds use -ffp-contract=off, so no FMA).
inline float squared_distance(float ax, float ay, float az, float bx, float by, float bz) {
  const float dx = ax - bx;
  const float dy = ay - by;
  const float dz = az - bz;
  return dx * dx + dy * dy + dz * dz;
}

inline int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Runs body(begin, end) over [0, n) in chunks of `grain` items on up to `threads` threads, each claiming the
// next chunk as it becomes free (no barrier inside). It uses OpenMP's team, awake right after torch's own
// ops, until a region is seen waiting for a teammate that had no core (another process is running): every
// thread of a team region must arrive at its end, so each region would then wait a scheduler time slice
// (tens of milliseconds per call where a quiet machine takes one). For a while after that it uses a small
// pool of our own, whose caller waits only for chunks a worker has already claimed; idle workers spin
// briefly, then sleep in the kernel. One thread, or one chunk, runs inline. body must not throw.
void parallel_for(int64_t n, int64_t grain, int threads, c10::function_ref<void(int64_t, int64_t)> body);

// Barrier for `count` threads of one parallel region, for loops with a barrier per iteration. It spins
// briefly (cheap when every thread has a core), then sleeps in the kernel (AtomicWord::wait), so a waiting
// thread hands its core to the teammate it waits for. (libgomp's barrier spins for milliseconds by default:
// when other processes hold the cores every iteration stalls for a scheduler tick; FPS on one large cloud
// ran ~40x slower with 2 threads than with 1 when another process held one of two cores.) arrive_and_wait() returns how many
// waits so far had to sleep, the same number to every thread, so a team can agree to stop splitting work
// that its machine cannot run in parallel.
class TeamBarrier {
 public:
  explicit TeamBarrier(int count) : count_(count) {}

  int arrive_and_wait() {
    const uint32_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      published_sleeps_ = sleeps_.load(std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      generation_.notify_all();
      return published_sleeps_;
    }
    for (int spin = 0; spin < kSpins; ++spin) {
      if (generation_.load(std::memory_order_acquire) != generation) return published_sleeps_;
#if defined(__x86_64__) || defined(_M_X64)
      _mm_pause();
#endif
    }
    sleeps_.fetch_add(1, std::memory_order_relaxed);
    while (generation_.load(std::memory_order_acquire) == generation) {
      generation_.wait(generation, std::memory_order_acquire);
    }
    return published_sleeps_;
  }

 private:
  static constexpr int kSpins = 2000;
  std::atomic<int> arrived_{0};
  std::atomic<int> sleeps_{0};
  AtomicWord generation_{0};
  int published_sleeps_ = 0;  // written by the last arriver before it releases the generation
  const int count_;
};

}  // namespace crossjepa
