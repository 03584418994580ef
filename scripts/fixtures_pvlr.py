"""fixtures_pvlr.py — PyTorch reference for the PVLR head (trmml/pvlr.c; SPEC §5, docs/pvlr.md).

Written from SPEC §5 in float64, independently of the C formulation:
  - every attention is torch.nn.functional.multi_head_attention_forward with separate q/k/v
    projection weights (PyTorch's own head split, scaling and merge), sequence-first layout,
    no attention dropout; the label side is run per image where it meets the batch (no
    broadcasting trick, unlike the C code);
  - KAP: T^K = normalize(raw CLIP text features), A^K = softmax(T^K T^Kᵀ / 0.05) over rows,
    K = LN(T^K + A^K T^K W_K);
  - CAP encoder layer, IFM (two cross-attentions, gate on [K'; C'], FFN), DMA both directions,
    all post-norm with ReLU FFNs;
  - prediction: S through F.cosine_similarity, softmax over positions of 20 S, global term
    cos(L1_c, v_g) with v_g = token 0 of the dense features, z = s (a + g)/2 + b;
  - ASL as fixtures_loss.py writes it (focusing factors detached), partial setting (γ+ 1, γ− 2)
    for the gradients, the full setting (γ+ 0, γ− 4) as a second loss value.
Small sizes: C=5, d=48, NH=4, HW=9, B=3, FFN hidden 40 (the file stays under 1 MB); dropout off. Every parameter (W_K,
biases, LayerNorms, class bias included) is random so each enters the comparison. Gradients of
dout * L_partial with respect to every learnable tensor, T^C and the dense input come from
autograd.

Tensors "pvlr/p/<name>" are the parameters under their C names, "pvlr/d/<name>" their
gradients; "pvlr/sizes" = [C, d, NH, HW, B, FFN]; "pvlr/args" = [kap_tau, spatial_temp,
ln_eps, asl_clip, asl_eps, temp_max].
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import torch.nn.functional as F
from fixture_io import FixtureWriter

fx = FixtureWriter("pvlr", seed=8)
torch.set_default_dtype(torch.float64)

C, D, NH, HW, B, FFN = 5, 48, 4, 9, 3, 40
KAP_TAU, SPATIAL, LN_EPS, CLIP, EPS, TEMP_MAX = 0.05, 20.0, 1e-5, 0.05, 1e-8, 100.0


def f32(x):
    return torch.tensor(x, dtype=torch.float32).item()


P = {}


def lin(name, i, o):
    P[name + ".weight"] = fx.uniform(-1, 1, o, i) / math.sqrt(i)
    P[name + ".bias"] = fx.uniform(-1, 1, o) / math.sqrt(i)


def norm(name):
    P[name + ".weight"] = 1 + 0.2 * fx.randn(D)
    P[name + ".bias"] = 0.2 * fx.randn(D)


def attn(name):
    for n in ("q", "k", "v", "o"):
        lin(f"{name}.{n}", D, D)


def layer(prefix):
    attn(prefix + ".attn")
    norm(prefix + ".norm1")
    lin(prefix + ".ffn1", D, FFN)
    lin(prefix + ".ffn2", FFN, D)
    norm(prefix + ".norm2")


# Declaration order of trmml/pvlr.c (the C test walks the ParamStore by name, order is free).
P["pvlr.kap.weight"] = 0.1 * fx.randn(D, D)
norm("pvlr.kap_norm")
layer("pvlr.cap")
attn("pvlr.ifm.k2c")
norm("pvlr.ifm.norm_k")
attn("pvlr.ifm.c2k")
norm("pvlr.ifm.norm_c")
lin("pvlr.ifm.gate", 2 * D, D)
lin("pvlr.ifm.ffn1", D, FFN)
lin("pvlr.ifm.ffn2", FFN, D)
norm("pvlr.ifm.norm")
layer("pvlr.t2v")
layer("pvlr.v2t")
P["pvlr.logit_scale"] = torch.tensor([math.log(12.0)])
P["pvlr.class_bias"] = 0.3 * fx.randn(C)
for k in P:
    P[k] = P[k].float().double().requires_grad_(True)

# ---- inputs ------------------------------------------------------------------------------------
kap_raw = fx.randn(C, D)                                    # CLIP features of the fixed prompts
text_ctx = F.normalize(fx.randn(C, D), dim=-1).float().double().requires_grad_(True)  # T^C
dense = fx.randn(B, HW + 1, D).requires_grad_(True)        # token 0 = v_g, 1..HW = Vtok
y = torch.tensor([[1, -1, 0, -1, 1],
                  [-1, 1, -1, 0, -1],
                  [0, -1, 1, 1, -1]], dtype=torch.float64)
y_full = torch.where(y == 0, -torch.ones_like(y), y)


# ---- model -------------------------------------------------------------------------------------
def linear(x, name):
    return x @ P[name + ".weight"].T + P[name + ".bias"]


def ln(x, name):
    return F.layer_norm(x, (D,), P[name + ".weight"], P[name + ".bias"], LN_EPS)


def mha(name, xq, xkv):
    """xq (T,d), xkv (S,d) -> (T,d) through PyTorch's multi-head attention."""
    bias = torch.cat([P[f"{name}.{n}.bias"] for n in ("q", "k", "v")])
    out, _ = F.multi_head_attention_forward(
        xq.unsqueeze(1), xkv.unsqueeze(1), xkv.unsqueeze(1), D, NH, None, bias, None, None, False,
        0.0, P[f"{name}.o.weight"], P[f"{name}.o.bias"], training=False, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=P[f"{name}.q.weight"],
        k_proj_weight=P[f"{name}.k.weight"], v_proj_weight=P[f"{name}.v.weight"])
    return out.squeeze(1)


