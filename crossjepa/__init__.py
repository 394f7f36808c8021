"""crossjepa: pretrain 3D point-cloud encoders by predicting a frozen 2D teacher's view embeddings."""

__version__ = "0.1.0"


def load_encoder(path, device="cpu"):
    """The point encoder of a pretrained checkpoint as an nn.Module: points (B, N, 3) -> features (B, F).
    See crossjepa.eval.features.FeatureEncoder (imported here on first use, so `import crossjepa` stays light)."""
    from .eval.features import load_encoder as load

    return load(path, device=device)
