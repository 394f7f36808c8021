"""The point-op and attention suites: each of our kernels beside the peer a user would otherwise pick, on the
same inputs and thread count, with the speed-up it is built to reach (`Case.target`).

CPU (thread counts fixed per comparison, so a run under load compares like with like):
  fps 32x1024->64, 2 threads: crossjepa vs a serial loop of fpsample.fps_sampling      (target 2x)
  fps 1x8192->1024, 1 thread: crossjepa vs fpsample.fps_sampling                      (target 5x)
  knn 32 clouds x 64 queries over 1024 points, k=32, 2 threads: crossjepa vs cdist+topk  (target 3x)
  group, same shape: crossjepa vs cdist+topk+gather
  fps+knn 32x1024 -> 64 centers, k=32 (the tokenizer's sampling and grouping): crossjepa's FPS then kNN vs the
  reference FPS then cdist+topk, and torch-fps's fused FPS + kNN
Every FPS row also has the FPS packages users install (crossjepa.perf.peers: torch-fps, torch-quickfps exact and
bucket), on the same inputs and thread count; a peer that is not installed gets a row that says so. FPS is
exact: our row checks that the indices equal fpsample's from the same start index, and each peer's row that its
indices equal ours. kNN and group check the distances against the peer's (cdist may pick another of two
equidistant neighbours).
CUDA: FPS vs pointnet2_ops (when importable; target 3x), torch-fps (Triton), torch-quickfps (with its CUDA
wheel) and the torch reference; fps+knn vs torch-fps's fused Triton kernel, at the tokenizer's shape and at
torch-fps's published one (B=128 N=1000 -> 128, k=8); group (fp32, bf16) vs cdist+topk+gather (target 3x) and
the torch reference.
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
from .peers import Peer, fps_peers, torch_fps_with_knn


def _fpsample():
    try:
        import fpsample
    except ImportError:
        return None
    return fpsample


def _peer_cases(name, shape, items, peers: list[Peer], call, ours, threads=None) -> Iterator[Case]:
    """One row per peer: `call(peer)` runs it on the case's inputs; its check: the same indices as `ours()`."""
    for peer in peers:
        run = None if peer.fn is None else (lambda peer=peer: call(peer))
        yield Case(
            name,
            peer.impl,
            shape,
            peer.backend,
            items,
            "clouds/s",
            None if run is None else returning(run),
            threads=threads,
            note=peer.note,
            optional=True,  # a peer that fails here is a note on its row, not the end of the suite
            check=None if run is None else (lambda run=run: torch.equal(run().long().cpu(), ours().cpu())),
        )


