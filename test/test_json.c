/* test_json.c — tensor/json.h and the JSON files built on it: the writer's exact bytes, the
 * reader's type checks and messages, a metrics.jsonl line through its writer and reader, and
 * malformed metrics.jsonl refused with the file and line named. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/metrics.h"
#include "tensor/json.h"
#include "test/test.h"
#include "trmml/run.h"

TEST(json_writer_bytes) {
    JsonWriter *w = json_writer_new();
    json_object_begin(w);
    json_key(w, "a/b");
    json_array_begin(w);
    json_int(w, -3);
    json_number(w, 0.1, JSON_SHORTEST);
    json_number(w, 1.0 / 3, 9);
    json_number(w, NAN, JSON_SHORTEST);
    json_number(w, 44.44444444444444, JSON_SHORTEST);
    json_array_end(w);
    json_key(w, "s");
    json_string(w, "t\tq\"\\");
    json_object_end(w);
    size_t n;
    char *s = json_writer_finish(w, &n);
    /* The shortest round-trip text (not yajl_gen_double's %.20g), null for NaN, '/' as is. */
    const char *want = "{\"a/b\":[-3,0.1,0.333333333,null,44.44444444444444],\"s\":\"t\\tq\\\"\\\\\"}";
    EXPECT(strcmp(s, want) == 0 && n == strlen(want), "wrote %s", s);
    free(s);
}

TEST(json_reader_types_and_messages) {
    yajl_val v;
    EXPECT(json_parse("{\"a\":1", "cut.json", &v) == STATUS_ERR_FORMAT && !v &&
               strstr(error_last(), "cut.json: malformed JSON") && !strchr(error_last(), '\n'),
           "truncated: %s", error_last());
    EXPECT(json_parse("[1]", "arr.json", &v) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "arr.json: expected a JSON object, found an array"),
           "array: %s", error_last());
    char deep[400];
    memset(deep, '[', 200);
    snprintf(deep + 200, sizeof deep - 200, "]");
    deep[0] = '{';
    EXPECT(json_parse(deep, "deep.json", &v) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "deep.json: malformed JSON: nested deeper"),
           "deep: %s", error_last());
    Status st = json_parse("{\"n\":2.5,\"i\":7,\"s\":\"x\",\"z\":null,\"o\":{}}", "ok.json", &v);
    EXPECT(st == STATUS_OK, "parse: %s", error_last());
    if (st != STATUS_OK) return;
    double d;
    int64_t i;
    yajl_val o;
    EXPECT(json_get_number(v, "n", "ok.json", false, &d) == STATUS_OK && d == 2.5, "n %g", d);
    EXPECT(json_get_int(v, "i", "ok.json", &i) == STATUS_OK && i == 7, "i %lld", (long long)i);
    EXPECT(json_get_int(v, "n", "ok.json", &i) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "ok.json: \"n\" must be an integer, found a number"),
           "2.5 as an integer: %s", error_last());
    EXPECT(json_get_number(v, "s", "ok.json", false, &d) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "\"s\" must be a finite number, found a string"),
           "string as a number: %s", error_last());
    EXPECT(json_get_number(v, "q", "ok.json", false, &d) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "\"q\" must be a finite number, found no such key"),
           "missing: %s", error_last());
    EXPECT(json_get_number(v, "z", "ok.json", true, &d) == STATUS_OK && isnan(d), "null: %g", d);
    EXPECT(json_get_object(v, "z", "ok.json", false, &o) == STATUS_ERR_FORMAT,
           "null object refused");
    EXPECT(json_get_object(v, "o", "ok.json", false, &o) == STATUS_OK && o, "object");
    json_free(v);
}

/* A value read and written again keeps its numbers' text: 0.10 stays 0.10, 1e2 stays 1e2. */
TEST(json_value_copy_keeps_number_text) {
    const char *doc = "{\"a\":[0.10,1e2,-0],\"b\":{\"c\":true,\"d\":null,\"e\":\"\\u00e9\"}}";
    yajl_val v;
    EXPECT(json_parse(doc, "doc", &v) == STATUS_OK, "%s", error_last());
    JsonWriter *w = json_writer_new();
    json_value(w, v);
    char *s = json_writer_finish(w, NULL);
    EXPECT(strcmp(s, "{\"a\":[0.10,1e2,-0],\"b\":{\"c\":true,\"d\":null,\"e\":\"\xc3\xa9\"}}") == 0,
           "copied %s", s);
    free(s);
    json_free(v);
}

/* ds_metrics_json: the exact bytes a metrics.jsonl line and eval.json hold. */
TEST(json_metrics_object_bytes) {
    const double ap[2] = {100, 50.5};
    Metrics m = {.map = 75.25, .ap = ap, .nc = 2,
                 .all = {1, 2, 3, 4, 5, 200.0 / 3}, .top3 = {0, 0, 0, 0, 0, 0.1}};
    char *s = ds_metrics_json(&m);
    const char *want = "{\"mAP\":75.25,\"AP\":[100,50.5],\"CP\":1,\"CR\":2,\"CF1\":3,\"OP\":4,"
                       "\"OR\":5,\"OF1\":66.66666666666667,\"top3\":{\"CP\":0,\"CR\":0,\"CF1\":0,"
                       "\"OP\":0,\"OR\":0,\"OF1\":0.1}}";
    EXPECT(strcmp(s, want) == 0, "ds_metrics_json gave %s", s);
    free(s);
}

