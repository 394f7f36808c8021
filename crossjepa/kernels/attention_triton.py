"""Fused scaled-dot-product attention for short sequences (L <= 256) in Triton: forward and backward.

Layout: one program per (batch*head, query block) in the forward and one per (batch*head, key block) in the
backward. When Lk <= 128 the keys/values of a (batch, head) are ONE resident tile (BLOCK_N = next power of two
>= Lk, min 16): the forward is a plain softmax (no online rescaling) and the backward computes dq, dk and dv in
one program with no atomics. When Lq <= 128 one query tile (BLOCK_M = next power of two >= Lq) is among the
autotuned choices, so the whole (batch, head) can be a single tile; smaller query blocks are tried as well
because a 65-token sequence wastes half of a 128-row tile. Longer keys (up to 256) are streamed in 64-wide
blocks with an online softmax, and dq is accumulated with fp32 atomics.

The forward stores only the output and the per-row log-sum-exp (base 2, fp32); the backward recomputes the
scores and probabilities from q, k and that log-sum-exp. Matmuls take fp16/bf16 inputs with fp32
accumulation (fp32 inputs use exact fp32 dots, for tests).

Key-padding mask semantics: (B, Lk) bool, True = keep. Masked keys get exactly zero weight. A row whose keys
are all masked produces a zero output (not NaN) and contributes zero gradient; its log-sum-exp is +inf.

TRITON_INTERPRET must be set before this module is imported: triton decides at decoration time whether a
kernel runs in the interpreter, and this module then keeps exactly one config (no autotuning).
"""

import math
import os

import torch
import triton
import triton.language as tl

from .support import check_attention_args, triton_supports

INTERPRET = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")
_STREAM_BLOCK_N = 64  # key block when Lk > 128


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _query_block_fits(config, named_args):
    """A query block larger than the padded query length only adds masked rows."""
    return config.kwargs["BLOCK_M"] <= _block(named_args["Lq"])


def _prune_fwd(configs, named_args, **kwargs):
    # With one key tile the forward has no loop, so extra pipeline stages change nothing.
    return [c for c in configs if _query_block_fits(c, named_args) and (c.num_stages == 1 or not kwargs["SINGLE_KV"])]


def _prune_bwd(configs, named_args, **kwargs):
    return [c for c in configs if _query_block_fits(c, named_args)]


def _configs():
    if INTERPRET:
        # One config, so the interpreter never benchmarks; 32 rows makes L <= 32 a single tile and L = 65 three.
        return [triton.Config({"BLOCK_M": 32}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=s)
            for m in (16, 32, 64, 128) for w in (4, 8) for s in (1, 2)]


