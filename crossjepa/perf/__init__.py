"""Speed and memory: `crossjepa bench` (suites vs references, JSON results) and `crossjepa profile`
(torch.profiler trace, top ops, per-stage breakdown, memory timeline). Submodules are imported on use so
`crossjepa --help` stays instant."""
