/* cmd_clip.c — `trmml embed` and `trmml zeroshot`: a checkpoint (clip/checkpoint.h), the towers
 * (clip/model.h), the tokenizer and CLIP's preprocessing, joined. Every input is read and
 * checked before anything is printed, so a bad input produces an error and no partial output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "clip/checkpoint.h"
#include "clip/model.h"
#include "clip/preprocess.h"
#include "clip/tokenizer.h"
#include "tensor/image.h"
#include "tensor/device.h"
#include "tensor/json.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/norm.h"
#include "tensor/ops/softmax.h"
#include "tensor/text.h"
#include "tensor/dist.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "trmml/feature_cache.h"

/* Load the checkpoint and build the model; prints what was loaded on stderr. */
static Status load_model(const char *path, ClipModel **model) {
    /* The state dict is read into host memory; the model is built on --device. */
    Status st = tool_device_select(NULL);
    if (st != STATUS_OK) return st;
    ParamStore *sd = NULL;
    CkptInfo info;
    st = ckpt_load(path, NULL, &sd, &info);
    if (st != STATUS_OK) return st;
    if (dist_is_root()) /* once under mpirun (extract) */
        fprintf(stderr, "%s: %s, %s, %d tensors\n", path, ckpt_format_name(info.format),
                info.model ? info.model : "unrecognised model", info.ntensors);
    ClipConfig cfg;
    st = clip_config_infer(sd, &cfg);
    if (st == STATUS_OK && cfg.text.heads == 0)
        st = error_set(STATUS_ERR_FORMAT, "%s: text width %lld is not a multiple of 64, so the "
                       "number of text heads is unknown", path, (long long)cfg.text.width);
    if (st == STATUS_OK) st = clip_model_load(model, sd, &cfg);
    param_store_destroy(sd);
    return st;
}

/* x as a JSON array, 9 significant digits (enough to read a float32 back exactly). */
static void put_floats(JsonWriter *w, const float *x, int64_t n) {
    json_array_begin(w);
    for (int64_t i = 0; i < n; i++) json_number(w, x[i], 9);
    json_array_end(w);
}

typedef struct {
    bool is_image;
    const char *input;
    Image image;
} EmbedInput;

/* Image (1,3,n,n) normalised as CLIP expects, from the current arena. */
static Tensor *image_tensor(const Image *im, int n) { return clip_preprocess_batch(im, 1, n); }

typedef struct {
    ModelFlags model;
    int64_t size;
    bool dense;
    KeyArgList inputs; /* --image and --text, in command-line order */
    int precision; /* Precision, --precision */
} EmbedFlags;

static const KeySpec EMBED_FLAGS[] = {
    FLAG_LIST(EmbedFlags, "image", inputs, "PATH", "an image to embed (repeatable)"),
    FLAG_LIST(EmbedFlags, "text", inputs, "STR", "a text to embed (repeatable)"),
    FLAG_SWITCH(EmbedFlags, "dense", dense,
                "add to image objects \"dense\": the (HW+1) x E dense features"),
};

/* Decode every image and check that every text tokenizes into CLIP's context (the vocabulary
 * `vocab`, NULL for the default, is loaded when some input is a text: ntext > 0). */
static Status read_inputs(EmbedInput *in, int nin, int ntext, const char *vocab,
                          ClipTokenizer **tok) {
    Status st = ntext ? clip_tokenizer_load(clip_vocab_path(vocab), tok) : STATUS_OK;
    for (int i = 0; st == STATUS_OK && i < nin; i++) {
        if (in[i].is_image) st = image_load(in[i].input, &in[i].image, NULL);
        else {
            int32_t ids[80];
            int n = clip_tokenize(*tok, in[i].input, ids, 80);
            if (n < 0) st = error_set(STATUS_ERR_USAGE, "--text '%s': cannot be tokenized", in[i].input);
            else if (n > 75)
                st = error_set(STATUS_ERR_USAGE, "--text '%s': %d tokens, more than the 75 that fit "
                               "CLIP's context of 77", in[i].input, n);
        }
    }
    return st;
}

/* One input's line: {"kind", "input", "embedding" (L2-normalised)[, "dense"]}. Inputs are file
 * names and texts of any bytes; the line stays valid JSON (tensor/json.h). */
