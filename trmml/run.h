/* run.h — the run directory of `trmml train`: its configuration, its log and its checkpoint.
 *
 * A run directory holds everything needed to continue, evaluate or use a run:
 *   config.txt                the resolved configuration: the run keys (method, dataset, paths,
 *                             label protocol), the shared keys (TrmmlConfig), then the keys of
 *                             the run's method (trmml/method.h); parses back
 *   classes.txt               the class names, one per line, in index order
 *   log.txt                   progress lines (key=value), mirrored from the terminal
 *   metrics.jsonl             one JSON object per evaluation (stage, epoch, loss, mAP family)
 *   ap.csv                    per-class AP of the latest evaluation (class,AP)
 *   curve.png                 training curve: loss and mAP per epoch
 *   checkpoint.safetensors    learnable parameters, optimizer state, MMCP state, counters
 * docs/training.md describes each file.
 *
 * The checkpoint is a safetensors file (clip/safetensors.h) of named tensors, in this order:
 *   trmml.meta (RUN_META_N) int64   magic, version, method, C, counters (RunMeta)
 *   trmml.config (n) uint8          the resolved configuration text (what config.txt holds)
 *   trmml.metrics (n) uint8         metrics.jsonl as of this checkpoint (meta.history lines)
 *   param.<name>                    every trainable parameter
 *   optim.<k>.<name>, optim.steps   optimizer state (trmml/train.c)
 *   <method state>                  the method's `state` (TRM-ML: mmcp.*, the memory bank, write
 *                                   pointers, fill counts, prototypes, thresholds, trmml/mmcp.h)
 *   trmml.sha256 (32) uint8         SHA-256 of every byte of the file before it (it is last)
 * So a checkpoint is the run's own record: resume takes its settings and metrics from it, and
 * the digest catches any flipped or missing byte. It is written to path.new, fsynced and
 * renamed, so the previous checkpoint survives a crash during the write. Loading checks the
 * digest, the magic, the version and every shape. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/error.h"
#include "tensor/tensor.h"
#include "trmml/trmml_config.h"

#define RUN_PATH_MAX 1024

/* The indices of the four built-in methods in the registry (trmml/methods.c, whose order the
 * checkpoints record); for tests and tools. A new method needs no name here. */
typedef enum {
    TRMML_METHOD_TRMML = 0,
    TRMML_METHOD_DUALCOOP,
    TRMML_METHOD_BASELINE,
    TRMML_METHOD_PVLR,
    TRMML_METHOD_COUNT /* the built-in ones; trmml_method_count() is the registry's length */
} TrmmlMethod;

/* Bytes that hold the configuration of any method (TrmmlMethodOps.config_size at most). */
#define RUN_METHOD_CONFIG_BYTES 512

/* The run keys, the shared keys and the method's keys (config.txt prints them in this order). */
typedef struct {
    int method;                          /* TrmmlMethod */
    int precision;                       /* Precision of the frozen towers' products
                                            (tensor/ops/gemm_bf16.h): 0 fp32, 1 bf16 */
    char dataset[32];                    /* ds_open name */
    char root[RUN_PATH_MAX];             /* dataset root (absolute once resolved) */
    char train_split[32], test_split[32];
    char class_list[RUN_PATH_MAX];       /* optional class list (synthetic world), "" = none */
    char model[RUN_PATH_MAX];            /* CLIP checkpoint */
    char vocab[RUN_PATH_MAX];            /* BPE vocabulary, "" = clip_vocab_path default */
    char cached_train[RUN_PATH_MAX];     /* feature caches (trmml extract), "" = run the tower */
    char cached_test[RUN_PATH_MAX];
    double ratio;                        /* partial-label keep probability (SPEC §6.1) */
    int64_t mask_seed;                   /* partial 0, single-positive 1200 (datasets/mask.h) */
    TrmmlConfig tc;                      /* the keys every method shares (the recipe, prompts, ASL) */
    union {                              /* the method's own keys: the struct of its method file */
        unsigned char bytes[RUN_METHOD_CONFIG_BYTES]; /* (method_trmml_config(), ...), written */
        double align_d;                               /* by its key table and defaults */
        int64_t align_i;
    } mc;
} RunConfig;

/* The registry (trmml/methods.c): the name of method i ("trmml"); the index of a name, -1 when
 * no method has it. */
const char *trmml_method_name(int method);
int trmml_method_parse(const char *s);
/* "trmml, dualcoop, baseline, pvlr" (every registered name) into buf; returns buf. */
char *trmml_method_list(char *buf, size_t cap);

