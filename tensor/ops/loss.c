/* loss.c — fused losses: CPU kernels, wrappers and backward rules.
 *
 * Each loss is one op with its own forward and backward kernel, so its gradient is written once,
 * in closed form, and proven against PyTorch (derivations: docs/ops/loss.md). Per-entry terms are
 * computed and accumulated in double; the scalar result is rounded to float32 once.
 *
 * Multi-label losses over logits z (N, C) and targets y in {+1, -1, 0} (0 = unknown, skipped):
 *   bce:  l = softplus(-y z) = -log sigmoid(y z)                       dl/dz = -y sigmoid(-y z)
 *   asl:  x = z (single) or z_pos - z_neg (dual), p = sigmoid(x), p_m = max(p - m, 0)
 *         y = +1: l = -(1-p)^g+ log(max(p, eps))          dl/dx = -(1-p)^g+ (1-p)   [p >= eps]
 *         y = -1: l = -p_m^g- log(max(1-p_m, eps))        dl/dx = p_m^g- p(1-p)/(1-p_m)
 *                                                                     [p >= m, 1-p_m >= eps]
 *         The focusing factors (1-p)^g+ and p_m^g- are constants for the derivative (SPEC §2.1);
 *         a clamp passes the gradient only where it is inactive, as torch.clamp does.
 *   Reduction (LossReduction): the sum times 1, 1/(known entries) or 1/N.
 * Distribution losses, one distribution per row:
 *   kl_div_softmax: P = softmax(t/T) (teacher, constant), Q = softmax(s/T),
 *         L = (1/R) sum_rows sum_k P_k (log P_k - log Q_k)       dL/ds_k = (Q_k - P_k) / (R T)
 *   cross_entropy:  L = (1/N) sum_i lse(l_i) - l_i[t_i]           dL/dl_ij = (softmax_ij - [j = t_i]) / N
 *   info_nce:  s = l/tau, lse_neg,i = log sum_{n in N_i} exp(s_n),
 *         L = (1/R) sum_{rows with positives} (1/|P_i|) sum_{p in P_i} softplus(lse_neg,i - s_p)
 *         (softplus(lse_neg - s_p) = -log(exp(s_p) / (exp(s_p) + sum_n exp(s_n))))
 * Every log-sum-exp is shifted by the row maximum, and log sigmoid is written as -softplus, so
 * logits of any magnitude give finite losses and gradients.
 *
 * Saved for backward: the constant inputs (targets, teacher, class indices, mask); per-row
 * log-sum-exp of student and teacher (kl), per-row log-sum-exp (cross_entropy), per-row maximum
 * and shifted exp-sum of the negatives (info_nce). bce and asl recompute sigmoid from the logits;
 * the reduction factor (known-entry count, rows with a positive) is recounted in backward. */
#include "tensor/ops/loss.h"

#include <math.h>

#include "autograd/tape.h"
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

/* ---- CPU kernels -------------------------------------------------------------------------- */

/* Split by sign so exp never overflows. */
static inline double sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)). */
static inline double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

/* The factor that turns the sum over known entries into the requested reduction. */
static double reduction_scale(const float *targets, int64_t n, int64_t c, LossReduction r) {
    switch (r) {
    case LOSS_SUM: return 1.0;
    case LOSS_SUM_CLASSES_MEAN_IMAGES: return 1.0 / (double)n;
    case LOSS_MEAN: {
        int64_t known = 0;
        for (int64_t i = 0; i < n * c; i++) known += targets[i] != 0.0f;
        return known > 0 ? 1.0 / (double)known : 0.0;
    }
    default: return NAN;
    }
}

void bce_with_logits_forward_cpu(float *loss, const float *logits, const float *targets,
                                 int64_t n, int64_t c, LossReduction reduction) {
    /* loss (1), logits (N,C), targets (N,C) — assigns */
    int64_t total = n * c;
    double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) {
        double y = targets[i];
        if (y != 0.0) acc += softplus_d(-y * logits[i]); /* -log sigmoid(y z) */
    }
    loss[0] = (float)(acc * reduction_scale(targets, n, c, reduction));
}

