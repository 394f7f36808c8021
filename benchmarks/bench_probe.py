"""The probe suite of `crossjepa bench` under pytest-benchmark (cases: crossjepa.perf.suites; see conftest.py)."""

SUITE = "probe"


def test_probe(bench, case):
    bench(case)
