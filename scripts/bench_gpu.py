"""bench_gpu.py — trmml against PyTorch on one device, by turns (scripts/gpu-check.sh, step e).

Usage: bench_gpu.py --bin BIN --device cuda|cpu --threads N [--groups gemm,clip,train]
                    [--rounds R] [--deadline EPOCH_SECONDS] [--tsv PATH] [--md PATH]

Each round runs every group, trmml then PyTorch, each in a fresh process timed as its benchmark
times itself (tools/bench*.c, scripts/bench_torch*.py: one warm-up, then the median of several
calls, the device synchronised before each clock reading):
    gemm   `BIN bench gemm --case x2048x` against `bench_torch.py --case x2048x`: 2048^3 and the
           CLIP shapes 1568x2048x512 and 616x2048x512, trmml's GEMM (cuBLAS on a GPU) against
           torch.mm
    clip   `BIN bench clip --case "rn101 img 448"` against the same rows of bench_torch.py: the
           RN101 image tower at 448 px, batch 1, 8 and (on a GPU) 32
    train  `BIN bench train --case c80` against `bench_torch_train.py --classes 80`: one TRM-ML
           iteration at C = 80, batch 32, 448 px, from the feature cache (`step`) and from the
           images (`iteration`, the image tower + the step)
The ratio trmml / PyTorch is taken within each round (the two ran seconds apart), and the report
gives the median of each column and of the per-round ratios (as scripts/bench_alternate.py does
for the CPU). Rows only one side prints (PyTorch's parts of a training step, which trmml does
not time on a GPU) are left out. A round is started only if the rounds so far suggest it ends
before --deadline; each process is stopped at the deadline.

Output: a line `bench_gpu: ...` summarising the result and a readable table on stdout, progress
on stderr; --tsv PATH the rows `round <TAB> key <TAB> trmml ms <TAB> PyTorch ms <TAB> GFLOP`,
--md PATH a Markdown table. Exit status 1 when a process failed or no round completed (a round
cut short by the deadline after others completed is noted, not a failure). Standard library only.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# group: (trmml's benchmark and --case, PyTorch's script and arguments)
GROUPS = {
    "gemm": (["gemm", "--case", "x2048x"], ["bench_torch.py", "--case", "x2048x"]),
    "clip": (["clip", "--case", "rn101 img 448"], ["bench_torch.py", "--case", "rn101 img 448"]),
    "train": (["train", "--case", "c80"], ["bench_torch_train.py", "--classes", "80"]),
}


def rows_of(cmd, timeout):
    """Run cmd; ({key: (ms, gflop)}, {meta: value}) of its TSV, or raise RuntimeError."""
    if timeout <= 0:
        raise RuntimeError(f"no time left for {' '.join(cmd)}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd)}: stopped after {timeout:.0f} s (the deadline)")
    if out.returncode != 0:
        said = [line for line in out.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: "
                           f"{said[-1].strip() if said else '(nothing on stderr)'}\n"
                           f"{out.stderr[-3000:]}")
    rows, meta = {}, {}
    for line in out.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "bench" and len(f) == 4:
            rows[f[1]] = (float(f[2]), float(f[3] or 0))
        elif f[0] == "meta" and len(f) == 3:
            meta[f[1]] = f[2]
    return rows, meta


def images_per_s(key, ms):
    """Images per second of an image-tower row ("... img 448 b8"), else None."""
    words = key.split()
    if "img" in words and words[-1].startswith("b") and words[-1][1:].isdigit():
        return int(words[-1][1:]) / (ms * 1e-3)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--groups", default="gemm,clip,train")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=None)
    ap.add_argument("--tsv")
    ap.add_argument("--md")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    groups = [g for g in args.groups.split(",") if g]
    for g in groups:
        if g not in GROUPS:
            sys.exit(f"bench_gpu: unknown group '{g}' (expected {', '.join(GROUPS)})")
    deadline = args.deadline if args.deadline else time.time() + 3600
    ours_base = [args.bin, "--device", args.device, "--threads", str(args.threads), "bench"]
    theirs_extra = ["--device", args.device]

    rounds, meta, error, round_s = [], {}, None, []
    for r in range(args.rounds):
        if round_s and time.time() + max(round_s) > deadline:
            print(f"round {r + 1}: not started, {deadline - time.time():.0f} s left and a round "
                  f"took up to {max(round_s):.0f} s", file=sys.stderr)
            break
        t0 = time.time()
        got = {}
        try:
            for g in groups:
                mine, theirs = GROUPS[g]
                o, om = rows_of(ours_base + mine, deadline - time.time())
                p, pm = rows_of([args.python, os.path.join(HERE, theirs[0]), str(args.threads)]
                                + theirs[1:] + theirs_extra, deadline - time.time())
                meta.update({"trmml " + k: v for k, v in om.items()})
                meta.update({"PyTorch " + k: v for k, v in pm.items()})
                for key in o:
                    if key in p:
                        got[key] = (o[key][0], p[key][0], o[key][1])
        except RuntimeError as e:
            error = str(e)
            print(f"round {r + 1}: {error}", file=sys.stderr)
            if got:
                rounds.append(got)  # the groups this round finished
            break
        rounds.append(got)
        round_s.append(time.time() - t0)
        print(f"round {r + 1}/{args.rounds}: {len(got)} rows in {round_s[-1]:.0f} s",
              file=sys.stderr, flush=True)

    keys = []
    for rd in rounds:
        keys += [k for k in rd if k not in keys]
    summary = []
    for k in keys:
        ours = [rd[k][0] for rd in rounds if k in rd]
        theirs = [rd[k][1] for rd in rounds if k in rd]
        ratios = [rd[k][0] / rd[k][1] for rd in rounds if k in rd]
        gflop = next(rd[k][2] for rd in rounds if k in rd)
        summary.append((k, len(ours), statistics.median(ours), statistics.median(theirs),
                        statistics.median(ratios), gflop))
    brief = ", ".join(f"{k} {ratio:.2f}" for k, _, _, _, ratio, _ in summary)
    status = (f"{len(rounds)} round(s), {len(keys)} rows; trmml / PyTorch (median): {brief}"
              if summary else "no row measured")
    if error:
        status += f"; stopped: {error.splitlines()[0]}"
    print("bench_gpu: " + status)
    for k, n, a, b, ratio, gf in summary:
        print(f"  {k:<32s} trmml {a:9.2f} ms  PyTorch {b:9.2f} ms  ratio {ratio:5.2f}  ({n} rounds)")

    if args.tsv:
        with open(args.tsv, "w") as f:
            for i, rd in enumerate(rounds):
                for k, (a, b, gf) in rd.items():
                    f.write(f"{i + 1}\t{k}\t{a:.4f}\t{b:.4f}\t{gf:.6f}\n")
    if args.md and not summary:
        with open(args.md, "w") as f:
            f.write(f"Not measured: {error.splitlines()[0] if error else 'no round ran'}\n")
    elif args.md:
        lines = [f"Device `{args.device}`: trmml {meta.get('trmml device', '?')} "
                 f"(GEMM {meta.get('trmml gemm', '?')}), PyTorch "
                 f"{meta.get('PyTorch torch_version', '?')} on "
                 f"{meta.get('PyTorch device', args.device)}"
                 + ("; TF32 off on both sides, cudnn.benchmark on for PyTorch. "
                    if args.device.startswith("cuda") else ". ")
                 + f"{len(rounds)} round(s) by turns "
                 "(scripts/bench_gpu.py); each figure is the median over the rounds, the ratio "
                 "the median of the per-round ratios (below 1: trmml faster).", "",
                 "| row | rounds | trmml ms | PyTorch ms | trmml / PyTorch | trmml rate | "
                 "PyTorch rate |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for k, n, a, b, ratio, gf in summary:
            ips = images_per_s(k, a)
            if ips is not None:
                rate = (f"{ips:.1f} img/s", f"{images_per_s(k, b):.1f} img/s")
            elif gf > 0:
                rate = (f"{gf / (a * 1e-3):.0f} GFLOP/s", f"{gf / (b * 1e-3):.0f} GFLOP/s")
            else:
                rate = ("-", "-")
            lines.append(f"| {k} | {n} | {a:.2f} | {b:.2f} | {ratio:.2f} | {rate[0]} | "
                         f"{rate[1]} |")
        if error:
            lines += ["", f"Stopped early: {error.splitlines()[0]}"]
        with open(args.md, "w") as f:
            f.write("\n".join(lines) + "\n")
    failed = error is not None and " exited " in error.splitlines()[0]
    sys.exit(1 if failed or not rounds else 0)


if __name__ == "__main__":
    main()
