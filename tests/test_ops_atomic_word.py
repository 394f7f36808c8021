"""csrc/utils/atomic_word.h, the word the CPU kernels' pool and barrier sleep on, in each of its three forms:
std::atomic wait/notify (C++20), the Linux futex (what a C++17 build, i.e. torch <= 2.12, uses on Linux) and the
mutex + condition variable (other systems under C++17). A small program compiled from the header alone passes
turns between threads that always sleep for them; a lost wake-up hangs it (caught by the timeout)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CXX = shutil.which("g++") or shutil.which("c++")
ROUNDS = 1000

PROGRAM = r"""
#include "utils/atomic_word.h"

#include <cstdio>
#include <thread>
#include <vector>

using crossjepa::AtomicWord;

// Thread `id` of `players` takes turns id, id + players, ...: it sleeps until the word says its turn, then
// passes the turn on. With more than two players a wake-up must reach the one whose turn it is: notify_all.
void play(AtomicWord& turn, unsigned id, unsigned players, unsigned rounds, bool all) {
  for (unsigned t = id; t < players * rounds; t += players) {
    unsigned now;
    while ((now = turn.load(std::memory_order_acquire)) != t) turn.wait(now, std::memory_order_acquire);
    turn.store(t + 1, std::memory_order_release);
    if (all) turn.notify_all(); else turn.notify_one();
  }
}

unsigned game(unsigned players, unsigned rounds, bool all) {
  AtomicWord turn{0};
  std::vector<std::thread> threads;
  for (unsigned id = 1; id < players; ++id) threads.emplace_back(play, std::ref(turn), id, players, rounds, all);
  play(turn, 0, players, rounds, all);
  for (auto& t : threads) t.join();
  return turn.load(std::memory_order_acquire);
}

int main() {
#if CROSSJEPA_WAIT_STD
  std::printf("std\n");
#elif CROSSJEPA_WAIT_FUTEX
  std::printf("futex\n");
#else
  std::printf("condvar\n");
#endif
  std::printf("%u %u\n", game(2, ROUNDS, false), game(4, ROUNDS, true));
  return 0;
}
"""


@pytest.mark.skipif(CXX is None or sys.platform == "win32", reason="needs g++ or c++ and POSIX threads")
@pytest.mark.parametrize(
    "flags, form",
    [
        (["-std=c++20"], "std"),
        (["-std=c++17"], "futex" if sys.platform.startswith("linux") else "condvar"),
        (["-std=c++17", "-DCROSSJEPA_PORTABLE_WAIT"], "condvar"),
    ],
)
def test_turns_pass_between_sleeping_threads(tmp_path, flags, form):
    source = tmp_path / "turns.cpp"
    source.write_text(PROGRAM.replace("ROUNDS", str(ROUNDS)))
    binary = tmp_path / "turns"
    build = subprocess.run(
        [CXX, *flags, "-O2", "-pthread", "-I", str(CSRC), str(source), "-o", str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [form, str(2 * ROUNDS), str(4 * ROUNDS)]
