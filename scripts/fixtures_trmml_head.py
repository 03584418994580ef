"""fixtures_trmml_head.py — PyTorch reference for TRM-ML's head and losses (trmml/carl.c,
trmml/mmcp.c, trmml/trmml_loss.c; SPEC §4.2-4.7).

Written from SPEC §4 in float64, independently of the C formulation:
  - CARL in the *plain* form (pixel keys and values are projected; the C default folds W_k into
    the queries and W_v after pooling, so the fixture also checks the folding);
  - Eq. 1 matching through F.normalize on both sides;
  - MMCP steps 1-6 with the mean of the ℓ cosines per queue (Eq. 8, not the closed form the C
    code uses), EMA thresholds and one-sided pseudo-labels, fusion, then the targets;
  - L_cls = ASL (as fixtures_loss.py writes it) on both branches, L_KD through F.kl_div with a
    detached teacher, L_NCE term by term with torch.logsumexp;
  - the bank push of step 8 through torch.topk.
Small sizes: C=5, d=16, HW=9, B=3, FFN hidden 24, Eq.3 MLP hidden d, head hidden 20, queue
length 4 (two full queues, one partial, one empty, one full with the write pointer wrapped),
dropout off. The loss weights are O(1) (alpha 1.3, beta 0.7, gamma 0.9) so each term's gradient
is visible at model tolerance. Gradients of dout * L with respect to every learnable parameter
and G+ / G- come from autograd.

Tensors "head/p/<name>" are the parameters under their C names, "head/d/<name>" their
gradients; "head/args" = [alpha, beta, gamma, nce_tau, eta, ln_eps, region_eps, temp_max].

The functions (CARL, matching, MMCP, losses, bank push) take the parameters as a dict of C names
and are imported by scripts/fixtures_train_steps.py and scripts/bench_torch_train.py.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import torch.nn.functional as F
from fixture_io import FixtureWriter

C, D, HW, B = 5, 16, 9, 3
FFN, MLP, HEAD = 24, 16, 20
QLEN, K = 4, 2
ALPHA, BETA, GAMMA, TAU, ETA = 1.3, 0.7, 0.9, 0.07, 0.7
LN_EPS, REGION_EPS, TEMP_MAX = 1e-5, 1e-6, 100.0
GP, GN, CLIP, EPS = 1.0, 2.0, 0.05, 1e-8


def f32(x):
    return torch.tensor(x, dtype=torch.float32).item()


# ---- CARL (plain form) and matching ------------------------------------------------------------
def linear(P, x, name):
    return x @ P[name + ".weight"].T + P[name + ".bias"]


def carl(P, f, ln_eps=LN_EPS, region_eps=REGION_EPS):
    """f (B,HW,d) -> Φ, A, R (B,C,HW), F^q, F^r (B,C,d); dropout off."""
    d = f.shape[-1]
    Q = P["carl.queries"]
    qp = linear(P, Q, "carl.attn.q")
    k = linear(P, f, "carl.attn.k")
    v = linear(P, f, "carl.attn.v")
    phi = torch.einsum("cd,bpd->bcp", qp, k) / math.sqrt(d)
    a = torch.softmax(phi, dim=-1)
    o = linear(P, a @ v, "carl.attn.o")
    x1 = F.layer_norm(Q + o, (d,), P["carl.ln1.weight"], P["carl.ln1.bias"], ln_eps)
    ffn = linear(P, torch.relu(linear(P, x1, "carl.ffn1")), "carl.ffn2")
    x = F.layer_norm(x1 + ffn, (d,), P["carl.ln2.weight"], P["carl.ln2.bias"], ln_eps)
    fq = x + linear(P, torch.relu(linear(P, x, "carl.mlp1")), "carl.mlp2")
    r = torch.sigmoid(phi)
    fr = (r @ f) / (r.sum(-1, keepdim=True) + region_eps)
    return phi, a, r, fq, fr


def scale(P, temp_max=TEMP_MAX):
    return P["carl.logit_scale"].exp().clamp(max=temp_max)


def match(feat, s, gpos, gneg):
    """Eq. 1: s (cos(F, G+) - cos(F, G-)) per class, feat (B,C,d)."""
    nf = F.normalize(feat, dim=-1)
    cp = (nf * F.normalize(gpos, dim=-1)).sum(-1)
    cn = (nf * F.normalize(gneg, dim=-1)).sum(-1)
    return s * cp - s * cn


# ---- MMCP (§4.5), no grad ------------------------------------------------------------------------
def similarities(fr, bank, fill, protos):
    """Step 1-2: visual similarity (mean cosine with a full queue, NaN otherwise) and text
    similarity (cosine with the prototype), each (B,C)."""
    b, c_n = fr.shape[:2]
    qlen = bank.shape[1]
    frd = fr.detach()
    sv = torch.full((b, c_n), float("nan"), dtype=fr.dtype)
    st = torch.full((b, c_n), float("nan"), dtype=fr.dtype)
    for i in range(b):
        for c in range(c_n):
            if int(fill[c]) == qlen:
                sv[i, c] = torch.stack([F.cosine_similarity(frd[i, c], bank[c, j], dim=0)
                                        for j in range(qlen)]).mean()
            st[i, c] = F.cosine_similarity(frd[i, c], protos[c], dim=0)
    return sv, st


def side_mean(sim, y, c, want):
    vals = [sim[i, c] for i in range(sim.shape[0])
            if y[i, c] == want and not torch.isnan(sim[i, c])]
    return torch.stack(vals).mean() if vals else None


def update_thresholds(theta, theta_init, sv, st, y, eta):
    """Eq. 9, 11: the batch means of each side, EMA into theta (4,C) (the first value
    initialises); returns the new thresholds (rounded to float32, as C keeps them) and flags."""
    theta_new, init_new = theta.clone(), theta_init.clone()
    for m, sim in ((0, sv), (2, st)):
        for c in range(theta.shape[1]):
            for side, want in ((0, 1.0), (1, -1.0)):
                mean = side_mean(sim, y, c, want)
                if mean is None:
                    continue
                row = m + side
                theta_new[row, c] = (eta * theta[row, c] + (1 - eta) * mean
                                     if theta_init[row, c] else mean)
                init_new[row, c] = 1
    return theta_new.float().to(theta.dtype), init_new


def pseudo_labels(sv, st, theta, theta_init, y):
    """Eq. 10, 12: one-sided votes of each modality, kept where both agree; unknowns only.
    Also returns the smallest distance of a decisive similarity to a threshold."""
    def vote(m, c, x):
        tp, tn = theta[m, c], theta[m + 1, c]
        if torch.isnan(x) or not theta_init[m, c] or not theta_init[m + 1, c] or tn >= tp:
            return 0, float("inf")
        margin = min(abs(float(x - tp)), abs(float(x - tn)))
        return (1 if x >= tp else -1 if x <= tn else 0), margin

    pseudo = torch.zeros(y.shape, dtype=y.dtype)
    margin = float("inf")
    for i in range(y.shape[0]):
        for c in range(y.shape[1]):
            if y[i, c] != 0:
                continue
            v, mv = vote(0, c, sv[i, c])
            t, mt = vote(2, c, st[i, c])
            margin = min(margin, mv, mt)
            pseudo[i, c] = v if v == t else 0
    return pseudo, margin


# ---- losses ------------------------------------------------------------------------------------
def asl(u, t):
    """ASL (γ+ 1, γ- 2, m 0.05, ε 1e-8), sum over classes, mean over images."""
    p = torch.sigmoid(u)
    pos, neg = (t > 0).double(), (t < 0).double()
    xs_neg = (1 - p + CLIP).clamp(max=1)
    lp = pos * torch.log(p.clamp(min=EPS)) * torch.pow(1 - p, GP).detach()
    ln = neg * torch.log(xs_neg.clamp(min=EPS)) * torch.pow(1 - xs_neg, GN).detach()
    return -(lp + ln).sum() / u.shape[0]


def kd(uq, ur):
    return F.kl_div(F.log_softmax(uq, dim=1), F.softmax(ur.detach(), dim=1), reduction="batchmean")


def proj(P, x):
    return F.normalize(linear(P, torch.relu(linear(P, x, "carl.head1")), "carl.head2"), dim=-1)


def nce(P, fr, y, bank, fill, gpos, tau=TAU):
    """L_NCE (§4.6): keys are the batch's ground-truth positive regions and the filled bank
    entries; anchors the projected G+."""
    keys, kcls = [], []
    for i in range(y.shape[0]):
        for c in range(y.shape[1]):
            if y[i, c] == 1:
                keys.append(fr[i, c])
                kcls.append(c)
    for c in range(y.shape[1]):
        for j in range(int(fill[c])):
            keys.append(bank[c, j])
            kcls.append(c)
    hk = proj(P, torch.stack(keys))
    anchors = proj(P, gpos)
    kcls = torch.tensor(kcls)
    terms = []
    for c in range(y.shape[1]):
        sc = anchors[c] @ hk.T / tau
        pos, neg = sc[kcls == c], sc[kcls != c]
        if len(pos) == 0:
            continue
        per = [-(sp - torch.logsumexp(torch.cat([sp.view(1), neg]), 0)) for sp in pos]
        terms.append(torch.stack(per).mean())
    return torch.stack(terms).mean()


def nce_batched(P, fr, y, bank, fill, gpos, tau=TAU):
    """nce() without Python loops over keys (for benchmarks at full size): every positive's
    term -(s_p - log(exp(s_p) + sum_neg exp(s_n))) from one (C, keys) score matrix. main()
    checks that it equals nce()."""
    c_n, qlen = bank.shape[:2]
    pos = (y == 1).nonzero()
    filled = torch.arange(qlen, device=fill.device)[None, :] < fill[:, None]
    keys = torch.cat([fr[pos[:, 0], pos[:, 1]], bank[filled]])
    kcls = torch.cat([pos[:, 1], filled.nonzero()[:, 0]])
    sc = proj(P, gpos) @ proj(P, keys).T / tau                      # (C, keys)
    same = kcls[None, :] == torch.arange(c_n, device=kcls.device)[:, None]
    neg = torch.logsumexp(sc.masked_fill(same, float("-inf")), dim=1, keepdim=True)
    per = (torch.logaddexp(sc, neg) - sc) * same                     # zero off the positives
    count = same.sum(1)
    has = count > 0
    return (per.sum(1)[has] / count[has]).mean()


# ---- bank push (step 8) ------------------------------------------------------------------------
def bank_push(bank, fill, write, R, f, y, k):
    """Eq. 7: the k positions of largest R of every ground-truth positive, normalised pixel
    features, into the class's FIFO queue. Returns new (bank, fill, write) and the smallest gap
    between the k-th and (k+1)-th largest R (a tie would make the choice arbitrary)."""
    bank, fill, write = bank.clone(), fill.clone(), write.clone()
    qlen = bank.shape[1]
    gap = float("inf")
    with torch.no_grad():
        srt = torch.sort(R.detach(), dim=-1, descending=True)
        top = srt.indices[..., :k]
        for i in range(y.shape[0]):
            for c in range(y.shape[1]):
                if y[i, c] != 1:
                    continue
                if R.shape[-1] > k:
                    gap = min(gap, float(srt.values[i, c, k - 1] - srt.values[i, c, k]))
                for j in range(k):
                    w = int(write[c])
                    bank[c, w] = F.normalize(f[i, int(top[i, c, j])], dim=0)
                    write[c] = (w + 1) % qlen
                    fill[c] = min(int(fill[c]) + 1, qlen)
    return bank, fill, write, gap


# ---- the fixture -------------------------------------------------------------------------------
def random_carl(fx, C, D, FFN, MLP, HEAD):
    """Random CARL parameters under trmml's names (queries on the unit sphere, linear layers
    uniform in +-1/sqrt(fan_in), LayerNorms near identity, logit scale log 30), every value
    rounded to float32 and held in float64; drawn in a fixed order, so fixtures that call it stay
    byte-identical."""
    P = {}

    def lin(name, i, o):
        P[name + ".weight"] = (fx.uniform(-1, 1, o, i) / math.sqrt(i)).float().double()
        P[name + ".bias"] = (fx.uniform(-1, 1, o) / math.sqrt(i)).float().double()

    P["carl.queries"] = F.normalize(fx.randn(C, D), dim=-1).float().double()
    for n in ("q", "k", "v", "o"):
        lin("carl.attn." + n, D, D)
    for n in ("ln1", "ln2"):
        P[f"carl.{n}.weight"] = (1 + 0.2 * fx.randn(D)).float().double()
        P[f"carl.{n}.bias"] = (0.2 * fx.randn(D)).float().double()
    lin("carl.ffn1", D, FFN)
    lin("carl.ffn2", FFN, D)
    lin("carl.mlp1", D, MLP)
    lin("carl.mlp2", MLP, D)
    lin("carl.head1", D, HEAD)
    lin("carl.head2", HEAD, D)
    P["carl.logit_scale"] = torch.tensor([math.log(30.0)]).float().double()
    return P


def main():
    fx = FixtureWriter("trmml_head", seed=5)
    torch.set_default_dtype(torch.float64)

    def unit(*shape):
        return F.normalize(fx.randn(*shape), dim=-1).float().double()

    # parameters (C names)
    P = random_carl(fx, C, D, FFN, MLP, HEAD)
    for v in P.values():
        v.requires_grad_(True)

    # inputs
    f = fx.randn(B, HW, D)
    gpos = unit(C, D).requires_grad_(True)
    gneg = unit(C, D).requires_grad_(True)
    # Ground truth: every class has a positive somewhere, unknowns (0) to pseudo-label.
    y = torch.tensor([[1, -1, 0, 1, 0],
                      [0, 1, -1, 0, 1],
                      [-1, 0, 1, -1, 0]], dtype=torch.float64)

    # Pre-filled bank: fills 4, 4, 2, 0, 4; queue 4 wrapped (write pointer 3).
    bank = torch.zeros(C, QLEN, D)
    fill = torch.tensor([4, 4, 2, 0, 4])
    write = torch.tensor([0, 0, 2, 0, 3])
    for c in range(C):
        for j in range(int(fill[c])):
            bank[c, j] = unit(1, D)[0]
    protos = unit(C, D)

    phi, attn, R, fq, fr = carl(P, f)
    s = scale(P)
    uq, ur = match(fq, s, gpos, gneg), match(fr, s, gpos, gneg)

    # MMCP steps 1-7 on the pre-batch bank (no grad)
    with torch.no_grad():
        sv, st = similarities(fr, bank, fill, protos)
        # Pre-batch thresholds chosen so that the updated ones give every outcome: class 0 both
        # modalities +1 (pseudo +1), class 1 both -1 (pseudo -1), class 4 visual +1 but text 0
        # (no agreement), classes 2 and 3 no visual similarity (queues not full, thresholds
        # never initialised); text theta- of class 3 uninitialised (first value initialises it).
        want_after = fx.uniform(-0.3, 0.3, 4, C)
        for m, sim in ((0, sv), (2, st)):
            want_after[m, 0], want_after[m + 1, 0] = sim[1, 0] - 0.05, sim[1, 0] - 0.3
            want_after[m, 1], want_after[m + 1, 1] = sim[2, 1] + 0.3, sim[2, 1] + 0.05
        lo4, hi4 = min(sv[0, 4], sv[2, 4]), max(st[0, 4], st[2, 4])
        want_after[0, 4], want_after[1, 4] = lo4 - 0.05, lo4 - 0.3
        want_after[2, 4], want_after[3, 4] = hi4 + 0.3, min(st[0, 4], st[2, 4]) - 0.3
        theta_init = torch.ones(4, C)
        theta_init[0:2, 2:4] = 0
        theta_init[3, 3] = 0
        theta = want_after.clone()
        for m, sim in ((0, sv), (2, st)):
            for c in range(C):
                for side, want in ((0, 1.0), (1, -1.0)):
                    mean = side_mean(sim, y, c, want)
                    if mean is not None and theta_init[m + side, c]:
                        theta[m + side, c] = (want_after[m + side, c] - (1 - ETA) * mean) / ETA
        theta = theta.float().double()
        theta_new, init_new = update_thresholds(theta, theta_init, sv, st, y, ETA)
        pseudo, margin = pseudo_labels(sv, st, theta_new, init_new, y)
        assert margin > 1e-4, "a similarity sits on a threshold; pick another seed"
        targets = torch.where(y != 0, y, pseudo)

    # losses
    cls_q, cls_r = asl(uq, targets), asl(ur, targets)
    l_kd = kd(uq, ur)
    l_nce = nce(P, fr, y, bank, fill, gpos)
    assert torch.allclose(nce_batched(P, fr, y, bank, fill, gpos), l_nce, rtol=1e-12, atol=1e-12)
    total = cls_q + ALPHA * cls_r + BETA * l_kd + GAMMA * l_nce
    dout = fx.randn(1)[0]
    (total * dout).backward()

    bank_after, fill_after, write_after, _ = bank_push(bank, fill, write, R, f, y, K)

    # store
    cs = "head"
    fx.add(f"{cs}/args", torch.tensor([f32(x) for x in (ALPHA, BETA, GAMMA, TAU, ETA, LN_EPS,
                                                           REGION_EPS, TEMP_MAX)]))
    fx.add(f"{cs}/sizes", torch.tensor([C, D, HW, B, FFN, MLP, HEAD, QLEN, K], dtype=torch.int64))
    for name, v in P.items():
        fx.add(f"{cs}/p/{name}", v.detach())
        fx.add(f"{cs}/d/{name}", v.grad)
    for name, v in (("f", f), ("gpos", gpos), ("gneg", gneg), ("y", y), ("bank", bank),
                    ("protos", protos), ("theta", theta), ("theta_init", theta_init)):
        fx.add(f"{cs}/{name}", v.detach())
    fx.add(f"{cs}/fill", fill)
    fx.add(f"{cs}/write", write)
    fx.add(f"{cs}/dgpos", gpos.grad)
    fx.add(f"{cs}/dgneg", gneg.grad)
    for name, v in (("phi", phi), ("attn", attn), ("regions", R), ("fq", fq), ("fr", fr),
                    ("uq", uq), ("ur", ur), ("sim_vis", sv), ("sim_txt", st),
                    ("theta_after", theta_new), ("pseudo", pseudo), ("targets", targets),
                    ("cls_q", cls_q), ("cls_r", cls_r), ("kd", l_kd), ("nce", l_nce),
                    ("total", total), ("dout", dout), ("bank_after", bank_after)):
        fx.add(f"{cs}/{name}", v.detach())
    fx.add(f"{cs}/fill_after", fill_after)
    fx.add(f"{cs}/write_after", write_after)

    # Bernoulli KD (the documented alternative of DECISION 15)
    def kd_bernoulli(student, teacher):
        pt = torch.sigmoid(teacher.detach())
        ps = torch.sigmoid(student)
        kl = (pt * (torch.log(pt) - torch.log(ps))
              + (1 - pt) * (torch.log(1 - pt) - torch.log(1 - ps)))
        return kl.sum() / student.shape[0]

    fx.op_case("kd_bernoulli", kd_bernoulli,
               {"student": fx.randn(4, 7, scale=3.0), "teacher": fx.randn(4, 7, scale=3.0)},
               grad=["student"])
    fx.save()


if __name__ == "__main__":
    main()