def ffn(x, prefix):
    return linear(torch.relu(linear(x, prefix + "1")), prefix + "2")


def block(prefix, x, kv):
    x1 = ln(x + mha(prefix + ".attn", x, kv), prefix + ".norm1")
    return ln(x1 + ffn(x1, prefix + ".ffn"), prefix + ".norm2")


TK = F.normalize(kap_raw, dim=-1)
AK = torch.softmax(TK @ TK.T / KAP_TAU, dim=1)
K = ln(TK + (AK @ TK) @ P["pvlr.kap.weight"], "pvlr.kap_norm")
Cx = block("pvlr.cap", text_ctx, text_ctx)
Kp = ln(K + mha("pvlr.ifm.k2c", K, Cx), "pvlr.ifm.norm_k")
Cp = ln(Cx + mha("pvlr.ifm.c2k", Cx, K), "pvlr.ifm.norm_c")
g = torch.sigmoid(linear(torch.cat([Kp, Cp], dim=1), "pvlr.ifm.gate"))
L0 = g * Kp + (1 - g) * Cp
L0 = ln(L0 + ffn(L0, "pvlr.ifm.ffn"), "pvlr.ifm.norm")

V1s, L1s = [], []
for i in range(B):
    vt = dense[i, 1:]
    v1 = block("pvlr.t2v", vt, L0)
    V1s.append(v1)
    L1s.append(block("pvlr.v2t", L0, v1))
V1, L1 = torch.stack(V1s), torch.stack(L1s)
S = F.cosine_similarity(L1.unsqueeze(2), V1.unsqueeze(1), dim=-1)        # (B,C,HW)
w = torch.softmax(SPATIAL * S, dim=-1)
a = (w * S).sum(-1)
gsim = F.cosine_similarity(L1, dense[:, :1, :], dim=-1)                    # (B,C)
s = P["pvlr.logit_scale"].exp().clamp(max=TEMP_MAX)
z = s * (a + gsim) / 2 + P["pvlr.class_bias"]


def asl(u, t, gp, gn):
    p = torch.sigmoid(u)
    pos, neg = (t > 0).double(), (t < 0).double()
    xs_neg = (1 - p + CLIP).clamp(max=1)
    lp = pos * torch.log(p.clamp(min=EPS)) * torch.pow(1 - p, gp).detach()
    lneg = neg * torch.log(xs_neg.clamp(min=EPS)) * torch.pow(1 - xs_neg, gn).detach()
    return -(lp + lneg).sum() / u.shape[0]


loss_partial = asl(z, y, 1.0, 2.0)
loss_full = asl(z, y_full, 0.0, 4.0)
dout = fx.randn(1)[0]
(loss_partial * dout).backward()

# ---- store -------------------------------------------------------------------------------------
cs = "pvlr"
fx.add(f"{cs}/sizes", torch.tensor([C, D, NH, HW, B, FFN], dtype=torch.int64))
fx.add(f"{cs}/args", torch.tensor([f32(x) for x in (KAP_TAU, SPATIAL, LN_EPS, CLIP, EPS,
                                                       TEMP_MAX)]))
for name, v in P.items():
    fx.add(f"{cs}/p/{name}", v.detach())
    fx.add(f"{cs}/d/{name}", v.grad)
for name, v in (("kap_raw", kap_raw), ("text_ctx", text_ctx), ("dense", dense), ("y", y),
                ("y_full", y_full), ("kap_text", TK), ("kap_relation_text", AK @ TK),
                ("kap_out", K), ("cap_out", Cx), ("labels", L0), ("visual", V1), ("label_ctx", L1), ("sim", S), ("logits", z),
                ("loss_partial", loss_partial), ("loss_full", loss_full), ("dout", dout)):
    fx.add(f"{cs}/{name}", v.detach())
fx.add(f"{cs}/dtext_ctx", text_ctx.grad)
fx.add(f"{cs}/ddense", dense.grad)
fx.save()