@triton.jit
def _keep_keys(KPM, stride_mb, off_b, offs_n, Lk, HAS_MASK: tl.constexpr):
    keep = offs_n < Lk
    if HAS_MASK:
        keep = keep & (tl.load(KPM + off_b * stride_mb + offs_n, mask=offs_n < Lk, other=0) != 0)
    return keep


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, KPM,
              sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som, smb,
              H, Lq, Lk, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr,
              SINGLE_KV: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr):
    bh = tl.program_id(0)
    off_b = (bh // H).to(tl.int64)
    off_h = (bh % H).to(tl.int64)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < Lq
    q = tl.load(Q + off_b * sqb + off_h * sqh + offs_m[:, None] * sqm + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    k_base = K + off_b * skb + off_h * skh
    v_base = V + off_b * svb + off_h * svh

    if SINGLE_KV:
        offs_n = tl.arange(0, BLOCK_N)
        kv_ok = offs_n[:, None] < Lk
        k = tl.load(k_base + offs_n[:, None] * skn + offs_d[None, :], mask=kv_ok, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * svn + offs_d[None, :], mask=kv_ok, other=0.0)
        keep = _keep_keys(KPM, smb, off_b, offs_n, Lk, HAS_MASK)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(keep[None, :], s, float("-inf"))
        m = tl.max(s, 1)
        m = tl.where(m == float("-inf"), 0.0, m)  # fully masked row: exp2(-inf - 0) = 0 everywhere
        p = tl.exp2(s - m[:, None])
        l = tl.sum(p, 1)
        acc = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    else:
        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for start_n in range(0, Lk, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_ok = offs_n[:, None] < Lk
            k = tl.load(k_base + offs_n[:, None] * skn + offs_d[None, :], mask=kv_ok, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * svn + offs_d[None, :], mask=kv_ok, other=0.0)
            keep = _keep_keys(KPM, smb, off_b, offs_n, Lk, HAS_MASK)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            s = tl.where(keep[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m - m_safe)
            p = tl.exp2(s - m_safe[:, None])
            l = l * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m = m_new
        m = tl.where(m == float("-inf"), 0.0, m)

    empty = l == 0.0
    out = acc / tl.where(empty, 1.0, l)[:, None]
    tl.store(O + off_b * sob + off_h * soh + offs_m[:, None] * som + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=row_ok[:, None])
    lse = tl.where(empty, float("inf"), m + tl.log2(tl.where(empty, 1.0, l)))
    tl.store(LSE + bh.to(tl.int64) * Lq + offs_m, lse, mask=row_ok)


@triton.jit
def _attn_bwd(Q, K, V, O, DO, DQ, DK, DV, LSE, KPM,
              sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som,
              sdob, sdoh, sdom, sdqb, sdqh, sdqm, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, smb,
              H, Lq, Lk, qk_scale, sm_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr,
              SINGLE_KV: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr):
    bh = tl.program_id(0)
    off_b = (bh // H).to(tl.int64)
    off_h = (bh % H).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_ok = offs_n[:, None] < Lk
    k = tl.load(K + off_b * skb + off_h * skh + offs_n[:, None] * skn + offs_d[None, :], mask=kv_ok, other=0.0)
    v = tl.load(V + off_b * svb + off_h * svh + offs_n[:, None] * svn + offs_d[None, :], mask=kv_ok, other=0.0)
    keep = _keep_keys(KPM, smb, off_b, offs_n, Lk, HAS_MASK)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    q_base = Q + off_b * sqb + off_h * sqh
    do_base = DO + off_b * sdob + off_h * sdoh
    dq_base = DQ + off_b * sdqb + off_h * sdqh
    lse_base = LSE + bh.to(tl.int64) * Lq

    for start_m in range(0, Lq, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < Lq
        q = tl.load(q_base + offs_m[:, None] * sqm + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        do = tl.load(do_base + offs_m[:, None] * sdom + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        lse = tl.load(lse_base + offs_m, mask=row_ok, other=float("inf"))
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(keep[None, :], s, float("-inf"))
        p = tl.exp2(s - lse[:, None])  # zero for masked keys, padded rows and fully masked rows
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        if SINGLE_KV:
            delta = tl.sum(p * dp, 1)  # the whole row is here: exact and consistent with p
        else:
            o = tl.load(O + off_b * sob + off_h * soh + offs_m[:, None] * som + offs_d[None, :],
                        mask=row_ok[:, None], other=0.0)
            delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
        dq = tl.dot(ds.to(k.dtype), k, input_precision=PRECISION) * sm_scale
        dq_ptrs = dq_base + offs_m[:, None] * sdqm + offs_d[None, :]
        if SINGLE_KV:
            tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])
        else:
            tl.atomic_add(dq_ptrs, dq, mask=row_ok[:, None], sem="relaxed")

    tl.store(DK + off_b * sdkb + off_h * sdkh + offs_n[:, None] * sdkn + offs_d[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + off_b * sdvb + off_h * sdvh + offs_n[:, None] * sdvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_ok)


_KEY = ["Lq", "Lk", "HEAD_DIM", "HAS_MASK"]
_fwd = triton.autotune(_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune_fwd})(_attn_fwd)
_bwd = triton.autotune(_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune_bwd},
                       reset_to_zero=["DQ"])(_attn_bwd)


def _last_dim_contiguous(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _empty_blhd(like):
    """(B, H, L, d) view of (B, L, H, d) storage: `out.transpose(1, 2).reshape(B, L, H * d)` is then free."""
    b, h, length, d = like.shape
    return torch.empty(b, length, h, d, dtype=like.dtype, device=like.device).transpose(1, 2)


def _meta(q, k, key_padding_mask):
    d = q.shape[-1]
    lk = k.shape[2]
    block_n = _block(lk) if lk <= 128 else _STREAM_BLOCK_N
    return dict(HEAD_DIM=d, BLOCK_N=block_n, HAS_MASK=key_padding_mask is not None, SINGLE_KV=lk <= block_n,
                PRECISION="ieee" if q.dtype == torch.float32 else "tf32")


def _mask_arg(q, key_padding_mask):
    if key_padding_mask is None:
        return q, 0
    mask = _last_dim_contiguous(key_padding_mask).view(torch.uint8)
    return mask, mask.stride(0)


def _forward(q, k, v, key_padding_mask):
    b, h, lq, d = q.shape
    lk = k.shape[2]
    o = _empty_blhd(q)
    lse = torch.empty(b * h, lq, dtype=torch.float32, device=q.device)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(d)
    _fwd[lambda meta: (b * h, triton.cdiv(lq, meta["BLOCK_M"]))](
        q, k, v, o, lse, mask, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3], smb,
        h, lq, lk, sm_scale * math.log2(math.e), **_meta(q, k, key_padding_mask))
    return o, lse


def _backward(q, k, v, o, lse, key_padding_mask, do):
    b, h, lq, d = q.shape
    lk = k.shape[2]
    meta = _meta(q, k, key_padding_mask)
    # Several key blocks add into the same dq rows: accumulate in fp32 with atomics, then cast.
    dq = _empty_blhd(q) if meta["SINGLE_KV"] else torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk = _empty_blhd(k)
    dv = _empty_blhd(v)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(d)
    _bwd[(b * h, triton.cdiv(lk, meta["BLOCK_N"]))](
        q, k, v, o, do, dq, dk, dv, lse, mask,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3], *do.stride()[:3],
        *dq.stride()[:3], *dk.stride()[:3], *dv.stride()[:3], smb,
        h, lq, lk, sm_scale * math.log2(math.e), sm_scale, **meta)
    return dq.to(q.dtype), dk, dv


class FusedAttention(torch.autograd.Function):
    """apply(q, k, v, key_padding_mask) on validated, supported inputs (see fused_attention)."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask):
        q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
        o, lse = _forward(q, k, v, key_padding_mask)
        ctx.save_for_backward(q, k, v, o, lse, key_padding_mask)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, key_padding_mask = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, o, lse, key_padding_mask, _last_dim_contiguous(do))
        return dq, dk, dv, None


def fused_attention(q, k, v, key_padding_mask=None):
    """Triton attention, softmax(q k^T / sqrt(d)) v, differentiable in q, k, v.

    q (B, H, Lq, d), k and v (B, H, Lk, d); Lq, Lk in [1, 256]; d in {32, 64, 128}; fp16/bf16 (fp32 accepted,
    computed with exact fp32 dots); CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. key_padding_mask:
    (B, Lk) bool, True = keep; a row with every key masked gives zeros. Returns (B, H, Lq, d) in q's dtype.
    """
    check_attention_args(q, k, v, key_padding_mask)
    if not triton_supports(q, k, key_padding_mask, allow_fp32=True):
        raise ValueError(f"q: expected CUDA (or interpreted CPU) tensors with L <= 256 and d in (32, 64, 128), "
                         f"got {tuple(q.shape)} {q.dtype} on {q.device}")
    return FusedAttention.apply(q, k, v, key_padding_mask)
