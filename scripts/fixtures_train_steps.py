"""fixtures_train_steps.py — five training steps of each method in PyTorch, for the integration
test test/test_train_steps.c (STYLE §6: "five training steps matching a PyTorch run step by
step"), against trmml_train_step (trmml/train.c).

The model is the reduced random CLIP of test/fixtures/clip_model.bin (text tower only; dense
features are fixed random tensors, no image tower) with the dual class-specific prompts of
scripts/fixtures_dualcoop.py and the heads and losses of scripts/fixtures_trmml_head.py and
scripts/fixtures_dualcoop.py (imported, not rewritten). Each step: text features with a tape,
the head and loss on the whole batch in one pass, backward, the optimizer (torch.optim.AdamW
with the temperature outside weight decay, or torch.optim.SGD with momentum) at the step's
learning rate and beta1 / momentum, then the temperature clamp and, for TRM-ML, the bank push
of the batch's top-k pixels. The C trainer splits the same batch into micro-batches and the
text tower into chunks; this script is the unsplit computation it must reproduce. Float64.

Cases (sizes: C 5 classes, batch B 5, HW 9 spatial tokens + token 0, E = text width 32):
    trmml1/    TRM-ML stage 1: L^q + α L^r + β L_KD + γ L_NCE, empty bank at the start
    trmml2/    TRM-ML stage 2: the same plus MMCP pseudo-labels, with prototypes, a pre-filled
               bank and uninitialised thresholds at the start
    dualcoop/  DualCoOp: ASL on σ(z+ - z-), summed, weight 0.015 / ratio
    baseline/  the Table-3 baseline: ASL on s (cos(z0, G+) - cos(z0, G-))
Shared: ids (C, 77) templates, dense (5, B, HW+1, E), y (5, B, C) in {+1, -1, 0}, sizes, args.
Per case: lr, beta1 (5), init/<param> (C names), loss (5), cls/kd/nce (5, TRM-ML), pseudo_pos /
pseudo_neg (5, stage 2), final/<param> after step 5, and for TRM-ML the MMCP state at the
start (bank, fill, write, proto) and after step 5 (bank_after, fill_after, write_after,
theta_after, theta_init_after).

Run with /usr/bin/python3 (Debian's torch); writes test/fixtures/train_steps.bin.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_trmml_head as head  # noqa: E402
from fixture_io import FixtureWriter  # noqa: E402
from fixtures_dualcoop import (N_CTX, baseline_logits, baseline_loss,  # noqa: E402
                               dualcoop_logits, dualcoop_loss, load_clip, template_ids,
                               text_features)

C, B, HW, E, W = 5, 5, 9, 32, 32
STEPS = 5
FFN, HEAD = 24, 20             # decoder FFN and projection-head widths; Eq. 3 MLP hidden = d
QLEN, K = 4, 2                 # bank queue length, pixels per positive
ALPHA, BETA, GAMMA = 1.0, 0.5, 0.5  # O(1) so every term's gradient shows at model tolerance
TAU, ETA = 0.07, 0.7
TEMP_MAX = 100.0
ADAM_BETA2, ADAM_EPS, ADAM_WD = 0.999, 1e-8, 0.1
SGD_MOMENTUM, SGD_WD, RATIO = 0.9, 5e-4, 0.5
# Per-step learning rates (large enough that the five steps move every tensor far beyond the
# tolerance) and beta1 (AdamW, cycled as OneCycle does) / momentum (SGD).
ADAM_LR = [1e-2, 2e-2, 2e-2, 1e-2, 5e-3]
ADAM_BETA1 = [0.95, 0.9, 0.85, 0.9, 0.95]
SGD_LR = [0.2, 0.4, 0.4, 0.2, 0.1]


def f32(x):
    return torch.tensor(x, dtype=torch.float32).double().item()


def optimizer(params, adamw):
    """torch's AdamW (the temperature in a group without weight decay) or SGD."""
    if adamw:
        temp = [p for n, p in params.items() if n in ("carl.logit_scale", "baseline.logit_t")]
        rest = [p for n, p in params.items() if n not in ("carl.logit_scale", "baseline.logit_t")]
        groups = [{"params": rest}] + ([{"params": temp, "weight_decay": 0.0}] if temp else [])
        return torch.optim.AdamW(groups, lr=ADAM_LR[0], betas=(ADAM_BETA1[0], f32(ADAM_BETA2)),
                                 eps=f32(ADAM_EPS), weight_decay=f32(ADAM_WD))
    return torch.optim.SGD(list(params.values()), lr=SGD_LR[0], momentum=f32(SGD_MOMENTUM),
                           weight_decay=f32(SGD_WD))


