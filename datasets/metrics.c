/* metrics.c — mAP and the ML-GCN threshold metrics (definitions in metrics.h, SPEC §7).
 *
 * Everything is computed in double from the caller's doubles; counts are exact integers, so the
 * only rounding is in the final divisions and the AP sum, far below the 1e-6 the SPEC asks. */
#include "datasets/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/csv.h"

typedef struct {
    double score;
    int64_t image;
} Ranked;

/* Descending score, then ascending image index: a total order, so qsort's instability cannot
 * change the ranking (DECISION 26). */
static int cmp_ranked(const void *pa, const void *pb) {
    const Ranked *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->image > b->image) - (a->image < b->image);
}

double ds_average_precision(double *ap, const double *scores, const double *targets, int64_t n,
                            int64_t nc) {
    CHECK(ap && scores && targets && n > 0 && nc > 0,
          "ds_average_precision: bad arguments (n %lld, nc %lld)", (long long)n, (long long)nc);
    Ranked *r = xmalloc(sizeof *r * (size_t)n);
    double sum_ap = 0.0;
    for (int64_t c = 0; c < nc; c++) {
        int64_t npos = 0;
        for (int64_t i = 0; i < n; i++) {
            r[i] = (Ranked){scores[i * nc + c], i};
            npos += targets[i * nc + c] == 1.0;
        }
        qsort(r, (size_t)n, sizeof *r, cmp_ranked);
        double precisions = 0.0;
        int64_t seen = 0;
        for (int64_t k = 0; k < n; k++) {
            if (targets[r[k].image * nc + c] != 1.0) continue;
            seen++;
            precisions += (double)seen / (double)(k + 1);
        }
        /* The 1e-8 is the references' guard; it makes a class with no positive score 0. */
        double a = precisions / ((double)npos + 1e-8);
        ap[c] = 100.0 * a;
        sum_ap += a;
    }
    free(r);
    return 100.0 * sum_ap / (double)nc;
}

double ds_chance_map(const double *targets, int64_t n, int64_t nc) {
    CHECK(targets && n > 0 && nc > 0, "ds_chance_map: bad arguments (n %lld, nc %lld)",
          (long long)n, (long long)nc);
    double hn = 0.0; /* H_N, the N-th harmonic number */
    for (int64_t r = 1; r <= n; r++) hn += 1.0 / (double)r;
    double sum = 0.0;
    for (int64_t c = 0; c < nc; c++) {
        int64_t p = 0;
        for (int64_t i = 0; i < n; i++) p += targets[i * nc + c] == 1.0;
        if (p == 0) continue; /* AP 0 whatever the scores */
        /* A positive at rank r (uniform on 1..N) has, in expectation, (r-1)(P-1)/(N-1) other
         * positives above it, so E[precision at its rank] = (1 + (r-1)(P-1)/(N-1)) / r;
         * averaging over r: (H_N + (P-1)(N - H_N)/(N-1)) / N, the same for every positive. */
        const double N = (double)n, P = (double)p;
        sum += n > 1 ? (hn + (P - 1) * (N - hn) / (N - 1)) / N : 1.0;
    }
    return 100.0 * sum / (double)nc;
}

static double ratio_or_zero(double num, double den) { return den > 0 ? num / den : 0.0; }

static double harmonic(double p, double r) { return p + r > 0 ? 2.0 * p * r / (p + r) : 0.0; }

