"""Launched by torchrun from test_pretrain: the `crossjepa` command line, then every rank writes the parameters
it trained to OUT/rank<N>.safetensors (only rank 0 writes model.safetensors)."""

import os
import sys

from safetensors.torch import save_file

import crossjepa.train.pretrain as pretrain_module
from crossjepa.cli import main

models = []
_build = pretrain_module.build_model


def _keep(*args, **kwargs):
    models.append(_build(*args, **kwargs))
    return models[-1]


pretrain_module.build_model = _keep
argv = sys.argv[1:]
status = main(argv)
if status:
    sys.exit(status)
out = argv[argv.index("--out") + 1]
save_file(
    {name: p.detach().contiguous() for name, p in models[0].named_parameters()},
    os.path.join(out, f"rank{os.environ['RANK']}.safetensors"),
)
sys.exit(status)
