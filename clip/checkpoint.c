/* checkpoint.c — format detection, the state-dict walk over a pickled module tree, and the copy
 * of strided storages into a ParamStore (SPEC §1.1–1.2).
 *
 * Pipeline: bytes -> (ZIP + pickle | safetensors header) -> list of CkptTensor (name + strided
 * view of raw storage bytes, every view already checked to lie inside its storage) -> duplicate
 * names refused -> ParamStore (one block) -> each view copied element by element in row-major
 * order, converting the element type where asked -> model identification and digest verdict. */
#include "clip/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "clip/safetensors.h"
#include "tensor/sha256.h"
#include "clip/zip.h"
#include "tensor/convert.h"

/* Published digests (SPEC §1.1). */
static const struct {
    const char *model, *sha256;
} KNOWN[] = {
    {"RN50", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"},
    {"RN101", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"},
};

enum {
    MAX_NAME = 1024,         /* longest dotted state-dict key */
    MAX_DEPTH = 64,          /* deepest module nesting walked */
    MAX_VISITS = 1 << 22,    /* values visited by the walk: bounds shared or cyclic graphs */
    MAX_TENSORS = 1 << 20,
};

const char *ckpt_format_name(CkptFormat f) {
    switch (f) {
    case CKPT_FORMAT_TORCHSCRIPT: return "TorchScript archive (torch.jit.save)";
    case CKPT_FORMAT_TORCH_SAVE: return "PyTorch state dict (torch.save)";
    case CKPT_FORMAT_SAFETENSORS: return "safetensors";
    default: return "unknown";
    }
}

void ckpt_tensors_free(CkptTensor *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* ---- the module tree walk ----------------------------------------------------------------- */

typedef struct {
    const char *what;
    CkptTensor *t;
    const PickleValue **storage; /* storage of t[i], resolved to bytes after the walk */
    int n, cap;
    int64_t visits;
    char name[MAX_NAME];
} Walk;

static Status walk(Walk *w, const PickleValue *v, size_t len, int depth);

/* Append ".<part>" (or "<part>" at the root) to the name and walk the child. */
static Status walk_child(Walk *w, const PickleValue *child, size_t len, const char *part,
                         size_t plen, int depth) {
    size_t need = len + (len ? 1 : 0) + plen;
    if (need >= MAX_NAME)
        return error_set(STATUS_ERR_FORMAT, "%s: a state-dict key is longer than %d bytes",
                         w->what, MAX_NAME - 1);
    if (len) w->name[len] = '.';
    memcpy(w->name + need - plen, part, plen);
    w->name[need] = '\0';
    Status st = walk(w, child, need, depth + 1);
    w->name[len] = '\0';
    return st;
}

static Status walk(Walk *w, const PickleValue *v, size_t len, int depth) {
    if (++w->visits > MAX_VISITS || depth > MAX_DEPTH)
        return error_set(STATUS_ERR_FORMAT, "%s: the module tree is %s (cyclic or hostile pickle?)",
                         w->what, depth > MAX_DEPTH ? "nested deeper than 64 levels"
                                                    : "larger than 2^22 values");
    char idx[24];
    switch (v->kind) {
    case PV_TENSOR: {
        if (w->n >= MAX_TENSORS)
            return error_set(STATUS_ERR_FORMAT, "%s: more than 2^20 tensors", w->what);
        if (len == 0)
            return error_set(STATUS_ERR_FORMAT, "%s: the pickle holds a bare tensor, not a module "
                             "or a state dict", w->what);
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 64;
            w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
            w->storage = xrealloc(w->storage, (size_t)w->cap * sizeof *w->storage);
        }
        w->storage[w->n] = v->storage;
        CkptTensor *t = &w->t[w->n++];
        *t = (CkptTensor){.scalar = v->storage->scalar, .storage_numel = v->storage->i,
                          .offset = v->offset, .ndim = v->ndim};
        t->name = strcpy(xmalloc(len + 1), w->name);
        memcpy(t->shape, v->shape, sizeof t->shape);
        memcpy(t->stride, v->stride, sizeof t->stride);
        return STATUS_OK;
    }
    case PV_OBJECT:
        return v->state ? walk(w, v->state, len, depth + 1) : STATUS_OK;
    case PV_DICT:
        for (int64_t i = 0; i + 1 < v->n; i += 2) {
            const PickleValue *k = v->items[i];
            Status st = STATUS_OK;
            if (k->kind == PV_STR) {
                st = walk_child(w, v->items[i + 1], len, k->str, k->len, depth);
            } else if (k->kind == PV_INT) {
                int m = snprintf(idx, sizeof idx, "%lld", (long long)k->i);
                st = walk_child(w, v->items[i + 1], len, idx, (size_t)m, depth);
            }
            if (st) return st;
        }
        return STATUS_OK;
    case PV_LIST:
    case PV_TUPLE:
        for (int64_t i = 0; i < v->n; i++) {
            int m = snprintf(idx, sizeof idx, "%lld", (long long)i);
            Status st = walk_child(w, v->items[i], len, idx, (size_t)m, depth);
            if (st) return st;
        }
        return STATUS_OK;
    default:
        return STATUS_OK; /* plain attributes (training flags, ints, None) are not weights */
    }
}

/* ---- ZIP archives ------------------------------------------------------------------------- */

/* "<prefix>/data.pkl" (prefix without '/'), or a bare "data.pkl". */
static Status find_data_pkl(const ZipArchive *z, const ZipEntry **out, size_t *prefix_len) {
    *out = NULL;
    bool model_json = false;
    for (int i = 0; i < z->n; i++) {
        const char *nm = z->entries[i].name;
        size_t n = strlen(nm);
        const char *slash = strchr(nm, '/');
        if (slash && strcmp(slash + 1, "model.json") == 0) model_json = true;
        bool top = n >= 8 && strcmp(nm + n - 8, "data.pkl") == 0 &&
                   (n == 8 || (slash == nm + n - 9 && n > 9));
        if (!top) continue;
        if (*out)
            return error_set(STATUS_ERR_FORMAT, "%s: two data.pkl entries ('%s' and '%s')", z->what,
                             (*out)->name, nm);
        *out = &z->entries[i];
        *prefix_len = n - 8;
    }
    if (*out) return STATUS_OK;
    if (model_json)
        return error_set(STATUS_ERR_FORMAT, "%s: old TorchScript layout (model.json, "
                         "attributes.pkl) is not supported; re-save it with a recent PyTorch", z->what);
    return error_set(STATUS_ERR_FORMAT, "%s: ZIP archive without a data.pkl entry: not a PyTorch "
                     "checkpoint", z->what);
}

/* Small text entries: "<prefix>/version" must be 1..10; "<prefix>/byteorder" must be little. */
static Status check_small_entries(const ZipArchive *z, const char *prefix, size_t plen) {
    char name[MAX_NAME + 32];
    static const char *const which[] = {"version", ".data/version", "byteorder"};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "%.*s%s", (int)plen, prefix, which[k]);
        const ZipEntry *e = zip_find(z, name);
        if (!e) continue;
        ZipData d;
        Status st = zip_read(z, e, &d);
        if (st) return st;
        char text[32] = {0};
        memcpy(text, d.data, d.size < 31 ? d.size : 31);
        zip_data_free(&d);
        if (k < 2) {
            char *end;
            long v = strtol(text, &end, 10);
            if (end == text || (*end && *end != '\n') || v < 1 || v > 10)
                return error_set(STATUS_ERR_FORMAT, "%s: entry '%s' holds '%.8s', expected a "
                                 "format version 1..10", z->what, name, text);
        } else if (strncmp(text, "little", 6) != 0) {
            return error_set(STATUS_ERR_FORMAT, "%s: byte order '%.8s': only little-endian "
                             "checkpoints are supported", z->what, text);
        }
    }
    return STATUS_OK;
}

