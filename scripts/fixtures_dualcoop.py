"""fixtures_dualcoop.py — reference numbers for the prompt learner, the DualCoOp head and the
Table-3 baseline head (test/test_prompt.c, test/test_dualcoop.c).

A PyTorch implementation written from SPEC §3 and §9.3, run in float64 on the reduced random CLIP
of test/fixtures/clip_model.bin (its state dict is read from that file and loaded into the model
classes of scripts/fixtures_clip_model.py, so both fixtures describe the same weights). The
reduced text tower has vocabulary 64 (SOT 62, EOT 63) and width 32, so the templates are built
from ids directly instead of the real tokenizer:
    [SOT][PLACEHOLDER x 16][name ids][PERIOD][EOT][0 ...]     (77 columns)
Stored (float32 / int64):
    prompt/ids (C, 77), prompt/eot (C), prompt/ctx_pos, prompt/ctx_neg (C, 16, 32)
    prompt/gpos, prompt/gneg (C, E)            L2-normalised text features G+, G-
    dual/dense (B, T, E), dual/targets (B, C), dual/loss_w
    dual/logits (B, 2, C), dual/probs (B, C), dual/loss []
    dual/dctx_pos, dual/dctx_neg, dual/ddense  gradients of the loss
    agnostic/...                               the same with shared contexts (16, 32)
    head/..., head_real/...                    the head alone: dense, gpos, gneg -> logits
                                               (B, 2, C) with a random dout and all gradients
    baseline/t, baseline/logits, baseline/loss, baseline/dctx_pos, baseline/dctx_neg, baseline/dt
Run with /usr/bin/python3 (Debian's torch); writes test/fixtures/dualcoop.bin.
"""
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FIXTURE_DIR, MAGIC, FixtureWriter  # noqa: E402
from fixtures_clip_model import CLIP  # noqa: E402

N_CTX, SOT, EOT, PLACEHOLDER, PERIOD = 16, 62, 63, 5, 11


def read_fixture(path):
    """name -> tensor, the layout of test/fixture.h."""
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == MAGIC, path
        _, count = struct.unpack("<II", f.read(8))
        for _ in range(count):
            (nlen,) = struct.unpack("<H", f.read(2))
            name = f.read(nlen).decode()
            code, ndim = struct.unpack("<BB", f.read(2))
            shape = struct.unpack(f"<{ndim}q", f.read(8 * ndim))
            n = math.prod(shape)
            if code == 0:
                t = torch.frombuffer(bytearray(f.read(4 * n)), dtype=torch.float32).double()
            else:
                t = torch.frombuffer(bytearray(f.read(8 * n)), dtype=torch.int64)
            out[name] = t.reshape(shape)
    return out


def load_clip():
    sd = read_fixture(os.path.join(FIXTURE_DIR, "clip_model.bin"))
    model = CLIP(layers=(1, 1, 1, 1), vwidth=8, grid=2, embed_dim=32, context=77, vocab=64,
                 twidth=32, theads=2, tlayers=2).double().eval()
    model.load_state_dict({k[3:]: v for k, v in sd.items() if k.startswith("sd/")})
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---- the method (SPEC §3, §9.3) -------------------------------------------------------------

def text_features(model, ids, ctx_pos, ctx_neg):
    """G+, G- (C, E): the template embedding with rows 1..16 replaced by the contexts."""
    emb = model.token_embedding(ids)
    C = ids.shape[0]
    eot = ids.argmax(dim=-1)

    def encode(ctx):
        ctx = ctx if ctx.dim() == 3 else ctx.unsqueeze(0).expand(C, -1, -1)
        x = torch.cat([emb[:, :1], ctx, emb[:, 1 + N_CTX:]], dim=1)
        return F.normalize(model.encode_embedded(x, eot), dim=-1)

    return encode(ctx_pos), encode(ctx_neg)


def dualcoop_logits(dense, gpos, gneg):
    """(B, 2, C): S = 20 z G^T, w = softmax_t(S+), z = 5 sum_t w S."""
    z = F.normalize(dense, dim=-1)
    sp = 20 * z @ gpos.t()
    sn = 20 * z @ gneg.t()
    w = sp.softmax(dim=1)
    return torch.stack([5 * (w * sn).sum(1), 5 * (w * sp).sum(1)], dim=1)


def asl(p, targets, gp, gn, clip, eps):
    """Per-entry ASL (SPEC §2.1), focusing factors detached; unknown entries give 0."""
    pos, neg = (targets > 0).double(), (targets < 0).double()
    xs_neg = (1 - p + clip).clamp(max=1)
    lp = pos * torch.log(p.clamp(min=eps)) * torch.pow(1 - p, gp).detach()
    ln = neg * torch.log(xs_neg.clamp(min=eps)) * torch.pow(1 - xs_neg, gn).detach()
    return -(lp + ln)


def dualcoop_loss(logits, targets, loss_w):
    p = torch.sigmoid(logits[:, 1] - logits[:, 0])
    return loss_w * asl(p, targets, 1.0, 2.0, 0.05, 1e-6).sum()


