/* coco.c — MS-COCO 2014 reader (SPEC §6.3, DECISION 1).
 *
 * Layout: <root>/annotations/instances_{train2014,val2014}.json, images in <root>/train2014/
 * and <root>/val2014/ (val2014 is the test split of the protocol).
 *
 * Labels: class k is +1 iff the image has any annotation of category k — crowd annotations
 * included, as in the DualCoOp loader — else −1. Images without any annotation are dropped
 * (82,081 train / 40,137 val remain) and counted in n_dropped. Category ids (1..90, with gaps)
 * are sorted ascending and mapped to indices 0..C−1; class names are the JSON names in that
 * order. Items are ordered by ascending image id (DECISION 1: the partial-label mask depends on
 * the order).
 *
 * The JSON is streamed through yajl's event callbacks; the document tree is never built. Only
 * images[].{id,file_name}, annotations[].{image_id,category_id} and categories[].{id,name} are
 * kept: the file names in one string pool, and one (image id, category id) pair of 16 bytes per
 * annotation (about 10 MB for train2014; 33 MiB peak in all, measured on a 286 MB file of that
 * shape, docs/datasets.md). Segmentation polygons, captions and everything else are skipped
 * by depth. The keys may come in any order (categories after
 * annotations, as in the official files), which is why pairs are resolved after the parse.
 * Nesting depth, string lengths and record counts are bounded. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "datasets/dataset.h"

#define COCO_MAX_DEPTH 64
#define COCO_MAX_FILE_NAME 1024
#define COCO_MAX_CLASS_NAME 256
#define COCO_MAX_IMAGES 50000000
#define COCO_MAX_ANNOTATIONS 200000000
#define COCO_MAX_CATEGORIES 100000

enum { SEC_NONE, SEC_IMAGES, SEC_ANNOTATIONS, SEC_CATEGORIES };
enum { F_OTHER, F_ID, F_FILE_NAME, F_IMAGE_ID, F_CATEGORY_ID, F_NAME };

typedef struct {
    int64_t id;
    int64_t name_off; /* into the string pool */
} CocoItem;           /* an image (name = file_name) or a category (name = name) */

typedef struct {
    int64_t image_id, category_id;
} CocoPair;

typedef struct {
    yajl_handle h;
    const char *what;
    int depth;      /* open containers: 1 = top-level object, 2 = section array, 3 = record */
    int section;    /* the top-level key whose value is being read */
    int field;      /* the record key whose value is being read */
    char key[40];   /* that key, for messages */
    bool seen[4];   /* sections present */
    int64_t record; /* index of the record being read in its section, for messages */
    /* The record being read. */
    int64_t r_id, r_image_id, r_category_id;
    bool has_id, has_image_id, has_category_id, has_name;
    char r_name[COCO_MAX_FILE_NAME + 1];
    size_t r_name_len;
    /* What is kept. */
    CocoItem *images, *cats;
    int64_t n_images, cap_images, n_cats, cap_cats;
    CocoPair *pairs;
    int64_t n_pairs, cap_pairs;
    char *pool;
    int64_t pool_len, pool_cap;
    Status status;
    char error[512];
} Coco;

static const char *const SECTION_NAMES[] = {"", "images", "annotations", "categories"};

TRMML_PRINTF(2, 3) static int coco_fail(Coco *p, const char *fmt, ...) {
    if (p->status == STATUS_OK) {
        p->status = STATUS_ERR_FORMAT;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->error, sizeof p->error, fmt, ap);
        va_end(ap);
    }
    return 0; /* cancels the parse */
}

static void *grow(void *a, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return a;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    *cap = c;
    return xrealloc(a, (size_t)c * elem);
}

static int64_t pool_add(Coco *p, const char *s, size_t n) {
    p->pool = grow(p->pool, &p->pool_cap, p->pool_len + (int64_t)n + 1, 1);
    int64_t off = p->pool_len;
    memcpy(p->pool + off, s, n);
    p->pool[off + (int64_t)n] = 0;
    p->pool_len += (int64_t)n + 1;
    return off;
}