static void print_embedding(const ClipModel *model, const ClipTokenizer *tok,
                            const EmbedInput *in, int size, bool dense) {
    Tensor *emb = NULL, *dn = NULL;
    if (in->is_image) {
        clip_encode_image(model, image_tensor(&in->image, size), &emb, dense ? &dn : NULL);
    } else {
        Tensor *ids = NULL;
        int64_t eot;
        const char *text = in->input;
        Status st = clip_tokenize_tensor(tok, &text, 1, false, &ids, &eot);
        CHECK(st == STATUS_OK, "text checked above failed to tokenize: %s", error_last());
        emb = clip_encode_text(model, ids);
    }
    Tensor *e = tensor_l2_normalize(emb, -1);
    JsonWriter *w = json_writer_new();
    json_object_begin(w);
    json_key(w, "kind");
    json_string(w, in->is_image ? "image" : "text");
    json_key(w, "input");
    json_string(w, in->input);
    json_key(w, "embedding");
    float *h = tensor_to_host(e);
    put_floats(w, h, e->numel);
    free(h);
    if (dn) {
        json_key(w, "dense");
        json_array_begin(w);
        int64_t rows = dn->shape[1], cols = dn->shape[2];
        h = tensor_to_host(dn);
        for (int64_t r = 0; r < rows; r++) put_floats(w, h + r * cols, cols);
        free(h);
        json_array_end(w);
    }
    json_object_end(w);
    char *line = json_writer_finish(w, NULL);
    puts(line);
    free(line);
}

COMMAND(embed, "CLIP embeddings of images and texts, one JSON object per line",
        "trmml embed --model FILE [--image PATH]... [--text STR]... [options]\n"
        "  Prints, in input order, {\"kind\":\"image\"|\"text\",\"input\":...,\n"
        "  \"embedding\":[...]} with the L2-normalised embedding; with --dense, image objects\n"
        "  also hold \"dense\" (token 0 first, unnormalised). An N x N image (--size) is not\n"
        "  resampled.") {
    EmbedFlags o = {0};
    const KeyGroup groups[] = {MODEL_GROUP(&o.model), FLAGS_OF(EMBED_FLAGS, &o),
                               SIZE_GROUP(&o.size), PRECISION_GROUP(&o.precision)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) {
        free(o.inputs.item);
        return rc;
    }
    if (!o.model.model || o.inputs.n == 0) {
        free(o.inputs.item);
        return tool_usage_error("--model and at least one --image or --text are required");
    }
    const char *model_path = o.model.model, *vocab = o.model.vocab;
    int size = (int)o.size;
    const bool dense = o.dense;
    const int nin = o.inputs.n;
    EmbedInput *in = xcalloc((size_t)nin, sizeof *in);
    int ntext = 0;
    for (int i = 0; i < nin; i++) {
        const bool image = strcmp(o.inputs.item[i].key, "image") == 0;
        in[i] = (EmbedInput){image, o.inputs.item[i].value, {0}};
        ntext += !image;
    }
    free(o.inputs.item);
    /* The device, then every input, checked before anything is printed. */
    ClipTokenizer *tok = NULL;
    Status st = tool_device_select(NULL);
    if (st == STATUS_OK) st = read_inputs(in, nin, ntext, vocab, &tok);
    ClipModel *model = NULL;
    if (st == STATUS_OK) st = load_model(model_path, &model);
    if (st != STATUS_OK) {
        int rc = tool_fail(st);
        for (int i = 0; i < nin; i++) image_free(&in[i].image);
        free(in);
        clip_tokenizer_free(tok);
        return rc;
    }
    if (!size) size = (int)(32 * model->cfg.vision.grid);
    bool grad = ag_set_grad_enabled(false);
    for (int i = 0; i < nin; i++) {
        print_embedding(model, tok, &in[i], size, dense);
        tensor_step_end();
    }
    ag_set_grad_enabled(grad);
    for (int i = 0; i < nin; i++) image_free(&in[i].image);
    free(in);
    clip_tokenizer_free(tok);
    clip_model_free(model);
    return 0;
}

typedef struct {
    ModelFlags model;
    const char *image, *classes;
    int64_t size;
    int precision; /* Precision, --precision */
} ZeroshotFlags;

