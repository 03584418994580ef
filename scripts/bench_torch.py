"""bench_torch.py — PyTorch timings for the rows `trmml bench` reports (joined in
docs/benchmarks.md).

Usage: /usr/bin/python3 scripts/bench_torch.py THREADS [--quick] [--case TEXT] [--device cuda]
       /usr/bin/python3 scripts/bench_torch.py THREADS --clip-memory rn50|rn101 SIDE BATCH
Prints TSV rows `bench <TAB> key <TAB> ms <TAB> gflop` (and one `meta <TAB> torch_version <TAB> v`
row) with the same keys and work counts as tools/bench.c (gemm), tools/bench_conv.c (conv) and
tools/bench_clip.c (clip), timed the same way: one warm-up call, then the median of at least 5
calls and about 1 s (3 calls for the CLIP towers, as bench_clip.c; 2 calls and 0.05 s, or 1 call
for CLIP, with --quick). --case TEXT runs only the rows whose key contains TEXT, as
`trmml bench --case TEXT` does.

--device cuda times the same rows on the GPU against `trmml --device cuda bench`
(scripts/gpu-check.sh): inputs are drawn on the CPU with the same generator and moved there, every
timed call is bracketed by torch.cuda.synchronize(), TF32 is off (full float32 products, as
trmml's cuBLAS path without --tf32) and cudnn.benchmark is on (cuDNN picks its fastest
convolution algorithm per shape: PyTorch's best configuration for fixed shapes). The GEMM rows are
then torch.mm, i.e. cuBLAS, at the same sizes; the image rows add batch 32 at 448 px, as trmml
does on a GPU; there is no peak-memory measurement (host RSS says nothing of the GPU's memory).

CLIP rows run the PyTorch CLIP written below (the structure of OpenAI's model.py: eval-mode
BatchNorm after every convolution, in-place ReLU, `out += identity`, F.multi_head_attention_forward
semantics in the attention pool; the text transformer is nn.MultiheadAttention blocks) with
random weights of the released shapes, in float32. Both sides compute what trmml's rows compute:
    clip <m> img <side> b<B>         image embedding and dense features, no grad
    clip <m> text fwd 2x<K>          text features of 2K embedded prompts (77 positions, end of
                                     text at 18..22), no grad, run on the first 23 positions
    clip <m> text fwdbwd 2x<K>       the same with autograd, backward into the prompts only
                                     (weights frozen)
The text rows truncate to 23 positions as trmml does (same output, see docs/clip-model.md); the
reference CoOp code runs all 77, and those timings go to stderr as "... (77 positions)" (in full
runs, or under --case with --all-positions).

--clip-memory runs one image forward (no grad) in this fresh process and prints the growth of
the peak resident set size over the forward: the high-water mark is reset to the current RSS
(Linux: `5` written to /proc/self/clear_refs) after the model and the input exist, and read back
(VmHWM) after the forward; a 64 px forward before that keeps one-time initialisation (thread
pool, oneDNN) out of the number. tools/bench_clip.c measures trmml the same way, on the first
call of each case (earlier cases have initialised OpenBLAS). The CLIP classes are
imported by scripts/verify_clip.py.
"""
import math
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

