/* test_metrics.c — mAP and the threshold metrics (SPEC §7) on hand-computed cases and against
 * NumPy fixtures (scripts/fixtures_metrics.py), the CSV reader/writer, and `trmml metrics`. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/csv.h"
#include "datasets/metrics.h"
#include "tensor/tensor.h"
#include "test/test.h"

/* Metrics are specified to 1e-6 (percent); everything here is float64 on identical inputs. */
#define METRICS_ATOL 1e-9

static void expect_near(const char *file, int line, const char *what, double got, double want) {
    if (!(fabs(got - want) <= METRICS_ATOL))
        test_fail(file, line, "%s: got %.17g, expected %.17g (diff %.3e)", what, got, want,
                  got - want);
}
#define EXPECT_NEAR(what, got, want) expect_near(__FILE__, __LINE__, (what), (got), (want))

static void expect_threshold(const char *file, int line, const char *what,
                             const ThresholdMetrics *m, const double want[6]) {
    const char *names[6] = {"CP", "CR", "CF1", "OP", "OR", "OF1"};
    double got[6] = {m->cprec, m->crec, m->cf1, m->oprec, m->orec, m->of1};
    for (int k = 0; k < 6; k++) {
        char w[96];
        snprintf(w, sizeof w, "%s %s", what, names[k]);
        expect_near(file, line, w, got[k], want[k]);
    }
}
#define EXPECT_THRESHOLD(what, m, want) expect_threshold(__FILE__, __LINE__, (what), (m), (want))

TEST(metrics_ap_hand_ties) {
    /* SPEC §8: a 6-image example with ties. Class 0 scores 0.9 0.8 0.8 0.5 0.5 0.1, targets
     * + - + 0 + -: the ranking by descending score, ties by ascending image index, is
     * 0(+) 1(-) 2(+) 3(0) 4(+) 5(-), so precisions at the positives are 1/1, 2/3, 3/5.
     * (Breaking the 0.8 tie the other way gives 1, 1, 3/5; the 0.5 tie, 1, 2/3, 3/4.)
     * Class 1 has no positive (only -1 and 0): AP 0, still in the mean. */
    const double scores[12] = {0.9, 0.3, 0.8, 0.3, 0.8, 0.2, 0.5, 0.9, 0.5, 0.1, 0.1, 0.4};
    const double targets[12] = {1, -1, -1, 0, 1, -1, 0, 0, 1, -1, -1, -1};
    double ap[2];
    double map = ds_average_precision(ap, scores, targets, 6, 2);
    double ap0 = 100.0 * (1.0 + 2.0 / 3.0 + 3.0 / 5.0) / (3.0 + 1e-8);
    EXPECT_NEAR("AP class 0", ap[0], ap0);
    EXPECT_NEAR("AP class 1 (no positive)", ap[1], 0.0);
    EXPECT_NEAR("mAP", map, ap0 / 2.0);
    EXPECT(fabs(ap0 - 75.55555530370371) < 1e-9, "hand value drifted: %.17g", ap0);
}

TEST(metrics_threshold_hand) {
    /* 3 images x 5 classes. Class 3 has no positive, class 4 no prediction (Np -> 1), image 0
     * has four scores >= 0.5 with a three-way tie at 0.7 (top-3 keeps classes 0, 1, 2: ties go
     * to the lower class index), image 1 predicts at exactly 0.5 (>= counts).
     *   threshold: Nc = 2 1 1 0 0, Np = 2 2 1 3 1, Ng = 2 1 2 0 1
     *     CP = (1 + 1/2 + 1 + 0 + 0)/5 = 50, CR = (1 + 1 + 1/2 + 0 + 0)/5 = 50, CF1 = 50,
     *     OP = 4/9, OR = 4/6, OF1 = 8/15
     *   top-3: class 3 loses image 0, so Np = 2 2 1 2 1: OP = 4/8, OR = 4/6, OF1 = 4/7 */
    const double scores[15] = {0.9, 0.7, 0.7,  0.7,  0.1, /* image 0 */
                               0.2, 0.8, 0.45, 0.5,  0.2, /* image 1 */
                               0.7, 0.1, 0.3,  0.95, 0.3}; /* image 2 */
    const double targets[15] = {1, -1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 0, -1};
    ThresholdMetrics m;
    ds_threshold_metrics(&m, scores, targets, 3, 5, 0);
    const double all[6] = {50, 50, 50, 400.0 / 9, 400.0 / 6, 800.0 / 15};
    EXPECT_THRESHOLD("threshold", &m, all);
    ds_threshold_metrics(&m, scores, targets, 3, 5, 3);
    const double top3[6] = {50, 50, 50, 50, 400.0 / 6, 400.0 / 7};
    EXPECT_THRESHOLD("top-3", &m, top3);
}

