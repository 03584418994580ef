/* test_cli_clip.c — `trmml embed` and `trmml zeroshot` end to end: a small CLIP with random
 * weights (the real vocabulary size, text width 64 so the head count is inferable) is written as
 * safetensors, the command is run on it, and its output is compared with the same computation
 * done in this process. The towers themselves are proven against PyTorch in test_clip_model.c;
 * this checks the plumbing: loading, preprocessing, tokenising, normalising, order, JSON, errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clip/model.h"
#include "clip/preprocess.h"
#include "clip/safetensors.h"
#include "clip/tokenizer.h"
#include "tensor/image.h"
#include "tensor/convert.h"
#include "tensor/json.h"
#include "tensor/ops/gemm_bf16.h"
#include "tensor/ops/norm.h"
#include "test/test.h"
#include "test/util_clip.h"

/* Flatten the numbers of a (nested) JSON array into out (up to max); -1 on anything else. */
static int flatten(yajl_val v, float *out, int n, int max) {
    if (YAJL_IS_NUMBER(v)) {
        if (n >= max) return -1;
        out[n] = (float)YAJL_GET_DOUBLE(v);
        return n + 1;
    }
    if (!YAJL_IS_ARRAY(v)) return -1;
    for (size_t i = 0; i < v->u.array.len && n >= 0; i++) n = flatten(v->u.array.values[i], out, n, max);
    return n;
}

/* The floats of the array `key` of a JSON line (tensor/json.h), nested arrays (dense rows)
 * flattened, up to max; returns the count, or -1 when the line or the key is not as expected. */
static int json_floats(const char *line, const char *key, float *out, int max) {
    yajl_val v, a;
    if (json_parse(line, "embed line", &v) != STATUS_OK) return -1;
    int n = json_get_array(v, key, "embed line", &a) == STATUS_OK ? flatten(a, out, 0, max) : -1;
    json_free(v);
    return n;
}

