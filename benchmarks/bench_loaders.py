"""The loaders suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "loaders"


def test_loaders(bench, case):
    bench(case)
