"""The channels-last patch embedding against the Conv1d one it replaced (crossjepa.perf.references): same
parameters and init, same outputs, BatchNorm statistics and gradients, and old checkpoints load (their
optimizer state too)."""

from __future__ import annotations

import warnings

import pytest
import torch

from crossjepa.models import build
from crossjepa.models.config import TokenizerConfig
from crossjepa.models.tokenizer import PatchEmbed, PointLinear
from crossjepa.ops import ReferenceFallbackWarning
from crossjepa.perf.references import ConvPatchEmbed, conv_patch_embed, with_conv_patch_embed
from crossjepa.train.checkpoint import load_pretrained, save_weights
from crossjepa.train.optim import load_optimizer_state

CFG = TokenizerConfig(num_points=128, num_groups=8, group_size=16, local_hidden=24, local_out=32, global_hidden=48)
WIDTH = 40


@pytest.fixture(autouse=True)
def _quiet_reference_ops():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        yield


def neighbourhoods(b=3, g=CFG.num_groups, k=CFG.group_size, seed=0, dtype=torch.float32):
    return (0.1 * torch.randn(b, g, k, 3, generator=torch.Generator().manual_seed(seed))).to(dtype)


def old_layout(state: dict) -> dict:
    """A PatchEmbed state dict as the Conv1d implementation writes it."""
    return {k: v.unsqueeze(-1) if v.ndim == 2 else v for k, v in state.items()}


def test_same_parameters_and_the_same_initial_draws_as_conv1d():
    torch.manual_seed(1)
    old = ConvPatchEmbed(CFG, WIDTH)
    torch.manual_seed(1)
    new = PatchEmbed(CFG, WIDTH)
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(old_state) == list(new_state)
    assert sum(p.numel() for p in old.parameters()) == sum(p.numel() for p in new.parameters())
    for name, value in new_state.items():
        assert torch.equal(old_layout({name: value})[name], old_state[name]), name


def test_the_encoders_vit_init_leaves_the_patch_embedding_alone():
    torch.manual_seed(2)
    model = build("tiny")
    layers = [m for m in model.encoder.tokenizer.embed.modules() if isinstance(m, PointLinear)]
    assert len(layers) == 4
    for layer in layers:
        bound = layer.weight.shape[1] ** -0.5
        for p in (layer.weight, layer.bias):  # U(+-1/sqrt(fan_in)) like Conv1d, not trunc-normal(0.02) / zeros
            assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound
            assert p.std().item() == pytest.approx(bound / 3**0.5, rel=0.25)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_outputs_statistics_and_gradients_match_conv1d(dtype, tol):
    torch.manual_seed(3)
    new = PatchEmbed(CFG, WIDTH).to(dtype)
    old = conv_patch_embed(new, CFG)
    x = neighbourhoods(seed=4, dtype=dtype)
    weights = torch.randn(3, CFG.num_groups, WIDTH, dtype=dtype)
    for _ in range(2):  # train mode twice: the running statistics update identically
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        outs = [new(xs[0]), old(xs[1])]
        torch.testing.assert_close(outs[0], outs[1], rtol=tol, atol=tol)
        for out in outs:
            (out * weights).sum().backward()
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=tol, atol=tol)
        # Absolute tolerance on the scale of all gradients: the biases feeding a BatchNorm have a true gradient
        # of zero, and both implementations leave rounding noise there.
        scale = max(q.grad.abs().max().item() for q in old.parameters())
        for (name, p), q in zip(new.named_parameters(), old.parameters()):
            torch.testing.assert_close(p.grad, q.grad.reshape(p.shape), rtol=tol, atol=tol * scale, msg=name)
        for (name, b), c in zip(new.named_buffers(), old.buffers()):
            torch.testing.assert_close(b, c, rtol=tol, atol=tol, msg=name)
        new.zero_grad(), old.zero_grad()
    assert new.local[1].num_batches_tracked.item() == 2
    new.eval(), old.eval()
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=tol, atol=tol)


def test_bfloat16_autocast_matches_conv1d_within_bfloat16_rounding():
    torch.manual_seed(5)
    new = PatchEmbed(CFG, WIDTH)
    old = conv_patch_embed(new, CFG)
    x = neighbourhoods(seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = new(x), old(x)
    assert a.dtype == b.dtype == torch.bfloat16
    torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05)
    exact = new(x)
    assert (a.float() - exact).abs().max() < 0.05 * exact.abs().max()


