// A 32-bit atomic word a thread can sleep on until it changes, for the pool and the barrier of utils/cpu.h.
//
// std::atomic::wait/notify are C++20, and torch's cpp_extension compiles with -std=c++17 up to torch 2.12. So:
// the standard library's where it has them (__cpp_lib_atomic_wait), else the Linux futex they are built on,
// else (other systems under C++17, or CROSSJEPA_PORTABLE_WAIT for the tests) a mutex and condition variable.
// The fallbacks count sleepers, so a notify with nobody asleep costs no system call, as in libstdc++.
#pragma once

#include <atomic>
#include <cstdint>

#if __has_include(<version>)
#include <version>
#endif

#if defined(__cpp_lib_atomic_wait) && !defined(CROSSJEPA_PORTABLE_WAIT)
#define CROSSJEPA_WAIT_STD 1
#elif defined(__linux__) && !defined(CROSSJEPA_PORTABLE_WAIT)
#define CROSSJEPA_WAIT_FUTEX 1
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#else
#define CROSSJEPA_WAIT_CONDVAR 1
#include <condition_variable>
#include <mutex>
#endif

namespace crossjepa {

class AtomicWord {
 public:
  explicit AtomicWord(uint32_t value = 0) : value_(value) {}

  uint32_t load(std::memory_order order) const { return value_.load(order); }
  void store(uint32_t value, std::memory_order order) { value_.store(value, order); }
  uint32_t fetch_add(uint32_t value, std::memory_order order) { return value_.fetch_add(value, order); }

  // Returns once the value differs from `old` (read with `order`), sleeping in between.
  void wait(uint32_t old, std::memory_order order) const {
#if CROSSJEPA_WAIT_STD
    value_.wait(old, order);
#else
    while (value_.load(order) == old) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the fence in wake()
      sleep_while(old);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
#endif
  }

  // Wake one / every thread sleeping in wait(); call after changing the value.
  void notify_one() {
#if CROSSJEPA_WAIT_STD
    value_.notify_one();
#else
    wake(false);
#endif
  }
  void notify_all() {
#if CROSSJEPA_WAIT_STD
    value_.notify_all();
#else
    wake(true);
#endif
  }

 private:
#if !CROSSJEPA_WAIT_STD
  // A sleeper first counts itself, then reads the value; a waker first changes the value, then reads the
  // count. With a full fence on both sides one of them sees the other's write, so no wake-up is lost.
  void wake(bool all) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_relaxed) == 0) return;
#if CROSSJEPA_WAIT_FUTEX
    syscall(SYS_futex, address(), FUTEX_WAKE_PRIVATE, all ? INT_MAX : 1, nullptr, nullptr, 0);
#else
    { const std::lock_guard<std::mutex> lock(mutex_); }  // a sleeper between its check and its wait holds it
    // notify_one could wake a thread whose wait already returned (its value check raced); all is always safe.
    (void)all;
    changed_.notify_all();
#endif
  }
#endif

#if CROSSJEPA_WAIT_FUTEX
  // The kernel compares the word with `old` and sleeps only while they are equal (returns at once otherwise,
  // and on signals: wait() re-checks).
  void sleep_while(uint32_t old) const {
    syscall(SYS_futex, address(), FUTEX_WAIT_PRIVATE, old, nullptr, nullptr, 0);
  }
  uint32_t* address() const {
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
                  "the futex needs std::atomic<uint32_t> to be a plain 32-bit word");
    return reinterpret_cast<uint32_t*>(const_cast<std::atomic<uint32_t>*>(&value_));
  }
#elif CROSSJEPA_WAIT_CONDVAR
  void sleep_while(uint32_t old) const {
    std::unique_lock<std::mutex> lock(mutex_);
    while (value_.load(std::memory_order_acquire) == old) changed_.wait(lock);
  }
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
#endif

  std::atomic<uint32_t> value_;
#if !CROSSJEPA_WAIT_STD
  mutable std::atomic<int> sleepers_{0};
#endif
};

}  // namespace crossjepa
