// loss.cu — fused losses on the GPU (specification: tensor/ops/loss.c; derivations in
// docs/ops/loss.md). Per-entry terms and their sums are in double, the scalar rounded once.
//
// Every loss reduces to one scalar, and several backward passes need a count over the whole
// input first (known entries for LOSS_MEAN, rows with a positive for info_nce). Those kernels run
// as ONE block of LOSS_THREADS threads: the block reduces in a fixed tree (deterministic), the
// count is complete at the barrier before any update, and no scratch buffer or second launch is
// needed. Loss inputs are (N, C) logit grids — a batch times the labels, thousands to a few
// hundred thousand entries — which one block covers in microseconds. Backward passes without a
// global count (kl_div, cross_entropy) are element-parallel over the whole grid.
#include "cuda/common.cuh"

#define LOSS_THREADS 1024

__device__ inline double sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).
__device__ inline double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

// The factor that turns the sum over known entries into the requested reduction; must be called
// by every thread of the block (the LOSS_MEAN count is a block reduction).
__device__ double reduction_scale(const float *targets, int64_t n, int64_t c, LossReduction r,
                                  int64_t *sh) {
    switch (r) {
    case LOSS_SUM: return 1.0;
    case LOSS_SUM_CLASSES_MEAN_IMAGES: return 1.0 / (double)n;
    case LOSS_MEAN: {
        int64_t known = 0;
        for (int64_t i = threadIdx.x; i < n * c; i += blockDim.x) known += targets[i] != 0.0f;
        known = block_sum(known, sh);
        return known > 0 ? 1.0 / (double)known : 0.0;
    }
    default: return NAN;
    }
}

__global__ void __launch_bounds__(LOSS_THREADS)
    bce_with_logits_forward_kernel(float *loss, const float *logits, const float *targets,
                                   int64_t n, int64_t c, LossReduction reduction) {
    __shared__ double sh[LOSS_THREADS];
    __shared__ int64_t shi[LOSS_THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n * c; i += blockDim.x) {
        double y = targets[i];
        if (y != 0.0) acc += softplus_d(-y * logits[i]); // -log sigmoid(y z)
    }
    acc = block_sum(acc, sh);
    double scale = reduction_scale(targets, n, c, reduction, shi);
    if (threadIdx.x == 0) loss[0] = (float)(acc * scale);
}

void bce_with_logits_forward_cuda(float *loss, const float *logits, const float *targets, int64_t n,
                                  int64_t c, LossReduction reduction) {
    /* loss (1), logits (N,C), targets (N,C) — assigns */
    LAUNCH(bce_with_logits_forward_kernel, 1, LOSS_THREADS, loss, logits, targets, n, c, reduction);
}

__global__ void __launch_bounds__(LOSS_THREADS)
    bce_with_logits_backward_kernel(float *dlogits, const float *dloss, const float *logits,
                                    const float *targets, int64_t n, int64_t c,
                                    LossReduction reduction) {
    __shared__ int64_t shi[LOSS_THREADS];
    double g = dloss[0] * reduction_scale(targets, n, c, reduction, shi);
    for (int64_t i = threadIdx.x; i < n * c; i += blockDim.x) {
        double y = targets[i];
        // d softplus(-y z)/dz = -y sigmoid(-y z)
        if (y != 0.0) dlogits[i] += (float)(g * -y * sigmoid_d(-y * logits[i]));
    }
}

void bce_with_logits_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                   const float *targets, int64_t n, int64_t c,
                                   LossReduction reduction) {
    /* dlogits (N,C), dloss (1), logits (N,C), targets (N,C) — accumulates */
    LAUNCH(bce_with_logits_backward_kernel, 1, LOSS_THREADS, dlogits, dloss, logits, targets, n, c,
           reduction);
}