void bce_with_logits_backward_cpu(float *dlogits, const float *dloss, const float *logits,
                                  const float *targets, int64_t n, int64_t c,
                                  LossReduction reduction) {
    /* dlogits (N,C), dloss (1), logits (N,C), targets (N,C) — accumulates */
    int64_t total = n * c;
    double g = dloss[0] * reduction_scale(targets, n, c, reduction);
#pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) {
        double y = targets[i];
        /* d softplus(-y z)/dz = -y sigmoid(-y z) */
        if (y != 0.0) dlogits[i] += (float)(g * -y * sigmoid_d(-y * logits[i]));
    }
}

/* ASL term of one known entry at x (p = sigmoid(x)), and in *dx its derivative with the
 * focusing factor held constant. */
static inline double asl_term(double x, double y, const AslParams *prm, double *dx) {
    double p = sigmoid_d(x), pc = sigmoid_d(-x); /* pc = 1 - p without cancellation */
    double eps = prm->eps;
    if (y > 0) {
        double w = pow(pc, prm->gamma_pos);
        if (p >= eps) {
            *dx = -w * pc;                 /* d log p / dx = 1 - p */
            return w * softplus_d(-x);     /* -w log p, log p = -softplus(-x) */
        }
        *dx = 0.0;                         /* clamped: log(eps) is constant */
        return -w * log(eps);
    }
    double m = prm->clip;
    double pm = fmax(p - m, 0.0);
    double w = pow(pm, prm->gamma_neg);
    if (p < m) {                           /* q = 1 - p_m = 1: no loss, no gradient */
        *dx = 0.0;
        return 0.0;
    }
    double q = pc + m;                     /* 1 - p_m = 1 - p + m */
    if (q >= eps) {
        *dx = w * p * pc / q;              /* -w d log q / dx, dq/dx = -p (1 - p) */
        /* Without a shift, log(1 - p) = -softplus(x) stays accurate as p -> 1. */
        return m > 0 ? -w * log(q) : w * softplus_d(x);
    }
    *dx = 0.0;
    return -w * log(eps);
}

/* x = logit_pos - logit_neg (dual) or logit_pos (single). */
static inline double asl_x(const float *logit_pos, const float *logit_neg, int64_t i) {
    return logit_neg ? (double)logit_pos[i] - (double)logit_neg[i] : (double)logit_pos[i];
}

void asl_forward_cpu(float *loss, const float *logit_pos, const float *logit_neg,
                     const float *targets, int64_t n, int64_t c, const AslParams *params,
                     LossReduction reduction) {
    /* loss (1), logit_pos (N,C), logit_neg (N,C) or NULL, targets (N,C) — assigns */
    int64_t total = n * c;
    double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) {
        if (targets[i] == 0.0f) continue;
        double dx;
        acc += asl_term(asl_x(logit_pos, logit_neg, i), targets[i], params, &dx);
    }
    loss[0] = (float)(acc * reduction_scale(targets, n, c, reduction));
}

void asl_backward_cpu(float *dlogit_pos, float *dlogit_neg, const float *dloss,
                      const float *logit_pos, const float *logit_neg, const float *targets,
                      int64_t n, int64_t c, const AslParams *params, LossReduction reduction) {
    /* dlogit_pos (N,C) or NULL, dlogit_neg (N,C) or NULL, dloss (1), logit_pos (N,C),
     * logit_neg (N,C) or NULL, targets (N,C) — accumulates */
    int64_t total = n * c;
    double g = dloss[0] * reduction_scale(targets, n, c, reduction);
#pragma omp parallel for schedule(static) if (total > 16384)
    for (int64_t i = 0; i < total; i++) {
        if (targets[i] == 0.0f) continue;
        double dx;
        asl_term(asl_x(logit_pos, logit_neg, i), targets[i], params, &dx);
        /* x = z_pos - z_neg: dL/dz_pos = dL/dx, dL/dz_neg = -dL/dx */
        float v = (float)(g * dx);
        if (dlogit_pos) dlogit_pos[i] += v;
        if (dlogit_neg) dlogit_neg[i] -= v;
    }
}

