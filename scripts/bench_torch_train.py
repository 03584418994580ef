"""bench_torch_train.py — PyTorch timings of one TRM-ML training iteration, the rows of
`trmml bench train` (tools/bench_train.c) that have a PyTorch counterpart.

Usage: /usr/bin/python3 scripts/bench_torch_train.py THREADS [--quick] [--device cuda] [--classes C]
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
    step            the three parts: an iteration from the feature cache
    iteration       image tower (no grad) + the three parts: an iteration from the images
Each is the median of 3 timed iterations after one warm-up (1 with --quick). Labels as in
tools/bench_train.c: positive where (b*5 + c) % (C // 3) == 0, known where b*3 + c is even.
--classes C times only that class count (20 or 80).

--device cuda runs it on the GPU against `trmml --device cuda bench train` (scripts/gpu-check.sh):
everything is drawn on the CPU with the same generator and moved there; every clock reading is
preceded by torch.cuda.synchronize(); TF32 is off and cudnn.benchmark on (as scripts/bench_torch.py
--device cuda); AdamW runs fused (fused=True, its fastest CUDA implementation); and the bank push is
bank_push_gpu below, the same FIFO writes without a Python loop over (image, class) pairs (each of
those would wait for the GPU). The synchronisation at each part's boundary costs microseconds; trmml
reports only `step` and `iteration` on a GPU (its parts are not synchronised), so only those rows
have a ratio there.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_trmml_head as head  # noqa: E402
import bench_torch  # noqa: E402
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


def bank_push_gpu(bank, fill, write, R, f, y, k):
    """head.bank_push without Python loops (the GPU's version; the same bank, fill and write):
    class c receives, in order of image then rank j < k, the normalised features at the k
    largest R of each image where y = 1; the t-th of them goes to slot (write[c] + t) % len, so
    when a class receives more than len vectors in one push only its last len land."""
    qlen = bank.shape[1]
    with torch.no_grad():
        top = torch.topk(R, k, dim=-1).indices                          # (B, C, k)
        positive = y == 1
        rank = positive.long().cumsum(0) - 1                            # (B, C): among class c
        count = positive.sum(0) * k                                     # vectors per class
        i, c = positive.nonzero(as_tuple=True)
        t = rank[i, c][:, None] * k + torch.arange(k, device=R.device)  # (P, k) push order
        keep = t >= (count[c][:, None] - qlen)                          # the last qlen only
        vec = F.normalize(f[i[:, None], top[i, c]], dim=-1)             # (P, k, d)
        cls = c[:, None].expand_as(t)
        slot = (write[c][:, None] + t) % qlen
        bank = bank.clone()
        bank[cls[keep], slot[keep]] = vec[keep]
        write = (write + count) % qlen
        fill = torch.clamp(fill + count, max=qlen)
    return bank, fill, write, None


def check_bank_push_gpu():
    """bank_push_gpu equals head.bank_push on a small case that wraps its queues (CPU, ms)."""
    gen = torch.Generator().manual_seed(9)
    B, C, HW, d, qlen, k = 5, 3, 7, 4, 6, 2
    y = torch.tensor([[1, -1, 0], [1, 1, 0], [0, 1, 1], [1, 1, -1], [1, 0, 1]], dtype=torch.float32)
    R, f = torch.rand(B, C, HW, generator=gen), torch.randn(B, HW, d, generator=gen)
    bank = torch.randn(C, qlen, d, generator=gen)
    fill, write = torch.tensor([6, 2, 0]), torch.tensor([1, 2, 0])
    want = head.bank_push(bank, fill, write, R, f, y, k)
    got = bank_push_gpu(bank, fill, write, R, f, y, k)
    for w, g in zip(want[:3], got[:3]):
        assert torch.equal(w, g), "bench_torch_train: bank_push_gpu differs from bank_push"


def clock():
    """Seconds, read after the GPU has finished its queued work (bench_torch.clock)."""
    return bench_torch.clock()


def iteration_parts(model, ids, dense, y, P, opt, state):
    """One iteration after the image tower; returns (text, head, update) seconds."""
    t0 = clock()
    opt.zero_grad(set_to_none=True)
    gpos, gneg = text_features(model, ids, P["prompt.ctx_pos"], P["prompt.ctx_neg"])
    t1 = clock()
    gp, gn = gpos.detach().requires_grad_(True), gneg.detach().requires_grad_(True)
    f = dense[:, 1:]
    _, _, R, fq, fr = head.carl(P, f)
    s = head.scale(P, TEMP_MAX)
    uq, ur = head.match(fq, s, gp, gn), head.match(fr, s, gp, gn)
    loss = (head.asl(uq, y) + ALPHA * head.asl(ur, y) + BETA * head.kd(uq, ur)
            + GAMMA * head.nce_batched(P, fr, y, state["bank"], state["fill"], gp, TAU))
    loss.backward()
    t2 = clock()
    torch.autograd.backward([gpos, gneg], [gp.grad, gn.grad])
    t3 = clock()
    opt.step()
    with torch.no_grad():
        P["carl.logit_scale"].clamp_(max=math.log(TEMP_MAX))
    push = bank_push_gpu if dense.is_cuda else head.bank_push
    state["bank"], state["fill"], state["write"], _ = push(
        state["bank"], state["fill"], state["write"], R, f, y, K)
    t4 = clock()
    assert math.isfinite(loss.item())
    return (t1 - t0) + (t3 - t2), t2 - t1, t4 - t3


def option(name, default):
    """The value after --name on the command line, or default."""
    if name not in sys.argv[2:]:
        return default
    i = sys.argv.index(name)
    if i + 1 >= len(sys.argv):
        sys.exit(f"bench_torch_train.py: {name} needs a value")
    return sys.argv[i + 1]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: bench_torch_train.py THREADS [--quick] [--device cpu|cuda] [--classes C]")
    torch.set_num_threads(int(sys.argv[1]))
    quick = "--quick" in sys.argv[2:]
    bench_torch.use_device(option("--device", "cpu"))
    dev = bench_torch.DEVICE
    print(f"meta\ttorch_version\t{torch.__version__}", flush=True)
    B, S, reps, classes = (2, 224, 1, (20,)) if quick else (32, 448, 3, (20, 80))
    only = option("--classes", None)
    if only is not None:
        if int(only) not in classes:
            sys.exit(f"bench_torch_train.py: --classes {only}: expected one of {classes}")
        classes = (int(only),)
    check_bank_push_gpu()
    gen = torch.Generator().manual_seed(3)
    model = clip_model("rn101").to(dev)
    images = (torch.rand((B, 3, S, S), generator=gen) * 2 - 1).to(dev)
    times = []
    for i in range(reps + 1):
        t0 = clock()
        with torch.no_grad():
            _, dense = model.encode_image(images)
        if i:
            times.append(clock() - t0)
    img = sorted(times)[len(times) // 2]
    report(f"train rn101 img {S} b{B}", img, 0.0)
    for C in classes:
        ids = templates(C).to(dev)
        P = head_params(C, gen)
        P["prompt.ctx_pos"] = torch.randn(C, N_CTX, 512, generator=gen) * 0.02
        P["prompt.ctx_neg"] = torch.randn(C, N_CTX, 512, generator=gen) * 0.02
        P = {n: v.detach().to(dev).requires_grad_(True) for n, v in P.items()}
        rest = [p for n, p in P.items() if n != "carl.logit_scale"]
        fused = {"fused": True} if dev.type == "cuda" else {}
        opt = torch.optim.AdamW([{"params": rest},
                                 {"params": [P["carl.logit_scale"]], "weight_decay": 0.0}],
                                lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, **fused)
        bank = torch.nn.functional.normalize(torch.randn(C, QLEN, D, generator=gen), dim=-1)
        state = {"bank": bank.to(dev), "fill": torch.full((C,), QLEN, device=dev),
                 "write": torch.zeros(C, dtype=torch.int64, device=dev)}
        y = labels(B, C).to(dev)
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
        report(f"train rn101 c{C} step", steps[len(steps) // 2], 0.0)
        report(f"train rn101 c{C} iteration", img + steps[len(steps) // 2], 0.0)


if __name__ == "__main__":
    main()