// ASL term of one known entry at x (p = sigmoid(x)), and in *dx its derivative with the
// focusing factor held constant (the CPU's asl_term, line for line).
__device__ inline double asl_term(double x, double y, const AslParams &prm, double *dx) {
    double p = sigmoid_d(x), pc = sigmoid_d(-x); // pc = 1 - p without cancellation
    double eps = prm.eps;
    if (y > 0) {
        double w = pow(pc, (double)prm.gamma_pos);
        if (p >= eps) {
            *dx = -w * pc;
            return w * softplus_d(-x);
        }
        *dx = 0.0;
        return -w * log(eps);
    }
    double m = prm.clip;
    double pm = fmax(p - m, 0.0);
    double w = pow(pm, (double)prm.gamma_neg);
    if (p < m) {
        *dx = 0.0;
        return 0.0;
    }
    double q = pc + m; // 1 - p_m = 1 - p + m
    if (q >= eps) {
        *dx = w * p * pc / q;
        return m > 0 ? -w * log(q) : w * softplus_d(x);
    }
    *dx = 0.0;
    return -w * log(eps);
}

__device__ inline double asl_x(const float *logit_pos, const float *logit_neg, int64_t i) {
    return logit_neg ? (double)logit_pos[i] - (double)logit_neg[i] : (double)logit_pos[i];
}

__global__ void __launch_bounds__(LOSS_THREADS)
    asl_forward_kernel(float *loss, const float *logit_pos, const float *logit_neg,
                       const float *targets, int64_t n, int64_t c, AslParams params,
                       LossReduction reduction) {
    __shared__ double sh[LOSS_THREADS];
    __shared__ int64_t shi[LOSS_THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n * c; i += blockDim.x) {
        if (targets[i] == 0.0f) continue;
        double dx;
        acc += asl_term(asl_x(logit_pos, logit_neg, i), targets[i], params, &dx);
    }
    acc = block_sum(acc, sh);
    double scale = reduction_scale(targets, n, c, reduction, shi);
    if (threadIdx.x == 0) loss[0] = (float)(acc * scale);
}

void asl_forward_cuda(float *loss, const float *logit_pos, const float *logit_neg,
                      const float *targets, int64_t n, int64_t c, const AslParams *params,
                      LossReduction reduction) {
    /* loss (1), logit_pos (N,C), logit_neg (N,C) or NULL, targets (N,C) — assigns */
    LAUNCH(asl_forward_kernel, 1, LOSS_THREADS, loss, logit_pos, logit_neg, targets, n, c, *params,
           reduction);
}

__global__ void __launch_bounds__(LOSS_THREADS)
    asl_backward_kernel(float *dlogit_pos, float *dlogit_neg, const float *dloss,
                        const float *logit_pos, const float *logit_neg, const float *targets,
                        int64_t n, int64_t c, AslParams params, LossReduction reduction) {
    __shared__ int64_t shi[LOSS_THREADS];
    double g = dloss[0] * reduction_scale(targets, n, c, reduction, shi);
    for (int64_t i = threadIdx.x; i < n * c; i += blockDim.x) {
        if (targets[i] == 0.0f) continue;
        double dx;
        asl_term(asl_x(logit_pos, logit_neg, i), targets[i], params, &dx);
        // x = z_pos - z_neg: dL/dz_pos = dL/dx, dL/dz_neg = -dL/dx
        float v = (float)(g * dx);
        if (dlogit_pos) dlogit_pos[i] += v;
        if (dlogit_neg) dlogit_neg[i] -= v;
    }
}

void asl_backward_cuda(float *dlogit_pos, float *dlogit_neg, const float *dloss,
                       const float *logit_pos, const float *logit_neg, const float *targets,
                       int64_t n, int64_t c, const AslParams *params, LossReduction reduction) {
    /* dlogit_pos (N,C) or NULL, dlogit_neg (N,C) or NULL, dloss (1), logit_pos (N,C),
     * logit_neg (N,C) or NULL, targets (N,C) — accumulates */
    LAUNCH(asl_backward_kernel, 1, LOSS_THREADS, dlogit_pos, dlogit_neg, dloss, logit_pos,
           logit_neg, targets, n, c, *params, reduction);
}

// Log-sum-exp of x[j * stride] * scale over j < k, shifted by the maximum.
__device__ inline double lse_strided(const float *x, int64_t k, int64_t stride, double scale) {
    double mx = x[0] * scale;
    for (int64_t j = 1; j < k; j++) mx = fmax(mx, x[j * stride] * scale);
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) s += exp(x[j * stride] * scale - mx);
    return mx + log(s);
}

