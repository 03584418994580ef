"""fixtures_pretrain.py — one contrastive pretraining step of a reduced CLIP (clip/pretrain.c).

The model is fixtures_clip_model.py's CLIP (the same classes) at vision width 2 (attention-pool
width 64, one head, grid 2: 64 px; small enough for a fixture that also holds every gradient), text width 32 (2 heads, 2 layers, vocabulary 64), E = 32,
with that script's random weights and non-trivial BatchNorm statistics, in TRAINING mode: every
BatchNorm normalises with the batch statistics and updates its running statistics (momentum
0.1, unbiased variance). The loss is CLIP's:

    I, T = normalise(visual(images)), normalise(encode_text(ids))      (B, E)
    logits = exp(logit_scale) * I @ T.T
    loss = (cross_entropy(logits, arange(B)) + cross_entropy(logits.T, arange(B))) / 2

Stored: sd/<key> (the weights before the step), step/images (4, 3, 64, 64), step/ids (4, 77),
step/loss, grad/<key> for every parameter, after/<bn>.running_mean|running_var for every
BatchNorm. Everything computed in float64. Writes test/fixtures/pretrain.bin.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import FixtureWriter  # noqa: E402
from fixtures_clip_model import CLIP, init_weights  # noqa: E402


def main():
    fx = FixtureWriter("pretrain", seed=20261122)
    V, T, B = 64, 77, 4
    model = CLIP(layers=(1, 1, 1, 1), vwidth=2, grid=2, embed_dim=32, context=T, vocab=V,
                 twidth=32, theads=2, tlayers=2).double()
    init_weights(model, fx.gen)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)  # exp = 12.2: a loss that is neither flat nor saturated
    for k, v in model.state_dict().items():
        fx.add(f"sd/{k}", v.clone())  # BN updates its buffers in place during the step

    images = fx.randn(B, 3, 64, 64)
    sot, eot = V - 2, V - 1
    ids = torch.zeros(B, T, dtype=torch.int64)
    for row, n in enumerate((3, 8, 5, 11)):
        ids[row, 0] = sot
        ids[row, 1:n + 1] = fx.randint(1, sot, n)
        ids[row, n + 1] = eot
    model.train()
    img = F.normalize(model.visual(images)[0], dim=-1)
    txt = F.normalize(model.encode_text(ids), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    target = torch.arange(B)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    loss.backward()
    fx.add("step/images", images)
    fx.add("step/ids", ids)
    fx.add("step/loss", loss.detach())
    for k, p in model.named_parameters():
        fx.add(f"grad/{k}", p.grad)
    for k, v in model.state_dict().items():
        if "running_" in k:
            fx.add(f"after/{k}", v)
    fx.save()


if __name__ == "__main__":
    main()