/* Storage bytes by key, each entry read (and CRC-checked) once: open addressing on the key. */
typedef struct {
    const char *key;
    ZipData data;
} StorageSlot;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static Status resolve_storages(const ZipArchive *z, const char *prefix, size_t plen,
                               CkptTensor *t, const PickleValue **storage, int n,
                               StorageSlot **slots_out, size_t *nslots) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    StorageSlot *slots = xcalloc(cap, sizeof *slots);
    *slots_out = slots;
    *nslots = cap;
    char name[MAX_NAME + 96];
    for (int i = 0; i < n; i++) {
        const PickleValue *s = storage[i];
        size_t h = hash_str(s->str) & (cap - 1);
        while (slots[h].key && strcmp(slots[h].key, s->str) != 0) h = (h + 1) & (cap - 1);
        if (!slots[h].key) {
            snprintf(name, sizeof name, "%.*sdata/%s", (int)plen, prefix, s->str);
            const ZipEntry *e = zip_find(z, name);
            if (!e)
                return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': storage entry '%s' is missing",
                                 z->what, t[i].name, name);
            Status st = zip_read(z, e, &slots[h].data);
            if (st) return st;
            slots[h].key = s->str;
        }
        size_t esize = pickle_scalar_size(s->scalar);
        if ((uint64_t)s->i > slots[h].data.size / esize)
            return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s': storage '%s' holds %zu bytes, "
                             "fewer than %lld %s elements", z->what, t[i].name, s->str,
                             slots[h].data.size, (long long)s->i, pickle_scalar_name(s->scalar));
        t[i].data = slots[h].data.data;
    }
    return STATUS_OK;
}

