"""Fused scaled-dot-product attention for short sequences (Lq, Lk <= 128) in Triton: forward and backward.

One program per (batch, head) holds the whole head: its keys and values, and each of its query blocks in turn.
So the forward is a plain softmax (no online rescaling) and the backward computes dq, dk and dv in one program
with no atomics (no other program touches the head).

Tiles: `tl.dot` needs power-of-two sides of at least 16, and a sequence one past a power of two (the encoder's
64 patches + cls = 65) would waste almost half of a 128-wide tile. A length is therefore split into a main
block and a short tail block (`split`): 65 -> 64 + 16, so the 65 x 65 scores cost 80 x 80, not 128 x 128.
Queries and keys are split independently (Lq may differ from Lk).

The forward stores the output and the per-row log-sum-exp (base 2, fp32); the backward recomputes the scores
and probabilities from q, k and that log-sum-exp, and takes each row's softmax correction rowsum(p * dp) from
the probabilities it holds (the whole row is in the program): the output is not read back, and a single key
gives dq = 0 exactly. Matmuls take fp16/bf16 inputs with fp32 accumulation (fp32 inputs use exact fp32 dots,
for tests). num_warps is a fixed function of the shape: no autotuning, so nothing is timed and every run
launches the same kernels.

Key-padding mask semantics: (B, Lk) bool, True = keep. Masked keys get exactly zero weight. A row whose keys
are all masked produces a zero output (not NaN) and contributes zero gradient; its log-sum-exp is +inf.

The kernels use no runtime value where Python needs an int (no `range(Lq)`): triton 3.6's interpreter turns
such a value into an int with `int(array)` of a 1-element array, which numpy >= 2.4 refuses (triton 3.9 does
not), and that failed the interpreter tests under triton 3.6.
"""

import math

import torch
import triton
import triton.language as tl

from ..ops.argument_checks import check_attention_args
from .triton_limits import MAX_LEN, interpreting, triton_supports

MIN_BLOCK = 16  # tl.dot's smallest side
# triton decides when a kernel is decorated whether it runs in the interpreter, so this is fixed at import.
INTERPRETED = interpreting()


def split(n: int) -> tuple[int, int]:
    """(main, tail) power-of-two blocks covering n (1 <= n <= MAX_LEN) with the fewest padded rows; tail 0: none.

    1 -> (16, 0), 17 -> (32, 0), 33 -> (32, 16), 65 -> (64, 16), 81 -> (64, 32), 97 -> (128, 0).
    """
    full = max(MIN_BLOCK, triton.next_power_of_2(n))
    if full == MIN_BLOCK:
        return full, 0
    main = full // 2
    tail = max(MIN_BLOCK, triton.next_power_of_2(n - main))
    return (full, 0) if main + tail >= full else (main, tail)


def num_warps(lq: int, lk: int, head_dim: int) -> tuple[int, int]:
    """(forward, backward) warps per program: the fewest with which the tiles and fp32 accumulators of a head
    stay in registers, read from ptxas for sm_90 under triton 3.6 (no spills from Lq = Lk = 2 to 128 at head
    dims 32 and 64). The fewer warps a program needs, the more programs share an SM. Not timed on a GPU yet."""
    q_rows, k_rows = sum(split(lq)), sum(split(lk))
    forward = 4 if k_rows * head_dim <= 80 * 64 else 8
    backward = 4 if q_rows + k_rows <= 160 and head_dim <= 64 else 8
    return forward, backward


@triton.jit
def _keep_keys(KPM, stride_mb, off_b, offs_n, Lk, HAS_MASK: tl.constexpr):
    keep = offs_n < Lk
    if HAS_MASK:
        keep = keep & (tl.load(KPM + off_b * stride_mb + offs_n, mask=offs_n < Lk, other=0) != 0)
    return keep


@triton.jit
def _load_rows(base, stride, offs, length, offs_d):
    return tl.load(base + offs[:, None] * stride + offs_d[None, :], mask=offs[:, None] < length, other=0.0)


