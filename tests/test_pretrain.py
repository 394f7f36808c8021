"""Pretraining: end to end on a tiny cache, SIGKILL + --resume is bit-identical, torchrun with 2 CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
DATA = "synthetic:48"


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    from crossjepa.data import open_dataset
    from crossjepa.teacher import build_cache, load_teacher

    out = tmp_path_factory.mktemp("cache") / "cache"
    teacher = load_teacher("vit_tiny_patch16_224", random_init=True, image_size=32, pooling="mean")
    return build_cache(open_dataset(DATA, split="train"), out, teacher, num_views=4, batch_size=64, progress=False)


def _pretrain_cmd(cache: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crossjepa",
        "-q",
        "pretrain",
        "--data",
        DATA,
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--device",
        "cpu",
        "--set",
        "log_every=1",
        "--set",
        "num_workers=0",
        *extra,
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_pretrain_writes_weights_metrics_and_plot(cache_dir, tmp_path):
    out = tmp_path / "run"
    subprocess.run(_pretrain_cmd(cache_dir, out, 3), check=True, env=_env(), timeout=300)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["objects_per_s"] > 0 for r in lines)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    attention = json.loads((out / "runtime.json").read_text())["attention"]  # the dispatch, recorded
    assert attention["mode"] == "auto" and "Lk <=" in attention["rule"]
    assert attention["choices"] and {c["backend"] for c in attention["choices"]} == {"sdpa"}  # CPU
    assert {c["device"] for c in attention["choices"]} == {"cpu"}
    from crossjepa.models.config import preset_config
    from crossjepa.teacher import open_cache
    from crossjepa.train.checkpoint import load_pretrained

    model = load_pretrained(out / "model.safetensors")  # the run's architecture, with the weights it saved
    assert model.config == preset_config("tiny", teacher_dim=open_cache(cache_dir).dim)
    saved, state = _weights(out), model.state_dict()
    assert saved.keys() <= state.keys() and all(torch.equal(state[k], v) for k, v in saved.items())


def test_sigkill_then_resume_is_bit_identical(cache_dir, tmp_path):
    steps = 8
    reference = tmp_path / "uninterrupted"
    subprocess.run(_pretrain_cmd(cache_dir, reference, steps), check=True, env=_env(), timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _pretrain_cmd(cache_dir, killed, steps), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_00000004":
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"

    subprocess.run(_pretrain_cmd(cache_dir, killed, steps, "--resume"), check=True, env=_env(), timeout=300)
    a, b = _weights(reference), _weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps_logged = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, steps + 1))


def test_torchrun_two_cpu_processes_train_the_same_weights(cache_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        str(REPO / "tests" / "torchrun_pretrain.py"),
        "-q",
        "pretrain",
        "--data",
        DATA,
        "--cache",
        str(cache_dir),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--set",
        "num_workers=0",
    ]
    subprocess.run(cmd, check=True, env=_env(), timeout=300)
    saved, rank0, rank1 = (
        load_file(str(out / name)) for name in ("model.safetensors", "rank0.safetensors", "rank1.safetensors")
    )
    assert rank0.keys() == rank1.keys() and rank0.keys() <= saved.keys()
    for name in rank0:  # DDP kept the replicas identical, and rank 0 saved them
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.equal(rank0[name], saved[name]), name
    from crossjepa.teacher import open_cache
    from crossjepa.train.config import TrainConfig
    from crossjepa.train.pretrain import build_model

    torch.manual_seed(0)  # pretrain's initialisation (seed 0): the ranks did train
    fresh = dict(build_model(TrainConfig(preset="tiny"), open_cache(cache_dir).dim).named_parameters())
    assert any(not torch.equal(rank0[name], fresh[name].detach()) for name in rank0)


def test_bad_inputs_give_one_line(cache_dir, tmp_path):
    import numpy as np

    other = tmp_path / "other"  # as many objects as the cache, but not the same ones
    for i in range(48):
        (other / "thing" / "train").mkdir(parents=True, exist_ok=True)
        np.save(other / "thing" / "train" / f"t{i:02d}.npy", np.random.default_rng(i).normal(size=(64, 3)))
    cases = [
        (["--cache", str(tmp_path / "missing")], "--cache"),
        (["--cache", str(cache_dir), "--preset", "huge"], "preset"),
        (["--cache", str(cache_dir), "--data", "synthetic:40"], "--cache"),
        (["--cache", str(cache_dir), "--data", str(other)], "--cache"),
    ]
    for extra, needle in cases:
        args = ["pretrain", "--data", DATA, "--out", str(tmp_path / "x"), "--device", "cpu", "--max-steps", "1"]
        args = args + extra
        res = subprocess.run(
            [sys.executable, "-m", "crossjepa", *args], env=_env(), capture_output=True, text=True, timeout=300
        )
        assert res.returncode != 0
        err = res.stderr.strip().splitlines()
        assert err and "Traceback" not in res.stderr, res.stderr
        assert needle in err[-1], err[-1]


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _inject(monkeypatch, bad_calls: dict[int, str]) -> None:
    """Make the loss (or only its gradient) non-finite on the given 1-based calls of the loss."""
    import crossjepa.train.step as step_module

    real, calls = step_module.crossjepa_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        value = real(*args, **kwargs)
        what = bad_calls.get(calls[0])
        return value * float("nan") if what == "loss" else _NanGrad.apply(value) if what == "gradient" else value

    monkeypatch.setattr(step_module, "crossjepa_loss", loss)


def _config(cache_dir, out, **kw):
    from crossjepa.train.config import TrainConfig

    base = dict(
        data=DATA,
        cache=str(cache_dir),
        out=str(out),
        preset="tiny",
        batch_size=8,
        device="cpu",
        num_workers=0,
        checkpoint_every=2,
        log_every=10,
    )
    return TrainConfig(**{**base, **kw})


def _to_conv1d_layout(checkpoint: Path) -> None:
    """Rewrite a checkpoint as one written before the channels-last patch embedding: its 2-d patch-embedding
    weights, and their AdamW moments, with a trailing kernel dimension (Conv1d(k=1): (out, in, 1))."""
    from safetensors.torch import save_file

    weights = _weights(checkpoint)
    old = {k for k, v in weights.items() if ".tokenizer.embed." in k and v.ndim == 2}
    assert old, "no patch-embedding weight in the checkpoint"
    save_file({k: v.unsqueeze(-1) if k in old else v for k, v in weights.items()}, checkpoint / "model.safetensors")
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    moments = 0
    for slot in state["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if slot[key].ndim == 2 and any(slot[key].shape == weights[k].shape for k in old):
                slot[key], moments = slot[key].unsqueeze(-1), moments + 1
    assert moments >= 2 * len(old)
    torch.save(state, checkpoint / "state.pt")


def test_an_old_layout_checkpoint_resumes_with_a_non_fused_optimizer(cache_dir, tmp_path, monkeypatch, one_thread):
    """The resume of a checkpoint from before the channels-last patch embedding, with the optimizer that checks
    sizes (non-fused AdamW; fused CUDA AdamW checks them too): it runs, and ends where the uninterrupted run of
    the same optimizer ends."""
    import shutil

    from crossjepa.train.pretrain import pretrain

    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **kw: real_adamw(*a, **{**kw, "fused": False}))
    reference = pretrain(_config(cache_dir, tmp_path / "reference", max_steps=4), progress=False)

    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "reference" / "checkpoints" / "step_00000002", out / "checkpoints" / "step_00000002")
    (out / "checkpoints" / "latest").write_text("step_00000002\n")
    _to_conv1d_layout(out / "checkpoints" / "step_00000002")
    resumed = pretrain(_config(cache_dir, out, max_steps=4), resume=True, progress=False)

    a, b = load_file(str(reference)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mine, theirs = (
        torch.load(run / "checkpoints" / "step_00000004" / "state.pt", weights_only=False)["optimizer"]["state"]
        for run in (out, tmp_path / "reference")
    )
    assert mine.keys() == theirs.keys()
    for i in mine:  # the moments, in their parameters' shapes, are the uninterrupted run's
        assert all(torch.equal(mine[i][k], theirs[i][k]) for k in ("step", "exp_avg", "exp_avg_sq")), i


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_nonfinite_step_stops_and_keeps_the_last_good_checkpoint(cache_dir, tmp_path, monkeypatch, one_thread, what):
    from crossjepa.train.pretrain import pretrain

    out = tmp_path / "run"
    _inject(monkeypatch, {3: what})
    with pytest.raises(FloatingPointError) as err:  # found before the step-4 checkpoint, not at a log line
        pretrain(_config(cache_dir, out, max_steps=8), progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"step 3: non-finite {what}"), message
    assert str(out / "checkpoints" / "step_00000002") in message and "nonfinite=skip" in message
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_00000002"]
    assert not (out / "model.safetensors").exists()
    weights = _weights(out / "checkpoints" / "step_00000002")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nonfinite_skip_counts_the_skipped_steps_and_applies_the_rest(cache_dir, tmp_path, monkeypatch, one_thread):
    from crossjepa.train.pretrain import pretrain

    out = tmp_path / "run"
    _inject(monkeypatch, {2: "loss", 5: "gradient"})
    final = pretrain(_config(cache_dir, out, max_steps=6, log_every=3, nonfinite="skip"), progress=False)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["nonfinite_steps"]) for r in records] == [(3, 1), (6, 1)]
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 for r in records)
    assert all(torch.isfinite(w).all() for w in load_file(str(final)).values())
    state = torch.load(out / "checkpoints" / "step_00000006" / "state.pt", weights_only=False)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {4}  # 6 steps, 2 not applied


def test_cli_nonfinite_stop_is_one_line(cache_dir, tmp_path):
    out = tmp_path / "run"
    # A learning rate this high leaves finite (huge) weights after step 1 and overflows at step 2.
    res = subprocess.run(
        _pretrain_cmd(cache_dir, out, 6, "--lr", "1e30", "--checkpoint-every", "1"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "step 2: non-finite" in lines[0], res.stderr
    assert f"the last good checkpoint is {out / 'checkpoints' / 'step_00000001'}" in lines[0], res.stderr
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000001"


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_training_steps_make_no_host_sync(cache_dir, tmp_path, monkeypatch, one_thread, device):
    """Between log intervals the loop reads nothing back from the device: targets come with the batch (sliced
    in the loader worker), clouds are checked finite where they enter, and the non-finite guard (on: "stop")
    stays on the device. Every host read of a tensor in the training thread is recorded with the number of
    steps finished; on CUDA, torch's sync debug mode also raises on any sync after the warm-up step."""
    from host_syncs import HostReads

    from crossjepa.train.pretrain import pretrain
    from crossjepa.train.step import TrainStep

    steps, done, real_call = 5, [None], TrainStep.__call__  # None: setting up, before the first step

    def counted(self, *args):
        done[0] = done[0] or 0
        loss = real_call(self, *args)
        done[0] += 1
        if device == "cuda":  # from after the warm-up step to the end of the last one (then stats() reads)
            torch.cuda.set_sync_debug_mode("error" if done[0] < steps else "default")
        return loss

    monkeypatch.setattr(TrainStep, "__call__", counted)
    reads = HostReads(label=lambda: done[0])
    config = _config(
        cache_dir, tmp_path / "run", max_steps=steps, log_every=100, checkpoint_every=100, num_workers=1, device=device
    )
    try:
        with reads:
            pretrain(config, progress=False)
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert done[0] == steps
    assert [r for r in reads.reads if r[0] is not None and r[0] < steps] == []
    assert any(r[0] == steps for r in reads.reads)  # the one read of the log interval: the recorder sees reads


