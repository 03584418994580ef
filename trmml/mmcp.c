/* mmcp.c — the visual memory bank, text prototypes, EMA thresholds and pseudo-labels of
 * SPEC §4.5. No tape: everything is a no-grad computation on detached values, in double where
 * it averages.
 *
 * Eq. 8 in closed form: the bank rows are unit vectors, so the mean over a queue of
 * cos(F, V_j) is <F/|F|, mean_j V_j>; one mean vector per class replaces ℓ dot products. */
#include "trmml/mmcp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "tensor/ops/index.h"

void trmml_mmcp_init(TrmmlMmcp *m, int64_t C, int64_t d, const MethodTrmmlConfig *cfg) {
    CHECK(C > 0 && d > 0 && cfg->mmcp_queue_len > 0 && cfg->mmcp_k > 0,
          "mmcp: C %lld, d %lld, queue length %lld, k %lld", (long long)C, (long long)d,
          (long long)cfg->mmcp_queue_len, (long long)cfg->mmcp_k);
    memset(m, 0, sizeof *m);
    m->C = C;
    m->d = d;
    m->len = cfg->mmcp_queue_len;
    m->k = cfg->mmcp_k;
    m->eta = cfg->mmcp_eta;
    m->require_full = cfg->mmcp_require_full;
    m->use_visual = cfg->mmcp_use_visual;
    m->use_text = cfg->mmcp_use_text;
    m->bank = xcalloc((size_t)(C * m->len * d), sizeof(float));
    m->write = xcalloc((size_t)C, sizeof(int64_t));
    m->fill = xcalloc((size_t)C, sizeof(int64_t));
    m->proto = xcalloc((size_t)(C * d), sizeof(float));
    m->theta = xcalloc((size_t)(4 * C), sizeof(float));
    m->theta_init = xcalloc((size_t)(4 * C), 1);
}

void trmml_mmcp_free(TrmmlMmcp *m) {
    free(m->bank);
    free(m->write);
    free(m->fill);
    free(m->proto);
    free(m->theta);
    free(m->theta_init);
    memset(m, 0, sizeof *m);
}

/* out = v / max(|v|, 1e-12), norm in double. */
static void normalize_into(float *out, const float *v, int64_t d) {
    double n = 0;
    for (int64_t j = 0; j < d; j++) n += (double)v[j] * v[j];
    double inv = 1.0 / fmax(sqrt(n), 1e-12);
    for (int64_t j = 0; j < d; j++) out[j] = (float)(v[j] * inv);
}

/* The bank, the prototypes and the thresholds live in host memory: the tensors they meet are
 * read through a host copy (free it), whatever device they are on. */
static float *host_f32(const Tensor *t, const char *what) {
    CHECK(t && t->dtype == DT_F32, "mmcp: %s must be a float32 tensor", what);
    return tensor_to_host(t);
}

void trmml_mmcp_set_prototypes(TrmmlMmcp *m, const Tensor *gpos) {
    CHECK(gpos->ndim == 2 && gpos->shape[0] == m->C && gpos->shape[1] == m->d,
          "mmcp prototypes: G+ %s must be (%lld,%lld)", tensor_shape_str(gpos), (long long)m->C,
          (long long)m->d);
    float *g = host_f32(gpos, "G+");
    for (int64_t c = 0; c < m->C; c++) normalize_into(m->proto + c * m->d, g + c * m->d, m->d);
    free(g);
    m->has_proto = true;
}

void trmml_mmcp_push_vector(TrmmlMmcp *m, int64_t c, const float *v) {
    CHECK(c >= 0 && c < m->C, "mmcp push: class %lld of %lld", (long long)c, (long long)m->C);
    normalize_into(m->bank + (c * m->len + m->write[c]) * m->d, v, m->d);
    m->write[c] = (m->write[c] + 1) % m->len;
    if (m->fill[c] < m->len) m->fill[c]++;
}

