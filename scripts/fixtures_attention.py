"""fixtures_attention.py — PyTorch references for tensor/ops/attention.c.

Attention is written out by hand, softmax(q kᵀ * scale + mask) v in float64 (torch 1.13 has no
F.scaled_dot_product_attention), with the causal mask as an additive −∞ above the diagonal.
Cases: odd sizes causal and not, a value head size different from the query/key one, a single
query (CLIP attention pooling, reduced from NH=32 S=50 HS=64), a CLIP-text-like causal case
(reduced from NH=8 T=77 HS=64), large scores (softmax stability), and the head split/merge
copies. Each attention case stores its float32 scale, its causal flag and the probabilities P.
"""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch
from fixture_io import FixtureWriter

fx = FixtureWriter("attention", seed=0)


def attention_probs(q, k, causal, scale):
    """P = softmax(q kᵀ * scale + mask) over the keys."""
    scores = q @ k.transpose(-1, -2) * scale
    if causal:
        t, s = scores.shape[-2], scores.shape[-1]
        mask = torch.triu(torch.ones(t, s, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def attention_case(case, B, NH, T, S, HS, causal, scale, HSV=None, qscale=1.0):
    HSV = HS if HSV is None else HSV
    scale = float(np.float32(scale))  # the C side receives a float
    q = (fx.randn(B, NH, T, HS) * qscale).float().double()
    k = fx.randn(B, NH, S, HS)
    v = fx.randn(B, NH, S, HSV)
    with torch.no_grad():
        probs = attention_probs(q, k, causal, scale)
    fx.op_case(case, lambda q, k, v: attention_probs(q, k, causal, scale) @ v,
               {"q": q, "k": k, "v": v},
               extra={"scale": torch.tensor([scale], dtype=torch.float64),
                      "causal": torch.tensor([int(causal)], dtype=torch.int64),
                      "probs": probs})


attention_case("odd", 2, 3, 5, 7, 4, False, 0.37)
attention_case("odd_causal", 2, 3, 5, 5, 4, True, 0.5)
attention_case("value_hs", 2, 3, 5, 7, 4, False, 0.5, HSV=6)
attention_case("single_query", 2, 4, 1, 50, 8, False, 8 ** -0.5)
attention_case("clip_text", 1, 8, 17, 17, 16, True, 16 ** -0.5)
# Scores of order ±100: exp() overflows in float32 without the max subtraction.
attention_case("large_scores", 1, 2, 3, 6, 4, False, 1.0, qscale=30.0)

x = fx.randn(2, 5, 12)
fx.op_case("split", lambda x: x.view(2, 5, 3, 4).permute(0, 2, 1, 3).contiguous(), {"x": x})
qkv = fx.randn(2, 5, 36)  # fused (B,T,3C): take the k third, columns 12..23, as 3 heads of 4
fx.op_case("split_cols", lambda x: x[:, :, 12:24].reshape(2, 5, 3, 4).permute(0, 2, 1, 3).contiguous(),
           {"x": qkv})
h = fx.randn(2, 3, 5, 4)
fx.op_case("merge", lambda x: x.permute(0, 2, 1, 3).reshape(2, 5, 12), {"x": h})


def packed(q, kv, groups, NH, HS, cols, last, scale):
    """tensor_attention_packed by parts: each sequence sliced out of the packed rows, its heads
    read from the column ranges cols = (q, k, v), attended, merged, concatenated."""
    C = NH * HS
    outs, qr, kr = [], 0, 0
    for n, L in groups:
        for _ in range(n):
            tq = 1 if last else L
            heads = lambda x, r, t, c: x[r:r + t, c:c + C].reshape(t, NH, HS).permute(1, 0, 2)
            qs, ks, vs = heads(q, qr, tq, cols[0]), heads(kv, kr, L, cols[1]), heads(kv, kr, L, cols[2])
            P = attention_probs(qs, ks, not last, scale)
            outs.append((P @ vs).permute(1, 0, 2).reshape(tq, C))
            qr, kr = qr + tq, kr + L
    return torch.cat(outs)


def packed_case(case, groups, NH, HS, cols, last, scale, Wq, Wkv):
    scale = float(np.float32(scale))
    R = sum(n * L for n, L in groups)
    meta = {"groups": torch.tensor(groups, dtype=torch.int64).reshape(-1),
            "heads": torch.tensor([NH, HS, *cols, int(last)], dtype=torch.int64),
            "scale": torch.tensor([scale], dtype=torch.float64)}
    if last:
        q, kv = fx.randn(sum(n for n, _ in groups), Wq), fx.randn(R, Wkv)
        fx.op_case(case, lambda q, kv: packed(q, kv, groups, NH, HS, cols, True, scale),
                   {"q": q, "kv": kv}, extra=meta)
    else:
        qkv = fx.randn(R, Wq)
        fx.op_case(case, lambda qkv: packed(qkv, qkv, groups, NH, HS, cols, False, scale),
                   {"qkv": qkv}, extra=meta)


# Sequences of four lengths packed row after row (CLIP's text tower, by length): a fused
# (R, 3C) projection with every row a causal query, and the last rows only against a separate
# keys-and-values matrix at column offsets.
packed_case("packed_fused", [(2, 3), (1, 5), (3, 4), (1, 1)], 2, 4, (0, 8, 16), False, 0.41, 24, 24)
packed_case("packed_last", [(2, 3), (1, 5), (3, 4), (1, 1)], 2, 4, (1, 2, 10), True, 0.5, 9, 18)
fx.save()
