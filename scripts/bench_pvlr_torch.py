"""bench_pvlr_torch.py — PyTorch counterpart of `trmml bench pvlr` (tools/bench_pvlr.c): one PVLR
head training iteration at COCO size (C=80, d=512, 8 heads, FFN 2048, HW=196, batch 32), float32,
dropout 0.1 in training mode, forward + backward (head parameters and T^C) + one AdamW step.

    /usr/bin/python3 scripts/bench_pvlr_torch.py [THREADS] [--quick]

Written as a PyTorch user would: nn.MultiheadAttention (batch_first) and post-norm blocks; the
label side is expanded over the batch where it meets the visual tokens. Prints the same TSV row
as trmml (bench, key, median ms, GFLOP column left empty).
"""
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2
quick = "--quick" in sys.argv
torch.set_num_threads(threads)
torch.manual_seed(0)
C, D, NH, HW, FFN = 80, 512, 8, 196, 2048
B = 4 if quick else 32


class Layer(nn.Module):
    """x1 = LN(x + drop(MHA(x, kv, kv))); LN(x1 + drop(FFN(x1))) — TransformerEncoderLayer's sites."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, NH, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.ffn1, self.ffn2 = nn.Linear(D, FFN), nn.Linear(FFN, D)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, kv):
        x = self.norm1(x + self.drop(self.attn(x, kv, kv, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ffn2(self.drop(F.relu(self.ffn1(x))))))


class Pvlr(nn.Module):
    def __init__(self, kap_raw):
        super().__init__()
        tk = F.normalize(kap_raw, dim=-1)
        self.register_buffer("tk", tk)
        self.register_buffer("akt", torch.softmax(tk @ tk.T / 0.05, dim=1) @ tk)
        self.wk = nn.Parameter(torch.zeros(D, D))
        self.kap_norm = nn.LayerNorm(D)
        self.cap = Layer()
        self.k2c = nn.MultiheadAttention(D, NH, batch_first=True)
        self.c2k = nn.MultiheadAttention(D, NH, batch_first=True)
        self.norm_k, self.norm_c, self.norm = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.gate = nn.Linear(2 * D, D)
        self.ffn1, self.ffn2 = nn.Linear(D, FFN), nn.Linear(FFN, D)
        self.t2v, self.v2t = Layer(), Layer()
        self.t = nn.Parameter(torch.tensor(math.log(10.0)))
        self.b = nn.Parameter(torch.zeros(C))
        self.drop = nn.Dropout(0.1)

    def forward(self, dense, tc):
        k = self.kap_norm(self.tk + self.akt @ self.wk)[None]
        cx = self.cap(tc[None], tc[None])
        kp = self.norm_k(k + self.drop(self.k2c(k, cx, cx, need_weights=False)[0]))
        cp = self.norm_c(cx + self.drop(self.c2k(cx, k, k, need_weights=False)[0]))
        g = torch.sigmoid(self.gate(torch.cat([kp, cp], -1)))
        l0 = g * kp + (1 - g) * cp
        l0 = self.norm(l0 + self.drop(self.ffn2(self.drop(F.relu(self.ffn1(l0))))))
        l0 = l0.expand(dense.shape[0], C, D)
        v1 = self.t2v(dense[:, 1:], l0)
        l1 = self.v2t(l0, v1)
        s = F.normalize(l1, dim=-1) @ F.normalize(v1, dim=-1).transpose(1, 2)
        a = (torch.softmax(20 * s, -1) * s).sum(-1)
        gs = (F.normalize(l1, dim=-1) * F.normalize(dense[:, :1], dim=-1)).sum(-1)
        return self.t.exp().clamp(max=100) * (a + gs) / 2 + self.b


def asl(z, y, gp=0.0, gn=4.0, clip=0.05, eps=1e-8):
    p = torch.sigmoid(z)
    xs_neg = (1 - p + clip).clamp(max=1)
    lp = (y > 0) * torch.log(p.clamp(min=eps)) * torch.pow(1 - p, gp).detach()
    ln = (y < 0) * torch.log(xs_neg.clamp(min=eps)) * torch.pow(1 - xs_neg, gn).detach()
    return -(lp + ln).sum() / z.shape[0]


model = Pvlr(torch.randn(C, D))
model.train()
tc = (torch.randn(C, D) / math.sqrt(D)).requires_grad_(True)
dense = torch.randn(B, HW + 1, D)
y = torch.where(torch.rand(B, C) < 0.125, 1.0, -1.0)
decay = [p for n, p in model.named_parameters() if n != "t"]
opt = torch.optim.AdamW([{"params": decay + [tc]}, {"params": [model.t], "weight_decay": 0}],
                        lr=1e-4, weight_decay=1e-2)


def step():
    opt.zero_grad(set_to_none=False)
    asl(model(dense, tc), y).backward()
    opt.step()


step()  # warm-up
times = []
t_end = time.perf_counter() + (0 if quick else 5.0)
while len(times) < (1 if quick else 3) or time.perf_counter() < t_end:
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(f"bench\tpvlr head step c80 b{B}\t{1e3 * statistics.median(times):.2f}\t")