// One block; a thread per row (o, j) computes the row's two log-sum-exps and KL term.
__global__ void __launch_bounds__(LOSS_THREADS)
    kl_div_softmax_forward_kernel(float *loss, float *lse_student, float *lse_teacher,
                                  const float *student, const float *teacher, int64_t outer,
                                  int64_t k, int64_t inner, float temperature) {
    __shared__ double sh[LOSS_THREADS];
    const int64_t rows = outer * inner;
    const double inv_t = 1.0 / temperature;
    double acc = 0.0;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        int64_t base = (r / inner) * k * inner + r % inner;
        const float *s = student + base, *t = teacher + base;
        double ls = lse_strided(s, k, inner, inv_t), lt = lse_strided(t, k, inner, inv_t);
        double kl = 0.0;
        for (int64_t kk = 0; kk < k; kk++) {
            // P log P from log P (finite) so P underflowing to 0 gives 0, not 0 * -inf.
            double log_p = t[kk * inner] * inv_t - lt, log_q = s[kk * inner] * inv_t - ls;
            kl += exp(log_p) * (log_p - log_q);
        }
        lse_student[r] = (float)ls;
        lse_teacher[r] = (float)lt;
        acc += kl;
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) loss[0] = (float)(acc / (double)rows);
}

void kl_div_softmax_forward_cuda(float *loss, float *lse_student, float *lse_teacher,
                                 const float *student, const float *teacher, int64_t outer,
                                 int64_t k, int64_t inner, float temperature) {
    /* loss (1), lse_student (outer*inner), lse_teacher (outer*inner), student (outer,k,inner),
     * teacher (outer,k,inner) — assigns */
    LAUNCH(kl_div_softmax_forward_kernel, 1, LOSS_THREADS, loss, lse_student, lse_teacher, student,
           teacher, outer, k, inner, temperature);
}

__global__ void kl_div_softmax_backward_kernel(float *dstudent, const float *dloss,
                                               const float *student, const float *teacher,
                                               const float *lse_student, const float *lse_teacher,
                                               int64_t outer, int64_t k, int64_t inner,
                                               float temperature) {
    const int64_t rows = outer * inner;
    const double inv_t = 1.0 / temperature;
    const double g = dloss[0] * inv_t / (double)rows;
    GRID_LOOP(i, outer * k * inner) {
        int64_t r = (i / (k * inner)) * inner + i % inner;
        // d/ds_k sum_j P_j (log P_j - log Q_j) = (Q_k - P_k) / T, since sum_j P_j = 1
        double q = exp(student[i] * inv_t - lse_student[r]);
        double p = exp(teacher[i] * inv_t - lse_teacher[r]);
        dstudent[i] += (float)(g * (q - p));
    }
}

void kl_div_softmax_backward_cuda(float *dstudent, const float *dloss, const float *student,
                                  const float *teacher, const float *lse_student,
                                  const float *lse_teacher, int64_t outer, int64_t k, int64_t inner,
                                  float temperature) {
    /* dstudent (outer,k,inner), dloss (1), student (outer,k,inner), teacher (outer,k,inner),
     * lse_student (outer*inner), lse_teacher (outer*inner) — accumulates */
    LAUNCH(kl_div_softmax_backward_kernel, cuda_blocks(outer * k * inner), CUDA_THREADS, dstudent,
           dloss, student, teacher, lse_student, lse_teacher, outer, k, inner, temperature);
}

__global__ void __launch_bounds__(LOSS_THREADS)
    cross_entropy_forward_kernel(float *loss, float *lse, const float *logits,
                                 const int64_t *target, int64_t n, int64_t k) {
    __shared__ double sh[LOSS_THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        double l = lse_strided(logits + i * k, k, 1, 1.0);
        lse[i] = (float)l;
        acc += l - logits[i * k + target[i]];
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) loss[0] = (float)(acc / (double)n);
}

void cross_entropy_forward_cuda(float *loss, float *lse, const float *logits, const int64_t *target,
                                int64_t n, int64_t k) {
    /* loss (1), lse (N), logits (N,K), target (N) — assigns */
    LAUNCH(cross_entropy_forward_kernel, 1, LOSS_THREADS, loss, lse, logits, target, n, k);
}

