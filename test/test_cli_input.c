/* test_cli_input.c — hostile inputs at the command line (issue 13): a directory where a file is
 * expected, file names and file contents with bytes that are not UTF-8 or are control
 * characters, in messages and in JSON output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "clip/checkpoint.h"
#include "clip/pretrain.h"
#include "clip/safetensors.h"
#include "clip/tokenizer.h"
#include "datasets/csv.h"
#include "datasets/dataset.h"
#include "tensor/image.h"
#include "tensor/json.h"
#include "tensor/sha256.h"
#include "tensor/text.h"
#include "test/test.h"
#include "test/util_clip.h"
#include "trmml/feature_cache.h"
#include "trmml/trmml_config.h"

/* No byte of s is a control character (other than '\n') or not 7-bit, i.e. it prints safely. */
static bool printable_ascii(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p >= 0x7F) return false;
    return true;
}

TEST(text_escape_message_and_json_string) {
    char buf[128];
    /* C0, DEL, C1 (U+009B, a terminal's CSI), a stray 0xFF, an overlong '/', a surrogate, a cut
     * sequence; é and € are valid and kept. */
    const char *in = "a\x01\x7f\xc2\x9b\xff\xc0\xaf\xed\xa0\x80 \xc3\xa9\xe2\x82\xac \xe2\x82";
    const char *want = "a\\x01\\x7F\\xC2\\x9B\\xFF\\xC0\\xAF\\xED\\xA0\\x80 \xc3\xa9\xe2\x82\xac "
                       "\\xE2\\x82";
    text_escape_message(buf, sizeof buf, in);
    EXPECT(strcmp(buf, want) == 0, "escaped '%s', want '%s'", buf, want);
    char again[128];
    text_escape_message(again, sizeof again, buf);
    EXPECT(strcmp(again, buf) == 0, "a second pass changed '%s' to '%s'", buf, again);
    text_escape_message(buf, 8, "ab\xff\xff");
    EXPECT(strcmp(buf, "ab\\xFF") == 0, "cut at the capacity: '%s'", buf);
    /* error_set stores messages escaped. */
    error_set(STATUS_ERR_IO, "'%s': bad", "x\x1b[2J\xfe");
    EXPECT(strcmp(error_last(), "'x\\x1B[2J\\xFE': bad") == 0, "error_last: '%s'", error_last());
    /* JSON (tensor/json.h): quote, backslash, control characters escaped; invalid bytes ->
     * U+FFFD, in keys and values alike. */
    JsonWriter *w = json_writer_new();
    json_array_begin(w);
    json_string(w, "q\"b\\c\x01\x1f\xff\xc3\xa9");
    json_object_begin(w);
    json_key(w, "k\xfe");
    json_null(w);
    json_object_end(w);
    json_array_end(w);
    char *doc = json_writer_finish(w, NULL);
    char err[256];
    yajl_val v = yajl_tree_parse(doc, err, sizeof err);
    EXPECT(v && YAJL_IS_ARRAY(v) && v->u.array.len == 2 && YAJL_IS_STRING(v->u.array.values[0]) &&
               strcmp(v->u.array.values[0]->u.string, "q\"b\\c\x01\x1f\xef\xbf\xbd\xc3\xa9") == 0 &&
               YAJL_IS_OBJECT(v->u.array.values[1]) &&
               strcmp(v->u.array.values[1]->u.object.keys[0], "k\xef\xbf\xbd") == 0,
           "json %s: %s", text_for_message(doc), v ? "wrong value" : err);
    yajl_tree_free(v);
    free(doc);
}

/* The library's readers of user-named files, each given a directory. */
TEST(readers_reject_a_directory) {
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "input");
    const char *what[9] = {"ckpt_load",           "image_load",     "ds_csv_read",
                           "feature_cache_open",  "sha256_file_hex", "clip_tokenizer_load",
                           "trmml_config_parse",  "pretrain_config", "ds_lines_open"};
    for (int k = 0; k < 9; k++) {
        Status st;
        if (k == 0) {
            ParamStore *ps = NULL;
            CkptInfo info;
            st = ckpt_load(dir, NULL, &ps, &info);
        } else if (k == 1) {
            Image im = {0};
            st = image_load(dir, &im, NULL);
        } else if (k == 2) {
            double *data = NULL;
            int64_t r, c;
            st = ds_csv_read(dir, &data, &r, &c);
        } else if (k == 3) {
            FeatureCache fc;
            st = feature_cache_open(dir, &fc);
        } else if (k == 4) {
            char hex[65];
            st = sha256_file_hex(dir, hex);
        } else if (k == 5) {
            ClipTokenizer *tok = NULL;
            st = clip_tokenizer_load(dir, &tok);
        } else if (k == 6) {
            TrmmlConfig cfg = trmml_config_default();
            st = trmml_config_parse_file(&cfg, dir);
        } else if (k == 7) {
            ClipPretrainConfig cfg = clip_pretrain_default_config();
            st = clip_pretrain_config_load(dir, &cfg);
        } else {
            DsLines r;
            st = ds_lines_open(&r, dir);
        }
        EXPECT(st == STATUS_ERR_IO && strstr(error_last(), dir) &&
                   strstr(error_last(), "is a directory, expected a file"),
               "%s(directory): status %d, '%s'", what[k], (int)st, error_last());
    }
    test_remove_tree(dir);
}

