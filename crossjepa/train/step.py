"""One optimizer step of CrossJEPA pretraining, shared by the training loop, `bench` and `profile`."""

from __future__ import annotations

import torch
from torch.profiler import record_function

from ..models.loss import crossjepa_loss


class TrainStep:
    """forward (bf16 autocast on CUDA) -> loss vs standardised targets -> backward -> clip -> optimizer.

    Returns the loss as a detached device tensor: no host sync here, the caller decides when to read it."""

    def __init__(self, model: torch.nn.Module, optimizer, scheduler=None, *, loss: str = "smooth_l1",
                 grad_clip: float = 1.0, amp: bool = True, device: torch.device | None = None):
        device = device or next(model.parameters()).device
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_kind, self.grad_clip = loss, grad_clip
        self.device_type = device.type
        self.use_amp = amp and device.type == "cuda"
        params = model.module.parameters() if hasattr(model, "module") else model.parameters()
        self.params = [p for p in params if p.requires_grad]

    def __call__(self, points, target, poses, histograms, mean, std) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.use_amp):
            pred = self.model(points, poses, histograms)
        with record_function("loss"):
            loss = crossjepa_loss(pred.float(), target, mean, std, kind=self.loss_kind)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        return loss.detach()