/* Set the process's precision of frozen-tower products to rc's `precision` key (a run trains,
 * evaluates and predicts in the precision it was configured with); STATUS_ERR_DEVICE naming
 * the key when the CPU cannot run bf16. Closing a run sets fp32 back. */
Status run_config_apply_precision(const RunConfig *rc);

/* The defaults of a method: the shared keys' SPEC values (TRM-ML's recipe, SPEC §4.7) changed
 * by the method (its config_default: PVLR's class-shared contexts, SPEC §5.7; DualCoOp's SGD
 * recipe, SPEC §3: lr 0.002, 0.001 on VOC, batch 32, 50 epochs, weight decay 5e-4), and the
 * method's own keys. `dataset` may be NULL. */
RunConfig run_config_default(int method, const char *dataset);
/* Set one key: a run key, a shared key or a key of the configuration's method. `method` sets
 * the method and resets the method's own keys to its defaults when it changes (the shared keys
 * stay). STATUS_ERR_USAGE naming the key otherwise; a key of another method is named with the
 * method it belongs to. */
Status run_config_set(RunConfig *rc, const char *key, const char *value);
/* Apply a `key = value` file (the format of trmml_config.h). Its `method` line, wherever it
 * stands, is applied first (as run_config_set), so the method's keys read into the method's
 * struct; a key of another method is an error naming the key and the method it belongs to.
 * Errors name FILE:LINE (FILE alone for a key of another method). */
Status run_config_parse_file(RunConfig *rc, const char *path);
/* The same for text in memory (NUL-terminated); `what` names it in errors. */
Status run_config_parse_text(RunConfig *rc, const char *text, const char *what);
/* Every key as `key = value`: the run keys (method first), the shared keys, the method's keys;
 * parses back to the same configuration. */
void run_config_print(const RunConfig *rc, FILE *out);
/* Cross-field checks (ratio range, paths given, the shared keys, the method's config_validate). */
Status run_config_validate(const RunConfig *rc);
/* Fill empty train_split / test_split with the dataset's protocol splits (voc2007 trainval/test,
 * voc2012 train/val, coco2014 train/val, nuswide, vg200 and cub train/test). */
void run_config_default_splits(RunConfig *rc);

/* Path of a file inside the run directory ("<dir>/<name>") in buf; false when it does not fit. */
bool run_path(char *buf, size_t cap, const char *dir, const char *name);
/* mkdir -p; STATUS_ERR_IO naming the directory. */
Status run_mkdir(const char *dir);
/* xwrite_file_atomic (tensor/error.h): a temporary of its own beside `path`, fsync, rename, so
 * a concurrent writer of the same file (trmml eval during training) cannot tear it. The name
 * stays for trmml/train.c's calls; other code calls xwrite_file_atomic. */
Status run_write_file(const char *path, const char *text, size_t n);

/* The exclusive lock of a run directory: flock on <dir>/.lock, held while the descriptor is
 * open, so the kernel drops it when the holder exits or is killed. The holder writes
 * "pid=P host=H started=T" into the file; the file itself stays and means nothing unlocked. */
typedef struct {
    int fd; /* -1 when not held */
} RunLock;
/* Take the lock of an existing directory without waiting: STATUS_ERR_IO naming the directory
 * and the holder's line when another process holds it. */
Status run_lock(const char *dir, RunLock *lock);
/* Release (no-op when not held). */
void run_unlock(RunLock *lock);