static void check_labels(const TrmmlMmcp *m, const Tensor *y, int64_t B) {
    CHECK(y && y->ndim == 2 && y->shape[0] == B && y->shape[1] == m->C,
          "mmcp: labels %s must be (%lld,%lld)", y ? tensor_shape_str(y) : "NULL", (long long)B,
          (long long)m->C);
}

/* Eq. 9 + Eq. 11 for one modality: per class, the plain means of sim over the batch's positives
 * and negatives update θ⁺ / θ⁻ by EMA (the first value initialises). lab is the label used for
 * the statistics (+1 / -1 / 0), sim NAN where undefined. */
static void update_thresholds(TrmmlMmcp *m, int which_pos, const float *sim, const float *lab,
                              int64_t B) {
    int64_t C = m->C;
    for (int64_t c = 0; c < C; c++)
        for (int side = 0; side < 2; side++) {
            float want = side == 0 ? 1.0f : -1.0f;
            double sum = 0;
            int64_t n = 0;
            for (int64_t i = 0; i < B; i++) {
                float s = sim[i * C + c];
                if (lab[i * C + c] == want && !isnan(s)) {
                    sum += s;
                    n++;
                }
            }
            if (n == 0) continue;
            int64_t at = (int64_t)(which_pos + side) * C + c;
            double mean = sum / (double)n;
            if (m->theta_init[at]) m->theta[at] = (float)(m->eta * m->theta[at] + (1.0 - m->eta) * mean);
            else m->theta[at] = (float)mean;
            m->theta_init[at] = 1;
        }
}

/* Eq. 10, one-sided (DECISION 16): +1 if s >= θ⁺, -1 if s <= θ⁻, else 0; 0 when s is undefined,
 * either threshold is uninitialised, or θ⁻ >= θ⁺ (the class's statistics are not separable). */
static int one_sided(const TrmmlMmcp *m, int which_pos, int64_t c, float s) {
    int64_t ap = (int64_t)which_pos * m->C + c, an = ap + m->C;
    if (isnan(s) || !m->theta_init[ap] || !m->theta_init[an]) return 0;
    float tp = m->theta[ap], tn = m->theta[an];
    if (tn >= tp) return 0;
    if (s >= tp) return 1;
    if (s <= tn) return -1;
    return 0;
}

/* Eq. 8 through the queue means (valid because every bank row is a unit vector): mean (C, d),
 * NAN rows for queues not usable (not full, or empty when a full queue is not required). */
static void queue_means(const TrmmlMmcp *m, float *mean) {
    const int64_t C = m->C, d = m->d;
    for (int64_t c = 0; c < C; c++) {
        bool ok = m->require_full ? m->fill[c] == m->len : m->fill[c] > 0;
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t e = 0; e < m->fill[c]; e++) s += m->bank[(c * m->len + e) * d + j];
            mean[c * d + j] = ok ? (float)(s / (double)m->fill[c]) : NAN;
        }
    }
}

/* The visual and text similarities sv, st (B, C) of normalize(F^r) to the queue means and the
 * prototypes, and the labels lab (B, C) the thresholds learn from (unknown as negative in
 * single-positive mode). nf: d floats of scratch. */
static void similarities(const TrmmlMmcp *m, const float *F, const float *Y, int64_t B,
                         bool single_positive, const float *mean, float *nf, float *sv, float *st,
                         float *lab) {
    const int64_t C = m->C, d = m->d;
    for (int64_t i = 0; i < B; i++)
        for (int64_t c = 0; c < C; c++) {
            normalize_into(nf, F + (i * C + c) * d, d);
            double dv = 0, dt = 0;
            for (int64_t j = 0; j < d; j++) {
                dv += (double)nf[j] * mean[c * d + j];
                dt += (double)nf[j] * m->proto[c * d + j];
            }
            sv[i * C + c] = (float)dv; /* NAN when the queue is not usable */
            st[i * C + c] = m->has_proto ? (float)dt : NAN;
            float yy = Y[i * C + c];
            lab[i * C + c] = (single_positive && yy == 0.0f) ? -1.0f : yy;
        }
}

