"""bench_torch_train.py — PyTorch timings of one TRM-ML training iteration, the rows of
`trmml bench train` (tools/bench_train.c) that have a PyTorch counterpart.

Usage: /usr/bin/python3 scripts/bench_torch_train.py THREADS [--quick]
Prints TSV rows `bench <TAB> key <TAB> ms <TAB> 0` with tools/bench_train.c's keys.

The same iteration as tools/bench_train.c, in float32 on torch.set_num_threads(THREADS): the
RN101-size CLIP of scripts/bench_torch.py with random weights, batch 32 of 448 px (--quick: 2 of
224, C = 20 only), C = 20 and 80 classes, dual class-specific prompts of 16 contexts through
scripts/fixtures_dualcoop.text_features (templates truncated after the last end of text, as
trmml runs them), TRM-ML's head and losses from scripts/fixtures_trmml_head.py (CARL in the plain
form, both branches, KD, InfoNCE with a full bank of 256 entries per class through nce_batched;
stage 1, no pseudo-labels), torch.optim.AdamW (no weight decay on the temperature), the
temperature clamp and the bank push. The text features are detached before the head, so the
parts time separately exactly as trmml splits them:
    text fwd+bwd    the tower's forward with autograd, and its backward from dL/dG
    head fwd+bwd    CARL, matching, losses, backward into the head and dL/dG
    update          AdamW step, clamp, bank push
    iteration       image tower (no grad) + the three parts
Each is the median of 3 timed iterations after one warm-up (1 with --quick). Labels as in
tools/bench_train.c: positive where (b*5 + c) % (C // 3) == 0, known where b*3 + c is even.
"""
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_trmml_head as head  # noqa: E402
from bench_torch import clip_model, report  # noqa: E402
from fixtures_dualcoop import text_features  # noqa: E402

SOT, EOT, X, PERIOD, N_CTX = 49406, 49407, 343, 269, 16
D, FFN, HEAD, QLEN, K = 512, 2048, 2048, 256, 4
ALPHA, BETA, GAMMA, TAU, TEMP_MAX = 1.0, 0.05, 0.01, 0.07, 100.0


def templates(C):
    """The ids of tools/bench_train.c: [SOT][x * 16][1..5 name ids][.][EOT], cut after the last
    end of text."""
    ids = torch.zeros(C, 77, dtype=torch.int64)
    for c in range(C):
        row = [SOT] + [X] * N_CTX + [1000 + 37 * c + k for k in range(1 + c % 5)] + [PERIOD, EOT]
        ids[c, :len(row)] = torch.tensor(row)
    return ids[:, :int(ids.argmax(dim=-1).max()) + 1]


def labels(B, C):
    every = max(C // 3, 1)
    y = torch.zeros(B, C)
    for b in range(B):
        for c in range(C):
            if (b * 3 + c) % 2 == 0:
                y[b, c] = 1.0 if (b * 5 + c) % every == 0 else -1.0
    return y


def head_params(C, gen):
    def uniform(*shape, bound):
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound

    P = {"carl.queries": torch.nn.functional.normalize(torch.randn(C, D, generator=gen), dim=-1)}
    for name, i, o in (("attn.q", D, D), ("attn.k", D, D), ("attn.v", D, D), ("attn.o", D, D),
                       ("ffn1", D, FFN), ("ffn2", FFN, D), ("mlp1", D, D), ("mlp2", D, D),
                       ("head1", D, HEAD), ("head2", HEAD, D)):
        P[f"carl.{name}.weight"] = uniform(o, i, bound=1 / math.sqrt(i))
        P[f"carl.{name}.bias"] = uniform(o, bound=1 / math.sqrt(i))
    for n in ("ln1", "ln2"):
        P[f"carl.{n}.weight"] = torch.ones(D)
        P[f"carl.{n}.bias"] = torch.zeros(D)
    P["carl.logit_scale"] = torch.tensor([math.log(100.0)])
    return {n: v.requires_grad_(True) for n, v in P.items()}


def iteration_parts(model, ids, dense, y, P, opt, state):
    """One iteration after the image tower; returns (text, head, update) seconds."""
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    gpos, gneg = text_features(model, ids, P["prompt.ctx_pos"], P["prompt.ctx_neg"])
    t1 = time.perf_counter()
    gp, gn = gpos.detach().requires_grad_(True), gneg.detach().requires_grad_(True)
    f = dense[:, 1:]
    _, _, R, fq, fr = head.carl(P, f)
    s = head.scale(P, TEMP_MAX)
    uq, ur = head.match(fq, s, gp, gn), head.match(fr, s, gp, gn)
    loss = (head.asl(uq, y) + ALPHA * head.asl(ur, y) + BETA * head.kd(uq, ur)
            + GAMMA * head.nce_batched(P, fr, y, state["bank"], state["fill"], gp, TAU))
    loss.backward()
    t2 = time.perf_counter()
    torch.autograd.backward([gpos, gneg], [gp.grad, gn.grad])
    t3 = time.perf_counter()
    opt.step()
    with torch.no_grad():
        P["carl.logit_scale"].clamp_(max=math.log(TEMP_MAX))
    state["bank"], state["fill"], state["write"], _ = head.bank_push(
        state["bank"], state["fill"], state["write"], R, f, y, K)
    t4 = time.perf_counter()
    assert math.isfinite(loss.item())
    return (t1 - t0) + (t3 - t2), t2 - t1, t4 - t3


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: bench_torch_train.py THREADS [--quick]")
    torch.set_num_threads(int(sys.argv[1]))
    quick = "--quick" in sys.argv[2:]
    print(f"meta\ttorch_version\t{torch.__version__}", flush=True)
    B, S, reps, classes = (2, 224, 1, (20,)) if quick else (32, 448, 3, (20, 80))
    gen = torch.Generator().manual_seed(3)
    model = clip_model("rn101")
    images = torch.rand((B, 3, S, S), generator=gen) * 2 - 1
    times = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            _, dense = model.encode_image(images)
        if i:
            times.append(time.perf_counter() - t0)
    img = sorted(times)[len(times) // 2]
    report(f"train rn101 img {S} b{B}", img, 0.0)
    for C in classes:
        ids = templates(C)
        P = head_params(C, gen)
        P["prompt.ctx_pos"] = (torch.randn(C, N_CTX, 512, generator=gen) * 0.02).requires_grad_(True)
        P["prompt.ctx_neg"] = (torch.randn(C, N_CTX, 512, generator=gen) * 0.02).requires_grad_(True)
        rest = [p for n, p in P.items() if n != "carl.logit_scale"]
        opt = torch.optim.AdamW([{"params": rest},
                                 {"params": [P["carl.logit_scale"]], "weight_decay": 0.0}],
                                lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
        bank = torch.nn.functional.normalize(torch.randn(C, QLEN, D, generator=gen), dim=-1)
        state = {"bank": bank, "fill": torch.full((C,), QLEN), "write": torch.zeros(C, dtype=torch.int64)}
        y = labels(B, C)
        parts = []
        for i in range(reps + 1):
            p = iteration_parts(model, ids, dense, y, P, opt, state)
            if i:
                parts.append(p)

        def med(k):
            v = sorted(p[k] for p in parts)
            return v[len(v) // 2]

        report(f"train rn101 c{C} text fwd+bwd", med(0), 0.0)
        report(f"train rn101 c{C} head fwd+bwd", med(1), 0.0)
        report(f"train rn101 c{C} update", med(2), 0.0)
        steps = sorted(sum(p) for p in parts)
        report(f"train rn101 c{C} iteration", img + steps[len(steps) // 2], 0.0)


if __name__ == "__main__":
    main()