def _fps_cases(fpsample, peers, b, n, m, threads, target, seed) -> Iterator[Case]:
    points = cloud(b, n, seed)
    arrays = list(points.numpy())
    peer = "fpsample loop" if b > 1 else "fpsample"
    shape = f"B={b} N={n} M={m}, {threads} thread{'s' * (threads > 1)}"

    def ours():
        return ops.farthest_point_sample(points, m, 0)

    def peer_fn():
        return [fpsample.fps_sampling(a, m, start_idx=0) for a in arrays]

    def same_indices():
        mine = ours().numpy()
        return all((mine[i] == idx).all() for i, idx in enumerate(peer_fn()))

    yield Case(
        "fps",
        "crossjepa",
        shape,
        ops.backend("farthest_point_sample", "cpu"),
        b,
        "clouds/s",
        returning(ours),
        (peer, *(p.impl for p in peers)),
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
    yield from _peer_cases("fps", shape, b, peers, lambda p: p.fn(points, m), ours, threads)


def _fps_knn_cases(b, n, m, k, device, threads=None) -> Iterator[Case]:
    """The tokenizer's sampling and grouping: crossjepa's FPS then kNN of the centers, vs the plain-torch way (the
    reference FPS, then cdist + topk) and torch-fps's fused FPS + kNN. Checks: the same centers, and neighbours
    at the same distances (two equidistant neighbours may come in either order)."""
    points = cloud(b, n, seed=4).to(device)
    shape = f"B={b} N={n} M={m} k={k}" + (f", {threads} thread{'s' * (threads > 1)}" if threads else " fp32")
    plain = "ref FPS + cdist+topk"
    fused = torch_fps_with_knn(torch.device(device))

    def ours():
        idx = ops.farthest_point_sample(points, m, 0, check_finite=False)
        return idx, ops.knn(_gather(points, idx), points, k, check_finite=False)[1]

    def reference():
        idx = ops.farthest_point_sample_reference(points, m, check_finite=False)
        return idx, refs.cdist_knn(_gather(points, idx), points, k)[1]

    def same(theirs) -> bool:
        (idx, nbr), (their_idx, their_nbr) = ours(), theirs()
        centers = _gather(points, idx)[:, :, None]
        dist = [
            (_gather(points, n.long().flatten(1)).view(b, m, k, 3) - centers).square().sum(-1) for n in (nbr, their_nbr)
        ]
        return torch.equal(their_idx.long(), idx) and _close(*dist)

    yield Case(
        "fps+knn",
        "crossjepa",
        shape,
        ops.backend("knn", device),
        b,
        "clouds/s",
        returning(ours),
        (plain, fused.impl),
        threads=threads,
        check=lambda: same(reference),
    )
    yield Case("fps+knn", plain, shape, "torch", b, "clouds/s", returning(reference), threads=threads)
    yield Case(
        "fps+knn",
        fused.impl,
        shape,
        fused.backend,
        b,
        "clouds/s",
        None if fused.fn is None else returning(lambda: fused.fn(points, m, k)),
        threads=threads,
        note=fused.note,
        optional=True,
        check=None if fused.fn is None else (lambda: same(lambda: fused.fn(points, m, k))),
    )


def _gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, N, 3) at idx (B, M) -> (B, M, 3)."""
    return points.gather(1, idx[..., None].expand(-1, -1, 3))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the rounding of the outputs' dtype (both pick neighbours by float32 distances)."""
    tol = (1e-4, 1e-5) if a.dtype == torch.float32 else (1e-2, 1e-2)
    return torch.allclose(a.float(), b.float(), rtol=tol[0], atol=tol[1])


def cpu_ops_cases(s: Settings) -> Iterator[Case]:
    fpsample, peers = _fpsample(), fps_peers(torch.device("cpu"))
    fps_batch, fps_one, (b, m, n, k) = (
        ((4, 256, 16), (1, 2048, 128), (4, 16, 256, 8))
        if s.quick
        else ((32, 1024, 64), (1, 8192, 1024), (32, 64, 1024, 32))
    )
    yield from _fps_cases(fpsample, peers, *fps_batch, threads=2, target=2.0, seed=1)
    yield from _fps_cases(fpsample, peers, *fps_one, threads=1, target=5.0, seed=0)
    yield from _fps_knn_cases(b, n, m, k, "cpu", threads=2)

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
    peers = fps_peers(dev)
    for b, n, m in fps_shapes:
        points = cloud(b, n, seed=n).to(dev)
        shape = f"B={b} N={n} M={m} fp32"
        expected = ops.farthest_point_sample_reference(points, m, check_finite=False)

        def ours(p=points, m=m):
            return ops.farthest_point_sample(p, m, check_finite=False)

        yield Case(
            "fps",
            "crossjepa",
            shape,
            ops.backend("farthest_point_sample", dev),
            b,
            "clouds/s",
            returning(ours),
            ("pointnet2_ops", *(p.impl for p in peers), "torch reference"),
            target=3.0,
            check=lambda ours=ours, e=expected: torch.equal(ours(), e),
        )
        yield from _peer_cases("fps", shape, b, peers, lambda peer, p=points, m=m: peer.fn(p, m), ours)
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

    for b, n, m, k in [(2, 256, 16, 8)] if s.quick else [(128, 1024, 64, 32), (128, 1000, 128, 8)]:
        yield from _fps_knn_cases(b, n, m, k, dev)

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
