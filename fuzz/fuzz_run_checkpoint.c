/* fuzz_run_checkpoint.c — libFuzzer target for the run checkpoint reader (trmml/run.c): its
 * digest, meta tensor, configuration and metrics record, the configuration a resume takes from
 * it, and the restore of a tensor. Any bytes must either open into a consistent record or fail
 * with a message, never crash or read out of bounds.
 *
 * The last 32 bytes of a checkpoint are the SHA-256 of the rest, so nearly every mutation would
 * stop at the digest check. The target sets them right before reading (when the input is long
 * enough), so that mutations reach the parsers behind it; the digest check itself is tested in
 * test_train_e2e.c (train_e2e_checkpoint_corruption_is_refused).
 *
 * The seed (fuzz/corpus/fuzz_run_checkpoint/small.ckpt) is a valid checkpoint with one small
 * parameter, written by this program:
 *   TRMML_FUZZ_WRITE_SEED=PATH build-fuzz/fuzz/fuzz_run_checkpoint */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/sha256.h"
#include "trmml/run.h"

static void write_seed(const char *path) {
    RunConfig rc = run_config_default(TRMML_METHOD_BASELINE, "voc2007");
    run_config_default_splits(&rc);
    snprintf(rc.root, sizeof rc.root, "/data/voc");
    snprintf(rc.model, sizeof rc.model, "/models/RN101.pt");
    char *config = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&config, &n);
    run_config_print(&rc, f);
    fclose(f);
    RunMeta meta = {.method = TRMML_METHOD_BASELINE, .n_classes = 2, .stage = 1,
                    .epochs_done = 1, .step = 3, .global_epochs = 1, .history = 1,
                    .best_epoch = 1, .best_map = 50, .finished = 0};
    Tensor *w = tensor_from_f32(1, SHAPE(4), (const float[]){1, -2, 3.5f, 0});
    RunTensor t[1] = {{.name = "param.head.weight", .t = w}};
    Status st = run_checkpoint_write(path, &meta, config,
                                     "{\"stage\":1,\"epoch\":1,\"loss\":0.5}\n", t, 1);
    free(config);
    if (st != STATUS_OK) {
        fprintf(stderr, "%s\n", error_last());
        exit(1);
    }
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *seed = getenv("TRMML_FUZZ_WRITE_SEED");
    if (seed) write_seed(seed);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (size) memcpy(buf, data, size);
    if (size >= 40) {
        Sha256 h;
        sha256_init(&h);
        sha256_update(&h, buf, size - 32);
        sha256_final(&h, buf + size - 32);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_run_ckpt_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0) __builtin_trap();
    free(buf);
    RunCheckpoint ck;
    error_set(STATUS_OK, "%s", ""); /* so that a failure must set its own message */
    Status st = run_checkpoint_open(path, &ck);
    if (st != STATUS_OK) {
        if (error_last()[0] == '\0') __builtin_trap();
    } else {
        /* An opened record is consistent: both texts, the metrics of meta.history lines. */
        if (!ck.config || !ck.metrics) __builtin_trap();
        int64_t lines = 0;
        for (const char *p = ck.metrics; *p; p++) lines += *p == '\n';
        if (lines != ck.meta.history) __builtin_trap();
        RunConfig rc;
        bool intact = false;
        run_config_of_checkpoint(&ck, "/nonexistent/config.txt", &rc, &intact);
        Tensor *w = tensor_zeros(DT_F32, 1, SHAPE(4));
        RunTensor t[1] = {{.name = "param.head.weight", .t = w}};
        run_checkpoint_restore(&ck, t, 1);
        run_checkpoint_close(&ck);
        tensor_step_end();
    }
    remove(path);
    return 0;
}