/* Every command given a directory for a file argument: exit 1 and one message naming it. */
TEST(cli_directory_as_file_argument) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "input");
    char png[128];
    snprintf(png, sizeof png, "%s/a.png", dir);
    Image im = {.w = 8, .h = 8};
    im.px = xcalloc(8 * 8 * 3, 1);
    CHECK(image_save_png(&im, png) == STATUS_OK, "%s", error_last());
    image_free(&im);
    /* %1$s: the directory, %2$s: a valid image. */
    const char *cmds[] = {
        "inspect %1$s",
        "embed --model %1$s --image %2$s",
        "embed --model %1$s --image %1$s",
        "embed --model %1$s --vocab %1$s --text x",
        "zeroshot --model %1$s --image %1$s --classes a,b",
        "tokenize --file %1$s",
        "tokenize --vocab %1$s hello",
        "metrics --scores %1$s --targets %1$s",
        "train --config %1$s --out %1$s/run",
        "pretrain-clip --data %1$s --out %1$s/m.safetensors --config %1$s",
        "results --runs %1$s --zeroshot %1$s --chance 1 --ratios 0.1 --seeds 0 --out %1$s/r.md "
        "--plot %1$s/r.png",
    };
    static char out[1 << 14];
    char cmd[8192], args[512];
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
        snprintf(args, sizeof args, cmds[k], dir, png);
        snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
        int rc = test_run_capture(cmd, out, sizeof out);
        EXPECT(rc == 1 && strstr(out, dir) && strstr(out, "is a directory, expected a file") &&
                   !strstr(out, "out of memory"),
               "trmml %s: exit %d: %s", args, rc, out);
    }
    test_remove_tree(dir);
}

/* File names and lines of a file reach messages with their raw bytes escaped. */
TEST(cli_messages_escape_raw_bytes) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "input");
    char cfg[128], cmd[8192];
    static char out[1 << 14];
    /* A missing checkpoint whose name clears the screen and holds a byte that is not UTF-8. */
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s/m\x01\x1b[2J\xff.pt' 2>&1", exe, dir);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "m\\x01\\x1B[2J\\xFF.pt") && printable_ascii(out),
           "inspect exit %d: %s", rc, text_for_message(out));
    /* A configuration line with such bytes. */
    snprintf(cfg, sizeof cfg, "%s/cfg.txt", dir);
    test_write_file(cfg, "na\xffme\x1b[31m = 1\n", (size_t)-1);
    snprintf(cmd, sizeof cmd, "'%s' train --config '%s' --out '%s/run' 2>&1", exe, cfg, dir);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc != 0 && strstr(out, "na\\xFFme\\x1B[31m") && printable_ascii(out),
           "train exit %d: %s", rc, text_for_message(out));
    test_remove_tree(dir);
}

/* A safetensors header stays valid JSON whatever a tensor name holds. */
TEST(safetensors_header_json_any_name) {
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "input");
    char path[128];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    ParamStore *ps = param_store_create(DEVICE_CPU, "odd names");
    param_add(ps, "q\"b\\c\x01\xff", DT_F32, 1, SHAPE(2), false);
    param_store_finalize(ps);
    Status st = safetensors_write(path, ps);
    param_store_destroy(ps);
    ParamStore *back = NULL;
    CkptInfo info;
    if (st == STATUS_OK) st = ckpt_load(path, NULL, &back, &info);
    EXPECT(st == STATUS_OK && back && param_count(back) == 1 &&
               strcmp(param_at(back, 0)->name, "q\"b\\c\x01\xef\xbf\xbd") == 0,
           "round trip: %s", st == STATUS_OK ? text_for_message(param_at(back, 0)->name)
                                             : error_last());
    if (back) param_store_destroy(back);
    test_remove_tree(dir);
}