/* A metrics.jsonl line as training writes it, read back field by field. */
TEST(json_metrics_line_round_trip) {
    const double ap[3] = {90, 80, 70.125};
    Metrics m = {.map = 80.041666666666671, .ap = ap, .nc = 3};
    char *eval = ds_metrics_json(&m);
    RunMeta meta = {.stage = 2, .epochs_done = 1, .global_epochs = 3, .step = 42};
    size_t n1, n2;
    char *l1 = run_metrics_line(&meta, 0.123456789012, eval, &n1);
    meta.stage = 2, meta.epochs_done = 2, meta.global_epochs = 4, meta.step = 56;
    char *l2 = run_metrics_line(&meta, 2.5, NULL, &n2);
    char *want = xmalloc(strlen(eval) + 128);
    sprintf(want, "{\"stage\":2,\"epoch\":1,\"global_epoch\":3,\"step\":42,\"loss\":0.123456789,"
                  "\"eval\":%s}\n", eval);
    EXPECT(strcmp(l1, want) == 0 && n1 == strlen(want), "line: %s", l1);
    EXPECT(strcmp(l2, "{\"stage\":2,\"epoch\":2,\"global_epoch\":4,\"step\":56,\"loss\":2.5,"
                      "\"eval\":null}\n") == 0, "line without eval: %s", l2);
    char *text = xmalloc(n1 + n2 + 1);
    sprintf(text, "%s%s", l1, l2);
    RunMetricsRow *rows = NULL;
    int64_t n = 0;
    Status st = run_metrics_parse(text, "mem.jsonl", &rows, &n);
    EXPECT(st == STATUS_OK && n == 2, "parse: %d rows: %s", (int)n, error_last());
    if (st == STATUS_OK && n == 2) {
        EXPECT(rows[0].stage == 2 && rows[0].epoch == 1 && rows[0].global_epoch == 3 &&
                   rows[0].step == 42 && rows[0].loss == 0.123456789 &&
                   rows[0].map == 80.041666666666671,
               "row 0: %lld %lld %lld %lld %.17g %.17g", (long long)rows[0].stage,
               (long long)rows[0].epoch, (long long)rows[0].global_epoch,
               (long long)rows[0].step, rows[0].loss, rows[0].map);
        EXPECT(rows[1].global_epoch == 4 && rows[1].loss == 2.5 && isnan(rows[1].map),
               "row 1: mAP %g", rows[1].map);
    }
    free(rows);
    free(text);
    free(want);
    free(l1);
    free(l2);
    free(eval);
}

/* Malformed metrics.jsonl: refused with FILE:LINE and what is wrong; nothing returned. */
TEST(json_metrics_malformed) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":null}\n"
         "{\"stage\":1,\"epo",
         "m.jsonl:2: malformed JSON"},
        {"garbage\n", "m.jsonl:1: malformed JSON"},
        {"{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"eval\":null}\n",
         "m.jsonl:1: \"loss\" must be a finite number or null, found no such key"},
        {"{\"stage\":\"1\",\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":null}\n",
         "m.jsonl:1: \"stage\" must be an integer, found a string"},
        {"{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":{}}\n",
         "m.jsonl:1: \"mAP\" must be a finite number, found no such key"},
        {"{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":[]}\n",
         "m.jsonl:1: \"eval\" must be an object or null, found an array"},
        {"{\"stage\":3,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":null}\n",
         "m.jsonl:1: stage 3"},
        {"\n", "m.jsonl:1: malformed JSON"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        RunMetricsRow *rows = (RunMetricsRow *)1;
        int64_t n = -1;
        Status st = run_metrics_parse(bad[k].text, "m.jsonl", &rows, &n);
        EXPECT(st == STATUS_ERR_FORMAT && !rows && n == 0 && strstr(error_last(), bad[k].want),
               "case %zu: status %d, message '%s' lacks '%s'", k, st, error_last(), bad[k].want);
    }
    /* From a file: the message names the path. */
    char dir[] = "/tmp/trmml-json-XXXXXX", path[64];
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f, "write %s", path);
    fputs("{\"stage\":1,\"epoch\":1,\"global_epoch\":1,\"step\":5,\"loss\":1,\"eval\":null}\n{x\n", f);
    fclose(f);
    RunMetricsRow *rows;
    int64_t n;
    char want[96];
    snprintf(want, sizeof want, "%s:2: malformed JSON", path);
    EXPECT(run_metrics_read(path, &rows, &n) == STATUS_ERR_FORMAT && strstr(error_last(), want),
           "file: %s", error_last());
    test_remove_tree(dir);
}