static void free_slots(StorageSlot *slots, size_t n) {
    for (size_t i = 0; slots && i < n; i++) zip_data_free(&slots[i].data);
    free(slots);
}

/* Parse the archive and produce the tensor list. Storage bytes stay owned by `slots` (inflated
 * entries) or by the caller's buffer (stored entries) until the copy is done. */
static Status load_zip(const uint8_t *buf, size_t size, const char *what, CkptFormat *format,
                       CkptTensor **out, int *nout, ZipArchive *z, StorageSlot **slots,
                       size_t *nslots) {
    Status st = zip_open(z, buf, size, what);
    if (st) return st;
    const ZipEntry *pkl;
    size_t plen = 0;
    if ((st = find_data_pkl(z, &pkl, &plen))) return st;
    const char *prefix = pkl->name;
    if ((st = check_small_entries(z, prefix, plen))) return st;
    ZipData d;
    if ((st = zip_read(z, pkl, &d))) return st;
    char pwhat[MAX_NAME + 64];
    snprintf(pwhat, sizeof pwhat, "%s: %s", what, pkl->name);
    Pickle *p = NULL;
    PickleValue *root = NULL;
    st = pickle_run(d.data, d.size, pwhat, &p, &root);
    Walk w = {.what = what};
    if (!st) {
        if (root->kind == PV_OBJECT) *format = CKPT_FORMAT_TORCHSCRIPT;
        else if (root->kind == PV_DICT) *format = CKPT_FORMAT_TORCH_SAVE;
        else
            st = error_set(STATUS_ERR_FORMAT, "%s: data.pkl holds neither a module nor a state "
                           "dict", what);
    }
    if (!st) st = walk(&w, root, 0, 0);
    if (!st) st = resolve_storages(z, prefix, plen, w.t, w.storage, w.n, slots, nslots);
    pickle_free(p);
    zip_data_free(&d);
    free(w.storage);
    if (st) {
        ckpt_tensors_free(w.t, w.n);
        return st;
    }
    *out = w.t;
    *nout = w.n;
    return STATUS_OK;
}

/* ---- copying into the ParamStore ---------------------------------------------------------- */