/* Progress log: each line goes to `echo` (may be NULL) and to the log file (flushed). */
typedef struct {
    FILE *file;
    FILE *echo;
} RunLog;
Status run_log_open(RunLog *log, const char *dir, bool append, FILE *echo);
void run_log_printf(RunLog *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void run_log_close(RunLog *log);

/* One line of metrics.jsonl: an epoch, and its evaluation when there was one. */
typedef struct {
    int64_t stage, epoch, global_epoch, step; /* as RunMeta after the epoch */
    double loss;                              /* mean training loss of the epoch */
    double map;                               /* test mAP (percent); NAN: not evaluated */
} RunMetricsRow;

/* Read metrics.jsonl at path (or text in memory; `what` names it) into rows (free()).
 * STATUS_ERR_FORMAT naming FILE:LINE and the key when a line is not such an object (malformed
 * JSON, a key missing or of the wrong type, an eval object without "mAP"); rows = NULL then. */
Status run_metrics_read(const char *path, RunMetricsRow **rows, int64_t *n);
Status run_metrics_parse(const char *text, const char *what, RunMetricsRow **rows, int64_t *n);

/* The training curve of metrics.jsonl (`metrics_path`) as a RUN_CURVE_W x RUN_CURVE_H PNG at
 * png_path (trmml/plot.h):
 * mean loss per epoch (left chart, blue) and test mAP (right chart, red; epochs without an
 * evaluation left out), against the epoch counted over all stages, with the boundary between
 * TRM-ML's stages dashed; titled, axes labelled, ticks numbered, a legend in each chart.
 * Errors of run_metrics_read, and of plot_charts_png; png_path is left as it was then. */
#define RUN_CURVE_W 960
#define RUN_CURVE_H 400
Status run_write_curve(const char *metrics_path, const char *png_path);

/* ---- checkpoint ---------------------------------------------------------------------------- */

#define RUN_CKPT_MAGIC 0x31504B434C4D4D52LL /* "RMMLCKP1" little-endian */
/* 2: trmml.config, trmml.metrics and trmml.sha256 added. Version 1 files are refused (they
 * carry neither the settings nor a digest to check them by; docs/training.md).
 * 3: the configuration text holds the shared keys and the run's method's keys only (per-method
 * key tables, docs/methods.md); a version 2 text, which lists every method's keys, no longer
 * parses, so version 2 files are refused too. */
#define RUN_CKPT_VERSION 3
#define RUN_META_N 16

/* Counters and records kept with the learnable state. */
typedef struct {
    int64_t method, n_classes;
    int64_t stage;          /* 1 or 2 (single-stage runs: 1) */
    int64_t epochs_done;    /* completed epochs of the current stage */
    int64_t step;           /* optimizer steps taken in the current stage */
    int64_t global_epochs;  /* completed epochs over all stages */
    int64_t history;        /* lines of metrics.jsonl written so far */
    int64_t best_epoch;     /* global epoch (1-based) with the best test mAP, 0 = none yet */
    double best_map;        /* its mAP (percent) */
    int64_t finished;       /* 1 when the run has completed every epoch */
} RunMeta;

/* One named tensor to save or restore (borrowed). */
typedef struct {
    char name[256];
    Tensor *t;
} RunTensor;

/* The line of metrics.jsonl for the epoch meta has just completed, newline included:
 * {"stage":S,"epoch":E,"global_epoch":G,"step":N,"loss":L,"eval":M} with L to 9 significant
 * digits and M the object eval_json holds (ds_metrics_json; copied with its numbers' text
 * unchanged), or null when eval_json is NULL. A new string (free()); *n its length. */
char *run_metrics_line(const RunMeta *meta, double loss, const char *eval_json, size_t *n);

/* Write the meta tensor, the configuration and metrics texts (NUL-terminated), every entry in
 * order, and the digest, as safetensors at `path` (path.new, fsync, rename). Tensors must be on
 * the CPU. */
Status run_checkpoint_write(const char *path, const RunMeta *meta, const char *config,
                            const char *metrics, const RunTensor *t, int n);

/* A checkpoint read and verified, before its tensors are copied out. */
typedef struct {
    char path[RUN_PATH_MAX];
    RunMeta meta;
    char *config;   /* owned, NUL-terminated: the run's resolved configuration */
    char *metrics;  /* owned, NUL-terminated: meta.history lines of metrics.jsonl */
    ParamStore *ps; /* owned: every stored tensor */
} RunCheckpoint;

/* Read `path` and check its digest, magic and version, and that the metrics record holds
 * meta.history lines. STATUS_ERR_FORMAT naming the file otherwise (a corrupt or truncated
 * file, a version 1 checkpoint); STATUS_ERR_IO when unreadable. */
Status run_checkpoint_open(const char *path, RunCheckpoint *ck);
/* Copy each entry's stored tensor into t[i].t (same dtype and shape required;
 * STATUS_ERR_FORMAT naming the file and the tensor otherwise; a missing entry is an error
 * unless its t pointer is NULL). */
Status run_checkpoint_restore(const RunCheckpoint *ck, const RunTensor *t, int n);
/* Release (safe on a zeroed or already closed checkpoint). */
void run_checkpoint_close(RunCheckpoint *ck);

/* The configuration of the run whose checkpoint is `ck`: the checkpoint's copy, with the
 * keys that may change taken from config_path when it gives them: where files are on this
 * machine (root, class_list, model, vocab, cached_train, cached_test; a cache may move but not
 * appear or vanish) and how a step is split (micro_batch, text_chunk). Keys config_path lacks, or a
 * missing config_path, keep the checkpoint's value; any other key it gives a different value is
 * STATUS_ERR_FORMAT naming the file, the key and both values. *intact (may be NULL) tells
 * whether config_path holds exactly run_config_print(rc). */
Status run_config_of_checkpoint(const RunCheckpoint *ck, const char *config_path, RunConfig *rc,
                                bool *intact);
