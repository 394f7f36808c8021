"""Dispatch: which implementation runs, the reference fallback (one warning naming the reason), the portable
CPU paths."""

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import crossjepa.ops as ops
from crossjepa.ops import dispatch

HAVE_EXTENSION = dispatch._load_extension()[0] is not None


@pytest.mark.skipif(not HAVE_EXTENSION, reason="crossjepa._C not built")
def test_backend_names():
    for op in dispatch.OPS:
        assert ops.backend(op, "cpu") == "cpu"
        assert ops.backend(op, torch.device("meta")) == "torch"
        assert ops.backend(op, "cuda") == ("cuda" if dispatch._load_extension()[0].with_cuda() else "torch")


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(dispatch, "_extension_state", (None, "simulated: crossjepa._C is missing"))
    monkeypatch.setattr(dispatch, "_warned", set())
    points = torch.randn(2, 100, 3, generator=torch.Generator().manual_seed(31))
    assert all(ops.backend(op, "cpu") == "torch" for op in dispatch.OPS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            idx = ops.farthest_point_sample(points, 8)
            d, nn = ops.knn(points[:, :5], points, 4)
            nb, _ = ops.group(points, points[:, :5], 4)
    messages = [str(w.message) for w in caught if issubclass(w.category, ops.ReferenceFallbackWarning)]
    assert len(messages) == 1, messages
    assert all(op in messages[0] for op in dispatch.OPS) and "simulated: crossjepa._C is missing" in messages[0]
    assert torch.equal(idx, ops.farthest_point_sample_reference(points, 8))
    assert torch.equal(nn, ops.knn_reference(points[:, :5], points, 4)[1])
    assert torch.equal(nb, ops.group_reference(points, points[:, :5], 4)[0])


def test_missing_extension_reason_quotes_the_recorded_build_failure(monkeypatch, tmp_path):
    record = tmp_path / "_build_failure.txt"
    monkeypatch.setattr(dispatch, "BUILD_FAILURE_FILE", record)
    missing = ImportError("cannot import name '_C'")
    assert "could not be imported (cannot import name '_C')" in dispatch._missing_reason(missing)
    record.write_text("csrc/utils/cpu.h:87:19: error: no member named 'notify_all'\n")
    reason = dispatch._missing_reason(missing)
    assert "failed at install time: csrc/utils/cpu.h:87:19: error: no member named 'notify_all'" in reason
    assert "CROSSJEPA_STRICT_BUILD=1" in reason


def test_import_without_the_extension():
    code = "import sys; sys.modules['crossjepa._C'] = None; import crossjepa.ops as o; print(o.backend('knn', 'cpu'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch"


@pytest.mark.skipif(not HAVE_EXTENSION, reason="crossjepa._C not built")
def test_portable_kernels_match_the_reference():
    """The non-AVX2 code paths (used on CPUs without AVX2) give the same results."""
    code = textwrap.dedent(
        """
        import torch, crossjepa.ops as o
        g = torch.Generator().manual_seed(32)
        p = torch.randn(3, 700, 3, generator=g)
        p[:, 600:] = p[:, :100].round()  # ties
        q = torch.randn(3, 9, 3, generator=g)
        lengths = torch.tensor([700, 333, 50])
        assert torch.equal(o.farthest_point_sample(p, 50, 7, lengths=lengths),
                           o.farthest_point_sample_reference(p, 50, 7, lengths=lengths))
        for k in (1, 8, 17, 32, 33, 50):
            for a, b in zip(o.knn(q, p, k, lengths=lengths), o.knn_reference(q, p, k, lengths=lengths)):
                assert torch.equal(a, b), k
        print("ok")
        """
    )
    env = dict(os.environ, CROSSJEPA_DISABLE_AVX2="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