static DType dest_dtype(PickleScalar s, bool to_f32) {
    switch (s) {
    case PS_F16: return to_f32 ? DT_F32 : DT_F16;
    case PS_BF16: return to_f32 ? DT_F32 : DT_BF16;
    case PS_F32:
    case PS_F64: return DT_F32;
    case PS_I64: return DT_I64;
    case PS_I32:
    case PS_I16:
    case PS_I8: return DT_I32;
    default: return DT_U8;
    }
}

/* Convert n consecutive storage elements (possibly unaligned) to the destination type. */
static void convert_run(void *dst, DType dt, const uint8_t *src, PickleScalar s, int64_t n) {
    size_t es = pickle_scalar_size(s);
    if (dtype_size(dt) == es && (dt != DT_F32 || s == PS_F32)) {
        memcpy(dst, src, (size_t)n * es); /* same representation */
        return;
    }
    for (int64_t i = 0; i < n; i++, src += es) {
        uint16_t h;
        int16_t i16;
        double f64;
        switch (s) {
        case PS_F16: memcpy(&h, src, 2); ((float *)dst)[i] = f16_to_f32(h); break;
        case PS_BF16: memcpy(&h, src, 2); ((float *)dst)[i] = bf16_to_f32(h); break;
        case PS_F64: memcpy(&f64, src, 8); ((float *)dst)[i] = (float)f64; break;
        case PS_I16: memcpy(&i16, src, 2); ((int32_t *)dst)[i] = i16; break;
        case PS_I8: ((int32_t *)dst)[i] = (int8_t)src[0]; break;
        default: CHECK(0, "no conversion from %s to %s", pickle_scalar_name(s), dtype_name(dt));
        }
    }
}

static void copy_tensor(Tensor *dst, const CkptTensor *t) {
    size_t es = pickle_scalar_size(t->scalar), ds = dtype_size(dst->dtype);
    if (dst->numel == 0) return;
    /* Row-major contiguous (dimensions of size 1 may carry any stride): one run. */
    bool contiguous = true;
    int64_t run = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != run) contiguous = false;
        run *= t->shape[d];
    }
    if (contiguous) {
        convert_run(dst->data, dst->dtype, t->data + (size_t)t->offset * es, t->scalar, dst->numel);
        return;
    }
    /* Strided: walk the destination in row-major order with an odometer over the indices; the
     * innermost dimension is converted as a run when its stride is 1. */
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    int last = t->ndim - 1;
    int64_t inner = t->shape[last], inner_stride = t->stride[last];
    uint8_t *out = dst->data;
    for (int64_t done = 0; done < dst->numel; done += inner) {
        int64_t base = t->offset;
        for (int d = 0; d < last; d++) base += idx[d] * t->stride[d];
        if (inner_stride == 1) {
            convert_run(out, dst->dtype, t->data + (size_t)base * es, t->scalar, inner);
        } else {
            for (int64_t k = 0; k < inner; k++)
                convert_run(out + k * ds, dst->dtype, t->data + (size_t)(base + k * inner_stride) * es,
                            t->scalar, 1);
        }
        out += inner * ds;
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

static Status check_duplicates(const char *what, const CkptTensor *t, int n) {
    const char **names = xmalloc((n ? n : 1) * sizeof *names);
    const char ***order = xmalloc((n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) names[i] = t[i].name, order[i] = &names[i];
    qsort(order, n, sizeof *order, cmp_name_ptr);
    Status st = STATUS_OK;
    for (int i = 1; i < n && !st; i++)
        if (strcmp(*order[i], *order[i - 1]) == 0)
            st = error_set(STATUS_ERR_FORMAT, "%s: duplicate tensor name '%s'", what, *order[i]);
    free(order);
    free(names);
    return st;
}

/* Views with stride 0 (expand) can describe far more elements than their storage holds; real
 * checkpoints do not grow by more than the f16 -> f32 up-cast, so cap the output at 4x the input
 * (plus 64 MiB for tiny files) instead of letting a hostile file ask for terabytes. */
static Status check_output_size(const char *what, const CkptTensor *t, int n, size_t in_bytes,
                                bool to_f32) {
    uint64_t limit = 4 * (uint64_t)in_bytes + ((uint64_t)64 << 20), total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        bool overflow = false;
        for (int d = 0; d < t[i].ndim; d++)
            overflow |= __builtin_mul_overflow(numel, (uint64_t)t[i].shape[d], &numel);
        uint64_t bytes;
        overflow |= __builtin_mul_overflow(numel, dtype_size(dest_dtype(t[i].scalar, to_f32)), &bytes);
        overflow |= __builtin_add_overflow(total, bytes, &total);
        if (overflow || total > limit)
            return error_set(STATUS_ERR_FORMAT, "%s: tensor '%s' takes the loaded size past %llu "
                             "bytes, 4x the file (stride-0 views of a small storage?)", what,
                             t[i].name, (unsigned long long)limit);
    }
    return STATUS_OK;
}

static ParamStore *build_store(const CkptTensor *t, int n, bool to_f32) {
    ParamStore *ps = param_store_create(DEVICE_CPU, "checkpoint");
    Tensor **dst = xmalloc((n ? n : 1) * sizeof *dst);
    for (int i = 0; i < n; i++)
        dst[i] = param_add(ps, t[i].name, dest_dtype(t[i].scalar, to_f32), t[i].ndim, t[i].shape, false);
    param_store_finalize(ps);
    for (int i = 0; i < n; i++) copy_tensor(dst[i], &t[i]);
    free(dst);
    return ps;
}

/* ---- identification ----------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool ckpt_is_parameter(const char *name) {
    static const char *const extras[] = {"input_resolution", "context_length", "vocab_size"};
    for (int k = 0; k < 3; k++)
        if (strcmp(name, extras[k]) == 0) return false;
    return !ends_with(name, ".running_mean") && !ends_with(name, ".running_var") &&
           !ends_with(name, ".num_batches_tracked") && !ends_with(name, "attn_mask");
}

/* Number of distinct blocks "<prefix><b>." among the keys (SPEC §1.4). */
static int count_blocks(const ParamStore *ps, const char *prefix) {
    bool seen[256] = {false};
    int n = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < param_count(ps); i++) {
        const char *nm = param_at(ps, i)->name;
        if (strncmp(nm, prefix, pl) != 0) continue;
        char *end;
        long b = strtol(nm + pl, &end, 10);
        if (end != nm + pl && *end == '.' && b >= 0 && b < 256 && !seen[b]) seen[b] = true, n++;
    }
    return n;
}