def run_case(fx, cs, method, model, ids, dense, ys, init, mmcp_state=None):
    """Five steps from `init` (name -> float64 tensor); stores the case's tensors."""
    P = {n: v.clone().requires_grad_(True) for n, v in init.items()}
    adamw = method != "dualcoop"
    opt = optimizer(P, adamw)
    lrs, betas = (ADAM_LR, ADAM_BETA1) if adamw else (SGD_LR, [SGD_MOMENTUM] * STEPS)
    fx.add(f"{cs}/lr", torch.tensor([f32(v) for v in lrs]))
    fx.add(f"{cs}/beta1", torch.tensor([f32(v) for v in betas]))
    for n, v in init.items():
        fx.add(f"{cs}/init/{n}", v)
    st = mmcp_state
    if st is not None:
        for n in ("bank", "fill", "write", "proto"):
            fx.add(f"{cs}/{n}", st[n])
    losses, parts, pseudo_counts = [], [], []
    margin, gap = float("inf"), float("inf")
    for s in range(STEPS):
        y = ys[s]
        gpos, gneg = text_features(model, ids, P["prompt.ctx_pos"], P["prompt.ctx_neg"])
        if method == "trmml":
            f = dense[s][:, 1:]  # DECISION 7: the spatial tokens
            _, _, R, fq, fr = head.carl(P, f)
            scale = head.scale(P, TEMP_MAX)
            uq, ur = head.match(fq, scale, gpos, gneg), head.match(fr, scale, gpos, gneg)
            targets = y
            if st["mmcp_on"]:
                with torch.no_grad():
                    sv, stx = head.similarities(fr, st["bank"], st["fill"], st["proto"])
                    st["theta"], st["theta_init"] = head.update_thresholds(
                        st["theta"], st["theta_init"], sv, stx, y, ETA)
                    pseudo, m = head.pseudo_labels(sv, stx, st["theta"], st["theta_init"], y)
                margin = min(margin, m)
                pseudo_counts.append((int((pseudo > 0).sum()), int((pseudo < 0).sum())))
                targets = torch.where(y != 0, y, pseudo)
            cls = head.asl(uq, targets) + ALPHA * head.asl(ur, targets)
            kd = head.kd(uq, ur)
            nce = head.nce(P, fr, y, st["bank"], st["fill"], gpos, TAU)
            loss = cls + BETA * kd + GAMMA * nce
            parts.append((cls.item(), kd.item(), nce.item()))
        elif method == "dualcoop":
            loss = dualcoop_loss(dualcoop_logits(dense[s], gpos, gneg), y, f32(0.015 / RATIO))
        else:
            loss = baseline_loss(baseline_logits(dense[s], gpos, gneg, P["baseline.logit_t"]), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = f32(lrs[s])
            if adamw:
                g["betas"] = (f32(betas[s]), f32(ADAM_BETA2))
        opt.step()
        with torch.no_grad():
            for n in ("carl.logit_scale", "baseline.logit_t"):
                if n in P:
                    P[n].clamp_(max=math.log(TEMP_MAX))
        if method == "trmml":
            st["bank"], st["fill"], st["write"], g = head.bank_push(
                st["bank"], st["fill"], st["write"], R, f, y, K)
            gap = min(gap, g)
    # Discontinuities the float32 trainer must land on the same side of.
    assert margin > 1e-4, f"{cs}: a similarity within {margin:.2e} of a threshold"
    assert gap > 1e-5, f"{cs}: two region scores within {gap:.2e} of each other at the top-k"
    fx.add(f"{cs}/loss", torch.tensor(losses))
    if parts:
        for i, n in enumerate(("cls", "kd", "nce")):
            fx.add(f"{cs}/{n}", torch.tensor([p[i] for p in parts]))
    if pseudo_counts:
        fx.add(f"{cs}/pseudo_pos", torch.tensor([p[0] for p in pseudo_counts]))
        fx.add(f"{cs}/pseudo_neg", torch.tensor([p[1] for p in pseudo_counts]))
    for n, v in P.items():
        fx.add(f"{cs}/final/{n}", v.detach())
    moved = max(float((P[n].detach() - init[n]).abs().max()) for n in P)
    print(f"  {cs}: loss {' '.join(f'{v:.5f}' for v in losses)}; largest change of a "
          f"parameter {moved:.3f}" + (f"; pseudo +/- {pseudo_counts}" if pseudo_counts else "")
          + (f"; threshold margin {margin:.2e}" if pseudo_counts else "")
          + (f"; top-k gap {gap:.2e}" if method == "trmml" else ""))
    if st is not None:
        fx.add(f"{cs}/bank_after", st["bank"])
        fx.add(f"{cs}/fill_after", st["fill"])
        fx.add(f"{cs}/write_after", st["write"])
        fx.add(f"{cs}/theta_after", st["theta"])
        fx.add(f"{cs}/theta_init_after", st["theta_init"])


def main():
    fx = FixtureWriter("train_steps", seed=7)
    torch.set_default_dtype(torch.float64)
    model = load_clip()

    def unit(*shape):
        return F.normalize(fx.randn(*shape), dim=-1).float().double()

    ids = template_ids(fx)  # names of 1-3 random tokens, C = 5
    dense = fx.randn(STEPS, B, HW + 1, E)
    # Labels: +1 30 %, -1 40 %, unknown 30 %.
    u = fx.uniform(0, 1, STEPS, B, C)
    ys = torch.where(u < 0.3, 1.0, torch.where(u < 0.7, -1.0, 0.0))
    fx.add("ids", ids)
    fx.add("dense", dense)
    fx.add("y", ys)
    fx.add("sizes", torch.tensor([C, B, HW, E, W, STEPS, FFN, HEAD, QLEN, K]))
    fx.add("args", torch.tensor([f32(v) for v in (ALPHA, BETA, GAMMA, TAU, ETA, TEMP_MAX,
                                                     ADAM_BETA2, ADAM_EPS, ADAM_WD, SGD_WD,
                                                     RATIO)]))

    prompts = {"prompt.ctx_pos": fx.randn(C, N_CTX, W, scale=0.3),
               "prompt.ctx_neg": fx.randn(C, N_CTX, W, scale=0.3)}
    carl = head.random_carl(fx, C, E, FFN, E, HEAD)  # Eq. 3 MLP hidden = d

    def empty_state():
        return {"bank": torch.zeros(C, QLEN, E), "fill": torch.zeros(C, dtype=torch.int64),
                "write": torch.zeros(C, dtype=torch.int64), "proto": torch.zeros(C, E),
                "theta": torch.zeros(4, C), "theta_init": torch.zeros(4, C)}

    print("train_steps:")
    st1 = empty_state()
    st1["mmcp_on"] = False
    run_case(fx, "trmml1", "trmml", model, ids, dense, ys, {**prompts, **carl}, st1)

    # Stage 2: queues 0, 1, 2, 4 full (4 wrapped once: write pointer 1), queue 3 half full.
    st2 = empty_state()
    st2["mmcp_on"] = True
    st2["fill"] = torch.tensor([4, 4, 4, 2, 4])
    st2["write"] = torch.tensor([0, 0, 0, 2, 1])
    for c in range(C):
        for j in range(int(st2["fill"][c])):
            st2["bank"][c, j] = unit(1, E)[0]
    st2["proto"] = unit(C, E)
    run_case(fx, "trmml2", "trmml", model, ids, dense, ys, {**prompts, **carl}, st2)

    run_case(fx, "dualcoop", "dualcoop", model, ids, dense, ys, prompts)
    run_case(fx, "baseline", "baseline", model, ids, dense, ys,
             {**prompts, "baseline.logit_t": torch.tensor([f32(math.log(30.0))])})
    fx.save()


if __name__ == "__main__":
    main()