@triton.jit
def _scores(q, k, keep, qk_scale, PRECISION: tl.constexpr):
    """q k^T scaled to base 2, -inf where a key is masked or padding."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    return tl.where(keep[None, :], s, float("-inf"))


@triton.jit
def _fwd_block(
    q_base,
    sqm,
    o_base,
    som,
    lse_base,
    offs_m,
    offs_d,
    Lq,
    ka,
    va,
    keep_a,
    kb,
    vb,
    keep_b,
    qk_scale,
    KEY_TAIL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Output and log-sum-exp of the query rows offs_m against every key (kb/vb/keep_b: the key tail)."""
    q = _load_rows(q_base, sqm, offs_m, Lq, offs_d)
    s_a = _scores(q, ka, keep_a, qk_scale, PRECISION)
    m = tl.max(s_a, 1)
    if KEY_TAIL:
        s_b = _scores(q, kb, keep_b, qk_scale, PRECISION)
        m = tl.maximum(m, tl.max(s_b, 1))
    m = tl.where(m == float("-inf"), 0.0, m)  # fully masked row: exp2(-inf - 0) = 0 everywhere
    p_a = tl.exp2(s_a - m[:, None])
    l = tl.sum(p_a, 1)
    acc = tl.dot(p_a.to(va.dtype), va, input_precision=PRECISION)
    if KEY_TAIL:
        p_b = tl.exp2(s_b - m[:, None])
        l += tl.sum(p_b, 1)
        acc = tl.dot(p_b.to(vb.dtype), vb, acc, input_precision=PRECISION)
    empty = l == 0.0
    out = acc / tl.where(empty, 1.0, l)[:, None]
    row_ok = offs_m < Lq
    tl.store(o_base + offs_m[:, None] * som + offs_d[None, :], out.to(o_base.dtype.element_ty), mask=row_ok[:, None])
    tl.store(lse_base + offs_m, tl.where(empty, float("inf"), m + tl.log2(tl.where(empty, 1.0, l))), mask=row_ok)