static bool shape_is(const ParamStore *ps, const char *name, int ndim, int64_t d0, int64_t d1) {
    const Tensor *t = param_find(ps, name);
    return t && t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
}

/* The released CLIP ResNets by architecture: stage depths, embedding width E, text sizes. */
const char *ckpt_identify(const ParamStore *ps) {
    if (!shape_is(ps, "visual.attnpool.positional_embedding", 2, 50, 2048) ||
        !shape_is(ps, "token_embedding.weight", 2, 49408, 512) ||
        !shape_is(ps, "positional_embedding", 2, 77, 512) ||
        !shape_is(ps, "visual.layer1.0.conv1.weight", 4, 64, 64) ||
        count_blocks(ps, "transformer.resblocks.") != 12 || count_blocks(ps, "visual.layer1.") != 3 ||
        count_blocks(ps, "visual.layer2.") != 4 || count_blocks(ps, "visual.layer4.") != 3)
        return NULL;
    int l3 = count_blocks(ps, "visual.layer3.");
    if (l3 == 6 && shape_is(ps, "text_projection", 2, 512, 1024)) return "RN50";
    if (l3 == 23 && shape_is(ps, "text_projection", 2, 512, 512)) return "RN101";
    return NULL;
}

const char *ckpt_verdict(const CkptInfo *info, char *buf, size_t n) {
    switch (info->digest) {
    case CKPT_DIGEST_VERIFIED: snprintf(buf, n, "%s (verified)", info->model); break;
    case CKPT_DIGEST_MISMATCH: snprintf(buf, n, "digest mismatch for %s", info->model); break;
    case CKPT_DIGEST_UNKNOWN: snprintf(buf, n, "unknown model"); break;
    default:
        if (info->model) snprintf(buf, n, "%s (digest not checked)", info->model);
        else snprintf(buf, n, "unknown model (digest not checked)");
    }
    return buf;
}