TEST(metrics_degenerate_cases) {
    /* No positive anywhere and no prediction anywhere: every 0/0 is 0, nothing is NaN. */
    const double scores[4] = {0.1, 0.2, 0.3, 0.4}, targets[4] = {-1, 0, -1, -1};
    double ap[2];
    Metrics m;
    EXPECT(ds_metrics(&m, ap, scores, targets, 2, 2) == STATUS_OK, "%s", error_last());
    const double zero[6] = {0, 0, 0, 0, 0, 0};
    EXPECT_NEAR("mAP", m.map, 0.0);
    EXPECT_THRESHOLD("threshold", &m.all, zero);
    EXPECT_THRESHOLD("top-3", &m.top3, zero);
    /* Fewer classes than 3: top-3 is plain thresholding. */
    const double s2[4] = {0.6, 0.9, 0.7, 0.2}, t2[4] = {1, -1, 1, 1};
    ds_metrics(&m, ap, s2, t2, 2, 2);
    EXPECT(memcmp(&m.all, &m.top3, sizeof m.all) == 0,
           "top-3 with 2 classes differs from threshold");
    /* A non-finite score is a data error naming the entry. */
    const double bad[4] = {0.1, NAN, 0.3, 0.4};
    EXPECT(ds_metrics(&m, ap, bad, targets, 2, 2) == STATUS_ERR_FORMAT, "NaN score accepted");
    EXPECT(strstr(error_last(), "image 0, class 1") != NULL, "message: %s", error_last());
}