TEST(cli_embed_and_zeroshot) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    ClipTokenizer *tok = test_load_vocab();
    if (!tok) return;
    char dir[64] = "/tmp/trmml-embed-XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char model_path[128], img_path[128], bad_path[128];
    snprintf(model_path, sizeof model_path, "%s/small.safetensors", dir);
    snprintf(img_path, sizeof img_path, "%s/a.png", dir);
    snprintf(bad_path, sizeof bad_path, "%s/bad.jpg", dir);
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 99);
    CHECK(safetensors_write(model_path, sd) == STATUS_OK, "%s", error_last());
    Image im = {.w = 80, .h = 60};
    im.px = xmalloc(80 * 60 * 3);
    for (int i = 0; i < 80 * 60 * 3; i++) im.px[i] = (uint8_t)((i * 37) ^ (i >> 5));
    CHECK(image_save_png(&im, img_path) == STATUS_OK, "%s", error_last());
    FILE *f = fopen(bad_path, "wb");
    fputs("\xff\xd8\xff\xe0 not really a jpeg", f);
    fclose(f);

    /* The same computation in process. */
    ClipModel *m = NULL;
    CHECK(clip_model_load(&m, sd, &cfg) == STATUS_OK, "%s", error_last());
    bool g = ag_set_grad_enabled(false);
    Tensor *x = tensor_empty(DT_F32, 4, SHAPE(1, 3, 64, 64));
    clip_preprocess_into(&im, 64, tensor_f32(x));
    Tensor *img_emb = NULL, *dense = NULL;
    clip_encode_image(m, x, &img_emb, &dense);
    img_emb = tensor_l2_normalize(img_emb, -1);
    const char *text = "a photo of a dog.";
    Tensor *ids = NULL;
    int64_t eot;
    CHECK(clip_tokenize_tensor(tok, &text, 1, false, &ids, &eot) == STATUS_OK, "%s", error_last());
    Tensor *txt_emb = tensor_l2_normalize(clip_encode_text(m, ids), -1);
    ag_set_grad_enabled(g);

    char cmd[8192];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --text '%s' --image '%s' --dense 2>/dev/null",
             exe, model_path, text, img_path);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0, "embed exit %d: %s", rc, out);
    char *line2 = strchr(out, '\n');
    EXPECT(line2 && strncmp(out, "{\"kind\":\"text\",\"input\":\"a photo of a dog.\"", 42) == 0,
           "first line is not the text: %.200s", out);
    if (line2) {
        *line2++ = '\0';
        float got[256];
        EXPECT(json_floats(out, "embedding", got, 256) == 32, "text embedding length");
        EXPECT_CLOSE_N("embed text", got, tensor_f32(txt_emb), 32, TOL_MODEL_ATOL, TOL_MODEL_RTOL);
        EXPECT(strncmp(line2, "{\"kind\":\"image\"", 15) == 0, "second line: %.100s", line2);
        EXPECT(json_floats(line2, "embedding", got, 256) == 32, "image embedding length");
        EXPECT_CLOSE_N("embed image", got, tensor_f32(img_emb), 32, TOL_MODEL_ATOL, TOL_MODEL_RTOL);
        float dn[5 * 32 + 8];
        EXPECT(json_floats(line2, "dense", dn, 5 * 32 + 8) == 5 * 32,
               "dense is not (HW+1) x E = 5 x 32");
        EXPECT_CLOSE_N("embed dense", dn, tensor_f32(dense), 5 * 32, TOL_MODEL_ATOL, TOL_MODEL_RTOL);
    }

    /* --precision bf16 (CPUs with AVX512-BF16): the frozen products round their inputs to bf16
     * (unit roundoff u = 2^-8) and sum in fp32. Each product's relative error is then at most
     * about 2u normwise (both inputs rounded), and a chain of D products compounds to about
     * 2 D u: bounded here with D = 32, more products than any path through this small model
     * has (docs/ops/gemm_bf16.md). A wrong kernel or layout gives an error of order 1. */
    if (gemm_bf16_available()) {
        snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --image '%s' --precision bf16 2>/dev/null",
                 exe, model_path, img_path);
        rc = test_run_capture(cmd, out, sizeof out);
        float got[256];
        EXPECT(rc == 0 && json_floats(out, "embedding", got, 256) == 32, "bf16 embed exit %d: %s",
               rc, out);
        if (rc == 0)
            EXPECT_CLOSE_NORMWISE("embed image bf16", got, tensor_f32(img_emb), 32,
                                  2.0 * 32 * 0x1p-8);
    }
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --text hi --precision fp16 2>&1", exe,
             model_path);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--precision") && strstr(out, "fp32|bf16"),
           "unknown precision: exit %d: %s", rc, out);

    /* zeroshot: probabilities sum to 1, sorted, over the given classes. */
    snprintf(cmd, sizeof cmd, "'%s' zeroshot --model '%s' --image '%s' --classes 'dog, cat,car' "
             "2>/dev/null", exe, model_path, img_path);
    rc = test_run_capture(cmd, out, sizeof out);
    double sum = 0, prev = 2;
    int lines = 0;
    for (char *p = out; rc == 0 && *p; lines++) {
        double v = strtod(p, &p);
        EXPECT(v <= prev, "zeroshot not sorted");
        prev = v;
        sum += v;
        p = strchr(p, '\n');
        if (!p) break;
        p++;
    }
    EXPECT(rc == 0 && lines == 3 && fabs(sum - 1.0) < 1e-4 && strstr(out, "\tcat\n"),
           "zeroshot exit %d, %d lines, sum %g: %s", rc, lines, sum, out);

    /* Errors: nothing on stdout, a message naming the input, exit 1 (2 for usage). */
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --text hi --image '%s' 2>/dev/null", exe,
             model_path, bad_path);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && out[0] == '\0', "corrupt image: exit %d, stdout '%.80s'", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --image '%s' 2>&1", exe, model_path, bad_path);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "bad.jpg"), "corrupt image message: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s/none.pt' --text hi 2>&1", exe, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "none.pt"), "missing model: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' embed --model '%s' --size 50 --text hi 2>&1", exe, model_path);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--size"), "bad size: exit %d: %s", rc, out);

    clip_model_free(m);
    param_store_destroy(sd);
    clip_tokenizer_free(tok);
    free(im.px);
    test_remove_tree(dir);
}