/* A value inside a known section: only records (objects) are allowed at depth 2. */
static int coco_value_at_section(Coco *p, const char *kind) {
    if (p->depth == 1 && p->section != SEC_NONE)
        return coco_fail(p, "'%s' is %s, expected an array", SECTION_NAMES[p->section], kind);
    if (p->depth == 2 && p->section != SEC_NONE)
        return coco_fail(p, "%s[%lld] is %s, expected an object", SECTION_NAMES[p->section],
                         (long long)p->record, kind);
    if (p->depth == 0) return coco_fail(p, "the document is %s, expected an object", kind);
    return 1;
}

static int coco_int_field(Coco *p, int64_t v) {
    if (v < 0) return coco_fail(p, "%s[%lld]: negative id %lld", SECTION_NAMES[p->section],
                                (long long)p->record, (long long)v);
    switch (p->field) {
    case F_ID: p->r_id = v; p->has_id = true; break;
    case F_IMAGE_ID: p->r_image_id = v; p->has_image_id = true; break;
    case F_CATEGORY_ID: p->r_category_id = v; p->has_category_id = true; break;
    default: break;
    }
    return 1;
}

/* Scalars of the fields we keep must have the right type; other fields are skipped. */
static int coco_scalar(Coco *p, const char *kind, bool is_int, int64_t v) {
    if (!coco_value_at_section(p, kind)) return 0;
    if (p->depth != 3 || p->section == SEC_NONE || p->field == F_OTHER) return 1;
    bool want_int = p->field == F_ID || p->field == F_IMAGE_ID || p->field == F_CATEGORY_ID;
    if (want_int != is_int)
        return coco_fail(p, "%s[%lld].%s is %s, expected %s", SECTION_NAMES[p->section],
                         (long long)p->record, p->key, kind, want_int ? "an integer" : "a string");
    return is_int ? coco_int_field(p, v) : 1;
}

static int cb_null(void *ctx) { return coco_scalar(ctx, "null", false, 0); }
static int cb_boolean(void *ctx, int b) { return coco_scalar(ctx, "a boolean", false, 0); }
static int cb_integer(void *ctx, long long v) { return coco_scalar(ctx, "an integer", true, v); }
static int cb_double(void *ctx, double v) { return coco_scalar(ctx, "a fraction", false, 0); }

static int cb_string(void *ctx, const unsigned char *s, size_t n) {
    Coco *p = ctx;
    if (!coco_value_at_section(p, "a string")) return 0;
    if (p->depth != 3 || p->section == SEC_NONE || p->field == F_OTHER) return 1;
    if (p->field != F_FILE_NAME && p->field != F_NAME)
        return coco_fail(p, "%s[%lld].%s is a string, expected an integer",
                         SECTION_NAMES[p->section], (long long)p->record, p->key);
    size_t max = p->field == F_FILE_NAME ? COCO_MAX_FILE_NAME : COCO_MAX_CLASS_NAME;
    if (n == 0 || n > max || memchr(s, 0, n) || (p->field == F_FILE_NAME && s[0] == '/'))
        return coco_fail(p, "%s[%lld]: bad %s (empty, longer than %zu bytes, absolute or with "
                         "a NUL)", SECTION_NAMES[p->section], (long long)p->record,
                         p->field == F_FILE_NAME ? "file_name" : "name", max);
    memcpy(p->r_name, s, n);
    p->r_name[n] = 0;
    p->r_name_len = n;
    p->has_name = true;
    return 1;
}

static int coco_open(Coco *p, bool is_map) {
    if (p->depth >= COCO_MAX_DEPTH)
        return coco_fail(p, "nested deeper than %d levels", COCO_MAX_DEPTH);
    if (p->depth == 0 && !is_map)
        return coco_fail(p, "the document is an array, expected an object");
    if (p->depth == 1 && p->section != SEC_NONE) {
        if (is_map) return coco_value_at_section(p, "an object");
        p->seen[p->section] = true;
        p->record = 0;
    }
    if (p->depth == 2 && p->section != SEC_NONE) {
        if (!is_map) return coco_value_at_section(p, "an array");
        p->field = F_OTHER;
        p->has_id = p->has_image_id = p->has_category_id = p->has_name = false;
    }
    p->depth++;
    return 1;
}