void ds_threshold_metrics(ThresholdMetrics *m, const double *scores, const double *targets,
                          int64_t n, int64_t nc, int top_k) {
    CHECK(m && scores && targets && n > 0 && nc > 0 && top_k >= 0,
          "ds_threshold_metrics: bad arguments (n %lld, nc %lld, top_k %d)", (long long)n,
          (long long)nc, top_k);
    int64_t *ng = xcalloc((size_t)nc, sizeof *ng), *np = xcalloc((size_t)nc, sizeof *np);
    int64_t *ncorrect = xcalloc((size_t)nc, sizeof *ncorrect);
    bool *allowed = xmalloc((size_t)nc);
    bool limit = top_k > 0 && top_k < nc;
    for (int64_t i = 0; i < n; i++) {
        const double *s = scores + i * nc;
        const double *t = targets + i * nc;
        memset(allowed, !limit, (size_t)nc);
        /* Top-k by repeated selection: the largest score not yet taken, the lowest class index
         * among equals (strict > keeps the first seen). */
        for (int k = 0; limit && k < top_k; k++) {
            int64_t best = -1;
            for (int64_t c = 0; c < nc; c++)
                if (!allowed[c] && (best < 0 || s[c] > s[best])) best = c;
            allowed[best] = true;
        }
        for (int64_t c = 0; c < nc; c++) {
            bool pos = t[c] == 1.0, pred = allowed[c] && s[c] >= DS_METRICS_THRESHOLD;
            ng[c] += pos;
            np[c] += pred;
            ncorrect[c] += pos && pred;
        }
    }
    double cp = 0, cr = 0, sum_nc = 0, sum_np = 0, sum_ng = 0;
    for (int64_t c = 0; c < nc; c++) {
        double npc = np[c] ? (double)np[c] : 1.0; /* ML-GCN: Np[Np == 0] = 1, also in sum Np */
        cp += (double)ncorrect[c] / npc;
        cr += ratio_or_zero((double)ncorrect[c], (double)ng[c]);
        sum_nc += (double)ncorrect[c];
        sum_np += npc;
        sum_ng += (double)ng[c];
    }
    cp /= (double)nc;
    cr /= (double)nc;
    double op = sum_nc / sum_np, orec = ratio_or_zero(sum_nc, sum_ng);
    *m = (ThresholdMetrics){100 * cp, 100 * cr, 100 * harmonic(cp, cr),
                            100 * op, 100 * orec, 100 * harmonic(op, orec)};
    free(ng);
    free(np);
    free(ncorrect);
    free(allowed);
}

Status ds_metrics(Metrics *m, double *ap, const double *scores, const double *targets, int64_t n,
                  int64_t nc) {
    CHECK(m && ap && scores && targets && n > 0 && nc > 0,
          "ds_metrics: bad arguments (n %lld, nc %lld)", (long long)n, (long long)nc);
    for (int64_t i = 0; i < n * nc; i++)
        if (!isfinite(scores[i]))
            return error_set(STATUS_ERR_FORMAT, "metrics: score (image %lld, class %lld) is %g",
                             (long long)(i / nc), (long long)(i % nc), scores[i]);
    m->map = ds_average_precision(ap, scores, targets, n, nc);
    m->ap = ap;
    m->nc = nc;
    ds_threshold_metrics(&m->all, scores, targets, n, nc, 0);
    ds_threshold_metrics(&m->top3, scores, targets, n, nc, DS_METRICS_TOP_K);
    return STATUS_OK;
}

/* "CP":..,"CR":..,"CF1":..,"OP":..,"OR":..,"OF1":.. into the open object. */
static void put_threshold(JsonWriter *w, const ThresholdMetrics *t) {
    const char *keys[6] = {"CP", "CR", "CF1", "OP", "OR", "OF1"};
    double vals[6] = {t->cprec, t->crec, t->cf1, t->oprec, t->orec, t->of1};
    for (int k = 0; k < 6; k++) {
        json_key(w, keys[k]);
        json_number(w, vals[k], JSON_SHORTEST);
    }
}

void ds_metrics_write_json(JsonWriter *w, const Metrics *m) {
    CHECK(m && (m->ap || m->nc == 0), "ds_metrics_write_json: NULL metrics");
    json_object_begin(w);
    json_key(w, "mAP");
    json_number(w, m->map, JSON_SHORTEST);
    json_key(w, "AP");
    json_array_begin(w);
    for (int64_t c = 0; c < m->nc; c++) json_number(w, m->ap[c], JSON_SHORTEST);
    json_array_end(w);
    put_threshold(w, &m->all);
    json_key(w, "top3");
    json_object_begin(w);
    put_threshold(w, &m->top3);
    json_object_end(w);
    json_object_end(w);
}

char *ds_metrics_json(const Metrics *m) {
    JsonWriter *w = json_writer_new();
    ds_metrics_write_json(w, m);
    return json_writer_finish(w, NULL);
}