static double f64_from_bits(int64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

TEST(metrics_vs_numpy_fixture) {
    Fixture *fx = fixture_open("metrics");
    if (!fx) {
        test_fail(__FILE__, __LINE__, "%s", error_last());
        return;
    }
    const char *cases[2] = {"ties", "real"};
    for (int cs = 0; cs < 2; cs++) {
        char name[96];
#define GET(var, suffix)                                                                           \
    snprintf(name, sizeof name, "metrics/%s/" suffix, cases[cs]);                                  \
    const FixtureTensor *var = fixture_get(fx, name);                                              \
    if (!var) return;
        GET(fs, "scores")
        GET(ft, "targets")
        GET(fap, "ap")
        GET(fmap, "map")
        GET(fall, "all")
        GET(ftop, "top3")
#undef GET
        int64_t n = fs->shape[0], nc = fs->shape[1];
        double *scores = xmalloc(sizeof(double) * (size_t)(n * nc));
        double *targets = xmalloc(sizeof(double) * (size_t)(n * nc));
        double *ap = xmalloc(sizeof(double) * (size_t)nc);
        for (int64_t i = 0; i < n * nc; i++) {
            scores[i] = f64_from_bits(fs->i64[i]);
            targets[i] = (double)ft->i64[i];
        }
        Metrics m;
        EXPECT(ds_metrics(&m, ap, scores, targets, n, nc) == STATUS_OK, "%s", error_last());
        for (int64_t c = 0; c < nc; c++) {
            snprintf(name, sizeof name, "%s AP[%lld]", cases[cs], (long long)c);
            EXPECT_NEAR(name, ap[c], f64_from_bits(fap->i64[c]));
        }
        snprintf(name, sizeof name, "%s mAP", cases[cs]);
        EXPECT_NEAR(name, m.map, f64_from_bits(fmap->i64[0]));
        double want[6];
        for (int k = 0; k < 6; k++) want[k] = f64_from_bits(fall->i64[k]);
        EXPECT_THRESHOLD(cases[cs], &m.all, want);
        for (int k = 0; k < 6; k++) want[k] = f64_from_bits(ftop->i64[k]);
        snprintf(name, sizeof name, "%s top-3", cases[cs]);
        EXPECT_THRESHOLD(name, &m.top3, want);
        free(scores);
        free(targets);
        free(ap);
    }
}

/* ---- CSV --------------------------------------------------------------------------------- */

/* A fresh directory under /tmp for one test's files. */
static char *temp_dir(void) {
    char *dir = xmalloc(64);
    snprintf(dir, 64, "/tmp/trmml_metrics_XXXXXX");
    CHECK(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

TEST(metrics_csv_round_trip) {
    char *dir = temp_dir(), path[128], tmp[140];
    snprintf(path, sizeof path, "%s/m.csv", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const double v[6] = {0.1, 1.0 / 3.0, -2.5e-300, 4.9406564584124654e-324, 123456789.125, -0.0};
    EXPECT(ds_csv_write(path, v, 2, 3, "scores\nseed=0") == STATUS_OK, "%s", error_last());
    struct stat sb;
    EXPECT(stat(tmp, &sb) != 0, "%s left behind", tmp);
    double *back = NULL;
    int64_t rows = 0, cols = 0;
    EXPECT(ds_csv_read(path, &back, &rows, &cols) == STATUS_OK, "%s", error_last());
    EXPECT(rows == 2 && cols == 3, "read %lld x %lld", (long long)rows, (long long)cols);
    for (int i = 0; back && i < 6; i++)
        EXPECT(memcmp(&back[i], &v[i], sizeof(double)) == 0, "value %d: wrote %.17g, read %.17g", i,
               v[i], back[i]);
    free(back);
    const int8_t lab[6] = {1, -1, 0, 0, 1, -1};
    int8_t *lback = NULL;
    EXPECT(ds_csv_write_labels(path, lab, 3, 2, NULL) == STATUS_OK, "%s", error_last());
    EXPECT(ds_csv_read_labels(path, &lback, &rows, &cols) == STATUS_OK && rows == 3 && cols == 2 &&
               memcmp(lback, lab, 6) == 0,
           "label round trip failed: %s", error_last());
    free(lback);
    /* np.savetxt(delimiter=",", header=...) output, CRLF line ends, blanks and padding. */
    const char *numpy_text =
        "# a header\r\n1.000000000000000000e+00,-1.000000000000000000e+00\r\n\r\n"
        "  0 ,\t5.000000000000000000e-01\n";
    test_write_file(path, numpy_text, strlen(numpy_text));
    EXPECT(ds_csv_read(path, &back, &rows, &cols) == STATUS_OK && rows == 2 && cols == 2 &&
               back[0] == 1 && back[1] == -1 && back[2] == 0 && back[3] == 0.5,
           "np.savetxt-style text misread: %s", error_last());
    free(back);
    remove(path);
    rmdir(dir);
    free(dir);
}

TEST(metrics_csv_malformed_errors) {
    static const struct {
        const char *text, *error;
    } bad[] = {
        {"1,2\n3\n", "t.csv: line 2: 1 fields, expected 2 (as on line 1)"},
        {"1,2\n3,4,5\n", "line 2: 3 fields, expected 2"},
        {"1,,2\n", "t.csv: line 1, column 2: empty field"},
        {"1,2,\n", "line 1, column 3: empty field"},
        {"# c\n0.5,abc\n", "line 2, column 2: 'abc' is not a number"},
        {"1,2x\n", "column 2: '2x' is not a number"},
        {"nan,1\n", "line 1, column 1: 'nan' is not a finite number"},
        {"1e999\n", "'1e999' is not a finite number"},
        {"1;2\n", "'1;2' is not a number"},
        {"", "t.csv: no data rows"},
        {"# only a comment\n\n  \n", "no data rows"},
        {"1,0.123456789012345678901234567890123456789012345678901234567890123\n", "column 2:"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        double *data = (double *)1;
        int64_t rows, cols;
        Status st = ds_csv_parse(bad[k].text, strlen(bad[k].text), "t.csv", &data, &rows, &cols);
        EXPECT(st == STATUS_ERR_FORMAT && data == NULL, "case %zu ('%s') accepted", k, bad[k].text);
        EXPECT(strstr(error_last(), bad[k].error) != NULL, "case %zu: message '%s' lacks '%s'", k,
               error_last(), bad[k].error);
    }
    /* An embedded NUL byte; a missing final newline is fine. */
    double *data = NULL;
    int64_t rows, cols;
    EXPECT(ds_csv_parse("1,2\n3,\0", 7, "t.csv", &data, &rows, &cols) == STATUS_ERR_FORMAT,
           "NUL byte accepted");
    EXPECT(ds_csv_parse("1,2\n3,4", 7, "t.csv", &data, &rows, &cols) == STATUS_OK && rows == 2,
           "last line without newline rejected: %s", error_last());
    free(data);
    /* Files: missing, a directory, a non-label value. */
    char *dir = temp_dir(), path[128];
    snprintf(path, sizeof path, "%s/missing.csv", dir);
    EXPECT(ds_csv_read(path, &data, &rows, &cols) == STATUS_ERR_IO && strstr(error_last(), path),
           "missing file: %s", error_last());
    EXPECT(ds_csv_read(dir, &data, &rows, &cols) == STATUS_ERR_IO &&
               strstr(error_last(), "is a directory"),
           "directory: %s", error_last());
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    test_write_file(path, "1,0\n-1,2\n", 9);
    int8_t *lab = NULL;
    EXPECT(ds_csv_read_labels(path, &lab, &rows, &cols) == STATUS_ERR_FORMAT &&
               strstr(error_last(), "line 2, column 2: 2 is not a label"),
           "label 2: %s", error_last());
    EXPECT(ds_csv_write(dir, (const double[1]){1}, 1, 1, NULL) == STATUS_ERR_IO,
           "writing over a directory");
    remove(path);
    rmdir(dir);
    free(dir);
}

/* ---- the command ----------------------------------------------------------------------- */

TEST(metrics_command_json) {
    char exe[PATH_MAX + 8];
    if (!test_trmml_path(exe, sizeof exe)) return;
    const double scores[15] = {0.9, 0.7, 0.7, 0.7, 0.1, 0.2,  0.8, 0.45,
                               0.5, 0.2, 0.7, 0.1, 0.3, 0.95, 0.3};
    const double targets[15] = {1, -1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 0, -1};
    char *dir = temp_dir(), s[128], t[128], t2[128], cmd[8192], out[4096];
    snprintf(s, sizeof s, "%s/s.csv", dir);
    snprintf(t, sizeof t, "%s/t.csv", dir);
    snprintf(t2, sizeof t2, "%s/t2.csv", dir);
    CHECK(ds_csv_write(s, scores, 3, 5, NULL) == STATUS_OK, "%s", error_last());
    CHECK(ds_csv_write(t, targets, 3, 5, NULL) == STATUS_OK, "%s", error_last());
    CHECK(ds_csv_write(t2, targets, 5, 3, NULL) == STATUS_OK, "%s", error_last());

    snprintf(cmd, sizeof cmd, "'%s' metrics --scores '%s' --targets '%s' 2>&1", exe, s, t);
    int rc = test_run_capture(cmd, out, sizeof out);
    double ap[5];
    Metrics m;
    ds_metrics(&m, ap, scores, targets, 3, 5);
    char *want = ds_metrics_json(&m);
    EXPECT(rc == 0, "exit %d: %s", rc, out);
    EXPECT(strncmp(out, want, strlen(want)) == 0 && strcmp(out + strlen(want), "\n") == 0,
           "output\n%s\nexpected\n%s", out, want);
    EXPECT(
        strncmp(want, "{\"mAP\":", 7) == 0 && strstr(want, ",\"AP\":[") &&
            strstr(want, "],\"CP\":50,\"CR\":50,\"CF1\":50,\"OP\":44.4444444444444") &&
            strstr(want,
                   ",\"top3\":{\"CP\":50,\"CR\":50,\"CF1\":50,\"OP\":50,\"OR\":66.6666666666666") &&
            strcmp(want + strlen(want) - 2, "}}") == 0,
        "JSON layout: %s", want);
    free(want);

    snprintf(cmd, sizeof cmd, "'%s' metrics --scores '%s' --targets '%s' 2>&1", exe, s, t2);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "shape mismatch") && strstr(out, "3 x 5") && strstr(out, "5 x 3"),
           "shape mismatch: exit %d: %s", rc, out);
    test_write_file(t2, "1,2\nx,4\n", 8);
    snprintf(cmd, sizeof cmd, "'%s' metrics --scores='%s' --targets='%s' 2>&1", exe, t2, t);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "line 2, column 1: 'x' is not a number"),
           "malformed: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' metrics --scores '%s' --bogus 2>&1", exe, s);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--bogus"), "bad flag: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' metrics --scores '%s' 2>&1", exe, s);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "missing --targets"), "missing flag: exit %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' metrics --scores '%s' --targets 2>&1", exe, s);
    rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 2, "flag without value: exit %d: %s", rc, out);

    remove(s);
    remove(t);
    remove(t2);
    rmdir(dir);
    free(dir);
}