@triton.jit
def _attn_fwd(
    Q,
    K,
    V,
    O,
    LSE,
    KPM,
    sqb,
    sqh,
    sqm,
    skb,
    skh,
    skn,
    svb,
    svh,
    svn,
    sob,
    soh,
    som,
    smb,
    H,
    Lq,
    Lk,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    Q_MAIN: tl.constexpr,
    Q_TAIL: tl.constexpr,
    K_MAIN: tl.constexpr,
    K_TAIL: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh = tl.program_id(0)
    off_b = (bh // H).to(tl.int64)
    off_h = (bh % H).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    k_base = K + off_b * skb + off_h * skh
    v_base = V + off_b * svb + off_h * svh

    offs_ka = tl.arange(0, K_MAIN)
    ka = _load_rows(k_base, skn, offs_ka, Lk, offs_d)
    va = _load_rows(v_base, svn, offs_ka, Lk, offs_d)
    keep_a = _keep_keys(KPM, smb, off_b, offs_ka, Lk, HAS_MASK)
    if K_TAIL > 0:
        offs_kb = K_MAIN + tl.arange(0, K_TAIL)
        kb = _load_rows(k_base, skn, offs_kb, Lk, offs_d)
        vb = _load_rows(v_base, svn, offs_kb, Lk, offs_d)
        keep_b = _keep_keys(KPM, smb, off_b, offs_kb, Lk, HAS_MASK)
    else:  # no key tail: placeholders, never read
        kb, vb, keep_b = ka, va, keep_a

    q_base = Q + off_b * sqb + off_h * sqh
    o_base = O + off_b * sob + off_h * soh
    lse_base = LSE + bh.to(tl.int64) * Lq
    _fwd_block(
        q_base,
        sqm,
        o_base,
        som,
        lse_base,
        tl.arange(0, Q_MAIN),
        offs_d,
        Lq,
        ka,
        va,
        keep_a,
        kb,
        vb,
        keep_b,
        qk_scale,
        K_TAIL > 0,
        PRECISION,
    )
    if Q_TAIL > 0:
        _fwd_block(
            q_base,
            sqm,
            o_base,
            som,
            lse_base,
            Q_MAIN + tl.arange(0, Q_TAIL),
            offs_d,
            Lq,
            ka,
            va,
            keep_a,
            kb,
            vb,
            keep_b,
            qk_scale,
            K_TAIL > 0,
            PRECISION,
        )


@triton.jit
def _probs_t(q, do, lse, k, v, keep, qk_scale, PRECISION: tl.constexpr):
    """Probabilities and their gradients for one key block, transposed (keys as rows)."""
    s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
    # p is zero for masked keys, padded rows and fully masked rows (lse = +inf).
    p_t = tl.exp2(tl.where(keep[:, None], s_t, float("-inf")) - lse[None, :])
    return p_t, tl.dot(v, tl.trans(do), input_precision=PRECISION)


@triton.jit
def _grad_key_block(q, do, p_t, dp_t, delta, k, dk, dv, PRECISION: tl.constexpr):
    """(dq part, dk, dv) of one key block: transposed, p and ds are the left operands of the dk and dv
    products, used from registers, and only dq needs a transpose."""
    dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)
    return tl.dot(tl.trans(ds_t.to(k.dtype)), k, input_precision=PRECISION), dk, dv


@triton.jit
def _bwd_block(
    q_base,
    sqm,
    do_base,
    sdom,
    dq_base,
    sdqm,
    lse_base,
    offs_m,
    offs_d,
    Lq,
    ka,
    va,
    keep_a,
    dk_a,
    dv_a,
    kb,
    vb,
    keep_b,
    dk_b,
    dv_b,
    qk_scale,
    sm_scale,
    KEY_TAIL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Stores dq of the query rows offs_m; returns the key blocks' dk, dv with these rows' terms added."""
    q = _load_rows(q_base, sqm, offs_m, Lq, offs_d)
    do = _load_rows(do_base, sdom, offs_m, Lq, offs_d)
    lse = tl.load(lse_base + offs_m, mask=offs_m < Lq, other=float("inf"))
    p_a, dp_a = _probs_t(q, do, lse, ka, va, keep_a, qk_scale, PRECISION)
    delta = tl.sum(p_a * dp_a, 0)  # = rowsum(o * do), exactly consistent with p: the whole row is here
    if KEY_TAIL:
        p_b, dp_b = _probs_t(q, do, lse, kb, vb, keep_b, qk_scale, PRECISION)
        delta += tl.sum(p_b * dp_b, 0)
    dq, dk_a, dv_a = _grad_key_block(q, do, p_a, dp_a, delta, ka, dk_a, dv_a, PRECISION)
    if KEY_TAIL:
        dq_b, dk_b, dv_b = _grad_key_block(q, do, p_b, dp_b, delta, kb, dk_b, dv_b, PRECISION)
        dq += dq_b
    tl.store(
        dq_base + offs_m[:, None] * sdqm + offs_d[None, :],
        (dq * sm_scale).to(dq_base.dtype.element_ty),
        mask=(offs_m < Lq)[:, None],
    )
    return dk_a, dv_a, dk_b, dv_b


@triton.jit
def _store_rows(base, stride, offs, length, offs_d, x):
    tl.store(base + offs[:, None] * stride + offs_d[None, :], x.to(base.dtype.element_ty), mask=offs[:, None] < length)


@triton.jit
def _attn_bwd(
    Q,
    K,
    V,
    DO,
    DQ,
    DK,
    DV,
    LSE,
    KPM,
    sqb,
    sqh,
    sqm,
    skb,
    skh,
    skn,
    svb,
    svh,
    svn,
    sdob,
    sdoh,
    sdom,
    sdqb,
    sdqh,
    sdqm,
    sdkb,
    sdkh,
    sdkn,
    sdvb,
    sdvh,
    sdvn,
    smb,
    H,
    Lq,
    Lk,
    qk_scale,
    sm_scale,
    HEAD_DIM: tl.constexpr,
    Q_MAIN: tl.constexpr,
    Q_TAIL: tl.constexpr,
    K_MAIN: tl.constexpr,
    K_TAIL: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh = tl.program_id(0)
    off_b = (bh // H).to(tl.int64)
    off_h = (bh % H).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    k_base = K + off_b * skb + off_h * skh
    v_base = V + off_b * svb + off_h * svh

    offs_ka = tl.arange(0, K_MAIN)
    ka = _load_rows(k_base, skn, offs_ka, Lk, offs_d)
    va = _load_rows(v_base, svn, offs_ka, Lk, offs_d)
    keep_a = _keep_keys(KPM, smb, off_b, offs_ka, Lk, HAS_MASK)
    dk_a = tl.zeros([K_MAIN, HEAD_DIM], tl.float32)
    dv_a = tl.zeros([K_MAIN, HEAD_DIM], tl.float32)
    if K_TAIL > 0:
        offs_kb = K_MAIN + tl.arange(0, K_TAIL)
        kb = _load_rows(k_base, skn, offs_kb, Lk, offs_d)
        vb = _load_rows(v_base, svn, offs_kb, Lk, offs_d)
        keep_b = _keep_keys(KPM, smb, off_b, offs_kb, Lk, HAS_MASK)
        dk_b = tl.zeros([K_TAIL, HEAD_DIM], tl.float32)
        dv_b = tl.zeros([K_TAIL, HEAD_DIM], tl.float32)
    else:  # no key tail: placeholders, never read or stored
        kb, vb, keep_b, dk_b, dv_b = ka, va, keep_a, dk_a, dv_a

    q_base = Q + off_b * sqb + off_h * sqh
    do_base = DO + off_b * sdob + off_h * sdoh
    dq_base = DQ + off_b * sdqb + off_h * sdqh
    lse_base = LSE + bh.to(tl.int64) * Lq
    dk_a, dv_a, dk_b, dv_b = _bwd_block(
        q_base,
        sqm,
        do_base,
        sdom,
        dq_base,
        sdqm,
        lse_base,
        tl.arange(0, Q_MAIN),
        offs_d,
        Lq,
        ka,
        va,
        keep_a,
        dk_a,
        dv_a,
        kb,
        vb,
        keep_b,
        dk_b,
        dv_b,
        qk_scale,
        sm_scale,
        K_TAIL > 0,
        PRECISION,
    )
    if Q_TAIL > 0:
        dk_a, dv_a, dk_b, dv_b = _bwd_block(
            q_base,
            sqm,
            do_base,
            sdom,
            dq_base,
            sdqm,
            lse_base,
            Q_MAIN + tl.arange(0, Q_TAIL),
            offs_d,
            Lq,
            ka,
            va,
            keep_a,
            dk_a,
            dv_a,
            kb,
            vb,
            keep_b,
            dk_b,
            dv_b,
            qk_scale,
            sm_scale,
            K_TAIL > 0,
            PRECISION,
        )

    dk_base = DK + off_b * sdkb + off_h * sdkh
    dv_base = DV + off_b * sdvb + off_h * sdvh
    _store_rows(dk_base, sdkn, offs_ka, Lk, offs_d, dk_a * sm_scale)
    _store_rows(dv_base, sdvn, offs_ka, Lk, offs_d, dv_a)
    if K_TAIL > 0:
        _store_rows(dk_base, sdkn, offs_kb, Lk, offs_d, dk_b * sm_scale)
        _store_rows(dv_base, sdvn, offs_kb, Lk, offs_d, dv_b)


def _last_dim_contiguous(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _empty_blhd(like):
    """(B, H, L, d) view of (B, L, H, d) storage: `out.transpose(1, 2).reshape(B, L, H * d)` is then free."""
    b, h, length, d = like.shape
    return torch.empty(b, length, h, d, dtype=like.dtype, device=like.device).transpose(1, 2)


def _meta(q, k, key_padding_mask) -> dict:
    (q_main, q_tail), (k_main, k_tail) = split(q.shape[2]), split(k.shape[2])
    return {
        "HEAD_DIM": q.shape[3],
        "Q_MAIN": q_main,
        "Q_TAIL": q_tail,
        "K_MAIN": k_main,
        "K_TAIL": k_tail,
        "HAS_MASK": key_padding_mask is not None,
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
        "num_stages": 1,
    }


def _mask_arg(q, key_padding_mask):
    if key_padding_mask is None:
        return q, 0
    mask = _last_dim_contiguous(key_padding_mask).view(torch.uint8)
    return mask, mask.stride(0)


def _forward(q, k, v, key_padding_mask, warps):
    b, h, lq, d = q.shape
    o = _empty_blhd(q)
    lse = torch.empty(b * h, lq, dtype=torch.float32, device=q.device)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(d)
    _attn_fwd[(b * h,)](
        q,
        k,
        v,
        o,
        lse,
        mask,
        *q.stride()[:3],
        *k.stride()[:3],
        *v.stride()[:3],
        *o.stride()[:3],
        smb,
        h,
        lq,
        k.shape[2],
        sm_scale * math.log2(math.e),
        num_warps=warps,
        **_meta(q, k, key_padding_mask),
    )
    return o, lse


def _backward(q, k, v, lse, key_padding_mask, do, warps):
    b, h, lq, d = q.shape
    dq, dk, dv = _empty_blhd(q), _empty_blhd(k), _empty_blhd(v)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(d)
    _attn_bwd[(b * h,)](
        q,
        k,
        v,
        do,
        dq,
        dk,
        dv,
        lse,
        mask,
        *q.stride()[:3],
        *k.stride()[:3],
        *v.stride()[:3],
        *do.stride()[:3],
        *dq.stride()[:3],
        *dk.stride()[:3],
        *dv.stride()[:3],
        smb,
        h,
        lq,
        k.shape[2],
        sm_scale * math.log2(math.e),
        sm_scale,
        num_warps=warps,
        **_meta(q, k, key_padding_mask),
    )
    return dq, dk, dv


class FusedAttention(torch.autograd.Function):
    """apply(q, k, v, key_padding_mask, warps=None) on validated, supported inputs (see fused_attention)."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, warps=None):
        q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
        ctx.warps = warps or num_warps(q.shape[2], k.shape[2], q.shape[3])
        o, lse = _forward(q, k, v, key_padding_mask, ctx.warps[0])
        ctx.save_for_backward(q, k, v, lse, key_padding_mask)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, lse, key_padding_mask = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, lse, key_padding_mask, _last_dim_contiguous(do), ctx.warps[1])
        return dq, dk, dv, None, None


def fused_attention(q, k, v, key_padding_mask=None, warps=None):
    """Triton attention, softmax(q k^T / sqrt(d)) v, differentiable in q, k, v.

    q (B, H, Lq, d), k and v (B, H, Lk, d); Lq, Lk in [1, 128]; d in {32, 64, 128}; fp16/bf16 (fp32 accepted,
    computed with exact fp32 dots); CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. key_padding_mask:
    (B, Lk) bool, True = keep; a row with every key masked gives zeros. Returns (B, H, Lq, d) in q's dtype.
    warps: (forward, backward) warps per program instead of `num_warps`'s choice (for benchmarks).
    """
    check_attention_args(q, k, v, key_padding_mask)
    if not triton_supports(q, k, INTERPRETED, allow_fp32=True):
        raise ValueError(
            f"q: expected CUDA (or interpreted CPU) tensors with Lq, Lk <= {MAX_LEN} and d in "
            f"(32, 64, 128), got q {tuple(q.shape)}, k {tuple(k.shape)} {q.dtype} on {q.device}"
        )
    if warps is not None and (len(warps) != 2 or any(w not in (1, 2, 4, 8, 16) for w in warps)):
        raise ValueError(f"warps: expected (forward, backward) powers of two up to 16, got {warps!r}")
    return FusedAttention.apply(q, k, v, key_padding_mask, warps)
