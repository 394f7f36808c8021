"""The cache suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "cache"


def test_cache(bench, case):
    bench(case)