/* The chance level: hand values, and the mean AP of many random rankings. */
TEST(metrics_chance_map) {
    /* N = 2, one positive: AP is 1 or 1/2 with equal odds -> 75 %. All positive -> 100 %. */
    const double t2[2] = {1, -1}, t3[3] = {1, 1, 1};
    EXPECT_NEAR("N=2 P=1", ds_chance_map(t2, 2, 1), 75.0);
    EXPECT_NEAR("N=3 P=3", ds_chance_map(t3, 3, 1), 100.0);
    /* 40 images, 3 classes with 1, 7 and 20 positives (0 = unknown counts as not positive). */
    enum { N = 40, C = 3, TRIALS = 20000 };
    double targets[N * C], scores[N * C], ap[C];
    for (int i = 0; i < N; i++) {
        targets[i * C + 0] = i == 5 ? 1 : -1;
        targets[i * C + 1] = i % 6 == 0 ? 1 : (i % 6 == 1 ? 0 : -1);
        targets[i * C + 2] = i % 2 ? 1 : -1;
    }
    Rng r;
    rng_seed(&r, 11);
    double mean = 0;
    for (int t = 0; t < TRIALS; t++) {
        for (int i = 0; i < N * C; i++) scores[i] = rng_uniform(&r);
        mean += ds_average_precision(ap, scores, targets, N, C) / TRIALS;
    }
    /* The per-trial mAP has a standard deviation of about 10 points here, so the mean of 20000
     * trials is within 0.3 of the expectation with overwhelming probability. */
    const double chance = ds_chance_map(targets, N, C);
    EXPECT(fabs(mean - chance) < 0.3, "mean mAP of %d random rankings %.4f, chance %.4f", TRIALS,
           mean, chance);
    const double rate = (1.0 / N + 7.0 / N + 20.0 / N) / 3 * 100;
    EXPECT(chance > rate, "chance %.4f not above the mean positive rate %.4f", chance, rate);
}