def test_cached_targets_draw_views_per_batch_and_skip_unused_histograms(cache_dir):
    import pickle

    import numpy as np

    from crossjepa.data.targets import CachedTargets
    from crossjepa.teacher import open_cache

    cache = open_cache(cache_dir)
    ids, index, key = np.arange(0, 48, 2), np.array([5, 0, 7]), (1, 0, 2, 4)  # (seed, rank, epoch, batch)
    targets = CachedTargets(cache, 3, rows=ids)
    got = targets.read(key, index)
    again = pickle.loads(pickle.dumps(targets)).read(key, index)  # as in a worker: the same draws
    assert got.keys() == again.keys() == {"target", "poses", "histograms"}
    assert all(torch.equal(got[name], again[name]) for name in got)
    views = targets.views(key, len(index))
    assert all(len(set(row)) == 3 for row in views.tolist())
    pick = (ids[index][:, None], views)
    for name, array in (("target", cache.embeddings), ("poses", cache.poses), ("histograms", cache.histograms)):
        assert torch.equal(got[name], torch.from_numpy(np.asarray(array)[pick])), name
    others = [targets.views((1, 0, 2, b), 3) for b in range(5, 9)] + [targets.views((1, 1, 2, 4), 3)]
    assert not all(np.array_equal(views, other) for other in others)  # another batch or rank, other views
    unused = CachedTargets(cache, 3, rows=ids, histograms=False).read(key, index)
    assert unused.keys() == {"target", "poses"} and torch.equal(unused["target"], got["target"])
