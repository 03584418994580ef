/* test_dist.c — several processes under mpirun (tensor/dist.h, docs/distributed.md): the
 * fixed-order all-reduce is exact on every rank; `trmml extract` on two ranks writes the bytes of
 * one process, and a failure on one rank leaves no file. Each test runs build/trmml under
 * `mpirun --oversubscribe -np 2`, one thread per rank; without Open MPI's mpirun, or with a
 * build/trmml made without MPI (make MPI=0), the tests are skipped (counted, never a pass). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clip/safetensors.h"
#include "datasets/dataset.h"
#include "datasets/synth.h"
#include "test/test.h"
#include "test/util_clip.h"

/* "<env> mpirun ... -np N '<exe>' --threads 1" into cmd, or false with the test skipped. The
 * environment lets mpirun run as root (containers, CI); --bind-to none because the tests give
 * each rank one thread themselves. */
static bool mpi_command(char *exe, size_t cap, int np, char *cmd, size_t cmd_cap) {
    if (!test_trmml_path(exe, cap)) return false;
    static char out[4096];
    if (test_run_capture("command -v mpirun 2>/dev/null", out, sizeof out) != 0 || !out[0]) {
        test_skip("mpirun not found (Open MPI: openmpi-bin, scripts/install-deps.sh)");
        return false;
    }
    char probe[4400];
    snprintf(probe, sizeof probe, "'%s' version 2>&1", exe);
    if (test_run_capture(probe, out, sizeof out) != 0 || !strstr(out, "mpi: ") ||
        strstr(out, "mpi: not compiled in")) {
        test_skip("build/trmml was built without MPI (make MPI=0, or no mpicc at build time)");
        return false;
    }
    snprintf(cmd, cmd_cap,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
             "mpirun --oversubscribe --bind-to none -np %d '%s' --threads 1",
             np, exe);
    return true;
}

/* The all-reduce of known vectors (integers with a closed-form sum; hashed values whose sum in
 * rank order each rank recomputes) equals that sum bit for bit on both ranks, for lengths that
 * two ranks do not divide and for one element (a rank that owns nothing). */
TEST(dist_allreduce_exact_on_two_ranks) {
    char exe[4200], mpi[4600], cmd[5000];
    if (!mpi_command(exe, sizeof exe, 2, mpi, sizeof mpi)) return;
    static char out[1 << 14];
    snprintf(cmd, sizeof cmd, "%s dist-check --floats 100001 --rounds 1 2>&1", mpi);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, ", 2 ranks") && strstr(out, "rank 1: host") &&
               strstr(out, "all-reduce: exact on every rank") &&
               strstr(out, "all-reduce of 100001 floats"),
           "mpirun dist-check exit %d: %.3000s", rc, out);
}

/* The miniature world of test/test_train_e2e.c: a synthetic VOC-layout dataset (20 training and
 * 10 test images of 64 px) and a small random CLIP checkpoint, in a temporary directory. */
typedef struct {
    char dir[64], root[160], classes[160], model[160];
} DistWorld;

static void world_make(DistWorld *w) {
    test_temp_dir(w->dir, sizeof w->dir, "dist");
    char world[128];
    snprintf(world, sizeof world, "%s/world", w->dir);
    snprintf(w->root, sizeof w->root, "%s/VOCdevkit", world);
    snprintf(w->classes, sizeof w->classes, "%s/classes.txt", world);
    snprintf(w->model, sizeof w->model, "%s/clip.safetensors", w->dir);
    SynthConfig sc = ds_synth_default_config();
    sc.n_train = 20;
    sc.n_test = 10;
    sc.size = 64;
    CHECK(ds_synth_write(world, &sc, false, NULL) == STATUS_OK, "%s", error_last());
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 11);
    CHECK(safetensors_write(w->model, sd) == STATUS_OK, "%s", error_last());
    param_store_destroy(sd);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

/* The command line of `trmml extract` of the world's training split into out. */
static void extract_args(const DistWorld *w, const char *out, char *args, size_t cap) {
    snprintf(args, cap,
             "extract --model '%s' --dataset voc2007 --root '%s' --class-list '%s' "
             "--split trainval --size 64 --out '%s'",
             w->model, w->root, w->classes, out);
}

/* Files in dir whose name starts with prefix (leftover temporaries). */
static int files_starting(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

/* 20 images in batches of 8: rank 0 extracts batches 0 and 2, rank 1 batch 1, rank 0 writes;
 * the file is byte for byte the one process's at the same threads per process. */
TEST(dist_extract_two_ranks_equals_one_process) {
    char exe[4200], mpi[4600], cmd[6000], args[1200], one[256], two[256];
    if (!mpi_command(exe, sizeof exe, 2, mpi, sizeof mpi)) return;
    DistWorld w;
    world_make(&w);
    snprintf(one, sizeof one, "%s/one.feat", w.dir);
    snprintf(two, sizeof two, "%s/two.feat", w.dir);
    static char out[1 << 14];
    extract_args(&w, one, args, sizeof args);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 %s 2>&1", exe, args);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0, "one-process extract exit %d: %.2000s", rc, out);
    extract_args(&w, two, args, sizeof args);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", mpi, args);
    rc = test_run_capture(cmd, out, sizeof out);
    /* Progress and the summary come from rank 0 only: one summary line. */
    const char *first = strstr(out, "20 images of voc2007 trainval");
    EXPECT(rc == 0 && first && !strstr(first + 1, "20 images of voc2007 trainval"),
           "two-rank extract exit %d: %.2000s", rc, out);
    size_t n1 = 0, n2 = 0;
    char *a = slurp(one, &n1), *b = slurp(two, &n2);
    EXPECT(a && b && n1 == n2 && n1 > 256 && memcmp(a, b, n1) == 0,
           "the two-rank cache (%zu bytes) differs from the one-process cache (%zu bytes)", n2, n1);
    free(a);
    free(b);
    test_remove_tree(w.dir);
}

/* An unreadable image in rank 1's batch: both ranks stop with exit 1, the message names the
 * rank and the image, and neither the cache nor a temporary is left. */
TEST(dist_extract_failure_on_one_rank_leaves_nothing) {
    char exe[4200], mpi[4600], cmd[6000], args[1200], feat[256];
    if (!mpi_command(exe, sizeof exe, 2, mpi, sizeof mpi)) return;
    DistWorld w;
    world_make(&w);
    Dataset *ds = NULL;
    DsOptions opt = {.class_list = w.classes};
    CHECK(ds_open("voc2007", w.root, "trainval", &opt, &ds) == STATUS_OK, "%s", error_last());
    char image[512];
    snprintf(image, sizeof image, "%s", ds_image_path(ds, 9)); /* batch 1: rank 1 */
    ds_free(ds);
    test_write_file(image, "not a JPEG", (size_t)-1);
    snprintf(feat, sizeof feat, "%s/bad.feat", w.dir);
    extract_args(&w, feat, args, sizeof args);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", mpi, args);
    static char out[1 << 14];
    int rc = test_run_capture(cmd, out, sizeof out);
    const char *base = strrchr(image, '/') + 1;
    EXPECT(rc == 1 && strstr(out, "trmml extract: rank 1: ") && strstr(out, base), "exit %d: %.2000s",
           rc, out);
    EXPECT(access(feat, F_OK) != 0 && files_starting(w.dir, "bad.feat") == 0,
           "a failed extract left %d file(s) named bad.feat*", files_starting(w.dir, "bad.feat"));
    test_remove_tree(w.dir);
}
