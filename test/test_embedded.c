/* test_embedded.c — the embedded default end to end in miniature (scripts/embedded.sh, issue 6,
 * with the configuration files of test/data/embedded-mini/): a 256-picture world, a small CLIP
 * pretrained for 120 steps, three epochs of each method, the table; then a second invocation
 * that reuses every cached product; and `trmml results` on the runs. Besides the path (files,
 * caching, the table's shape) it checks that learning happens: the CLIP's zero-shot mAP is above
 * chance and every method's test mAP rises after its first evaluation (issues 5 and 8: "a short
 * synthetic run improves mAP"; the criterion and its measured margin are at the check). The
 * full-size numbers are in docs/embedded.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clip/tokenizer.h"
#include "test/test.h"
#include "test/util_clip.h"

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

TEST(embedded_miniature_train_and_results) {
    char exe[512];
    if (!test_trmml_path(exe, sizeof exe)) return;
    ClipTokenizer *tok = test_load_vocab();
    if (!tok) return;
    clip_tokenizer_free(tok);
    char dir[] = "/tmp/trmml_embedded_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    char env[1024], cmd[2048];
    snprintf(env, sizeof env,
             "TRMML=%s EMBEDDED_DIR=%s EMBEDDED_CONF=test/data/embedded-mini WORLD_TRAIN=256 "
             "WORLD_TEST=128",
             exe, dir);
    snprintf(cmd, sizeof cmd, "%s scripts/embedded.sh train --ratio 0.5 2>&1", env);
    static char out[1 << 16];
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0, "embedded.sh train: exit %d\n%s", rc, out);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        EXPECT(system(cmd) == 0, "cleanup");
        return;
    }
    /* The stages ran, and the table has the five rows with three numbers each. */
    EXPECT(strstr(out, "generating the synthetic world") && strstr(out, "pretraining the small CLIP") &&
               strstr(out, "zero-shot evaluation") && strstr(out, "extracting test features"),
           "missing stages:\n%s", out);
    const char *rows[] = {"zero-shot CLIP", "baseline (Table 3)", "DualCoOp", "TRM-ML", "PVLR"};
    for (int i = 0; i < 5; i++) {
        const char *p = strstr(out, rows[i]);
        double a = -1, b = -1, c = -1;
        EXPECT(p && sscanf(p + strlen(rows[i]), "%lf %lf %lf", &a, &b, &c) == 3 && a >= 0 &&
                   a <= 100 && b >= 0 && b <= 100 && c >= 0 && c <= 100,
               "row '%s' lacks three percentages:\n%s", rows[i], out);
    }
    const char *ch = strstr(out, "chance-level mAP (random scores):");
    double chance = -1, zs = -1;
    EXPECT(ch && sscanf(ch + strlen("chance-level mAP (random scores):"), "%lf", &chance) == 1,
           "no chance level:\n%s", out);
    const char *z = strstr(out, "zero-shot CLIP");
    if (z) sscanf(z + strlen("zero-shot CLIP"), "%lf", &zs);
    EXPECT(zs > chance + 5, "zero-shot mAP %.2f not clearly above chance %.2f", zs, chance);
    /* Every method learns: an evaluation after the first beats the first by a clear margin, and
     * for the one-stage methods the last beats the first too. TRM-ML's second stage (pseudo-
     * labels from 256 pictures) drifts instead: in two runs whose CLIPs differed only by rounding
     * (before and after the text tower's by-length layout), its six evaluations were 23.19 25.83
     * 24.93 24.83 24.31 24.72 and 24.34 25.89 24.86 24.48 24.87 24.31 — a peak in stage 1, then
     * within +-0.8, so its last-vs-first sign is noise. The margin, 1 point, is above that spread
     * between neighbouring evaluations and below every method's measured gain (1.5-6.3). */
    const char *methods[] = {"baseline", "dualcoop", "trmml", "pvlr"};
    for (int i = 0; i < 4; i++) {
        char log[1200], line[512];
        snprintf(log, sizeof log, "%s/runs/%s-r0.5-s0/log.txt", dir, methods[i]);
        FILE *lf = fopen(log, "rb");
        double first = -1, last = -1, best_later = -1;
        int evals = 0;
        while (lf && fgets(line, sizeof line, lf)) {
            const char *m = strncmp(line, "eval stage=", 11) == 0 ? strstr(line, "mAP=") : NULL;
            if (!m) continue;
            last = atof(m + 4);
            if (evals++ == 0) first = last;
            else if (last > best_later) best_later = last;
        }
        if (lf) fclose(lf);
        const bool one_stage = strcmp(methods[i], "trmml") != 0;
        EXPECT(evals >= 3 && best_later >= first + 1.0 && (!one_stage || last > first),
               "%s: %d evaluations, first mAP %.2f, best later %.2f, last %.2f (%s)",
               methods[i], evals, first, best_later, last, log);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/clip-small.safetensors", dir);
    struct stat st;
    EXPECT(stat(path, &st) == 0 && st.st_size > 0, "no %s", path);

    /* Zero-shot with the dense token 0 as the image feature; a bad --feature is a usage error. */
    snprintf(cmd, sizeof cmd,
             "%s zeroshot-eval --model %s/clip-small.safetensors --dataset voc2007 --root %s/world "
             "--class-list %s/world/classes.txt --split test --feature token0 2>&1",
             exe, dir, dir, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "\"mAP\":") && strstr(out, "chance-level mAP"),
           "zeroshot-eval --feature token0: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd,
             "%s zeroshot-eval --model %s/clip-small.safetensors --dataset voc2007 --root %s/world "
             "--split test --feature mean 2>&1", exe, dir, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--feature") && strstr(out, "'mean'"), "bad --feature: exit %d: %s",
           rc, out);

    /* A corrupt picture stops pretraining with its path (the error travels from the decoding
     * thread), exit 1, and no model file. */
    snprintf(cmd, sizeof cmd,
             "cp -r %s/world %s/bad && printf 'not a jpeg' > %s/bad/VOCdevkit/VOC2007/JPEGImages/"
             "000007.jpg && %s pretrain-clip --data %s/bad --out %s/bad.safetensors --steps 1 "
             "--batch 16 2>&1",
             dir, dir, dir, exe, dir, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    EXPECT(rc == 1 && strstr(out, "000007.jpg") && strstr(out, "not a JPEG") &&
               stat(path, &st) != 0,
           "corrupt picture: exit %d: %s", rc, out);

    /* Second run: every product is cached, nothing is recomputed. */
    snprintf(cmd, sizeof cmd, "%s scripts/embedded.sh train --ratio 0.5 2>&1", env);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && count(out, "== ") == 0 && strstr(out, "TRM-ML"),
           "second run recomputed something (exit %d):\n%s", rc, out);

    /* The results summary over the one ratio and seed present. */
    snprintf(cmd, sizeof cmd,
             "%s results --runs %s/runs --zeroshot %s/zeroshot.json --chance 25 --ratios 0.5 "
             "--seeds 0 --out %s/results.md --plot %s/results.png 2>&1",
             exe, dir, dir, dir, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0, "trmml results: exit %d\n%s", rc, out);
    snprintf(path, sizeof path, "%s/results.md", dir);
    FILE *f = fopen(path, "rb");
    static char md[1 << 16];
    size_t n = f ? fread(md, 1, sizeof md - 1, f) : 0;
    if (f) fclose(f);
    md[n] = 0;
    EXPECT(strstr(md, "| TRM-ML |") && strstr(md, "| + KD |") && strstr(md, "chance-level mAP (random scores) 25.00"),
           "results.md:\n%s", md);
    snprintf(path, sizeof path, "%s/results.png", dir);
    EXPECT(stat(path, &st) == 0 && st.st_size > 1000, "no plot %s", path);
    /* Bad input: a missing zero-shot file is named, exit 1. */
    snprintf(cmd, sizeof cmd,
             "%s results --runs %s/runs --zeroshot %s/none.json --chance 25 --ratios 0.5 "
             "--seeds 0 --out %s/r.md --plot %s/r.png 2>&1",
             exe, dir, dir, dir, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "none.json"), "missing zero-shot file: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT(system(cmd) == 0, "cleanup");
}