/* ---- entry points ------------------------------------------------------------------------- */

Status ckpt_load_memory(const uint8_t *buf, size_t size, const char *what, const CkptOptions *opt,
                        ParamStore **out, CkptInfo *info) {
    CkptOptions defaults = {0};
    if (!opt) opt = &defaults;
    CkptInfo local;
    if (!info) info = &local;
    *info = (CkptInfo){0};
    *out = NULL;
    what = what ? what : "checkpoint";
    CkptTensor *t = NULL;
    int n = 0;
    ZipArchive z = {0};
    StorageSlot *slots = NULL;
    size_t nslots = 0;
    Status st;
    if (zip_looks_like(buf, size)) {
        st = load_zip(buf, size, what, &info->format, &t, &n, &z, &slots, &nslots);
    } else if (size >= 9 && buf[8] == '{') {
        info->format = CKPT_FORMAT_SAFETENSORS;
        st = safetensors_parse(buf, size, what, &t, &n);
    } else if (size >= 2 && buf[0] == 0x80 && buf[1] <= 5) {
        st = error_set(STATUS_ERR_FORMAT, "%s: legacy (pre-1.6) torch.save format is not supported; "
                       "re-save it with torch.save(obj, path) from PyTorch >= 1.6", what);
    } else {
        st = error_set(STATUS_ERR_FORMAT, "%s: unknown format (neither a ZIP archive written by "
                       "PyTorch nor safetensors)", what);
    }
    if (!st) st = check_duplicates(what, t, n);
    if (!st) st = check_output_size(what, t, n, size, opt->to_f32);
    if (!st) {
        *out = build_store(t, n, opt->to_f32);
        info->ntensors = n;
        for (int i = 0; i < n; i++) {
            int64_t numel = param_at(*out, i)->numel;
            info->nelements += numel;
            if (ckpt_is_parameter(t[i].name)) info->nparams += numel;
        }
        info->model = ckpt_identify(*out);
        if (!opt->skip_digest) {
            sha256_hex(buf, size, info->sha256);
            const char *by_digest = NULL;
            for (size_t k = 0; k < sizeof KNOWN / sizeof *KNOWN; k++)
                if (strcmp(info->sha256, KNOWN[k].sha256) == 0) by_digest = KNOWN[k].model;
            if (by_digest) info->model = by_digest, info->digest = CKPT_DIGEST_VERIFIED;
            else info->digest = info->model ? CKPT_DIGEST_MISMATCH : CKPT_DIGEST_UNKNOWN;
        }
    }
    ckpt_tensors_free(t, n);
    free_slots(slots, nslots);
    zip_close(&z);
    if (st) info->format = CKPT_FORMAT_UNKNOWN;
    return st;
}

Status ckpt_load(const char *path, const CkptOptions *opt, ParamStore **out, CkptInfo *info) {
    *out = NULL;
    FILE *f;
    Status open_st = xfopen_regular(path, "checkpoint", &f);
    if (open_st != STATUS_OK) return open_st;
    if (fseeko(f, 0, SEEK_END) != 0) {
        fclose(f);
        return error_set(STATUS_ERR_IO, "%s: cannot seek", path);
    }
    off_t size = ftello(f);
    rewind(f);
    if (size <= 0) {
        fclose(f);
        return error_set(STATUS_ERR_FORMAT, "%s: empty file", path);
    }
    uint8_t *buf = xmalloc((size_t)size);
    Status st = xfread(buf, 1, (size_t)size, f, path);
    fclose(f);
    if (!st) st = ckpt_load_memory(buf, (size_t)size, path, opt, out, info);
    free(buf);
    return st;
}