static const KeySpec ZEROSHOT_FLAGS[] = {
    FLAG_ARG(ZeroshotFlags, "image", image, "PATH", "the image"),
    FLAG_ARG(ZeroshotFlags, "classes", classes, "LIST", "class names, comma-separated"),
};

/* The comma-separated class names of `classes`, trimmed of surrounding spaces, empty ones
 * dropped: pointers into *list (a copy; free both). */
static char **split_classes(const char *classes, char **list, int *ncls) {
    *list = xmalloc(strlen(classes) + 1);
    strcpy(*list, classes);
    int n = 0, cap = 16;
    char **names = xcalloc(cap, sizeof *names);
    for (char *save = NULL, *c = strtok_r(*list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        while (*c == ' ') c++;
        for (char *e = c + strlen(c); e > c && e[-1] == ' ';) *--e = '\0';
        if (!*c) continue;
        if (n == cap) names = xrealloc(names, (cap *= 2) * sizeof *names);
        names[n++] = c;
    }
    *ncls = n;
    return names;
}

/* softmax(exp(logit_scale) cos(image, prompt)) over the classes, printed most probable first
 * (ties keep the given order). */
static void print_zeroshot(const ClipModel *model, const Image *im, int size, Tensor *ids,
                           char *const *names, int ncls) {
    bool grad = ag_set_grad_enabled(false);
    Tensor *img = NULL;
    clip_encode_image(model, image_tensor(im, size), &img, NULL);
    Tensor *txt = tensor_l2_normalize(clip_encode_text(model, ids), -1);
    Tensor *logits = tensor_matmul_t(tensor_l2_normalize(img, -1), txt, false, true);
    float scale = expf(tensor_item(model->logit_scale));
    Tensor *prob = tensor_softmax(tensor_mul_scalar(logits, scale), -1, NULL);
    float *p = tensor_to_host(prob);
    int *order = xcalloc(ncls, sizeof *order);
    for (int c = 0; c < ncls; c++) order[c] = c;
    for (int a = 1; a < ncls; a++) /* insertion sort, stable */
        for (int b = a; b > 0 && p[order[b]] > p[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int c = 0; c < ncls; c++) printf("%.6f\t%s\n", p[order[c]], names[order[c]]);
    free(order);
    free(p);
    ag_set_grad_enabled(grad);
    tensor_step_end();
}

COMMAND(zeroshot, "zero-shot class probabilities of an image (prompt \"a photo of a {class}.\")",
        "trmml zeroshot --model FILE --image PATH --classes \"dog,cat,...\" [options]\n"
        "  Prints one line per class, most probable first: probability, tab, class. The\n"
        "  probabilities are softmax(exp(logit_scale) * cos(image, prompt)) over the classes.") {
    ZeroshotFlags o = {0};
    const KeyGroup groups[] = {MODEL_GROUP(&o.model), FLAGS_OF(ZEROSHOT_FLAGS, &o),
                               SIZE_GROUP(&o.size), PRECISION_GROUP(&o.precision)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.model.model || !o.image || !o.classes)
        return tool_usage_error("--model, --image and --classes are required");
    const char *model_path = o.model.model, *image_path = o.image, *classes = o.classes;
    const char *vocab = o.model.vocab;
    int size = (int)o.size;
    char *list = NULL;
    int ncls = 0;
    char **names = split_classes(classes, &list, &ncls), **prompts = NULL;
    Image im = {0};
    ClipTokenizer *tok = NULL;
    ClipModel *model = NULL;
    Status st = ncls ? STATUS_OK : error_set(STATUS_ERR_USAGE, "--classes '%s': no class names", classes);
    if (st == STATUS_OK) st = tool_device_select(NULL); /* before the prompts become a tensor */
    if (st == STATUS_OK) st = image_load(image_path, &im, NULL);
    if (st == STATUS_OK) st = clip_tokenizer_load(clip_vocab_path(vocab), &tok);
    Tensor *ids = NULL;
    int64_t *eot = xcalloc(ncls + 1, sizeof *eot);
    if (st == STATUS_OK) {
        prompts = xcalloc(ncls, sizeof *prompts);
        for (int c = 0; c < ncls; c++) {
            size_t n = strlen(names[c]) + 16;
            prompts[c] = xmalloc(n);
            snprintf(prompts[c], n, "a photo of a %s.", names[c]);
        }
        st = clip_tokenize_tensor(tok, (const char *const *)prompts, ncls, false, &ids, eot);
    }
    if (st == STATUS_OK) st = load_model(model_path, &model);
    rc = 0;
    if (st != STATUS_OK) {
        rc = tool_fail(st);
    } else {
        if (!size) size = (int)(32 * model->cfg.vision.grid);
        print_zeroshot(model, &im, size, ids, names, ncls);
    }
    for (int c = 0; prompts && c < ncls; c++) free(prompts[c]);
    free(prompts);
    free(eot);
    free(names);
    free(list);
    image_free(&im);
    clip_tokenizer_free(tok);
    if (model) clip_model_free(model);
    return rc;
}

typedef struct {
    ModelFlags model;
    DatasetFlags ds;
    const char *out;
    int64_t size;
    int resample;  /* RESAMPLE_NAMES[resample], RESAMPLE_FILTERS[resample] */
    int skip_bad;  /* --bad-image: 0 error, 1 skip (an enum key writes an int) */
    int precision; /* Precision, --precision */
} ExtractFlags;

static const char *const RESAMPLE_NAMES[] = {"bicubic", "bilinear", NULL};
static const ResampleFilter RESAMPLE_FILTERS[] = {RESAMPLE_BICUBIC, RESAMPLE_BILINEAR};
static const char *const BAD_IMAGE_NAMES[] = {"error", "skip", NULL};

static const KeySpec EXTRACT_FLAGS[] = {
    FLAG_ARG(ExtractFlags, "out", out, "FILE.feat", "the feature cache to write"),
    FLAG_ENUM(ExtractFlags, "resample", resample, RESAMPLE_NAMES,
              "resize filter: bicubic (TRM-ML's test transform) or bilinear (DualCoOp's)"),
    FLAG_ENUM(ExtractFlags, "bad-image", skip_bad, BAD_IMAGE_NAMES,
              "an unreadable image stops the extraction, or is stored as zeros"),
};

COMMAND(extract, "cache the frozen image tower's dense features of a dataset split (float16)",
        "trmml extract --model FILE --dataset NAME --root DIR --split S --out FILE.feat [options]\n"
        "  Runs the image tower once per image (resize to N x N, default 448, with --resample;\n"
        "  then CLIP normalisation) and stores the (HW+1) x E dense features as float16\n"
        "  (trmml/feature_cache.h); training and evaluation read them with --cached.") {
    ExtractFlags o = {.size = 448};
    const KeyGroup groups[] = {MODEL_FILE_GROUP(&o.model), DATASET_GROUP(&o.ds, DATASET_SPLIT),
                               FLAGS_OF(EXTRACT_FLAGS, &o), SIZE_GROUP(&o.size), PRECISION_GROUP(&o.precision)};
    int rc = flags_parse(groups, KEY_COUNT(groups), 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    if (!o.model.model || !o.out || !o.ds.dataset || !o.ds.root || !o.ds.split)
        return tool_usage_error("--model, --dataset, --root, --split and --out are required");
    const char *model_path = o.model.model, *out = o.out, *name = o.ds.dataset;
    const char *split = o.ds.split;
    const int size = (int)o.size;
    const DsOptions dopt = flags_ds_options(&o.ds);
    Dataset *ds = NULL;
    ClipModel *model = NULL;
    Status st = ds_open(name, o.ds.root, split, &dopt, &ds);
    if (st == STATUS_OK) st = load_model(model_path, &model);
    int64_t skipped = 0;
    if (st == STATUS_OK) {
        ExtractOptions eo = {.image_size = size, .batch = 8, .model_id = model_path,
                             .skip_bad_images = o.skip_bad != 0, .progress = true,
                             .filter = RESAMPLE_FILTERS[o.resample]};
        st = feature_cache_extract(model, ds, &eo, out, &skipped);
    }
    if (st == STATUS_OK && dist_is_root())
        fprintf(stderr, "%s: %lld images of %s %s at %d px%s\n", out, (long long)ds->n, name, split,
                size, skipped ? ", some unreadable images skipped (zeros)" : "");
    if (model) clip_model_free(model);
    ds_free(ds);
    return st == STATUS_OK ? 0 : tool_fail(st);
}
