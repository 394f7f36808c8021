"""TrainStep's non-finite guard on the torch it runs on: a fused optimizer is handed GradScaler's `found_inf`
flag (a private contract of torch's fused Adam/AdamW, kept since torch 2.0 and checked here on every torch
the suite runs on, the declared floor included) and skips the update on the device; an optimizer without
`_step_supports_amp_scaling` applies every step, and the step is still counted."""

from __future__ import annotations

import math

import pytest
import torch

from crossjepa.train.step import TrainStep


class Predictor(torch.nn.Module):
    """Stands in for CrossJEPA: (points (B, P, 3), poses (B, V, 4, 4), histograms) -> (B, V, D)."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 + 16, dim)

    def forward(self, points, poses, histograms):
        pooled = points.mean(1, keepdim=True).expand(-1, poses.shape[1], -1)
        return self.linear(torch.cat([pooled, poses.flatten(2)], -1))


def _batch(finite: bool = True):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 4, generator=g)
    if not finite:
        target[0, 0, 0] = math.nan
    points, poses = torch.randn(2, 8, 3, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    return points, target, poses, None, torch.zeros(4), torch.ones(4)


def _snapshot(model, opt):
    params = [p.detach().clone() for p in model.parameters()]
    state = {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()}
    return params, state


@pytest.mark.parametrize("fused", [True, False])
def test_a_nonfinite_step_is_skipped_on_the_device_by_a_fused_optimizer_only(fused):
    torch.manual_seed(0)
    model = Predictor()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused, foreach=None if fused else False)
    step = TrainStep(model, opt, amp=False)
    assert step.skips_on_device is fused

    step(*_batch())
    params, state = _snapshot(model, opt)
    step(*_batch(finite=False))
    assert "found_inf" not in vars(opt)  # the flag lives for one step only
    after, after_state = _snapshot(model, opt)
    if fused:  # parameters, moments and step count as they were
        assert all(torch.equal(a, b) for a, b in zip(params, after))
        assert all(torch.equal(state[i][k], after_state[i][k]) for i in state for k in state[i])
    else:  # applied: the NaN gradient reached the parameters
        assert all(torch.isnan(p).all() for p in after)
    stats = step.stats()
    assert (stats.steps, stats.nonfinite_loss, stats.first_nonfinite, stats.first_what) == (2, 1, 2, "loss")

    if fused:  # and the next finite step applies
        step(*_batch())
        assert not any(torch.equal(a, b) for a, b in zip(params, _snapshot(model, opt)[0]))
        assert {int(s["step"]) for s in opt.state_dict()["state"].values()} == {2}
