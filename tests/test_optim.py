"""train/optim.py: which parameters weight decay spares (the rule its docstring states)."""

from crossjepa.models import build
from crossjepa.train.optim import decay_groups


def test_weight_decay_spares_norms_biases_and_the_cls_token_only():
    model = build("tiny")
    decayed, spared = (
        {n for n, p in model.named_parameters() if any(p is q for q in g["params"])} for g in decay_groups(model, 0.05)
    )
    assert decayed | spared == {n for n, _ in model.named_parameters()} and not decayed & spared
    assert "encoder.cls_token" in spared and {"encoder.cls_pos", "predictor.query"} <= decayed
    assert all(model.get_parameter(n).ndim < 2 for n in spared - {"encoder.cls_token"})
    assert all(model.get_parameter(n).ndim >= 2 for n in decayed)