/* Log-sum-exp of x[j * stride] * scale over j < k, shifted by the maximum. */
static double lse_strided(const float *x, int64_t k, int64_t stride, double scale) {
    double mx = x[0] * scale;
    for (int64_t j = 1; j < k; j++) mx = fmax(mx, x[j * stride] * scale);
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) s += exp(x[j * stride] * scale - mx);
    return mx + log(s);
}

void kl_div_softmax_forward_cpu(float *loss, float *lse_student, float *lse_teacher,
                                const float *student, const float *teacher, int64_t outer,
                                int64_t k, int64_t inner, float temperature) {
    /* loss (1), lse_student (outer*inner), lse_teacher (outer*inner), student (outer,k,inner),
     * teacher (outer,k,inner) — assigns */
    int64_t rows = outer * inner;
    double inv_t = 1.0 / temperature, acc = 0.0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (rows * k > 16384)
    for (int64_t r = 0; r < rows; r++) {
        /* Row r is (o, j): element kk sits at (o*k + kk)*inner + j. */
        int64_t base = (r / inner) * k * inner + r % inner;
        const float *s = student + base, *t = teacher + base;
        double ls = lse_strided(s, k, inner, inv_t), lt = lse_strided(t, k, inner, inv_t);
        double kl = 0.0;
        for (int64_t kk = 0; kk < k; kk++) {
            /* P log P from log P (finite) so P underflowing to 0 gives 0, not 0 * -inf. */
            double log_p = t[kk * inner] * inv_t - lt, log_q = s[kk * inner] * inv_t - ls;
            kl += exp(log_p) * (log_p - log_q);
        }
        lse_student[r] = (float)ls;
        lse_teacher[r] = (float)lt;
        acc += kl;
    }
    loss[0] = (float)(acc / (double)rows);
}

void kl_div_softmax_backward_cpu(float *dstudent, const float *dloss, const float *student,
                                 const float *teacher, const float *lse_student,
                                 const float *lse_teacher, int64_t outer, int64_t k,
                                 int64_t inner, float temperature) {
    /* dstudent (outer,k,inner), dloss (1), student (outer,k,inner), teacher (outer,k,inner),
     * lse_student (outer*inner), lse_teacher (outer*inner) — accumulates */
    int64_t rows = outer * inner;
    double inv_t = 1.0 / temperature;
    double g = dloss[0] * inv_t / (double)rows;
#pragma omp parallel for schedule(static) if (rows * k > 16384)
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = (r / inner) * k * inner + r % inner;
        for (int64_t kk = 0; kk < k; kk++) {
            int64_t i = base + kk * inner;
            /* d/ds_k sum_j P_j (log P_j - log Q_j) = (Q_k - P_k) / T, since sum_j P_j = 1 */
            double q = exp(student[i] * inv_t - lse_student[r]);
            double p = exp(teacher[i] * inv_t - lse_teacher[r]);
            dstudent[i] += (float)(g * (q - p));
        }
    }
}

void cross_entropy_forward_cpu(float *loss, float *lse, const float *logits,
                               const int64_t *target, int64_t n, int64_t k) {
    /* loss (1), lse (N), logits (N,K), target (N) — assigns */
    double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n * k > 16384)
    for (int64_t i = 0; i < n; i++) {
        double l = lse_strided(logits + i * k, k, 1, 1.0);
        lse[i] = (float)l;
        acc += l - logits[i * k + target[i]];
    }
    loss[0] = (float)(acc / (double)n);
}

void cross_entropy_backward_cpu(float *dlogits, const float *dloss, const float *logits,
                                const int64_t *target, const float *lse, int64_t n, int64_t k) {
    /* dlogits (N,K), dloss (1), logits (N,K), target (N), lse (N) — accumulates */
    double g = dloss[0] / (double)n;
#pragma omp parallel for schedule(static) if (n * k > 16384)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
            double sm = exp((double)logits[i * k + j] - lse[i]);
            dlogits[i * k + j] += (float)(g * (sm - (j == target[i] ? 1.0 : 0.0)));
        }
}

