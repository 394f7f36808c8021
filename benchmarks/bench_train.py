"""The train suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "train"


def test_train(bench, case):
    bench(case)
