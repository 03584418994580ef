/* mmcp.h — multimodal category prototypes (SPEC §4.5): the visual memory bank, the text
 * prototypes, the EMA thresholds and the pseudo-labels of unknown entries.
 *
 * State kept across iterations (not learnable; all of it belongs in a resumable checkpoint):
 *   bank      V (C, len, d)  one FIFO queue per class of L2-normalised pixel features
 *   write     (C)            next slot of each queue;   fill (C) filled entries (<= len)
 *   proto     T (C, d)       text prototypes (set once from normalize(G+), DECISION 28)
 *   theta     (4, C)         θ⁺_vis, θ⁻_vis, θ⁺_txt, θ⁻_txt, with an initialised flag each
 * Everything here runs without a tape on host-visible float32 tensors (CPU). Labels are float32
 * (B,C) in {+1, -1, 0} (0 unknown). The per-iteration order is SPEC §4.9: pseudo-labels read
 * the bank as left by previous iterations; trmml_mmcp_push runs after the optimizer step
 * (DECISION 27). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"
#include "trmml/trmml_config.h"

enum { TRMML_THETA_VIS_POS = 0, TRMML_THETA_VIS_NEG, TRMML_THETA_TXT_POS, TRMML_THETA_TXT_NEG };

typedef struct {
    int64_t C, len, d, k;
    double eta;
    bool require_full, use_visual, use_text;
    float *bank;            /* (C, len, d) */
    int64_t *write, *fill;  /* (C) each */
    float *proto;           /* (C, d) */
    bool has_proto;
    float *theta;           /* (4, C) */
    uint8_t *theta_init;    /* (4, C): 1 once the threshold holds a value */
} TrmmlMmcp;

/* Allocate an empty bank and uninitialised thresholds for C classes of width d, with k, len,
 * eta and the switches from cfg. Owns its memory until trmml_mmcp_free. */
void trmml_mmcp_init(TrmmlMmcp *m, int64_t C, int64_t d, const MethodTrmmlConfig *cfg);
void trmml_mmcp_free(TrmmlMmcp *m);

/* T = normalize(G+) (§4.7 stage boundary); gpos (C,d) is only read. */
void trmml_mmcp_set_prototypes(TrmmlMmcp *m, const Tensor *gpos);

/* Steps 1-6 of §4.5 for one batch: visual similarities (mean cosine with a full queue, Eq. 8)
 * and text similarities (cosine with T), threshold statistics from the known labels y (B,C)
 * (Eq. 9; in single_positive mode unknowns count as negatives there), EMA update (Eq. 11, first
 * value initialises), one-sided pseudo-labels of the unknown entries (Eq. 10, DECISION 16) and
 * their fusion (Eq. 12). fr (B,C,d) is read (detached). Returns ỹ (B,C) in {+1,-1,0} from the
 * current arena (0 wherever y is known). sim_vis / sim_txt, when not NULL, receive the B·C
 * similarities (NAN where undefined). */
Tensor *trmml_mmcp_pseudo_labels(TrmmlMmcp *m, const Tensor *fr, const Tensor *y,
                                 bool single_positive, float *sim_vis, float *sim_txt);

/* Step 7: the classification targets ŷ (B,C) from the current arena: y where known; for
 * unknowns ỹ, or in single_positive mode -1 unless ỹ = +1 (DECISION 20). pseudo may be NULL
 * (no MMCP). */
Tensor *trmml_mmcp_targets(const Tensor *y, const Tensor *pseudo, bool single_positive);

/* Step 8 (Eq. 7): for every (i, c) with y = +1, the k positions of the largest R[i,c,:] (ties:
 * lower index first) have normalize(f[i,p]) pushed into queue c, images in order, positions in
 * descending R. regions (B,C,HW), f (B,HW,d), y (B,C). Pseudo-labels never feed the bank. */
void trmml_mmcp_push(TrmmlMmcp *m, const Tensor *regions, const Tensor *f, const Tensor *y);
/* Step 8 in two halves, for a batch split over ranks (docs/distributed.md): the vectors
 * trmml_mmcp_push would push, in its order, as rows of f (not yet normalised) into vecs (n, d)
 * and their queues into cls (n); returns n. vecs and cls hold trmml_mmcp_select_cap(m, y)
 * entries (k per +1 label). Pushing them in order with trmml_mmcp_push_vector is
 * trmml_mmcp_push. */
int64_t trmml_mmcp_select_cap(const TrmmlMmcp *m, const Tensor *y);
int64_t trmml_mmcp_select(const TrmmlMmcp *m, const Tensor *regions, const Tensor *f,
                          const Tensor *y, float *vecs, int64_t *cls);
/* Push one vector (d floats, normalised here) into queue c, overwriting the oldest when full. */
void trmml_mmcp_push_vector(TrmmlMmcp *m, int64_t c, const float *v);

/* The filled bank entries for MMCL: up to per_class newest entries of each queue (0 = all),
 * class by class, newest first. Returns the count n; vecs (n,d) and cls (n) must hold
 * trmml_mmcp_bank_size(m) entries. */
int64_t trmml_mmcp_bank_size(const TrmmlMmcp *m);
int64_t trmml_mmcp_bank_entries(const TrmmlMmcp *m, int64_t per_class, float *vecs, int64_t *cls);
