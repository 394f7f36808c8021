"""The optimizer of pretraining and fine-tuning: AdamW over parameter groups, linear warmup then cosine decay."""

from __future__ import annotations

import math

import torch


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Parameters with fewer than two dimensions (norms, biases) and those named ...token (the encoder's cls
    token) are not decayed. Point-MAE's rule, and the one every published number was measured with: the cls
    token's positional embedding (encoder.cls_pos) and the predictor's query token (predictor.query) are decayed
    like the other weights."""
    return param.ndim < 2 or name.endswith("token")


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups of the trainable parameters: decayed, and not decayed (`no_weight_decay`)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if no_weight_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: torch.nn.Module, cfg, total_steps: int, device: torch.device, groups: list[dict] | None = None
):
    """(AdamW, LambdaLR) from `cfg.optim` (an OptimConfig): linear warmup then cosine decay. `groups`:
    parameter groups, each may set its own "lr" and "weight_decay" (fine-tuning's layer-wise settings);
    default: `decay_groups`."""
    o = cfg.optim
    if groups is None:
        groups = decay_groups(model, o.weight_decay)
    # Fused (CPU too): it takes a found_inf flag, so TrainStep skips a non-finite step without a host sync.
    opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), fused=device.type in ("cpu", "cuda"))
    warmup = max(1, int(o.warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """`optimizer.load_state_dict(state_dict)`, then every per-parameter state tensor (AdamW's moments) given
    its parameter's shape. A checkpoint written before a layer changed layout (the patch embedding's Conv1d
    weights (out, in, 1), now (out, in): the load hook in models/tokenizer.py reshapes the weights) resumes with
    moments that match their parameters, which every optimizer step except the fused CPU one requires. Scalars
    (the step count) are left as they are. ValueError when a state tensor's size differs from its parameter's:
    the state belongs to another model."""
    optimizer.load_state_dict(state_dict)
    for g, group in enumerate(optimizer.param_groups):
        for i, param in enumerate(group["params"]):
            state = optimizer.state.get(param, {})
            for key in list(state):
                value = state[key]
                if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape == param.shape:
                    continue
                if value.numel() != param.numel():
                    raise ValueError(
                        f"optimizer state: parameter {i} of group {g} has {key} of shape {tuple(value.shape)}, "
                        f"expected {param.numel()} elements like the parameter {tuple(param.shape)}"
                    )
                state[key] = value.reshape(param.shape).contiguous()