void info_nce_forward_cpu(float *loss, float *neg_max, float *neg_sum, const float *logits,
                          const float *pos_mask, int64_t n, int64_t k, float temperature) {
    /* loss (1), neg_max (N), neg_sum (N), logits (N,K), pos_mask (N,K) — assigns */
    double inv_t = 1.0 / temperature, acc = 0.0;
    int64_t valid = 0;
#pragma omp parallel for reduction(+ : acc, valid) schedule(static) if (n * k > 16384)
    for (int64_t i = 0; i < n; i++) {
        const float *l = logits + i * k, *mask = pos_mask + i * k;
        /* The negatives' maximum, rounded to float so backward can rebuild the same shift;
         * 0 when the row has no negative. */
        float mx = 0.0f;
        bool any_neg = false;
        for (int64_t j = 0; j < k; j++)
            if (mask[j] == 0.0f) {
                float s = (float)(l[j] * inv_t);
                if (!any_neg || s > mx) mx = s;
                any_neg = true;
            }
        double sum = 0.0;
        int64_t npos = 0;
        for (int64_t j = 0; j < k; j++) {
            if (mask[j] == 0.0f) sum += exp(l[j] * inv_t - mx);
            else npos++;
        }
        neg_max[i] = mx;
        neg_sum[i] = (float)sum;
        if (npos == 0) continue;           /* a row without positives is ignored */
        valid++;
        if (!any_neg) continue;            /* every term is -log(1) = 0 */
        /* -log(e^{s_p} / (e^{s_p} + e^{lse_neg})) = softplus(lse_neg - s_p) */
        double lse_neg = mx + log((double)neg_sum[i]), row = 0.0;
        for (int64_t j = 0; j < k; j++)
            if (mask[j] != 0.0f) row += softplus_d(lse_neg - l[j] * inv_t);
        acc += row / (double)npos;
    }
    loss[0] = valid > 0 ? (float)(acc / (double)valid) : 0.0f;
}

void info_nce_backward_cpu(float *dlogits, const float *dloss, const float *logits,
                           const float *pos_mask, const float *neg_max, const float *neg_sum,
                           int64_t n, int64_t k, float temperature) {
    /* dlogits (N,K), dloss (1), logits (N,K), pos_mask (N,K), neg_max (N), neg_sum (N)
     * — accumulates */
    double inv_t = 1.0 / temperature;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++)
            if (pos_mask[i * k + j] != 0.0f) { valid++; break; }
    if (valid == 0) return;
    double g = dloss[0] * inv_t / (double)valid; /* d s / d l = 1 / tau */
#pragma omp parallel for schedule(static) if (n * k > 16384)
    for (int64_t i = 0; i < n; i++) {
        const float *l = logits + i * k, *mask = pos_mask + i * k;
        float *dl = dlogits + i * k;
        int64_t npos = 0;
        for (int64_t j = 0; j < k; j++) npos += mask[j] != 0.0f;
        if (npos == 0 || neg_sum[i] == 0.0f) continue; /* no term, or every term is 0 */
        double lse_neg = neg_max[i] + log((double)neg_sum[i]);
        /* Positive p: d softplus(lse_neg - s_p)/ds_p = -sigmoid(lse_neg - s_p); the same
         * sigmoid times softmax_neg(n) reaches every negative n through lse_neg. */
        double coef = 0.0;
        for (int64_t j = 0; j < k; j++)
            if (mask[j] != 0.0f) {
                double sg = sigmoid_d(lse_neg - l[j] * inv_t) / (double)npos;
                dl[j] += (float)(-g * sg);
                coef += sg;
            }
        for (int64_t j = 0; j < k; j++)
            if (mask[j] == 0.0f) dl[j] += (float)(g * coef * exp(l[j] * inv_t - lse_neg));
    }
}

/* ---- Wrappers and backward rules ---------------------------------------------------------- */

static Tensor *scalar_out(void) { return tensor_empty(DT_F32, 0, NULL); }

