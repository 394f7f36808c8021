"""The memory-timeline figure of `crossjepa profile` (matplotlib's object API: no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_target

STAGE_COLORS = {
    "data": "#8c564b",
    "tokenizer": "#1f77b4",
    "encoder": "#2ca02c",
    "predictor": "#9467bd",
    "loss": "#e377c2",
    "backward": "#d62728",
    "optimizer": "#ff7f0e",
}


def plot_memory_timeline(path: Path, samples, steps, stage_spans, title: str) -> Path:
    """samples: [(t, rss_mb, cuda_alloc_mb | None, cuda_reserved_mb | None)] (perf_counter seconds);
    steps: [(start, end)]; stage_spans: [(stage, start, end)] host-side ranges. Time is shown in seconds
    from the first step's start; steps are shaded alternately, stages drawn in a lane below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = steps[0][0] if steps else samples[0][0]
    t = [s[0] - t0 for s in samples]
    gpu = any(s[2] is not None for s in samples)
    panels = 2 if gpu else 1
    fig = Figure(figsize=(11, 3.2 * panels + 1.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels + 1, 1, sharex=True, height_ratios=[3] * panels + [1])
    if gpu:
        axes[0].plot(t, [s[2] for s in samples], label="allocated", color="#1f77b4")
        axes[0].plot(t, [s[3] for s in samples], label="reserved", color="#aec7e8")
        axes[0].set_ylabel("GPU memory (MB)")
    host = axes[1 if gpu else 0]
    host.plot(t, [s[1] for s in samples], label="process RSS", color="#2ca02c")
    host.set_ylabel("host RSS (MB)")
    for ax in axes[:panels]:
        for i, (a, b) in enumerate(steps):
            ax.axvspan(a - t0, b - t0, color="0.85" if i % 2 == 0 else "0.93", lw=0, zorder=0)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    lane = axes[-1]
    for row, name in enumerate(STAGE_COLORS):
        bars = [(a - t0, b - a) for stage, a, b in stage_spans if stage == name]
        lane.broken_barh(bars, (row - 0.4, 0.8), color=STAGE_COLORS[name])
    lane.set_yticks(range(len(STAGE_COLORS)), list(STAGE_COLORS), fontsize=7)
    lane.set_ylim(len(STAGE_COLORS) - 0.5, -0.5)
    lane.set_xlabel("seconds from the first profiled step (shaded: steps; lane: host-side stage ranges)")
    axes[0].set_title(title, fontsize=10)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)
