"""bench_torch_pretrain.py — PyTorch side of `trmml bench pretrain` (tools/bench_pretrain.c).

The embedded default's small CLIP (fixtures_clip_model.py's CLIP classes at vision width 32,
layers (1,1,1,1), grid 2 (64 px), text width 128 with 2 heads and 4 blocks, vocabulary 49408,
E = 128), one training step at batch 128: training-mode forward of both towers, CLIP's symmetric
loss, backward, gradient-norm clipping at 1, AdamW. Same thread count as trmml.

    /usr/bin/python3 scripts/bench_torch_pretrain.py THREADS [--quick]
Prints `bench <TAB> pretrain small step b128 <TAB> ms <TAB>` (median of the timed steps).
"""
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_clip_model import CLIP  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
quick = "--quick" in sys.argv
torch.set_num_threads(threads)
torch.manual_seed(0)
B = 16 if quick else 128
model = CLIP(layers=(1, 1, 1, 1), vwidth=32, grid=2, embed_dim=128, context=77, vocab=49408,
             twidth=128, theads=2, tlayers=4).train()
for p in model.parameters():
    if p.dim() >= 2:
        torch.nn.init.normal_(p, std=0.02)
with torch.no_grad():
    model.logit_scale.fill_(math.log(1 / 0.07))
decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
images = torch.randn(B, 3, 64, 64)
ids = torch.zeros(B, 77, dtype=torch.int64)
ids[:, 0] = 49406
ids[:, 1:19] = torch.randint(1, 40000, (B, 18))
ids[:, 19] = 49407
target = torch.arange(B)


def step():
    opt.zero_grad(set_to_none=False)
    img = F.normalize(model.visual(images)[0], dim=-1)
    # The text tower on the first max(eot) + 1 positions, as trmml runs it (causal mask: the
    # pooled features are identical).
    x = model.token_embedding(ids[:, :20])
    txt = F.normalize(model.encode_embedded(x, ids[:, :20].argmax(dim=-1)), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(max=math.log(100))


step()
times, t_end = [], time.perf_counter() + (0.5 if quick else 8.0)
while len(times) < 3 or time.perf_counter() < t_end:
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
ms = 1e3 * statistics.median(times)
print(f"pretrain small step b{B}: {ms:.1f} ms, {B / ms * 1e3:.1f} images/s", file=sys.stderr)
print(f"meta\ttorch_version\t{torch.__version__}")
print(f"bench\tpretrain small step b{B}\t{ms:.2f}\t")
