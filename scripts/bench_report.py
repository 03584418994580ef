"""bench_report.py — join trmml's and PyTorch's benchmark rows into docs/benchmarks.md.

Usage (scripts/bench.sh calls it):
    bench_report.py --trmml T.tsv [--torch P.tsv] [--torch-tuned Q.tsv --tuned SETTING]
                    --threads N --command CMD [--out PATH] [--merge]
P.tsv holds PyTorch as installed, Q.tsv the same scripts run with GLIBC_TUNABLES=SETTING (its
best configuration here); each row's ratio is against the faster of the two.
Rows are `bench <TAB> key <TAB> ms <TAB> gflop` (tools/bench.h); the first word of the key names
the benchmark and gets one table. `meta <TAB> name <TAB> value` rows carry extra facts (PyTorch's
version). The machine's sgemm peak is the best GFLOP/s among trmml's gemm rows; every row
reports its fraction of it (rows with no GFLOP count show "-"). With --merge (a run of one
benchmark, `make bench FILTER=NAME`), the tables of this run replace those of the same name in
the existing report, each under a line saying when and how it was measured; the rest of the
report, its header and its sgemm peak stay. Standard library only.
"""
import argparse
import datetime
import os
import subprocess
import sys


# What a table measures, where its rows need more than the general note.
NOTES = {
    "gemm": "sgemm C = A B through the device's GEMM (OpenBLAS on the CPU; tools/bench.c against "
            "torch.mm), at square sizes, shapes of CLIP's convolutions and text tower, and one "
            "image of RN101's 1x1 convolutions at 448 px (M = output channels, N = pixels, K = "
            "input channels). An `own` row is the same product on the project's own fp32 GEMM "
            "(docs/ops/gemm_f32.md; AVX-512 CPUs), which the CPU convolutions use at that level; "
            "it has no PyTorch column: compare it with the row above it.",
    "train": "One TRM-ML training iteration (tools/bench_train.c against "
             "scripts/bench_torch_train.py): RN101-size CLIP with random weights, batch 32 of "
             "448 px, C = 20 and 80 classes, the full head with a full memory bank (256 entries "
             "per class) in MMCL, stage 1, no micro-batches, the text tower in one chunk; each "
             "part is the median of 3 iterations after a warm-up, `step` the whole step (an "
             "iteration from the feature cache) and `iteration` the image tower plus the step "
             "(an iteration from the images). trmml's text row includes the forward it repeats for "
             "the backward. `epoch N img`: one epoch over N synthetic images (16 classes, "
             "batch 32) from the feature cache (`cached`) or through the image tower with the "
             "training augmentation (`uncached`); `extract`: writing that cache once. ms per "
             "iteration, per epoch or per extraction.",
    "pretrain": "One contrastive pretraining step of the embedded default's small CLIP "
                "(tools/bench_pretrain.c against scripts/bench_torch_pretrain.py, "
                "docs/embedded.md): vision width 32 with one Bottleneck per stage at 64 px, "
                "text width 128 with 4 blocks, E = 128; batch 128 image–caption pairs; "
                "training-mode forward of both towers, CLIP's symmetric loss, backward into every "
                "parameter, gradient clipping, AdamW. Images/s = 128 / step time.",
    "conv": "conv2d at ResNet-50 shapes, batch 8 (tools/bench_conv.c). The 3x3 forwards take "
            "the Winograd F(4x4, 3x3) path (docs/ops/conv.md); backward is im2col + GEMM. On a "
            "CPU at the avx512 level the forwards' products (1x1, and Winograd's) run on the "
            "project's own fp32 GEMM with the epilogue fused (docs/ops/gemm_f32.md). "
            "GFLOP/s counts the direct convolution's multiply-adds, so Winograd rows can exceed "
            "the sgemm peak. The trmml and PyTorch columns run minutes apart and this VM "
            "changes speed over minutes: docs/benchmarks-alternating.md has rows measured by "
            "turns (`make bench-alternate`).",
    "clip": "CLIP towers with random weights (tools/bench_clip.c against "
            "scripts/bench_torch.py). The trmml and PyTorch columns run minutes apart and this "
            "VM changes speed over minutes: docs/benchmarks-alternating.md has rows measured by "
            "turns (`make bench-alternate`), RN101 448 batch 8 among them.",
    "pvlr": "One PVLR head training iteration at COCO size from cached features "
            "(tools/bench_pvlr.c against scripts/bench_pvlr_torch.py, docs/pvlr.md): C = 80, "
            "d = 512, HW = 196, batch 32; the CLIP text tower is in the clip table.",
}