/* Every entry of a CPU tensor is one of the allowed values (device tensors are not read here:
 * ops never copy between host and device). */
static void check_values(const char *op, const Tensor *t, const char *what, bool allow_minus_one) {
    if (!device_host_addressable(t->device)) return;
    const float *v = tensor_f32(t);
    for (int64_t i = 0; i < t->numel; i++)
        CHECK(v[i] == 0.0f || v[i] == 1.0f || (allow_minus_one && v[i] == -1.0f),
              "%s: %s %s has value %g at flat index %lld; allowed: %s", op, what,
              tensor_shape_str(t), v[i], (long long)i, allow_minus_one ? "+1, -1, 0" : "0, 1");
}

/* logits (N, C) and targets (N, C) in {+1, -1, 0}, one device, non-empty. */
static void check_multilabel(const char *op, const Tensor *logits, const Tensor *targets,
                             LossReduction reduction) {
    tensor_check_f32(op, logits, "logits");
    tensor_check_f32(op, targets, "targets");
    tensor_check_same_device(op, logits, targets);
    CHECK(logits->ndim == 2 && tensor_same_shape(logits, targets),
          "%s: expected logits (N, C) and targets of the same shape, got %s and %s", op,
          tensor_shape_str(logits), tensor_shape_str(targets));
    CHECK(logits->numel > 0, "%s: empty logits %s", op, tensor_shape_str(logits));
    CHECK(reduction >= 0 && reduction < LOSS_REDUCTION_COUNT, "%s: unknown reduction %d", op,
          (int)reduction);
    check_values(op, targets, "targets", true);
}

static void bce_backward(Node *nd) {
    Tensor *logits = nd->in[0], *targets = nd->saved[0];
    KERNEL_RUN(logits->device, bce_with_logits_backward, 
        ag_grad(logits)->data, nd->out->grad->data, logits->data, targets->data,
        logits->shape[0], logits->shape[1], (LossReduction)nd->iarg[0]);
}

Tensor *tensor_bce_with_logits(Tensor *logits, Tensor *targets, LossReduction reduction) {
    const char *op = "bce_with_logits";
    check_multilabel(op, logits, targets, reduction);
    Tensor *loss = scalar_out();
    KERNEL_RUN(logits->device, bce_with_logits_forward, loss->data, logits->data, targets->data,
                                                         logits->shape[0], logits->shape[1],
                                                         reduction);
    Node *nd = AG_RECORD(op, loss, bce_backward, logits);
    if (nd) {
        nd->saved[0] = targets;
        nd->iarg[0] = reduction;
    }
    return loss;
}

/* in[0] = logit_pos (the single logit), in[1] = logit_neg when dual; extra = AslParams. */
static void asl_backward(Node *nd) {
    Tensor *pos = nd->in[0], *neg = nd->nin > 1 ? nd->in[1] : NULL, *targets = nd->saved[0];
    float *dpos = ag_needs(pos) ? ag_grad(pos)->data : NULL;
    float *dneg = ag_needs(neg) ? ag_grad(neg)->data : NULL;
    KERNEL_RUN(pos->device, asl_backward, dpos, dneg, nd->out->grad->data, pos->data,
                                           neg ? neg->data : NULL, targets->data, pos->shape[0],
                                           pos->shape[1], nd->extra, (LossReduction)nd->iarg[0]);
}