static int cb_start_map(void *ctx) { return coco_open(ctx, true); }
static int cb_start_array(void *ctx) { return coco_open(ctx, false); }
static int cb_end_array(void *ctx) {
    ((Coco *)ctx)->depth--;
    return 1;
}

static int coco_end_record(Coco *p) {
    const char *sec = SECTION_NAMES[p->section];
    long long r = (long long)p->record;
    if (p->section == SEC_IMAGES || p->section == SEC_CATEGORIES) {
        const char *nm = p->section == SEC_IMAGES ? "file_name" : "name";
        if (!p->has_id || !p->has_name)
            return coco_fail(p, "%s[%lld] has no '%s'", sec, r, !p->has_id ? "id" : nm);
        bool img = p->section == SEC_IMAGES;
        int64_t *n = img ? &p->n_images : &p->n_cats, *cap = img ? &p->cap_images : &p->cap_cats;
        if (*n >= (img ? COCO_MAX_IMAGES : COCO_MAX_CATEGORIES))
            return coco_fail(p, "more than %d %s", img ? COCO_MAX_IMAGES : COCO_MAX_CATEGORIES,
                             sec);
        CocoItem **a = img ? &p->images : &p->cats;
        *a = grow(*a, cap, *n + 1, sizeof **a);
        (*a)[(*n)++] = (CocoItem){p->r_id, pool_add(p, p->r_name, p->r_name_len)};
    } else {
        if (!p->has_image_id || !p->has_category_id)
            return coco_fail(p, "%s[%lld] has no '%s'", sec, r,
                             !p->has_image_id ? "image_id" : "category_id");
        if (p->n_pairs >= COCO_MAX_ANNOTATIONS)
            return coco_fail(p, "more than %d annotations", COCO_MAX_ANNOTATIONS);
        p->pairs = grow(p->pairs, &p->cap_pairs, p->n_pairs + 1, sizeof *p->pairs);
        p->pairs[p->n_pairs++] = (CocoPair){p->r_image_id, p->r_category_id};
    }
    p->record++;
    return 1;
}

static int cb_end_map(void *ctx) {
    Coco *p = ctx;
    int ok = 1;
    if (p->depth == 3 && p->section != SEC_NONE) ok = coco_end_record(p);
    p->depth--;
    return ok;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t n) {
    Coco *p = ctx;
#define KEY_IS(s) (n == sizeof(s) - 1 && !memcmp(k, s, n))
    if (p->depth == 1) {
        p->section = KEY_IS("images") ? SEC_IMAGES : KEY_IS("annotations") ? SEC_ANNOTATIONS
                   : KEY_IS("categories") ? SEC_CATEGORIES : SEC_NONE;
        if (p->section != SEC_NONE && p->seen[p->section])
            return coco_fail(p, "'%s' appears twice", SECTION_NAMES[p->section]);
    } else if (p->depth == 3 && p->section != SEC_NONE) {
        int f = F_OTHER;
        if (KEY_IS("id") && p->section != SEC_ANNOTATIONS) f = F_ID;
        else if (KEY_IS("file_name") && p->section == SEC_IMAGES) f = F_FILE_NAME;
        else if (KEY_IS("name") && p->section == SEC_CATEGORIES) f = F_NAME;
        else if (KEY_IS("image_id") && p->section == SEC_ANNOTATIONS) f = F_IMAGE_ID;
        else if (KEY_IS("category_id") && p->section == SEC_ANNOTATIONS) f = F_CATEGORY_ID;
        p->field = f;
        snprintf(p->key, sizeof p->key, "%.*s", (int)(n < 32 ? n : 32), (const char *)k);
    }
#undef KEY_IS
    return 1;
}

static const yajl_callbacks COCO_CALLBACKS = {
    cb_null, cb_boolean, cb_integer, cb_double, NULL, cb_string,
    cb_start_map, cb_map_key, cb_end_map, cb_start_array, cb_end_array,
};