def read_rows(path):
    rows, meta = {}, {}
    if not path or not os.path.exists(path):
        return rows, meta
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "bench" and len(parts) == 4:
                rows[parts[1]] = (float(parts[2]), float(parts[3] or 0))  # '' = not counted
            elif parts[0] == "meta" and len(parts) == 3:
                meta[parts[1]] = parts[2]
    return rows, meta


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


# The CPU flags that decide which kernels run (OpenBLAS's and the project's own).
SIMD_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "amx_bf16", "amx_tile"]


def machine():
    """(CPU model, CPU count, the SIMD flags of SIMD_FLAGS the CPU has)."""
    model, cpus, flags = "unknown CPU", str(os.cpu_count() or "?"), []
    for line in run(["lscpu"]).splitlines():
        key, _, val = line.partition(":")
        if key.strip() == "Model name":
            model = val.strip()
        elif key.strip() == "CPU(s)":
            cpus = val.strip()
        elif key.strip() == "Flags":
            have = set(val.split())
            flags = [f for f in SIMD_FLAGS if f in have]
    return model, cpus, flags


def blas_note(kernel):
    """How the GEMM kernel was chosen: by OpenBLAS for this CPU, or forced by the environment."""
    forced = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
              if v in os.environ]
    how = ("forced by " + " ".join(forced) + ": not what a user's machine runs" if forced
           else "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: chosen for this CPU")
    return f"{kernel or 'unknown'} ({how})"


def pick_torch(default, tuned, key):
    """(default ms or None, tuned ms or None, the faster)."""
    a = default[key][0] if key in default else None
    b = tuned[key][0] if key in tuned else None
    have = [x for x in (a, b) if x is not None]
    return a, b, (min(have) if have else None)


