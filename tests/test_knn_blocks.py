"""csrc/knn/register_blocks.h, the block size of kNN's CUDA register path, compiled from the header alone (no CUDA
needed): whole warps only, at most 128 threads, no more warps than a cloud's queries fill, and split only while
the grid would leave SMs without a block. (The kernel's results do not depend on the block size; tests/
test_ops_cuda.py and tools/sanitize_ops.py run it at these shapes on a GPU.)"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CXX = shutil.which("g++") or shutil.which("c++")
SMS = (1, 8, 108, 132)
BATCHES = (1, 2, 3, 16, 33, 64, 100, 140, 1000)
QUERIES = (1, 31, 32, 33, 40, 64, 65, 80, 96, 97, 127, 128, 129, 4096)

PROGRAM = r"""
#include "knn/register_blocks.h"

#include <cstdio>

int main() {
  const int sms[] = {SMS};
  const long long batches[] = {BATCHES};
  const long long queries[] = {QUERIES};
  for (int s : sms)
    for (long long b : batches)
      for (long long m : queries) std::printf("%d %lld %lld %d\n", s, b, m, crossjepa::knn::register_threads(b, m, s));
  return 0;
}
"""


@pytest.fixture(scope="module")
def threads(tmp_path_factory) -> dict[tuple[int, int, int], int]:
    """(sms, batch, queries) -> threads per block, from the compiled header."""
    if CXX is None or sys.platform == "win32":
        pytest.skip("needs g++ or c++")
    tmp = tmp_path_factory.mktemp("knn_blocks")
    source, binary = tmp / "blocks.cpp", tmp / "blocks"
    text = PROGRAM
    for name, values in (("SMS", SMS), ("BATCHES", BATCHES), ("QUERIES", QUERIES)):
        text = text.replace(name, ", ".join(map(str, values)), 1)
    source.write_text(text)
    for std in ("-std=c++17", "-std=c++20"):  # the standards torch's extension builder uses
        build = subprocess.run(
            [CXX, std, "-O1", "-Wall", "-Werror", "-I", str(CSRC), str(source), "-o", str(binary)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert build.returncode == 0, build.stderr
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    assert len(rows) == len(SMS) * len(BATCHES) * len(QUERIES)
    return {row[:3]: row[3] for row in rows}


def blocks(batch: int, m: int, threads: int) -> int:
    return batch * -(-m // threads)


def test_blocks_are_whole_warps_and_split_only_to_fill_the_sms(threads):
    for (sms, batch, m), t in threads.items():
        largest = min(128, 32 * -(-m // 32))  # a cloud's queries in whole warps, at most 128 threads
        assert t % 32 == 0 and 32 <= t <= largest, (sms, batch, m, t)
        if t > 32:  # split no further than needed: the grid fills the SMs
            assert blocks(batch, m, t) >= sms, (sms, batch, m, t)
        if t < largest:  # split only when needed: blocks twice as large would have left SMs idle
            assert blocks(batch, m, 2 * t) < sms, (sms, batch, m, t)


@pytest.mark.parametrize(
    "batch, m, expected",
    [
        (1, 96, 32),  # three warps used to halve to 48 and 24 threads: below one warp
        (2, 80, 32),
        (1, 40, 32),
        (140, 96, 96),  # enough blocks already: three whole warps stay together
        (64, 128, 32),  # 64 clouds x 1 block < 132; x 2 blocks < 132; x 4 blocks fills
        (100, 128, 64),  # 100 x 1 block < 132; 100 x 2 fills
        (140, 4096, 128),
    ],
)
def test_named_shapes_on_a_132_sm_gpu(threads, batch, m, expected):
    assert threads[(132, batch, m)] == expected
