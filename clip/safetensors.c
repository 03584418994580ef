/* safetensors.c — the safetensors reader and writer (layout in safetensors.h).
 *
 * The header is parsed with yajl's tree API after a pre-scan that bounds the JSON nesting depth
 * (a valid header nests three levels; deep nesting would only exhaust the stack). Every tensor's
 * byte range is checked against its dtype and shape, then all ranges are checked to tile the data
 * buffer exactly. */
#include "clip/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "tensor/json.h"

/* The reference implementation refuses headers above 100 MB. */
#define MAX_HEADER ((uint64_t)100000000)
enum { MAX_DEPTH = 16 };

static const struct {
    const char *name;
    PickleScalar scalar;
} DTYPES[] = {
    {"F64", PS_F64}, {"F32", PS_F32}, {"F16", PS_F16}, {"BF16", PS_BF16}, {"I64", PS_I64},
    {"I32", PS_I32}, {"I16", PS_I16}, {"I8", PS_I8},   {"U8", PS_U8},     {"BOOL", PS_BOOL},
};
/* Valid safetensors dtypes that have no counterpart here. */
static const char *const UNSUPPORTED[] = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};

static bool depth_ok(const char *s, size_t n) {
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

typedef struct {
    uint64_t begin, end;
    int index;
} Range;

static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static Status parse_entry(const char *what, const char *name, yajl_val v, CkptTensor *t,
                          Range *r) {
    static const char *dtype_path[] = {"dtype", NULL}, *shape_path[] = {"shape", NULL},
                      *off_path[] = {"data_offsets", NULL};
    if (!YAJL_IS_OBJECT(v))
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", what, name);
    yajl_val dt = yajl_tree_get(v, dtype_path, yajl_t_string);
    yajl_val shape = yajl_tree_get(v, shape_path, yajl_t_array);
    yajl_val offs = yajl_tree_get(v, off_path, yajl_t_array);
    if (!dt || !shape || !offs)
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': needs \"dtype\" (string), \"shape\" "
                         "and \"data_offsets\" (arrays)", what, name);
    const char *ds = YAJL_GET_STRING(dt);
    bool found = false;
    for (size_t k = 0; k < sizeof DTYPES / sizeof *DTYPES && !found; k++)
        if (strcmp(ds, DTYPES[k].name) == 0) t->scalar = DTYPES[k].scalar, found = true;
    if (!found) {
        for (size_t k = 0; k < sizeof UNSUPPORTED / sizeof *UNSUPPORTED; k++)
            if (strcmp(ds, UNSUPPORTED[k]) == 0)
                return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': dtype '%s' is not supported",
                                 what, name, ds);
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", what, name, ds);
    }
    size_t nd = shape->u.array.len;
    if (nd > TENSOR_MAX_DIMS)
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", what,
                         name, nd, TENSOR_MAX_DIMS);
    int64_t numel = 1;
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        yajl_val s = shape->u.array.values[d];
        if (!YAJL_IS_INTEGER(s) || YAJL_GET_INTEGER(s) < 0 ||
            __builtin_mul_overflow(numel, YAJL_GET_INTEGER(s), &numel))
            return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': shape entries must be "
                             "non-negative integers with a product below 2^63", what, name);
        t->shape[d] = YAJL_GET_INTEGER(s);
    }
    int64_t run = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = run;
        run *= t->shape[d] ? t->shape[d] : 1;
    }
    if (offs->u.array.len != 2 || !YAJL_IS_INTEGER(offs->u.array.values[0]) ||
        !YAJL_IS_INTEGER(offs->u.array.values[1]) || YAJL_GET_INTEGER(offs->u.array.values[0]) < 0 ||
        YAJL_GET_INTEGER(offs->u.array.values[1]) < YAJL_GET_INTEGER(offs->u.array.values[0]))
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] "
                         "with 0 <= begin <= end", what, name);
    r->begin = (uint64_t)YAJL_GET_INTEGER(offs->u.array.values[0]);
    r->end = (uint64_t)YAJL_GET_INTEGER(offs->u.array.values[1]);
    int64_t bytes = -1;
    if (__builtin_mul_overflow(numel, (int64_t)pickle_scalar_size(t->scalar), &bytes) ||
        (uint64_t)bytes != r->end - r->begin)
        return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': %lld elements of %s need %lld "
                         "bytes but data_offsets [%llu, %llu) hold %llu", what, name,
                         (long long)numel, ds, (long long)bytes,
                         (unsigned long long)r->begin, (unsigned long long)r->end,
                         (unsigned long long)(r->end - r->begin));
    t->storage_numel = numel;
    t->offset = 0;
    return STATUS_OK;
}