static Tensor *asl(const char *op, Tensor *logit_neg, Tensor *logit_pos, Tensor *targets,
                   float gamma_pos, float gamma_neg, float clip, float eps,
                   LossReduction reduction) {
    check_multilabel(op, logit_pos, targets, reduction);
    if (logit_neg) {
        tensor_check_f32(op, logit_neg, "logit_neg");
        tensor_check_same_device(op, logit_neg, logit_pos);
        CHECK(tensor_same_shape(logit_neg, logit_pos), "%s: logit_neg %s and logit_pos %s differ",
              op, tensor_shape_str(logit_neg), tensor_shape_str(logit_pos));
    }
    CHECK(gamma_pos >= 0 && gamma_neg >= 0 && clip >= 0 && clip < 1 && eps >= 0,
          "%s: need gamma_pos %g >= 0, gamma_neg %g >= 0, 0 <= clip %g < 1, eps %g >= 0", op,
          gamma_pos, gamma_neg, clip, eps);
    AslParams prm = {gamma_pos, gamma_neg, clip, eps};
    Tensor *loss = scalar_out();
    KERNEL_RUN(logit_pos->device, asl_forward, loss->data, logit_pos->data,
                                                logit_neg ? logit_neg->data : NULL, targets->data,
                                                logit_pos->shape[0], logit_pos->shape[1], &prm,
                                                reduction);
    Node *nd = logit_neg ? AG_RECORD(op, loss, asl_backward, logit_pos, logit_neg)
                         : AG_RECORD(op, loss, asl_backward, logit_pos);
    if (nd) {
        nd->saved[0] = targets;
        nd->iarg[0] = reduction;
        nd->extra = arena_alloc_host(tensor_arena(), sizeof prm);
        *(AslParams *)nd->extra = prm;
    }
    return loss;
}

Tensor *tensor_asl(Tensor *logits, Tensor *targets, float gamma_pos, float gamma_neg, float clip,
                   float eps, LossReduction reduction) {
    return asl("asl", NULL, logits, targets, gamma_pos, gamma_neg, clip, eps, reduction);
}

Tensor *tensor_asl_dual(Tensor *logit_neg, Tensor *logit_pos, Tensor *targets, float gamma_pos,
                        float gamma_neg, float clip, float eps, LossReduction reduction) {
    CHECK(logit_neg, "asl_dual: logit_neg is NULL");
    return asl("asl_dual", logit_neg, logit_pos, targets, gamma_pos, gamma_neg, clip, eps,
               reduction);
}

/* saved = {teacher, lse_student, lse_teacher}; iarg = {outer, k, inner}; farg[0] = T. */
static void kl_backward(Node *nd) {
    Tensor *student = nd->in[0];
    KERNEL_RUN(student->device, kl_div_softmax_backward, 
        ag_grad(student)->data, nd->out->grad->data, student->data, nd->saved[0]->data,
        nd->saved[1]->data, nd->saved[2]->data, nd->iarg[0], nd->iarg[1], nd->iarg[2],
        (float)nd->farg[0]);
}

Tensor *tensor_kl_div_softmax(Tensor *student_logits, Tensor *teacher_logits, int dim,
                              float temperature) {
    const char *op = "kl_div_softmax";
    tensor_check_f32(op, student_logits, "student_logits");
    tensor_check_f32(op, teacher_logits, "teacher_logits");
    tensor_check_same_device(op, student_logits, teacher_logits);
    CHECK(tensor_same_shape(student_logits, teacher_logits) && student_logits->numel > 0,
          "%s: student %s and teacher %s must have the same non-empty shape", op,
          tensor_shape_str(student_logits), tensor_shape_str(teacher_logits));
    CHECK(temperature > 0 && isfinite(temperature), "%s: temperature %g must be > 0", op,
          temperature);
    int d = tensor_dim(student_logits, dim);
    int64_t outer = 1, inner = 1, k = student_logits->shape[d];
    for (int i = 0; i < d; i++) outer *= student_logits->shape[i];
    for (int i = d + 1; i < student_logits->ndim; i++) inner *= student_logits->shape[i];
    Tensor *loss = scalar_out();
    Tensor *lse_s = TENSOR_F32(outer * inner), *lse_t = TENSOR_F32(outer * inner);
    KERNEL_RUN(student_logits->device, kl_div_softmax_forward, 
        loss->data, lse_s->data, lse_t->data, student_logits->data, teacher_logits->data, outer,
        k, inner, temperature);
    /* Only the student is an input of the node: the teacher is detached. */
    Node *nd = AG_RECORD(op, loss, kl_backward, student_logits);
    if (nd) {
        nd->saved[0] = teacher_logits;
        nd->saved[1] = lse_s;
        nd->saved[2] = lse_t;
        nd->iarg[0] = outer;
        nd->iarg[1] = k;
        nd->iarg[2] = inner;
        nd->farg[0] = temperature;
    }
    return loss;
}

