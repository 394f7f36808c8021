"""The attention suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "attention"


def test_attention(bench, case):
    bench(case)
