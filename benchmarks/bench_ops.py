"""The ops suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "ops"


def test_ops(bench, case):
    bench(case)