/* saved = {target, lse}. */
static void cross_entropy_backward(Node *nd) {
    Tensor *logits = nd->in[0];
    KERNEL_RUN(logits->device, cross_entropy_backward, 
        ag_grad(logits)->data, nd->out->grad->data, logits->data, nd->saved[0]->data,
        nd->saved[1]->data, logits->shape[0], logits->shape[1]);
}

Tensor *tensor_cross_entropy(Tensor *logits, Tensor *target) {
    const char *op = "cross_entropy";
    tensor_check_f32(op, logits, "logits");
    CHECK(target && target->dtype == DT_I64, "%s: target must be int64, got %s", op,
          target ? dtype_name(target->dtype) : "NULL");
    CHECK(logits->device == target->device, "%s: logits on %s, target on %s", op,
          device_name(logits->device), device_name(target->device));
    CHECK(logits->ndim == 2 && target->ndim == 1 && target->shape[0] == logits->shape[0] &&
              logits->numel > 0,
          "%s: expected logits (N, K) and target (N), got %s and %s", op,
          tensor_shape_str(logits), tensor_shape_str(target));
    int64_t n = logits->shape[0], k = logits->shape[1];
    if (device_host_addressable(target->device)) {
        const int64_t *t = tensor_i64(target);
        for (int64_t i = 0; i < n; i++)
            CHECK(t[i] >= 0 && t[i] < k, "%s: target[%lld] = %lld outside [0, %lld) for logits %s",
                  op, (long long)i, (long long)t[i], (long long)k, tensor_shape_str(logits));
    }
    Tensor *loss = scalar_out(), *lse = TENSOR_F32(n);
    KERNEL_RUN(logits->device, cross_entropy_forward, loss->data, lse->data, logits->data,
                                                       target->data, n, k);
    Node *nd = AG_RECORD(op, loss, cross_entropy_backward, logits);
    if (nd) {
        nd->saved[0] = target;
        nd->saved[1] = lse;
    }
    return loss;
}

/* saved = {pos_mask, neg_max, neg_sum}; farg[0] = temperature. */
static void info_nce_backward(Node *nd) {
    Tensor *logits = nd->in[0];
    KERNEL_RUN(logits->device, info_nce_backward, 
        ag_grad(logits)->data, nd->out->grad->data, logits->data, nd->saved[0]->data,
        nd->saved[1]->data, nd->saved[2]->data, logits->shape[0], logits->shape[1],
        (float)nd->farg[0]);
}

Tensor *tensor_info_nce(Tensor *logits, Tensor *pos_mask, float temperature) {
    const char *op = "info_nce";
    tensor_check_f32(op, logits, "logits");
    tensor_check_f32(op, pos_mask, "pos_mask");
    tensor_check_same_device(op, logits, pos_mask);
    CHECK(logits->ndim == 2 && tensor_same_shape(logits, pos_mask) && logits->numel > 0,
          "%s: expected logits (N, K) and pos_mask of the same shape, got %s and %s", op,
          tensor_shape_str(logits), tensor_shape_str(pos_mask));
    CHECK(temperature > 0 && isfinite(temperature), "%s: temperature %g must be > 0", op,
          temperature);
    check_values(op, pos_mask, "pos_mask", false);
    int64_t n = logits->shape[0], k = logits->shape[1];
    Tensor *loss = scalar_out(), *neg_max = TENSOR_F32(n), *neg_sum = TENSOR_F32(n);
    KERNEL_RUN(logits->device, info_nce_forward, loss->data, neg_max->data, neg_sum->data,
                                                  logits->data, pos_mask->data, n, k,
                                                  temperature);
    Node *nd = AG_RECORD(op, loss, info_nce_backward, logits);
    if (nd) {
        nd->saved[0] = pos_mask;
        nd->saved[1] = neg_max;
        nd->saved[2] = neg_sum;
        nd->farg[0] = temperature;
    }
    return loss;
}
