"""The point-op and attention suites: each of our kernels beside the peer a user would otherwise pick, on the
same inputs and thread count, with the speed-up it is built to reach (`Case.target`).

CPU (thread counts fixed per comparison, so a run under load compares like with like):
  fps 32x1024->64, 2 threads: crossjepa vs a serial loop of fpsample.fps_sampling      (target 2x)
  fps 1x8192->1024, 1 thread: crossjepa vs fpsample.fps_sampling                      (target 5x)
  knn 32 clouds x 64 queries over 1024 points, k=32, 2 threads: crossjepa vs cdist+topk  (target 3x)
  group, same shape: crossjepa vs cdist+topk+gather
FPS is exact: its check is that the indices equal fpsample's from the same start index. kNN and group check
the distances against the peer's (cdist may pick another of two equidistant neighbours).
CUDA: FPS vs pointnet2_ops (when importable; target 3x) and the torch reference; group (fp32, bf16) vs
cdist+topk+gather (target 3x) and the torch reference.
Attention, fwd+bwd at the model's shapes (encoder with and without a key-padding mask, predictor): the Triton
kernel (target 1.2x SDPA; also at the warp counts num_warps did not pick) and the dispatcher vs torch SDPA with
its own backend choice and each backend forced. On the CPU the SDPA rows run and the Triton rows say why not.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import ops
from . import references as refs
from .case import Case, Settings, returning
from .inputs import cloud, query_clouds


def _fpsample():
    try:
        import fpsample
    except ImportError:
        return None
    return fpsample


def _fps_cases(fpsample, b, n, m, threads, target, seed) -> Iterator[Case]:
    points = cloud(b, n, seed)
    arrays = list(points.numpy())
    peer = "fpsample loop" if b > 1 else "fpsample"
    shape = f"B={b} N={n} M={m}, {threads} thread{'s' * (threads > 1)}"

    def peer_fn():
        return [fpsample.fps_sampling(a, m, start_idx=0) for a in arrays]

    def same_indices():
        ours = ops.farthest_point_sample(points, m, 0).numpy()
        return all((ours[i] == idx).all() for i, idx in enumerate(peer_fn()))

    yield Case(
        "fps",
        "crossjepa",
        shape,
        ops.backend("farthest_point_sample", "cpu"),
        b,
        "clouds/s",
        returning(lambda: ops.farthest_point_sample(points, m, 0)),
        (peer,),
        threads=threads,
        target=target,
        check=None if fpsample is None else same_indices,
    )
    yield Case(
        "fps",
        peer,
        shape,
        "fpsample (numpy)",
        b,
        "clouds/s",
        None if fpsample is None else returning(peer_fn),
        threads=threads,
        note="" if fpsample is not None else "fpsample not installed",
    )


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the rounding of the outputs' dtype (both pick neighbours by float32 distances)."""
    tol = (1e-4, 1e-5) if a.dtype == torch.float32 else (1e-2, 1e-2)
    return torch.allclose(a.float(), b.float(), rtol=tol[0], atol=tol[1])


def cpu_ops_cases(s: Settings) -> Iterator[Case]:
    fpsample = _fpsample()
    fps_batch, fps_one, (b, m, n, k) = (
        ((4, 256, 16), (1, 2048, 128), (4, 16, 256, 8))
        if s.quick
        else ((32, 1024, 64), (1, 8192, 1024), (32, 64, 1024, 32))
    )
    yield from _fps_cases(fpsample, *fps_batch, threads=2, target=2.0, seed=1)
    yield from _fps_cases(fpsample, *fps_one, threads=1, target=5.0, seed=0)

    queries, points = query_clouds(b, m, n, seed=2)
    shape = f"B={b} M={m} N={n} k={k}, 2 threads"
    yield Case(
        "knn",
        "crossjepa",
        shape,
        ops.backend("knn", "cpu"),
        b,
        "clouds/s",
        returning(lambda: ops.knn(queries, points, k)),
        ("cdist+topk",),
        threads=2,
        target=3.0,
        check=lambda: _close(ops.knn(queries, points, k)[0], refs.cdist_knn(queries, points, k)[0] ** 2),
    )
    yield Case(
        "knn",
        "cdist+topk",
        shape,
        "torch",
        b,
        "clouds/s",
        returning(lambda: refs.cdist_knn(queries, points, k)),
        threads=2,
    )

    centers = points[:, :m].contiguous()
    yield Case(
        "group",
        "crossjepa",
        shape,
        ops.backend("group", "cpu"),
        b,
        "clouds/s",
        returning(lambda: ops.group(points, centers, k)),
        ("cdist+topk+gather",),
        threads=2,
        check=lambda: _close(
            ops.group(points, centers, k)[0].norm(dim=-1), refs.cdist_group(points, centers, k)[0].norm(dim=-1)
        ),
    )
    yield Case(
        "group",
        "cdist+topk+gather",
        shape,
        "torch",
        b,
        "clouds/s",
        returning(lambda: refs.cdist_group(points, centers, k)),
        threads=2,
    )