/* Eq. 12: the pseudo-label P (B, C) of each unknown entry; both modalities must agree, and a
 * switched-off modality does not vote. */
static void fuse(const TrmmlMmcp *m, const float *Y, int64_t B, const float *sv, const float *st,
                 float *P) {
    const int64_t C = m->C;
    for (int64_t i = 0; i < B; i++)
        for (int64_t c = 0; c < C; c++) {
            if (Y[i * C + c] != 0.0f) continue;
            int v = one_sided(m, TRMML_THETA_VIS_POS, c, sv[i * C + c]);
            int t = one_sided(m, TRMML_THETA_TXT_POS, c, st[i * C + c]);
            int fused;
            if (m->use_visual && m->use_text) fused = (v == t) ? v : 0;
            else if (m->use_visual) fused = v;
            else if (m->use_text) fused = t;
            else fused = 0;
            P[i * C + c] = (float)fused;
        }
}

Tensor *trmml_mmcp_pseudo_labels(TrmmlMmcp *m, const Tensor *fr, const Tensor *y,
                                 bool single_positive, float *sim_vis, float *sim_txt) {
    int64_t C = m->C, d = m->d;
    CHECK(fr && fr->ndim == 3 && fr->shape[1] == C && fr->shape[2] == d,
          "mmcp: region features %s must be (B,%lld,%lld)", fr ? tensor_shape_str(fr) : "NULL",
          (long long)C, (long long)d);
    int64_t B = fr->shape[0];
    check_labels(m, y, B);
    float *F = host_f32(fr, "F^r"), *Y = host_f32(y, "labels");

    float *sv = xmalloc((size_t)(B * C) * sizeof(float));
    float *st = xmalloc((size_t)(B * C) * sizeof(float));
    float *lab = xmalloc((size_t)(B * C) * sizeof(float));
    float *P = xcalloc((size_t)(B * C), sizeof(float)); /* 0 where the label is known */
    float *mean = xmalloc((size_t)(C * d) * sizeof(float));
    float *nf = xmalloc((size_t)d * sizeof(float));

    queue_means(m, mean);
    similarities(m, F, Y, B, single_positive, mean, nf, sv, st, lab);
    update_thresholds(m, TRMML_THETA_VIS_POS, sv, lab, B);
    update_thresholds(m, TRMML_THETA_TXT_POS, st, lab, B);

    fuse(m, Y, B, sv, st, P);
    if (sim_vis) memcpy(sim_vis, sv, (size_t)(B * C) * sizeof(float));
    if (sim_txt) memcpy(sim_txt, st, (size_t)(B * C) * sizeof(float));
    Tensor *out = tensor_from_f32(2, SHAPE(B, C), P);
    free(F);
    free(Y);
    free(sv);
    free(st);
    free(lab);
    free(P);
    free(mean);
    free(nf);
    return out;
}

Tensor *trmml_mmcp_targets(const Tensor *y, const Tensor *pseudo, bool single_positive) {
    CHECK(y && y->ndim == 2, "mmcp targets: labels %s must be (B,C)", y ? tensor_shape_str(y) : "NULL");
    CHECK(!pseudo || tensor_same_shape(y, pseudo), "mmcp targets: labels %s vs pseudo-labels %s",
          tensor_shape_str(y), tensor_shape_str(pseudo));
    float *Y = host_f32(y, "labels"), *P = pseudo ? host_f32(pseudo, "pseudo-labels") : NULL;
    float *T = xmalloc((size_t)y->numel * sizeof(float));
    for (int64_t i = 0; i < y->numel; i++) {
        float p = P ? P[i] : 0.0f;
        if (Y[i] != 0.0f) T[i] = Y[i];
        else if (single_positive) T[i] = p > 0 ? 1.0f : -1.0f; /* assume negative (DECISION 20) */
        else T[i] = p;
    }
    Tensor *out = tensor_from_f32(y->ndim, y->shape, T);
    free(T);
    free(Y);
    free(P);
    return out;
}