Status safetensors_parse(const uint8_t *buf, size_t size, const char *what, CkptTensor **out,
                         int *n) {
    *out = NULL;
    *n = 0;
    if (size < 8)
        return error_set(STATUS_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", what, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8 || hlen > MAX_HEADER)
        return error_set(STATUS_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file "
                         "(%zu bytes) or the 100 MB limit", what, (unsigned long long)hlen, size);
    const char *hdr = (const char *)buf + 8;
    if (hlen < 2 || hdr[0] != '{' || memchr(hdr, 0, hlen))
        return error_set(STATUS_ERR_FORMAT, "%s: safetensors header is not a JSON object", what);
    if (!depth_ok(hdr, hlen))
        return error_set(STATUS_ERR_FORMAT, "%s: safetensors header nests deeper than %d", what, MAX_DEPTH);
    char *json = xmalloc(hlen + 1);
    memcpy(json, hdr, hlen);
    json[hlen] = '\0';
    char err[512];
    yajl_val root = yajl_tree_parse(json, err, sizeof err);
    free(json);
    if (!root || !YAJL_IS_OBJECT(root)) {
        if (root) yajl_tree_free(root);
        else *strchrnul(err, '\n') = '\0';
        return error_set(STATUS_ERR_FORMAT, "%s: safetensors header: %s", what,
                         root ? "not a JSON object" : err);
    }
    uint64_t buffer = size - 8 - hlen;
    size_t nkeys = root->u.object.len;
    CkptTensor *ts = xcalloc(nkeys ? nkeys : 1, sizeof *ts);
    Range *ranges = xcalloc(nkeys ? nkeys : 1, sizeof *ranges);
    int count = 0;
    Status st = STATUS_OK;
    const uint8_t *data = buf + 8 + hlen;
    for (size_t k = 0; k < nkeys && !st; k++) {
        const char *key = root->u.object.keys[k];
        yajl_val v = root->u.object.values[k];
        if (strcmp(key, "__metadata__") == 0) {
            bool ok = YAJL_IS_OBJECT(v);
            for (size_t j = 0; ok && j < v->u.object.len; j++) ok = YAJL_IS_STRING(v->u.object.values[j]);
            if (!ok) st = error_set(STATUS_ERR_FORMAT, "%s: __metadata__ must map strings to strings", what);
            continue;
        }
        CkptTensor *t = &ts[count];
        t->name = strcpy(xmalloc(strlen(key) + 1), key);
        ranges[count].index = count;
        count++;
        st = parse_entry(what, key, v, t, &ranges[count - 1]);
        if (!st && ranges[count - 1].end > buffer)
            st = error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu beyond the data "
                           "buffer (%llu bytes)", what, key, (unsigned long long)ranges[count - 1].end,
                           (unsigned long long)buffer);
        if (!st) t->data = data + ranges[count - 1].begin;
    }
    yajl_tree_free(root);
    if (!st) {
        qsort(ranges, count, sizeof *ranges, cmp_range);
        uint64_t at = 0;
        for (int i = 0; i < count && !st; i++) {
            if (ranges[i].begin != at)
                st = error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) %s "
                               "(the tensors must tile the data buffer)", what,
                               ts[ranges[i].index].name, (unsigned long long)ranges[i].begin,
                               (unsigned long long)ranges[i].end,
                               ranges[i].begin < at ? "overlap another tensor" : "leave a gap");
            at = ranges[i].end;
        }
        if (!st && at != buffer)
            st = error_set(STATUS_ERR_FORMAT, "%s: %llu bytes after the last tensor (the tensors "
                           "must tile the data buffer)", what, (unsigned long long)(buffer - at));
    }
    free(ranges);
    if (st) {
        ckpt_tensors_free(ts, count);
        return st;
    }
    *out = ts;
    *n = count;
    return STATUS_OK;
}

/* ---- writing ------------------------------------------------------------------------------ */

static const char *st_dtype(DType dt) {
    switch (dt) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    case DT_I64: return "I64";
    case DT_I32: return "I32";
    case DT_U8: return "U8";
    default: return NULL;
    }
}

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* The header: {"__metadata__":{"format":"pt"},"<name>":{"dtype":..,"shape":[..],
 * "data_offsets":[begin,end]},...} (tensor/json.h; a name that is not UTF-8 is written with
 * U+FFFD, so the header stays valid JSON whatever a name holds). */
static char *header_json(const char *path, const ParamStore *ps, size_t *n) {
    JsonWriter *w = json_writer_new();
    json_object_begin(w);
    json_key(w, "__metadata__");
    json_object_begin(w);
    json_key(w, "format");
    json_string(w, "pt");
    json_object_end(w);
    uint64_t off = 0;
    for (int i = 0; i < param_count(ps); i++) {
        const Tensor *t = param_at(ps, i);
        CHECK(t->device == DEVICE_CPU, "safetensors_write('%s'): parameter '%s' is on %s; copy the "
              "store to the host first", path, t->name, device_name(t->device));
        const char *dt = st_dtype(t->dtype);
        CHECK(dt, "safetensors_write: parameter '%s' has dtype %s", t->name, dtype_name(t->dtype));
        json_key(w, t->name);
        json_object_begin(w);
        json_key(w, "dtype");
        json_string(w, dt);
        json_key(w, "shape");
        json_array_begin(w);
        for (int d = 0; d < t->ndim; d++) json_int(w, (long long)t->shape[d]);
        json_array_end(w);
        uint64_t bytes = (uint64_t)t->numel * dtype_size(t->dtype);
        json_key(w, "data_offsets");
        json_array_begin(w);
        json_int(w, (long long)off);
        json_int(w, (long long)(off + bytes));
        json_array_end(w);
        json_object_end(w);
        off += bytes;
    }
    json_object_end(w);
    return json_writer_finish(w, n);
}

Status safetensors_write(const char *path, const ParamStore *ps) {
    Buf h = {0};
    h.s = header_json(path, ps, &h.n);
    h.cap = h.n + 1;
    /* Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does. */
    while (h.n % 8) put(&h, " ", 1);
    AtomicFile af;
    Status st = xatomic_open(path, &af);
    FILE *f = af.f;
    const char *tmp = af.tmp;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (!st) st = xfwrite(len8, 1, 8, f, tmp);
    if (!st) st = xfwrite(h.s, 1, h.n, f, tmp);
    for (int i = 0; i < param_count(ps) && !st; i++) {
        const Tensor *t = param_at(ps, i);
        if (t->numel) st = xfwrite(t->data, dtype_size(t->dtype), (size_t)t->numel, f, tmp);
    }
    st = xatomic_close(&af, st);
    free(h.s);
    return st;
}