def cuda_ops_cases(s: Settings) -> Iterator[Case]:
    dev = s.device
    fps_shapes = [(2, 256, 16)] if s.quick else [(128, 1024, 64), (32, 8192, 1024), (1, 200_000, 4096)]
    pn2, why = refs.pointnet2_fps()
    for b, n, m in fps_shapes:
        points = cloud(b, n, seed=n).to(dev)
        shape = f"B={b} N={n} M={m} fp32"
        expected = ops.farthest_point_sample_reference(points, m, check_finite=False)
        yield Case(
            "fps",
            "crossjepa",
            shape,
            ops.backend("farthest_point_sample", dev),
            b,
            "clouds/s",
            returning(lambda p=points, m=m: ops.farthest_point_sample(p, m, check_finite=False)),
            ("pointnet2_ops", "torch reference"),
            target=3.0,
            check=lambda p=points, m=m, e=expected: torch.equal(ops.farthest_point_sample(p, m, check_finite=False), e),
        )
        yield Case(
            "fps",
            "torch reference",
            shape,
            "torch",
            b,
            "clouds/s",
            returning(lambda p=points, m=m: ops.farthest_point_sample_reference(p, m, check_finite=False)),
        )
        yield Case(
            "fps",
            "pointnet2_ops",
            shape,
            "pointnet2_ops",
            b,
            "clouds/s",
            None if pn2 is None else returning(lambda p=points, m=m: pn2(p, m)),
            note=why,
        )

    b, m, n, k = (2, 16, 256, 8) if s.quick else (128, 64, 1024, 32)
    for dtype in (torch.float32, torch.bfloat16):
        points = cloud(b, n, seed=3, dtype=dtype).to(dev)
        centers = points[:, :m].contiguous()
        shape = f"B={b} M={m} N={n} k={k} {str(dtype).removeprefix('torch.')}"
        yield Case(
            "group",
            "crossjepa",
            shape,
            ops.backend("group", dev),
            b,
            "clouds/s",
            returning(lambda p=points, c=centers: ops.group(p, c, k, check_finite=False)),
            ("cdist+topk+gather", "torch reference"),
            target=3.0,
            check=lambda p=points, c=centers: _close(
                ops.group(p, c, k)[0].norm(dim=-1), refs.cdist_group(p, c, k)[0].norm(dim=-1)
            ),
        )
        yield Case(
            "group",
            "cdist+topk+gather",
            shape,
            "torch",
            b,
            "clouds/s",
            returning(lambda p=points, c=centers: refs.cdist_group(p, c, k)),
        )
        yield Case(
            "group",
            "torch reference",
            shape,
            "torch",
            b,
            "clouds/s",
            returning(lambda p=points, c=centers: ops.group_reference(p, c, k, check_finite=False)),
        )


def ops_cases(s: Settings) -> Iterator[Case]:
    # Millisecond calls: more of them than the suites' default, for a median that holds on a busy machine.
    repeats = None if s.quick else (10, 50) if s.cuda else (3, 30)
    for case in cuda_ops_cases(s) if s.cuda else cpu_ops_cases(s):
        case.repeats = repeats
        yield case


# ------------------------------------------------------------------------------------------ attention


def _sdpa(backend=None):
    def fn(q, k, v, mask):
        m = None if mask is None else mask[:, None, None, :]
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m)

    return fn


