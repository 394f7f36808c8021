"""One optimizer step of CrossJEPA pretraining, shared by the training loop, `bench` and `profile`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.profiler import record_function

from ..models.loss import crossjepa_loss

# Slots of TrainStep.sums (float64, on the device): sums since the last reset().
_LOSS, _GRAD_NORM, _APPLIED, _BAD_LOSS, _BAD_GRAD, _FIRST_BAD, _FIRST_KIND = range(7)


@dataclass
class StepStats:
    """What happened since the last reset(): loss and pre-clip gradient norm are means over applied steps."""

    steps: int
    first_step: int  # step number of the first of them
    loss: float
    grad_norm: float
    nonfinite_loss: int  # steps not applied because the loss was NaN/Inf
    nonfinite_grad: int  # steps not applied because the loss was finite but the gradient was not
    first_nonfinite: Optional[int]  # step number (TrainStep.step) of the first one, None if none
    first_what: str  # "loss" or "gradient"

    @property
    def nonfinite(self) -> int:
        return self.nonfinite_loss + self.nonfinite_grad


class TrainStep:
    """forward (bf16 autocast on CUDA) -> loss vs standardised targets -> backward -> gradient norm, clip ->
    optimizer, without a host sync.

    A step whose loss or gradient norm is NaN/Inf is not applied. With a fused optimizer (what
    build_optimizer makes) the finiteness goes to the optimizer as GradScaler's `found_inf` flag, so the
    update is skipped inside the kernel, on the device; other optimizers apply it (it is still counted).
    Loss, gradient norm and non-finite counts are summed on the device; stats() reads them in one transfer.
    Returns the loss as a detached device tensor: the caller decides when to read it."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer,
        scheduler=None,
        *,
        loss: str = "smooth_l1",
        grad_clip: float = 1.0,
        amp: bool = True,
        device: torch.device | None = None,
    ):
        device = device or next(model.parameters()).device
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_kind, self.grad_clip = loss, grad_clip
        self.device_type = device.type
        self.use_amp = amp and device.type == "cuda"
        params = model.module.parameters() if hasattr(model, "module") else model.parameters()
        self.params = [p for p in params if p.requires_grad]
        self.skips_on_device = bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        self.sums = torch.zeros(7, dtype=torch.float64, device=device)
        self.step = 0  # steps taken; set it when resuming so stats() names the right step
        self.reset()

    def reset(self) -> None:
        self.sums.zero_()
        self.sums[_FIRST_BAD] = -1
        self.calls = 0

    def __call__(self, points, target, poses, histograms, mean, std) -> torch.Tensor:
        self.step += 1
        self.calls += 1
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.use_amp):
            pred = self.model(points, poses, histograms)
        with record_function("loss"):
            loss = crossjepa_loss(pred.float(), target, mean, std, kind=self.loss_kind)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            loss = loss.detach()
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = get_total_norm(grads)
            # bad = (loss non-finite, gradient non-finite); every rank must agree, or replicas would diverge.
            bad = torch.stack([~torch.isfinite(loss), ~torch.isfinite(norm)]).double()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
            skip = bad.amax()
            if self.grad_clip > 0:
                clip_grads_with_norm_(self.params, self.grad_clip, norm)
            if self.skips_on_device:
                self.optimizer.found_inf = skip.float()
            try:
                self.optimizer.step()
            finally:
                self.optimizer.__dict__.pop("found_inf", None)
            if self.scheduler is not None:
                self.scheduler.step()
            self._record(loss, norm, bad, skip)
        return loss

    def _record(self, loss, norm, bad, skip) -> None:
        applied = skip == 0
        kind = torch.where(bad[0] > 0, 1.0, 2.0)  # what the first non-finite step had: 1 loss, 2 gradient
        new_first = (self.sums[_FIRST_BAD] < 0) & ~applied
        self.sums[:_FIRST_BAD] += torch.stack(
            [
                torch.where(applied, loss.double(), 0.0),
                torch.where(applied, norm.double(), 0.0),
                applied.double(),
                bad[0],
                bad[1] * (1 - bad[0]),
            ]
        )
        self.sums[_FIRST_BAD] = torch.where(new_first, float(self.step), self.sums[_FIRST_BAD])
        self.sums[_FIRST_KIND] = torch.where(new_first, kind, self.sums[_FIRST_KIND])

    def stats(self) -> StepStats:
        """The sums since reset() (the loss averaged over ranks); one host sync, and a collective under
        torch.distributed (call it on every rank)."""
        sums = self.sums.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums[_LOSS : _LOSS + 1])
            sums[_LOSS] /= torch.distributed.get_world_size()
        v = sums.tolist()
        applied = int(v[_APPLIED])
        return StepStats(
            steps=self.calls,
            first_step=self.step - self.calls + 1,
            loss=v[_LOSS] / applied if applied else math.nan,
            grad_norm=v[_GRAD_NORM] / applied if applied else math.nan,
            nonfinite_loss=int(v[_BAD_LOSS]),
            nonfinite_grad=int(v[_BAD_GRAD]),
            first_nonfinite=int(v[_FIRST_BAD]) if v[_FIRST_BAD] >= 0 else None,
            first_what="loss" if v[_FIRST_KIND] == 1 else "gradient",
        )