def baseline_logits(dense, gpos, gneg, t):
    s = t.clamp(max=math.log(100.0)).exp()
    z0 = F.normalize(dense[:, 0], dim=-1)
    return s * (z0 @ F.normalize(gpos, dim=-1).t() - z0 @ F.normalize(gneg, dim=-1).t())


def baseline_loss(logits, targets):
    return asl(torch.sigmoid(logits), targets, 1.0, 2.0, 0.05, 1e-8).sum() / logits.shape[0]


# ---- cases ----------------------------------------------------------------------------------

def labels(fx, *shape):
    return (fx.randint(0, 3, *shape) - 1).double()  # +1, -1, 0 in equal parts


def template_ids(fx, name_lengths=(1, 2, 3, 1, 2)):
    """Prompt templates [SOT][X x N_CTX][name][.][EOT], one per class, with class names of the
    given numbers of random tokens: (C, 77) ids."""
    ids = torch.zeros(len(name_lengths), 77, dtype=torch.int64)
    for c, n in enumerate(name_lengths):
        ids[c, 0] = SOT
        ids[c, 1:1 + N_CTX] = PLACEHOLDER
        ids[c, 1 + N_CTX:1 + N_CTX + n] = fx.randint(1, SOT, n)
        ids[c, 1 + N_CTX + n] = PERIOD
        ids[c, 2 + N_CTX + n] = EOT
    return ids


def main():
    fx = FixtureWriter("dualcoop", seed=20240612)
    model = load_clip()
    C, B, T, E, W = 5, 3, 10, 32, 32

    ids = template_ids(fx)
    fx.add("prompt/ids", ids)
    fx.add("prompt/eot", ids.argmax(dim=-1))

    ctx_pos = fx.randn(C, N_CTX, W, scale=0.3).requires_grad_(True)
    ctx_neg = fx.randn(C, N_CTX, W, scale=0.3).requires_grad_(True)
    gpos, gneg = text_features(model, ids, ctx_pos, ctx_neg)
    fx.add("prompt/ctx_pos", ctx_pos)
    fx.add("prompt/ctx_neg", ctx_neg)
    fx.add("prompt/gpos", gpos)
    fx.add("prompt/gneg", gneg)

    # DualCoOp end to end: contexts -> text tower -> head -> weighted ASL
    dense = fx.randn(B, T, E).requires_grad_(True)
    targets = labels(fx, B, C)
    ratio = 0.4
    loss_w = torch.tensor(0.015 / ratio, dtype=torch.float32).double()  # C computes it in float
    logits = dualcoop_logits(dense, gpos, gneg)
    loss = dualcoop_loss(logits, targets, loss_w)
    loss.backward(retain_graph=True)
    fx.add("dual/dense", dense)
    fx.add("dual/targets", targets)
    fx.add("dual/ratio", torch.tensor(ratio))
    fx.add("dual/logits", logits)
    fx.add("dual/probs", torch.sigmoid(logits[:, 1] - logits[:, 0]))
    fx.add("dual/loss", loss)
    fx.add("dual/dctx_pos", ctx_pos.grad)
    fx.add("dual/dctx_neg", ctx_neg.grad)
    fx.add("dual/ddense", dense.grad)

    # Table-3 baseline on the same prompts and features
    ctx_pos.grad = ctx_neg.grad = None
    t = torch.tensor(math.log(100.0) - 0.25, dtype=torch.float32).double().requires_grad_(True)
    u = baseline_logits(dense.detach(), gpos, gneg, t)
    bl = baseline_loss(u, targets)
    bl.backward()
    fx.add("baseline/t", t)
    fx.add("baseline/logits", u)
    fx.add("baseline/loss", bl)
    fx.add("baseline/dctx_pos", ctx_pos.grad)
    fx.add("baseline/dctx_neg", ctx_neg.grad)
    fx.add("baseline/dt", t.grad)

    # Class-agnostic contexts (16, W), shared by every class
    apos = fx.randn(N_CTX, W, scale=0.3).requires_grad_(True)
    aneg = fx.randn(N_CTX, W, scale=0.3).requires_grad_(True)
    gp, gn = text_features(model, ids, apos, aneg)
    aloss = dualcoop_loss(dualcoop_logits(dense.detach(), gp, gn), targets, loss_w)
    aloss.backward()
    fx.add("agnostic/ctx_pos", apos)
    fx.add("agnostic/ctx_neg", aneg)
    fx.add("agnostic/gpos", gp)
    fx.add("agnostic/gneg", gn)
    fx.add("agnostic/loss", aloss)
    fx.add("agnostic/dctx_pos", apos.grad)
    fx.add("agnostic/dctx_neg", aneg.grad)

    # The head alone, odd and realistic shapes
    for case, (b, t_, c, e) in (("head", (2, 7, 5, 32)), ("head_real", (4, 50, 20, 64))):
        fx.op_case(case, dualcoop_logits,
                   {"dense": fx.randn(b, t_, e),
                    "gpos": F.normalize(fx.randn(c, e), dim=-1).float().double(),
                    "gneg": F.normalize(fx.randn(c, e), dim=-1).float().double()})
    fx.save()


if __name__ == "__main__":
    main()