def _attention_inputs(b, h, n, d, masked, device):
    g = torch.Generator().manual_seed(int(masked))
    q, k, v, grad = (torch.randn(b, h, n, d, generator=g).to(device, torch.bfloat16) for _ in range(4))
    mask = None
    if masked:  # every object keeps its cls token and a random number of patches
        lengths = torch.randint(n // 2, n + 1, (b,), generator=g)
        mask = (torch.arange(n)[None, :] < lengths[:, None]).to(device)
    return [t.requires_grad_() for t in (q, k, v)], mask, grad


def _relative_error(fn, qkv, mask, grad) -> float:
    """Largest relative error of the output and the q/k/v gradients against float64."""
    leaves = [t.detach().double().requires_grad_() for t in qkv]
    want = _sdpa()(*leaves, mask)
    want = (want, *torch.autograd.grad(want, leaves, grad.double()))
    out = fn(*qkv, mask)
    got = (out, *torch.autograd.grad(out, qkv, grad))
    return max(((a.double() - b).norm() / b.norm()).item() for a, b in zip(got, want))


def _attention_impls(s: Settings, n: int, d: int) -> dict:
    """impl -> (backend, fn(q, k, v, mask) or None where it cannot run here, optional)."""
    from ..kernels import attention

    impls = {"dispatch": ("crossjepa.kernels", attention, False), "sdpa": ("torch", _sdpa(), False)}
    impls.update(
        {
            f"sdpa {name}": ("torch", _sdpa(backend), True)
            for name, backend in (
                ("flash", SDPBackend.FLASH_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("math", SDPBackend.MATH),
            )
        }
    )
    if not s.cuda:  # the Triton kernel runs on a GPU only: its row says so
        return {"triton fused": ("triton", None, False), **impls}
    from ..kernels.attention_triton import fused_attention, num_warps

    chosen = num_warps(n, n, d)
    triton = {"triton fused": ("triton", fused_attention, False)}
    for warps in ((4, 4), (4, 8), (8, 4), (8, 8)):  # the other launch choices, to check num_warps's
        if warps != chosen:
            triton[f"triton fused w{warps[0]}/{warps[1]}"] = (
                "triton",
                lambda q, k, v, m, warps=warps: fused_attention(q, k, v, m, warps=warps),
                True,
            )
    return {**triton, **impls}


def attention_cases(s: Settings) -> Iterator[Case]:
    """Every attention call of a training step, fwd+bwd in bf16: the encoder's (64 patches + cls, 6 heads of
    64) with and without a key-padding mask, and the predictor's (pooled features + one query per view)."""
    from ..kernels import selected_backend

    # The GPU step's 512 objects; on a CPU 16, as the train suite's CPU step (bf16 attention is slow there).
    b = 4 if s.quick else 512 if s.cuda else 16
    encoder, predictor = (b, 6, 65, 64), (4 * b, 6, 2, 64)  # 4 views per object
    for (b, h, n, d), masked in ((encoder, False), (encoder, True), (predictor, False)):
        shape = f"B={b} H={h} L={n} d={d} bf16{', key-padding mask' if masked else ''}"
        impls = _attention_impls(s, n, d)
        sdpa = tuple(impl for impl in impls if impl.startswith("sdpa"))  # torch's choice first, then each forced
        small, mask = _attention_inputs(1, h, n, d, masked, s.device)[:2]
        picks = f"picks {selected_backend(*small, mask)}"
        for impl, (backend, fn, optional) in impls.items():

            def factory(fn=fn, masked=masked, b=b, h=h, n=n, d=d):
                qkv, mask, grad = _attention_inputs(b, h, n, d, masked, s.device)
                return lambda: torch.autograd.grad(fn(*qkv, mask), qkv, grad)

            def check(fn=fn, masked=masked, h=h, n=n, d=d):
                return _relative_error(fn, *_attention_inputs(2, h, n, d, masked, s.device)) < 2e-2

            ours = not impl.startswith("sdpa")
            note = "needs CUDA" if fn is None else picks if impl == "dispatch" else ""
            yield Case(
                "attention fwd+bwd",
                impl,
                shape,
                backend,
                b,
                "objects/s",
                None if fn is None else factory,
                sdpa if ours else (),
                note=note,
                optional=optional,
                target=1.2 if impl == "triton fused" else None,
                check=check,
            )