GEMM_SHAPES = [  # (M, N, K), the list in tools/bench.c
    (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
    (1568, 2048, 512), (6272, 64, 576), (616, 2048, 512), (616, 512, 2048),
    (256, 12544, 64), (64, 12544, 256), (256, 784, 1024), (1024, 784, 256),
]
# (C, O, kernel, spatial), batch 8, stride 1, padding kernel//2 (tools/bench_conv.c)
CONV_SHAPES = [
    (64, 64, 3, 112), (256, 128, 1, 112), (128, 128, 3, 56), (256, 256, 3, 28),
    (512, 1024, 1, 28), (512, 512, 3, 14), (2048, 512, 1, 14),
]
BATCH = 8
CASE = None  # --case TEXT: only the rows whose key contains TEXT (ends in it: TEXT$)
ALL_POSITIONS = False  # --all-positions: the 77-position text notes under --case too
DEVICE = torch.device("cpu")  # --device cuda: the GPU


def sync():
    """Wait for the GPU's queued work (kernels run asynchronously); nothing on the CPU."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def use_device(name):
    """Select --device NAME for every row: cpu, or cuda with TF32 off and cudnn.benchmark on."""
    global DEVICE
    DEVICE = torch.device(name)
    if DEVICE.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"bench: --device {name}: torch {torch.__version__} sees no GPU")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        print(f"meta\tdevice\t{name} ({torch.cuda.get_device_name(DEVICE)})", flush=True)
    elif DEVICE.type != "cpu":
        sys.exit(f"bench: --device {name}: expected cpu or cuda[:N]")


def wanted(key):
    if CASE is not None and CASE.endswith("$"):
        return key.endswith(CASE[:-1])
    return CASE is None or CASE in key


def clock():
    """Seconds, read after the device has finished its queued work (as trmml's bench_clock)."""
    sync()
    return time.perf_counter()


def bench_time(fn, min_reps, min_seconds):
    fn()  # warm-up
    times = []
    start = clock()
    while len(times) < 1000 and (len(times) < min_reps or clock() - start < min_seconds):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    times.sort()
    return times[len(times) // 2]


def report(key, seconds, gflop):
    print(f"bench\t{key}\t{seconds * 1e3:.4f}\t{gflop:.6f}", flush=True)
    print(f"  {key:<40s} {seconds * 1e3:10.3f} ms  {gflop / seconds:8.1f} GFLOP/s", file=sys.stderr)


# ---- CLIP (ResNet image tower, text transformer) in PyTorch, OpenAI's model.py structure -----

class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        # anti-aliased: every convolution has stride 1; an avgpool follows conv2 when stride > 1
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            # state-dict keys downsample.0 / downsample.1 (the pool "-1" has no parameters)
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x):
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu3(out)


class AttentionPool2d(nn.Module):
    def __init__(self, grid, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.grid = grid
        self.num_heads = num_heads

    def positional(self, h: int, w: int):
        """SPEC §1.6: rows 1.. resized bicubically (align_corners=False) to h x w; row 0 kept."""
        pe = self.positional_embedding
        if h == self.grid and w == self.grid:
            return pe
        g, c = self.grid, pe.shape[1]
        spatial = pe[1:].reshape(1, g, g, c).permute(0, 3, 1, 2)
        spatial = F.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([pe[:1], spatial.permute(0, 2, 3, 1).reshape(h * w, c)], 0)

    def forward(self, x):
        """x (B, C, H, W) -> embedding (B, E) and dense (B, H*W + 1, E). The attention is
        F.multi_head_attention_forward's with the query restricted to token 0, written out so
        the dense path can reuse v_proj(tokens) (scripts/verify_clip.py checks the two agree)."""
        b, c, h, w = x.shape
        t = x.flatten(start_dim=2).permute(0, 2, 1)                     # (B, HW, C)
        t = torch.cat([t.mean(dim=1, keepdim=True), t], dim=1)          # (B, HW+1, C)
        t = t + self.positional(h, w).to(t.dtype)
        nh, hs = self.num_heads, c // self.num_heads
        q = self.q_proj(t[:, :1]).reshape(b, 1, nh, hs).transpose(1, 2)
        k = self.k_proj(t).reshape(b, -1, nh, hs).transpose(1, 2)
        v = self.v_proj(t)
        vh = v.reshape(b, -1, nh, hs).transpose(1, 2)
        a = torch.softmax((q * hs ** -0.5) @ k.transpose(-2, -1), dim=-1) @ vh  # (B, NH, 1, HS)
        emb = self.c_proj(a.transpose(1, 2).reshape(b, c))
        return emb, self.c_proj(v)


class ModifiedResNet(nn.Module):
    def __init__(self, layers, output_dim, heads, grid=7, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, n in enumerate(layers):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(inplanes, planes, stride if j == 0 else 1))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.attnpool = AttentionPool2d(grid, width * 32, heads, output_dim)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, attn_mask):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask  # a plain tensor attribute, as in OpenAI's files

    def forward(self, x):
        n = x.shape[0]
        mask = self.attn_mask[:n, :n].to(device=x.device, dtype=x.dtype)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask)
                                         for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class CLIP(nn.Module):
    def __init__(self, embed_dim, vision_layers, grid=7, vision_width=64, context_length=77,
                 vocab_size=49408, transformer_width=512, transformer_heads=8,
                 transformer_layers=12):
        super().__init__()
        self.visual = ModifiedResNet(vision_layers, embed_dim, vision_width * 32 // 64, grid,
                                     vision_width)
        mask = torch.full((context_length, context_length), float("-inf")).triu(1)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                       mask)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = nn.LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, image):
        """(embedding (B, E), dense (B, HW+1, E)), neither normalised."""
        return self.visual(image)

    def encode_embedded(self, x, eot, keep: int = 0):
        """x (N, T, W): token embeddings before the positional embedding (CoOp's prompts);
        eot (N) the end-of-text positions. keep > 0 runs only the first `keep` positions."""
        if keep > 0:
            x = x[:, :keep]
        x = x + self.positional_embedding[:x.shape[1]].to(x.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def encode_text(self, ids):
        return self.encode_embedded(self.token_embedding(ids), ids.argmax(dim=-1))

    def forward(self, image, ids):
        return self.encode_image(image)[0], self.encode_text(ids)


CLIP_VISION_LAYERS = {"rn50": ((3, 4, 6, 3), 1024), "rn101": ((3, 4, 23, 3), 512)}


def clip_model(name, seed=1, damp=0.2):
    """A CLIP of the released shapes with random weights: He-uniform convolutions and linear
    layers, BatchNorm statistics around one with each residual branch's last BN scaled by `damp`
    (keeps the 33-block RN101 trunk's scale steady), small biases; eval mode, float32."""
    layers, embed_dim = CLIP_VISION_LAYERS[name]
    model = CLIP(embed_dim, layers)
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    with torch.no_grad():
        for mname, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                bound = math.sqrt(6.0 / mod.weight[0].numel())
                mod.weight.copy_(uniform(mod.weight.shape, -bound, bound))
            elif isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                last = (".layer" in mname and mname.endswith(".bn3")) or mname.endswith("downsample.1")
                scale = damp if last else 1.0
                mod.weight.copy_(uniform((c,), 0.5, 1.5) * scale)
                mod.bias.copy_(uniform((c,), -0.1, 0.1))
                mod.running_mean.copy_(uniform((c,), -0.2, 0.2))
                mod.running_var.copy_(uniform((c,), 0.5, 2.0))
                mod.num_batches_tracked.fill_(7)
            elif isinstance(mod, nn.Linear):
                bound = math.sqrt(3.0 / mod.in_features)
                mod.weight.copy_(uniform(mod.weight.shape, -bound, bound))
                mod.bias.copy_(uniform(mod.bias.shape, -0.1, 0.1))
            elif isinstance(mod, nn.MultiheadAttention):
                w = mod.embed_dim
                mod.in_proj_weight.copy_(uniform((3 * w, w), -math.sqrt(3.0 / w), math.sqrt(3.0 / w)))
                mod.in_proj_bias.copy_(uniform((3 * w,), -0.1, 0.1))
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(uniform(mod.weight.shape, 0.8, 1.2))
                mod.bias.copy_(uniform(mod.bias.shape, -0.05, 0.05))
        pool = model.visual.attnpool
        pool.positional_embedding.copy_(uniform(pool.positional_embedding.shape, -0.5, 0.5))
        model.token_embedding.weight.copy_(uniform(model.token_embedding.weight.shape, -0.05, 0.05))
        model.positional_embedding.copy_(uniform(model.positional_embedding.shape, -0.01, 0.01))
        w = model.text_projection.shape[0]
        model.text_projection.copy_(uniform(model.text_projection.shape, -1, 1) * math.sqrt(3.0 / w))
    return model.eval().requires_grad_(False)


def clip_image_gflop(name, side, batch):
    """2 x the multiply-accumulates of clip_resnet_macs (clip/resnet.c) plus the dense path's
    c_proj over all tokens, as tools/bench_clip.c counts them."""
    layers, E = CLIP_VISION_LAYERS[name]
    w = 64.0
    h = side / 2
    macs = h * h * 9 * (3 * w / 2 + (w / 2) * (w / 2) + (w / 2) * w)
    h /= 2
    inc = w
    for i, n in enumerate(layers):
        planes = w * 2 ** i
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            macs += h * h * (inc * planes + 9 * planes * planes)
            oh = h / stride
            macs += oh * oh * planes * 4 * planes
            if stride > 1 or inc != 4 * planes:
                macs += oh * oh * inc * 4 * planes
            h, inc = oh, 4 * planes
    C, S = 2048.0, h * h + 1
    pool = C * C + 2 * S * C * C + 2 * S * C + C * E
    return 2.0 * batch * (macs + pool + S * C * E) * 1e-9


def clip_text_gflop(name, n, t=23):
    """2 x clip_text_macs (clip/text.c) per sequence."""
    E, C = CLIP_VISION_LAYERS[name][1], 512.0
    return 2.0 * n * (12 * (12 * t * C * C + 2 * t * t * C) + C * E) * 1e-9


def bench_clip(quick, gen):
    reps, min_s = (1, 0.0) if quick else (3, 1.0)
    for name in ("rn50", "rn101"):
        if quick and name != "rn50":
            continue
        # Batch 32 at 448 px: the GPU's case (tools/bench_clip.c runs it on a GPU only).
        cases = [(b, s) for b in (1, 8, 32) for s in (224, 448)
                 if b < 32 or (s == 448 and DEVICE.type != "cpu")]
        rows = [f"clip {name} img {s} b{b}" for b, s in cases]
        rows += [f"clip {name} text {k} 2x{c}" for k in ("fwd", "fwdbwd") for c in (20, 80)]
        if not any(wanted(r) for r in rows):
            continue
        model = clip_model(name).to(DEVICE)
        for batch, side in cases:
            if quick and (batch, side) != (1, 224):
                continue
            if not wanted(f"clip {name} img {side} b{batch}"):
                continue
            images = (torch.rand((batch, 3, side, side), generator=gen) * 2 - 1).to(DEVICE)
            with torch.no_grad():
                t = bench_time(lambda: model.encode_image(images), reps, min_s)
            report(f"clip {name} img {side} b{batch}", t, clip_image_gflop(name, side, batch))
        for k in (20, 80):
            if quick and k != 20:
                continue
            if not wanted(f"clip {name} text fwd 2x{k}") and not wanted(
                    f"clip {name} text fwdbwd 2x{k}"):
                continue
            n = 2 * k
            prompts = (torch.randn((n, 77, 512), generator=gen) * 0.02).to(DEVICE)
            eot = torch.tensor([18 + i % 5 for i in range(n)]).to(DEVICE)
            dout = torch.rand((n, model.text_projection.shape[1]), generator=gen) * 2 - 1
            dout = dout.to(DEVICE)
            gflop = clip_text_gflop(name, n)
            for keep, suffix in ((23, ""), (0, " (77 positions)")):
                if (quick or CASE is not None) and keep == 0 and not ALL_POSITIONS:
                    continue  # the 77-position notes only in full runs or when asked
                key = f"clip {name} text fwd 2x{k}"
                if wanted(key):
                    with torch.no_grad():
                        t = bench_time(lambda: model.encode_embedded(prompts, eot, keep), reps,
                                       min_s)
                    if suffix:
                        note(key + suffix, t)
                    else:
                        report(key, t, gflop)
                if quick or not wanted(f"clip {name} text fwdbwd 2x{k}"):
                    continue
                x = prompts.clone().requires_grad_(True)

                def fwdbwd():
                    x.grad = None
                    model.encode_embedded(x, eot, keep).backward(dout)

                t = bench_time(fwdbwd, reps, min_s)
                key = f"clip {name} text fwdbwd 2x{k}"
                if suffix:
                    note(key + suffix, t)
                else:
                    report(key, t, 2.0 * gflop)
        del model
    if not quick and DEVICE.type == "cpu":
        for name in ("rn50", "rn101"):
            for batch, side in ((8, 224), (8, 448)):
                if wanted(f"clip {name} img {side} b{batch}"):
                    clip_memory_subprocess(name, side, batch)


def note(key, seconds):
    print(f"  {key:<40s} {seconds * 1e3:10.3f} ms", file=sys.stderr)


def proc_status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def clip_memory(name, side, batch):
    """Peak RSS growth (MiB) of one no-grad image forward in this process."""
    model = clip_model(name)
    with torch.no_grad():  # one-time initialisation (thread pool, oneDNN) is not the forward's
        model.encode_image(torch.zeros(1, 3, 64, 64))
    images = torch.rand((batch, 3, side, side)) * 2 - 1
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # high-water mark := current RSS
    base = proc_status_kib("VmRSS")
    with torch.no_grad():
        emb, dense = model.encode_image(images)
    grow = (proc_status_kib("VmHWM") - base) / 1024.0
    return grow, images.numel() * 4 / 2 ** 20


def clip_memory_subprocess(name, side, batch):
    """Run clip_memory in a fresh process (so no earlier forward has grown the heap)."""
    cmd = [sys.executable, os.path.abspath(__file__), str(torch.get_num_threads()),
           "--clip-memory", name, str(side), str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        print(f"  clip {name} img {side} b{batch}: {out}", file=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"  clip {name} img {side} b{batch}: memory not measured ({e})", file=sys.stderr)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: bench_torch.py THREADS [--quick] [--case TEXT] [--all-positions] "
                 "[--device cpu|cuda]")
    threads = int(sys.argv[1])
    quick = "--quick" in sys.argv[2:]
    global CASE, ALL_POSITIONS
    ALL_POSITIONS = "--all-positions" in sys.argv[2:]
    if "--case" in sys.argv[2:]:
        i = sys.argv.index("--case")
        if i + 1 >= len(sys.argv):
            sys.exit("bench_torch.py: --case needs a text (part of a row's key)")
        CASE = sys.argv[i + 1]
    torch.set_num_threads(threads)
    if "--device" in sys.argv[2:]:
        i = sys.argv.index("--device")
        if i + 1 >= len(sys.argv):
            sys.exit("bench_torch.py: --device needs cpu or cuda")
        use_device(sys.argv[i + 1])
    if "--clip-memory" in sys.argv:
        i = sys.argv.index("--clip-memory")
        name, side, batch = sys.argv[i + 1], int(sys.argv[i + 2]), int(sys.argv[i + 3])
        grow, inp = clip_memory(name, side, batch)
        print(f"peak RSS growth {grow:.0f} MiB over a no-grad forward (input {inp:.0f} MiB "
              f"allocated before)")
        return
    reps, min_s = (2, 0.05) if quick else (5, 1.0)
    print(f"meta\ttorch_version\t{torch.__version__}", flush=True)
    print(f"torch {torch.__version__}: {threads} threads, mkldnn "
          f"{torch.backends.mkldnn.is_available()}", file=sys.stderr)
    gen = torch.Generator().manual_seed(1)

    def uniform(*shape, scale=1.0):
        return (torch.rand(shape, generator=gen) * 2 - 1) * scale

    with torch.no_grad():
        for m, n, k in GEMM_SHAPES[:2] if quick else GEMM_SHAPES:
            if not wanted(f"gemm {m}x{n}x{k}"):
                continue
            a, b = uniform(m, k).to(DEVICE), uniform(k, n).to(DEVICE)
            c = torch.empty(m, n, device=DEVICE)
            t = bench_time(lambda: torch.mm(a, b, out=c), reps, min_s)
            report(f"gemm {m}x{n}x{k}", t, 2.0 * m * n * k * 1e-9)

    for c_in, c_out, ks, hw in CONV_SHAPES:
        if quick and hw != 14:
            continue
        pad = ks // 2
        shape = f"{c_in}x{c_out} {ks}x{ks} {hw}"
        if not wanted(f"conv fwd {shape}") and not wanted(f"conv bwd {shape}"):
            continue
        x = uniform(BATCH, c_in, hw, hw).to(DEVICE)
        w = uniform(c_out, c_in, ks, ks, scale=0.05).to(DEVICE)
        b = uniform(c_out).to(DEVICE)
        gflop = 2.0 * BATCH * c_out * hw * hw * c_in * ks * ks * 1e-9
        with torch.no_grad():
            t = bench_time(lambda: F.conv2d(x, w, b, 1, pad), reps, min_s)
        report(f"conv fwd {shape}", t, gflop)
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        out = F.conv2d(x, w, b, 1, pad)
        dout = uniform(*out.shape).to(DEVICE)
        t = bench_time(lambda: torch.autograd.grad(out, (x, w, b), dout, retain_graph=True),
                       reps, min_s)
        report(f"conv bwd {shape}", t, 2.0 * gflop)
        del x, w, b, out, dout

    bench_clip(quick, gen)


if __name__ == "__main__":
    main()