static void coco_init(Coco *p, const char *what) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->h = yajl_alloc(&COCO_CALLBACKS, NULL, p);
    if (!p->h) fatal_oom(__FILE__, __LINE__, "yajl_alloc", sizeof(Coco), 0);
}

static void coco_release(Coco *p) {
    if (p->h) yajl_free(p->h);
    free(p->images);
    free(p->cats);
    free(p->pairs);
    free(p->pool);
    memset(p, 0, sizeof *p);
}

/* Turn a yajl status into a Status naming the file and the byte offset. */
static Status coco_check(Coco *p, yajl_status ys, const unsigned char *chunk, size_t n,
                         int64_t offset) {
    if (ys == yajl_status_ok) return STATUS_OK;
    int64_t at = offset + (int64_t)yajl_get_bytes_consumed(p->h);
    if (p->status != STATUS_OK)
        return error_set(p->status, "%s: near byte %lld: %s", p->what, (long long)at, p->error);
    unsigned char *msg = yajl_get_error(p->h, 0, chunk, n);
    /* yajl's message ends in a newline; the error is one line. */
    size_t len = msg ? strcspn((const char *)msg, "\n") : 0;
    Status st = error_set(STATUS_ERR_FORMAT, "%s: malformed JSON near byte %lld: %.*s", p->what,
                          (long long)at, (int)len, msg ? (const char *)msg : "");
    if (msg) yajl_free_error(p->h, msg);
    return st;
}

static Status coco_feed(Coco *p, const char *data, size_t n, int64_t offset) {
    yajl_status ys = yajl_parse(p->h, (const unsigned char *)data, n);
    return coco_check(p, ys, (const unsigned char *)data, n, offset);
}

static int cmp_item(const void *a, const void *b) {
    int64_t x = ((const CocoItem *)a)->id, y = ((const CocoItem *)b)->id;
    return (x > y) - (x < y);
}

