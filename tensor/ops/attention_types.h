/* attention_types.h — plain-data structs used in the attention kernels' signatures. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* A run of n consecutive sequences of len rows each (see tensor_attention_packed). */
typedef struct {
    int64_t n, len;
} AttentionGroup;

/* The layout of tensor_attention_packed (tensor/ops/attention.h): ngroups runs g (host memory)
 * of sequences packed row after row; NH heads of HS columns; the queries in columns [qcol, qcol +
 * NH*HS) of q (Rq, Wq), the keys and values in [kcol, ...) and [vcol, ...) of kv (R, Wkv); every
 * row a causal query or (last_only) one query per sequence, its last row. */
typedef struct {
    const AttentionGroup *g;
    int ngroups;
    int64_t NH, HS, qcol, kcol, vcol, Wq, Wkv;
    bool last_only;
    float scale;
} AttentionPackedGeom;