def commit():
    head = run(["git", "rev-parse", "--short", "HEAD"]).strip()
    if head and run(["git", "status", "--porcelain", "--untracked-files=no"]).strip():
        head += " (with uncommitted changes)"
    return head or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trmml", required=True)
    ap.add_argument("--torch")
    ap.add_argument("--torch-tuned")
    ap.add_argument("--tuned", default="")
    ap.add_argument("--threads", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--merge", action="store_true")
    args = ap.parse_args()

    ours, ometa = read_rows(args.trmml)
    theirs, tmeta = read_rows(args.torch)
    tuned, _ = read_rows(args.torch_tuned)
    if not ours:
        sys.exit(f"bench_report: no benchmark rows in {args.trmml}")
    # the device GEMM's rows (OpenBLAS on the CPU), not the own fp32 GEMM's ("gemm own ...")
    gemm = [(gf / (ms * 1e-3), key) for key, (ms, gf) in ours.items()
            if key.startswith("gemm ") and not key.startswith("gemm own ")]
    peak, peak_key = max(gemm) if gemm else (None, None)
    model, cpus, flags = machine()
    machine_line = f"- Machine: {model}, {cpus} cores; SIMD: {' '.join(flags) or 'none of note'}"
    old_header, old_sections = [], {}
    if args.merge and os.path.exists(args.out):
        old_header, old_sections = split_report(args.out)
        if machine_line not in old_header:
            # Another machine made the report: its header describes that machine. This run's
            # header replaces it, and the sections kept from the old report say where and
            # when they were measured.
            old_machine = [x[len("- Machine: "):] for x in old_header if x.startswith("- Machine:")]
            old_date = [x[len("- Date: "):] for x in old_header if x.startswith("- Date:")]
            note = (f"Measured on another machine ({(old_machine or ['unknown'])[0]}) on "
                    f"{(old_date or ['an earlier date'])[0]}; not rerun on this one.")
            for name, lines in old_sections.items():
                if not any(x.startswith("Measured on another machine") for x in lines):
                    lines.insert(2, note)
                    lines.insert(3, "")
            old_header = []
        # The report's sgemm peak serves this run only if it ran on as many threads.
        threads = [line.split()[2] for line in old_header if line.startswith("- Threads:")]
        for line in old_header:
            if line.startswith("- sgemm peak") and peak is None and threads == [args.threads]:
                peak = float(line.rsplit(":", 1)[1].split()[0])

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# Benchmarks", "",
           f"Generated by `{args.command}`; do not edit by hand.", "",
           f"- Date: {now}",
           machine_line,
           f"- GEMM: {blas_note(ometa.get('gemm'))}",
           f"- Threads: {args.threads} (trmml `--threads {args.threads}`, PyTorch "
           f"`torch.set_num_threads({args.threads})`)",
           f"- trmml commit: {commit()}",
           f"- PyTorch: {tmeta.get('torch_version', 'not available')}"]
    if peak:
        out.append(f"- sgemm peak (best GEMM row, `{peak_key}`): {peak:.1f} GFLOP/s")
    if "--quick" in args.command:
        timing = ("Smoke test (`--quick`): each time is the median of 2 calls after one warm-up "
                  "call, on a subset of the shapes; not for comparison.")
    else:
        timing = ("Each time is the median of at least 5 calls (and about 1 s) after one "
                  "warm-up call.")
    out += ["", timing + " GFLOP counts a multiply-add as 2 operations. `trmml / PyTorch` "
            "below 1 means trmml is faster. PyTorch runs twice: as installed (`default`) and "
            f"with `GLIBC_TUNABLES={args.tuned or '(not run)'}` (`no-trim`: glibc never returns "
            "memory to the system, which spares PyTorch's allocator the page faults of "
            "re-mapping its activations every call); the ratio is against the faster. A `bf16` "
            "row (`--precision bf16`) is compared with PyTorch's float32 time of the same case. "
            "All rows here are the CPU's (`--device cpu`); GPU rows, trmml against PyTorch on "
            "the same GPU, come from scripts/gpu-check.sh and are recorded in "
            "docs/gpu-validation.md. Where the CLIP rows' time goes (the GEMMs against the "
            "rest, by kernel and by instruction set, against the GEMM kernel's peak) is in "
            "docs/profile.md, with its commands (`TRMML_GEMM_CLOCK=1`, `TRMML_PROFILE=1`).", ""]

    sections = {}
    benches = []
    for key in ours:
        name = key.split()[0]
        if name not in benches:
            benches.append(name)
    for name in benches:
        # Rows without floating-point work (GFLOP 0, e.g. the loader) report items per second:
        # their ms is per item.
        counted = any(gf > 0 for k, (ms, gf) in ours.items() if k.split()[0] == name)
        rate_col = "GFLOP/s | of sgemm peak" if counted else "items/s | -"
        sec = [f"## {name}", ""]
        if name in NOTES:
            sec += [NOTES[name], ""]
        if args.merge:
            sec += [f"Measured alone by `{args.command}` on {now}: threads {args.threads}, "
                    f"trmml commit {commit()}, PyTorch {tmeta.get('torch_version', 'not available')}"
                    + (" (smoke test, not for comparison)" if "--quick" in args.command else "")
                    + ".", ""]
        sec += [f"| case | trmml ms | {rate_col} | PyTorch default ms | PyTorch no-trim ms "
                "| trmml / PyTorch |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for key, (ms, gf) in ours.items():
            if key.split()[0] != name:
                continue
            if counted and gf > 0:
                rate = f"{gf / (ms * 1e-3) if ms > 0 else 0.0:.1f}"
                frac = f"{100 * gf / (ms * 1e-3) / peak:.0f}%" if peak and ms > 0 else "-"
            elif counted:
                rate, frac = "-", "-"
            else:
                rate, frac = f"{1000.0 / ms if ms > 0 else 0.0:.1f}", "-"
            # A bf16 row is compared with PyTorch's fp32 time of the same case (the target of
            # the bf16 path: faster than PyTorch as users run it, docs/ops/gemm_bf16.md).
            tkey = key[:-len(" bf16")] if key.endswith(" bf16") and key not in theirs else key
            a, b, best = pick_torch(theirs, tuned, tkey)
            fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
            ratio = "-" if best is None else f"{ms / best:.2f}"
            sec.append(f"| {key[len(name) + 1:]} | {ms:.2f} | {rate} | {frac} | {fmt(a)} | "
                       f"{fmt(b)} | {ratio} |")
        # Accuracy rows (tools/bench_clip.c): the smallest cosine of an output row against
        # another computation on the same input: bf16 rows against fp32; fp32 rows ("... F4 vs
        # F2", "... F2 vs im2col") Winograd F(4x4, 3x3) against F(2x2, 3x3) and F(2x2, 3x3)
        # against im2col.
        cos = [(k[len("cosine "):], v) for k, v in ometa.items()
               if k.startswith("cosine " + name + " ")]
        if cos:
            sec += ["", "Smallest cosine over the output's rows on the same input: bf16 rows "
                    "against fp32; fp32 rows between the convolution forwards named:", ""]
            sec += [f"- {k[len(name) + 1:]}: {float(v):.9f}" for k, v in cos]
        sec.append("")
        sections[name] = sec

    if old_sections:
        merged = dict(old_sections)
        merged.update(sections)
        text = (old_header or out) + [line for sec in merged.values() for line in sec]
    else:
        text = out + [line for sec in sections.values() for line in sec]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(text))


def split_report(path):
    """An existing report as (header lines, {benchmark name: its lines}), in order."""
    header, sections, name = [], {}, None
    with open(path) as f:
        for line in f.read().split("\n"):
            if line.startswith("## "):
                name = line[3:].strip()
                sections[name] = []
            (sections[name] if name else header).append(line)
    return header, sections


if __name__ == "__main__":
    main()