static int64_t find_item(const CocoItem *a, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid].id == id) return mid;
        if (a[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* After the parse: map category ids, resolve the pairs, drop images without annotations. */
static Status coco_build(Coco *p, int64_t end_offset, const char *split, const char *image_dir,
                         Dataset **out) {
    Status st = coco_check(p, yajl_complete_parse(p->h), NULL, 0, end_offset);
    if (st != STATUS_OK) return st;
    for (int s = SEC_IMAGES; s <= SEC_CATEGORIES; s++)
        if (!p->seen[s])
            return error_set(STATUS_ERR_FORMAT, "%s: no '%s' array (not a COCO instances file?)",
                             p->what, SECTION_NAMES[s]);
    if (p->n_cats == 0) return error_set(STATUS_ERR_FORMAT, "%s: 'categories' is empty", p->what);
    qsort(p->images, (size_t)p->n_images, sizeof *p->images, cmp_item);
    qsort(p->cats, (size_t)p->n_cats, sizeof *p->cats, cmp_item);
    for (int64_t i = 1; i < p->n_images; i++)
        if (p->images[i].id == p->images[i - 1].id)
            return error_set(STATUS_ERR_FORMAT, "%s: image id %lld appears twice", p->what,
                             (long long)p->images[i].id);
    for (int64_t k = 1; k < p->n_cats; k++)
        if (p->cats[k].id == p->cats[k - 1].id)
            return error_set(STATUS_ERR_FORMAT, "%s: category id %lld appears twice", p->what,
                             (long long)p->cats[k].id);

    int64_t c = p->n_cats, n_all = p->n_images;
    int8_t *all = xmalloc((size_t)(n_all ? n_all * c : 1));
    memset(all, -1, (size_t)(n_all * c));
    bool *annotated = xcalloc((size_t)(n_all ? n_all : 1), 1);
    for (int64_t a = 0; a < p->n_pairs && st == STATUS_OK; a++) {
        int64_t i = find_item(p->images, n_all, p->pairs[a].image_id);
        int64_t k = find_item(p->cats, c, p->pairs[a].category_id);
        if (i < 0)
            st = error_set(STATUS_ERR_FORMAT, "%s: annotations[%lld] refers to image id %lld, "
                           "which is not in 'images'", p->what, (long long)a,
                           (long long)p->pairs[a].image_id);
        else if (k < 0)
            st = error_set(STATUS_ERR_FORMAT, "%s: annotations[%lld] refers to category id %lld, "
                           "which is not in 'categories'", p->what, (long long)a,
                           (long long)p->pairs[a].category_id);
        else {
            all[i * c + k] = 1;
            annotated[i] = true;
        }
    }
    int64_t n = 0;
    for (int64_t i = 0; i < n_all; i++) n += annotated[i];
    if (st == STATUS_OK && n == 0)
        st = error_set(STATUS_ERR_FORMAT, "%s: no image has an annotation", p->what);
    if (st == STATUS_OK) {
        Dataset *ds = ds_alloc("coco2014", split, n, c);
        *out = ds;
        for (int64_t k = 0; k < c; k++)
            ds->class_names[k] = ds_strdup(p->pool + p->cats[k].name_off);
        int64_t j = 0;
        for (int64_t i = 0; i < n_all; i++) {
            const char *file = p->pool + p->images[i].name_off;
            if (!annotated[i]) {
                if (ds->n_dropped++ == 0)
                    snprintf(ds->dropped_example, sizeof ds->dropped_example, "%s", file);
                continue;
            }
            memcpy(ds->labels + j * c, all + i * c, (size_t)c);
            ds->image_paths[j++] = ds_path_join(image_dir, file);
        }
    }
    free(all);
    free(annotated);
    return st;
}

Status ds_coco_parse_json(const char *json, size_t size, size_t chunk, const char *what,
                          const char *image_dir, Dataset **out) {
    *out = NULL;
    if (chunk == 0) chunk = size ? size : 1;
    Coco p;
    coco_init(&p, what);
    Status st = STATUS_OK;
    size_t off = 0;
    while (st == STATUS_OK && off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        st = coco_feed(&p, json + off, n, (int64_t)off);
        off += n;
    }
    if (st == STATUS_OK) st = coco_build(&p, (int64_t)size, "json", image_dir, out);
    coco_release(&p);
    if (st != STATUS_OK) {
        ds_free(*out);
        *out = NULL;
    }
    return st;
}

Status ds_open_coco(const char *root, const char *split, const DsOptions *opt, Dataset **out) {
    const char *set = !strcmp(split, "train") || !strcmp(split, "train2014") ? "train2014"
                    : !strcmp(split, "val") || !strcmp(split, "val2014") || !strcmp(split, "test")
                        ? "val2014" : NULL;
    if (!set)
        return error_set(STATUS_ERR_USAGE, "coco2014: unknown split '%s' (expected train, or val "
                         "= test)", split);
    char name[64];
    snprintf(name, sizeof name, "annotations/instances_%s.json", set);
    char *json = ds_path_join(root, name);
    FILE *f;
    if (xfopen_regular(json, "COCO annotation file", &f) != STATUS_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_last()); /* names the path and the reason */
        Status st = error_set(STATUS_ERR_IO, "coco2014: %s (expected <root>/annotations/"
                              "instances_%s.json from annotations_trainval2014.zip)", msg, set);
        free(json);
        return st;
    }
    char *image_dir = opt->image_dir ? ds_strdup(opt->image_dir) : ds_path_join(root, set);
    Coco p;
    coco_init(&p, json);
    size_t chunk_size = 1 << 16;
    char *chunk = xmalloc(chunk_size);
    Status st = STATUS_OK;
    int64_t off = 0;
    for (;;) {
        size_t n = fread(chunk, 1, chunk_size, f);
        if (ferror(f)) {
            st = error_set(STATUS_ERR_IO, "%s: read error near byte %lld", json, (long long)off);
            break;
        }
        if (n == 0) break;
        st = coco_feed(&p, chunk, n, off);
        off += (int64_t)n;
        if (st != STATUS_OK) break;
    }
    fclose(f);
    free(chunk);
    if (st == STATUS_OK) st = coco_build(&p, off, split, image_dir, out);
    coco_release(&p);
    free(image_dir);
    free(json);
    return st;
}
