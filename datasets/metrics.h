/* metrics.h — multi-label evaluation (SPEC §7): mAP and the ML-GCN threshold metrics.
 *
 * Inputs are row-major [N, NC] doubles: scores = positive-class probabilities, targets = labels in
 * any encoding where exactly +1 means positive (-1 negative, 0 unknown, difficult: all negative).
 * Every result is in percent.
 *
 *   AP_c   rank images by descending score, ties by ascending image index (DECISION 26); at each
 *          rank i holding a positive, precision = (#positives in ranks 1..i) / i;
 *          AP_c = sum of those precisions / (#positives + 1e-8); 0 for a class with no positive.
 *   mAP    mean of AP_c over all NC classes (classes without positives included, as 0).
 *   CP CR CF1 OP OR OF1   prediction positive iff score >= 0.5. Per class Ng = #positives,
 *          Np = #predicted (1 when 0), Nc = #correct. CP = mean Nc/Np, CR = mean Nc/Ng (a class
 *          with Ng = 0 contributes 0), CF1 = 2 CP CR / (CP + CR); OP = sum Nc / sum Np (the
 *          adjusted Np), OR = sum Nc / sum Ng, OF1 = 2 OP OR / (OP + OR); a 0/0 is 0.
 *   top3   the same, but per image only its 3 highest scores (ties to the lower class index) may
 *          be predicted positive. */
#pragma once
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/json.h"

#define DS_METRICS_THRESHOLD 0.5
#define DS_METRICS_TOP_K 3

typedef struct {
    double cprec, crec, cf1, oprec, orec, of1; /* CP, CR, CF1, OP, OR, OF1 in percent */
} ThresholdMetrics;

typedef struct {
    double map;          /* percent */
    const double *ap;    /* [NC] per-class AP in percent; borrowed (the caller's buffer) */
    int64_t nc;
    ThresholdMetrics all, top3;
} Metrics;

/* Per-class AP (percent) into ap[NC]; returns mAP (percent). Scores must be finite (not checked
 * here; ds_metrics checks). Allocates O(N) scratch. */
double ds_average_precision(double *ap, const double *scores, const double *targets, int64_t n,
                            int64_t nc);
/* The chance level of mAP (percent): the expected mAP of scores that rank the images uniformly
 * at random (ties aside), exactly, from the number of positives per class. Slightly above the
 * mean positive rate, by about ln(N)/N. */
double ds_chance_map(const double *targets, int64_t n, int64_t nc);
/* CP..OF1 at DS_METRICS_THRESHOLD; top_k > 0 lets only each image's top_k scores count. */
void ds_threshold_metrics(ThresholdMetrics *m, const double *scores, const double *targets,
                          int64_t n, int64_t nc, int top_k);
/* Everything above; ap[NC] is the caller's buffer, referenced by m->ap. STATUS_ERR_FORMAT naming
 * the entry if a score is not finite. */
Status ds_metrics(Metrics *m, double *ap, const double *scores, const double *targets, int64_t n,
                  int64_t nc);
/* The JSON object {"mAP":..,"AP":[..],"CP":..,"CR":..,"CF1":..,"OP":..,"OR":..,"OF1":..,
 * "top3":{"CP":..,"CR":..,"CF1":..,"OP":..,"OR":..,"OF1":..}} (no newline), numbers as the
 * shortest text that reads back exactly (JSON_SHORTEST). Returns a new string (free() it). */
char *ds_metrics_json(const Metrics *m);
/* The same object written as the next value of w (tensor/json.h). */
void ds_metrics_write_json(JsonWriter *w, const Metrics *m);
