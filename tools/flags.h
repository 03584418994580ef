/* flags.h — the one command-line parser of `trmml`: each command describes its flags as key
 * tables (tensor/keys.h) over an options struct of its own; flags_parse reads argv with them and
 * --help lists them from the same tables, so every flag is written once.
 *
 *     typedef struct { ModelFlags model; const char *image; int64_t top; } ExampleOptions;
 *     static const KeySpec EXAMPLE_FLAGS[] = {
 *         FLAG_ARG(ExampleOptions, "image", image, "PATH", "the image to score"),
 *         FLAG_INT(ExampleOptions, "top", top, 1, 1000, "K", "classes printed (default 5)"),
 *     };
 *     COMMAND(example, "summary", "trmml example --model FILE --image PATH [options]") {
 *         ExampleOptions o = {.top = 5};                     // defaults first
 *         const KeyGroup groups[] = {FLAGS_OF(EXAMPLE_FLAGS, &o), MODEL_GROUP(&o.model)};
 *         int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
 *         if (rc != FLAGS_GO) return rc;                     // --help, or a usage error
 *         ...
 *
 * Command-line syntax (every command alike):
 *   --name value, --name=value   a flag with a value; the value may begin with '-'
 *   --name                       a switch (KEY_SWITCH); `--name=...` is a usage error
 *   --name v --name w            a repeatable flag (KEY_ARG_LIST) keeps every value in order;
 *                                any other flag keeps the last
 *   --                           ends the flags: every later argument is positional
 *   anything else                positional (a lone "-" and words like "-x" included): moved
 *                                to argv[0 .. npos) in command-line order
 *   --help, -h                   prints the command's usage and its flags; exit status 0
 * The global flags (--device, --threads) are accepted by every command, before the command name
 * (main) or after it. Errors print one line "trmml CMD: ..." and give exit status 2: an unknown
 * option, a flag that needs a value at the end of the line, a switch given a value, a value the
 * table refuses (the message names the flag: "--top: expected an integer, got 'x'"), too many
 * positional arguments. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "tensor/keys.h"
#include "tensor/tensor.h"

/* Flag table entries: T the options struct, k the flag without "--", f the field, meta the
 * value's name in --help ("FILE", "N"). */
#define FLAG_ARG(T, k, f, meta, help)                                                              \
    KEY_ENTRY_(k, KEY_ARG, offsetof(T, f), 0, NULL, 0, 0, NULL, help, meta)
#define FLAG_LIST(T, k, f, meta, help)                                                             \
    KEY_ENTRY_(k, KEY_ARG_LIST, offsetof(T, f), 0, NULL, 0, 0, NULL, help, meta)
#define FLAG_SWITCH(T, k, f, help) KEY_SWITCH(T, k, f, help)
#define FLAG_INT(T, k, f, lo, hi, meta, help)                                                      \
    KEY_ENTRY_(k, KEY_INT, offsetof(T, f), 0, NULL, lo, hi, NULL, help, meta)
#define FLAG_DOUBLE(T, k, f, lo, hi, meta, help)                                                   \
    KEY_ENTRY_(k, KEY_DOUBLE, offsetof(T, f), 0, NULL, lo, hi, NULL, help, meta)
#define FLAG_ENUM(T, k, f, names, help) KEY_ENUM(T, k, f, names, help)

/* A whole table and the struct it writes, as one element of a command's group list. */
#define FLAGS_OF(table, obj) {(table), KEY_COUNT(table), (obj)}

/* flags_parse's result when the command is to go on (any other value is its exit status). */
#define FLAGS_GO (-1)

typedef struct {
    int npos;   /* positional arguments, now argv[0 .. npos) in command-line order */
    int nflags; /* flags given, global ones not counted */
} FlagsParsed;

/* Parse a command's arguments (those after its name) with its groups, then the global group.
 * max_pos: positional arguments accepted (-1: any number). Returns FLAGS_GO, or the exit
 * status after printing --help (0) or a usage error (2). `out` may be NULL. */
int flags_parse(const KeyGroup *groups, int ngroups, int max_pos, int argc, char **argv,
                FlagsParsed *out);
/* main's part: the global flags before the command name, from argv[1]; *next is set to the
 * index of the first other argument. FLAGS_GO or 2 (usage error printed). */
int flags_parse_global(int argc, char **argv, int *next);
/* The "options:" and "global options:" part of --help: one line per flag of the groups. */
void flags_print_help(const KeyGroup *groups, int ngroups, FILE *f);

/* ---- the shared groups ------------------------------------------------------------------- */

/* --model FILE (a CLIP checkpoint) and --vocab F (the BPE vocabulary; NULL: clip_vocab_path's
 * default). A command takes both, or one of them. */
typedef struct {
    const char *model, *vocab;
} ModelFlags;
extern const KeySpec MODEL_FLAGS[2];
#define MODEL_GROUP(m) {MODEL_FLAGS, 2, (m)}
#define MODEL_FILE_GROUP(m) {MODEL_FLAGS, 1, (m)}
#define VOCAB_GROUP(m) {MODEL_FLAGS + 1, 1, (m)}

/* A dataset split and its layout overrides (datasets/dataset.h). The table is ordered so that a
 * command takes its first DATASET_* entries: --dataset --root --class-list (DATASET_RUN: train),
 * then --split --image-dir (DATASET_SPLIT: extract, zeroshot-eval), then --split-list --labels
 * --dualcoop-labels (DATASET_ALL: mask, verify-dataset). */
typedef struct {
    const char *dataset, *root, *class_list, *split, *image_dir, *split_list, *labels;
    bool dualcoop_labels;
} DatasetFlags;
enum { DATASET_RUN = 3, DATASET_SPLIT = 5, DATASET_ALL = 8 };
extern const KeySpec DATASET_FLAGS[DATASET_ALL];
#define DATASET_GROUP(d, n) {DATASET_FLAGS, (n), (d)}
/* The reader options the flags give (NULL fields: the layout's defaults). */
DsOptions flags_ds_options(const DatasetFlags *d);

/* --size N: the square input side of the image tower, a multiple of 32 in [32, 4096]. The group
 * writes one int64_t; leave 0 there for "the model's native side" (or set another default). */
extern const KeySpec SIZE_FLAGS[1];
#define SIZE_GROUP(size) {SIZE_FLAGS, 1, (size)}

/* --precision fp32|bf16: the precision of the frozen towers' products (tensor/ops/gemm_bf16.h).
 * The group writes one int (a Precision, PRECISION_FP32 by default); flags_parse applies it with
 * tensor_set_precision, so bf16 on a CPU without AVX512-BF16 is a usage error naming the flag. */
extern const KeySpec PRECISION_FLAGS[1];
#define PRECISION_GROUP(precision) {PRECISION_FLAGS, 1, (precision)}

/* ---- the global group: --device auto|cpu|cuda[:N], --threads N ---------------------------- */

/* The --device value ("auto" by default) and --threads (0: the default). */
const char *tool_device(void);
int tool_threads(void);
/* The device the command runs on: --device parsed (auto = CUDA when a GPU answers), selected
 * (cuda:N) and made the default device of tensors (tensor_set_default_device). Call it once,
 * before making tensors. */
Status tool_device_select(DeviceKind *dev);