int64_t trmml_mmcp_select_cap(const TrmmlMmcp *m, const Tensor *y) {
    float *Y = host_f32(y, "labels");
    int64_t n = 0;
    for (int64_t i = 0; i < y->numel; i++) n += Y[i] == 1.0f;
    free(Y);
    return n * m->k;
}

int64_t trmml_mmcp_select(const TrmmlMmcp *m, const Tensor *regions, const Tensor *f,
                          const Tensor *y, float *vecs, int64_t *cls) {
    CHECK(regions && f && regions->ndim == 3 && f->ndim == 3 && regions->shape[0] == f->shape[0] &&
              regions->shape[1] == m->C && regions->shape[2] == f->shape[1] && f->shape[2] == m->d,
          "mmcp push: R %s and f %s must be (B,%lld,HW) and (B,HW,%lld)",
          regions ? tensor_shape_str(regions) : "NULL", f ? tensor_shape_str(f) : "NULL",
          (long long)m->C, (long long)m->d);
    int64_t B = f->shape[0], HW = f->shape[1], C = m->C, d = m->d;
    CHECK(m->k <= HW, "mmcp push: k = %lld exceeds HW = %lld", (long long)m->k, (long long)HW);
    check_labels(m, y, B);
    float *Y = host_f32(y, "labels"), *Fp = host_f32(f, "dense features");
    bool g = ag_set_grad_enabled(false);
    Arena *ar = tensor_arena();
    size_t mark = arena_mark(ar);
    Tensor *vals, *idx;
    tensor_topk((Tensor *)regions, m->k, &vals, &idx);
    int64_t *I = tensor_to_host(idx);
    int64_t n = 0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t c = 0; c < C; c++) {
            if (Y[i * C + c] != 1.0f) continue;
            for (int64_t j = 0; j < m->k; j++, n++) {
                memcpy(vecs + n * d, Fp + (i * HW + I[(i * C + c) * m->k + j]) * d,
                       (size_t)d * sizeof(float));
                cls[n] = c;
            }
        }
    free(I);
    free(Y);
    free(Fp);
    arena_release(ar, mark);
    ag_set_grad_enabled(g);
    return n;
}

void trmml_mmcp_push(TrmmlMmcp *m, const Tensor *regions, const Tensor *f, const Tensor *y) {
    const int64_t cap = trmml_mmcp_select_cap(m, y);
    float *vecs = xmalloc((size_t)(cap * m->d) * sizeof(float) + 1); /* host memory */
    int64_t *cls = xmalloc((size_t)cap * sizeof(int64_t) + 1);
    const int64_t n = trmml_mmcp_select(m, regions, f, y, vecs, cls);
    for (int64_t e = 0; e < n; e++) trmml_mmcp_push_vector(m, cls[e], vecs + e * m->d);
    free(vecs);
    free(cls);
}

int64_t trmml_mmcp_bank_size(const TrmmlMmcp *m) {
    int64_t n = 0;
    for (int64_t c = 0; c < m->C; c++) n += m->fill[c];
    return n;
}

int64_t trmml_mmcp_bank_entries(const TrmmlMmcp *m, int64_t per_class, float *vecs, int64_t *cls) {
    int64_t n = 0;
    for (int64_t c = 0; c < m->C; c++) {
        int64_t take = m->fill[c];
        if (per_class > 0 && per_class < take) take = per_class;
        for (int64_t j = 0; j < take; j++) {
            /* newest first: the slot before the write pointer, going back */
            int64_t slot = ((m->write[c] - 1 - j) % m->len + m->len) % m->len;
            memcpy(vecs + n * m->d, m->bank + (c * m->len + slot) * m->d, (size_t)m->d * sizeof(float));
            cls[n++] = c;
        }
    }
    return n;
}
