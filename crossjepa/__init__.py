"""crossjepa: pretrain 3D point-cloud encoders by predicting a frozen 2D teacher's view embeddings."""

__version__ = "0.1.0"