__global__ void cross_entropy_backward_kernel(float *dlogits, const float *dloss,
                                              const float *logits, const int64_t *target,
                                              const float *lse, int64_t n, int64_t k) {
    const double g = dloss[0] / (double)n;
    GRID_LOOP(e, n * k) {
        int64_t i = e / k, j = e % k;
        double sm = exp((double)logits[e] - lse[i]);
        dlogits[e] += (float)(g * (sm - (j == target[i] ? 1.0 : 0.0)));
    }
}

void cross_entropy_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                                 const int64_t *target, const float *lse, int64_t n, int64_t k) {
    /* dlogits (N,K), dloss (1), logits (N,K), target (N), lse (N) — accumulates */
    LAUNCH(cross_entropy_backward_kernel, cuda_blocks(n * k), CUDA_THREADS, dlogits, dloss, logits,
           target, lse, n, k);
}

// One block, a thread per row (the CPU's per-row code), then the block sums the rows' terms and
// counts the rows with a positive.
__global__ void __launch_bounds__(LOSS_THREADS)
    info_nce_forward_kernel(float *loss, float *neg_max, float *neg_sum, const float *logits,
                            const float *pos_mask, int64_t n, int64_t k, float temperature) {
    __shared__ double sh[LOSS_THREADS];
    __shared__ int64_t shi[LOSS_THREADS];
    const double inv_t = 1.0 / temperature;
    double acc = 0.0;
    int64_t valid = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float *l = logits + i * k, *mask = pos_mask + i * k;
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
            if (mask[j] == 0.0f)
                sum += exp(l[j] * inv_t - mx);
            else
                npos++;
        }
        neg_max[i] = mx;
        neg_sum[i] = (float)sum;
        if (npos == 0) continue; // a row without positives is ignored
        valid++;
        if (!any_neg) continue; // every term is -log(1) = 0
        double lse_neg = mx + log((double)(float)sum), row = 0.0;
        for (int64_t j = 0; j < k; j++)
            if (mask[j] != 0.0f) row += softplus_d(lse_neg - l[j] * inv_t);
        acc += row / (double)npos;
    }
    acc = block_sum(acc, sh);
    valid = block_sum(valid, shi);
    if (threadIdx.x == 0) loss[0] = valid > 0 ? (float)(acc / (double)valid) : 0.0f;
}

void info_nce_forward_cuda(float *loss, float *neg_max, float *neg_sum, const float *logits,
                           const float *pos_mask, int64_t n, int64_t k, float temperature) {
    /* loss (1), neg_max (N), neg_sum (N), logits (N,K), pos_mask (N,K) — assigns */
    LAUNCH(info_nce_forward_kernel, 1, LOSS_THREADS, loss, neg_max, neg_sum, logits, pos_mask, n, k,
           temperature);
}

__global__ void __launch_bounds__(LOSS_THREADS)
    info_nce_backward_kernel(float *dlogits, const float *dloss, const float *logits,
                             const float *pos_mask, const float *neg_max, const float *neg_sum,
                             int64_t n, int64_t k, float temperature) {
    __shared__ int64_t shi[LOSS_THREADS];
    const double inv_t = 1.0 / temperature;
    int64_t valid = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        for (int64_t j = 0; j < k; j++)
            if (pos_mask[i * k + j] != 0.0f) {
                valid++;
                break;
            }
    valid = block_sum(valid, shi);
    if (valid == 0) return;
    const double g = dloss[0] * inv_t / (double)valid; // d s / d l = 1 / tau
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float *l = logits + i * k, *mask = pos_mask + i * k;
        float *dl = dlogits + i * k;
        int64_t npos = 0;
        for (int64_t j = 0; j < k; j++) npos += mask[j] != 0.0f;
        if (npos == 0 || neg_sum[i] == 0.0f) continue;
        double lse_neg = neg_max[i] + log((double)neg_sum[i]);
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

void info_nce_backward_cuda(float *dlogits, const float *dloss, const float *logits,
                            const float *pos_mask, const float *neg_max, const float *neg_sum,
                            int64_t n, int64_t k, float temperature) {
    /* dlogits (N,K), dloss (1), logits (N,K), pos_mask (N,K), neg_max (N), neg_sum (N)
     * — accumulates */
    LAUNCH(info_nce_backward_kernel, 1, LOSS_THREADS, dlogits, dloss, logits, pos_mask, neg_max,
           neg_sum, n, k, temperature);
}