def test_a_conv1d_state_dict_loads_strictly():
    torch.manual_seed(7)
    old = ConvPatchEmbed(CFG, WIDTH)
    old(neighbourhoods(seed=8))  # non-trivial running statistics
    state = old.state_dict()
    new = PatchEmbed(CFG, WIDTH)
    new.load_state_dict(state)  # strict
    assert torch.equal(new.merge[0].weight, state["merge.0.weight"].squeeze(-1))
    assert torch.equal(new.local[1].running_var, state["local.1.running_var"])
    assert state["merge.0.weight"].ndim == 3  # the caller's dict is left as it was
    new.eval(), old.eval()
    with torch.no_grad():
        torch.testing.assert_close(new(neighbourhoods(seed=9)), old(neighbourhoods(seed=9)), rtol=2e-5, atol=2e-5)
    bad = dict(state, **{"local.3.weight": torch.zeros(CFG.local_out, CFG.local_hidden, 2)})
    with pytest.raises(RuntimeError, match="local.3.weight"):
        new.load_state_dict(bad)


def test_an_old_checkpoint_file_loads_through_load_pretrained(tmp_path):
    torch.manual_seed(10)
    old_model = with_conv_patch_embed(build("tiny", teacher_dim=16))
    assert isinstance(old_model.encoder.tokenizer.embed, ConvPatchEmbed)
    path = save_weights(old_model, tmp_path / "old.safetensors")
    loaded = load_pretrained(path)
    assert isinstance(loaded.encoder.tokenizer.embed, PatchEmbed)
    points = torch.nn.functional.normalize(torch.randn(2, loaded.config.tokenizer.num_points, 3), dim=-1)
    old_model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encoder.features(points), old_model.encoder.features(points), rtol=1e-4, atol=1e-4
        )


def test_one_point_per_group_and_one_group():
    torch.manual_seed(11)
    new = PatchEmbed(CFG, WIDTH)
    old = conv_patch_embed(new, CFG)
    for shape in [(2, 1, 5, 3), (4, 3, 1, 3)]:
        x = 0.1 * torch.randn(*shape)
        torch.testing.assert_close(new(x), old(x), rtol=2e-5, atol=2e-5)
        assert new(x).shape == (shape[0], shape[1], WIDTH)


def _adamw_steps(module, opt, steps: int, seed: int) -> None:
    for s in range(steps):
        opt.zero_grad()
        module(neighbourhoods(seed=seed + s)).square().mean().backward()
        opt.step()


def _old_optimizer_state(state: dict) -> dict:
    """An AdamW state dict as a ConvPatchEmbed's optimizer writes it: moments of 2-d weights as (out, in, 1);
    copies, as read from a file (state_dict() returns the optimizer's own tensors)."""
    return {
        "state": {
            i: {k: (v.unsqueeze(-1) if v.ndim == 2 else v).clone() for k, v in s.items()}
            for i, s in state["state"].items()
        },
        "param_groups": state["param_groups"],
    }


@pytest.mark.parametrize("foreach", [False, True])
def test_old_optimizer_state_migrates_with_the_weights(foreach):
    """A checkpoint of the Conv1d layout (weights and AdamW moments (out, in, 1)) resumes: the moments take their
    parameter's shape (out, in) with the same values, and the next non-fused step (which checks sizes, unlike
    the fused CPU one) is exactly the step of a run that never changed layout."""
    torch.manual_seed(12)
    run = PatchEmbed(CFG, WIDTH)
    run_opt = torch.optim.AdamW(run.parameters(), lr=1e-2, fused=False, foreach=foreach)
    _adamw_steps(run, run_opt, 2, seed=20)
    weights, saved = old_layout(run.state_dict()), _old_optimizer_state(run_opt.state_dict())
    assert saved["state"][0]["exp_avg"].shape == (CFG.local_hidden, 3, 1)

    resumed = PatchEmbed(CFG, WIDTH)
    resumed.load_state_dict(weights)
    opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2, fused=False, foreach=foreach)
    load_optimizer_state(opt, saved)
    for p, q in zip(resumed.parameters(), run.parameters()):
        mine, theirs = opt.state[p], run_opt.state[q]
        assert mine["step"] == theirs["step"] == 2
        for key in ("exp_avg", "exp_avg_sq"):
            assert mine[key].shape == p.shape and mine[key].is_contiguous()
            assert torch.equal(mine[key], theirs[key])

    _adamw_steps(resumed, opt, 1, seed=30)
    _adamw_steps(run, run_opt, 1, seed=30)
    for (name, p), q in zip(resumed.named_parameters(), run.parameters()):
        assert torch.equal(p, q), name


def test_optimizer_state_of_another_model_is_refused():
    torch.manual_seed(13)
    new = PatchEmbed(CFG, WIDTH)
    opt = torch.optim.AdamW(new.parameters(), fused=False)
    _adamw_steps(new, opt, 1, seed=40)
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"] = torch.zeros(CFG.local_hidden, 4)  # (24, 3) elsewhere
    with pytest.raises(ValueError, match=r"optimizer state: parameter 0 of group 0 has exp_avg of shape \(24, 4\)"):
        load_optimizer_state(torch.optim.AdamW(PatchEmbed(CFG, WIDTH).parameters(), fused=False), saved)