/* `trmml embed` echoes its inputs (a file name, a text) in JSON: valid for any bytes. */
TEST(cli_embed_json_any_input_bytes) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    ClipTokenizer *tok = test_load_vocab();
    if (!tok) return;
    clip_tokenizer_free(tok);
    char dirbuf[64], *dir = test_temp_dir(dirbuf, sizeof dirbuf, "input");
    char model[128], png[160], cmd[8192];
    snprintf(model, sizeof model, "%s/small.safetensors", dir);
    /* A quote, a backslash, a control character and a byte that is not UTF-8. */
    const char *odd = "q\"b\\c\x01\xff";
    snprintf(png, sizeof png, "%s/%s.png", dir, odd);
    ClipConfig cfg = test_small_clip_config();
    ParamStore *sd = test_random_clip(&cfg, 7);
    CHECK(safetensors_write(model, sd) == STATUS_OK, "%s", error_last());
    param_store_destroy(sd);
    Image im = {.w = 64, .h = 64};
    im.px = xcalloc(64 * 64 * 3, 1);
    CHECK(image_save_png(&im, png) == STATUS_OK, "%s", error_last());
    image_free(&im);
    snprintf(cmd, sizeof cmd, "'%s' --threads 1 embed --model '%s' --image '%s' --text '%s' 2>/dev/null",
             exe, model, png, odd);
    static char out[1 << 16];
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0, "embed exit %d: %.500s", rc, text_for_message(out));
    /* Two lines, one JSON object each; the invalid byte comes back as U+FFFD. */
    char want_png[160];
    snprintf(want_png, sizeof want_png, "%s/q\"b\\c\x01\xef\xbf\xbd.png", dir);
    const char *want[2] = {want_png, "q\"b\\c\x01\xef\xbf\xbd"};
    char *line = out;
    for (int k = 0; k < 2 && rc == 0; k++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char err[256];
        yajl_val v = yajl_tree_parse(line, err, sizeof err);
        const char *input_path[] = {"input", NULL};
        yajl_val s = v ? yajl_tree_get(v, input_path, yajl_t_string) : NULL;
        EXPECT(s && strcmp(s->u.string, want[k]) == 0, "line %d: %s: %.200s", k + 1,
               v ? "wrong input" : err, text_for_message(line));
        yajl_tree_free(v);
        if (!nl) break;
        line = nl + 1;
    }
    test_remove_tree(dir);
}

/* An unknown flag in last position is reported as unknown, not as lacking a value; a known
 * value flag in last position still lacks a value. */
TEST(cli_unknown_last_flag) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    /* Each command line, then a known value flag of that command. */
    const char *cmds[][2] = {
        {"train --out /nonexistent/run --dataset voc2007", "--epochs"},
        {"train --out /nonexistent/run", "--root"},
        {"eval /nonexistent/run", "--cached-test"},
        {"predict /nonexistent/run a.png", "--top"},
        {"visualize /nonexistent/run a.png", "--out"},
        {"embed --model m.pt", "--image"},
        {"zeroshot --model m.pt", "--classes"},
        {"extract --model m.pt", "--split"},
        {"zeroshot-eval --model m.pt", "--feature"},
        {"results --runs runs", "--chance"},
        {"pretrain-clip --data d", "--steps"},
        {"mask --dataset voc2007", "--ratio"},
        {"verify-dataset --dataset voc2007", "--root"},
        {"synth --out d", "--seed"},
        {"tokenize", "--vocab"},
        {"bench", "--case"},
    };
    static char out[1 << 14];
    char cmd[8192];
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
        snprintf(cmd, sizeof cmd, "'%s' %s --bogus 2>&1", exe, cmds[k][0]);
        int rc = test_run_capture(cmd, out, sizeof out);
        EXPECT(rc == 2 && strstr(out, "unknown option '--bogus'") && !strstr(out, "needs a value"),
               "trmml %s --bogus: exit %d: %s", cmds[k][0], rc, out);
        snprintf(cmd, sizeof cmd, "'%s' %s %s 2>&1", exe, cmds[k][0], cmds[k][1]);
        rc = test_run_capture(cmd, out, sizeof out);
        EXPECT(rc == 2 && strstr(out, cmds[k][1]) && strstr(out, "needs a "),
               "trmml %s %s: exit %d: %s", cmds[k][0], cmds[k][1], rc, out);
    }
}
