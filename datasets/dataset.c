/* dataset.c — ds_open dispatch, the Dataset container, label-convention import and the small
 * helpers (bounded line reader, string list, paths) shared by the reader files. */
#include "datasets/dataset.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Longest accepted line of a list or label file: a VG label row of 200 values needs ~1 KB. */
#define DS_MAX_LINE (1 << 20)

Status ds_open(const char *name, const char *root, const char *split, const DsOptions *opt,
               Dataset **out) {
    CHECK(name && root && split && out, "ds_open: NULL argument");
    *out = NULL;
    static const DsOptions defaults = {0};
    if (!opt) opt = &defaults;
    if (opt->convention != DS_LABELS_PM1 && opt->convention != DS_LABELS_DUALCOOP)
        return error_set(STATUS_ERR_USAGE, "dataset %s: unknown label convention %d", name,
                         (int)opt->convention);
    if (!ds_is_dir(root))
        return error_set(STATUS_ERR_IO, "dataset %s: root '%s' is not a directory", name, root);
    Status st;
    if (!strcmp(name, "voc2007") || !strcmp(name, "voc2012"))
        st = ds_open_voc(name, root, split, opt, out);
    else if (!strcmp(name, "coco2014"))
        st = ds_open_coco(root, split, opt, out);
    else if (!strcmp(name, "nuswide"))
        st = ds_open_nuswide(root, split, opt, out);
    else if (!strcmp(name, "vg200"))
        st = ds_open_vg(root, split, opt, out);
    else if (!strcmp(name, "cub"))
        st = ds_open_cub(root, split, opt, out);
    else
        return error_set(STATUS_ERR_USAGE, "unknown dataset '%s' (expected voc2007, voc2012, "
                         "coco2014, nuswide, vg200 or cub)", name);
    if (st != STATUS_OK) {
        ds_free(*out);
        *out = NULL;
    }
    return st;
}

Dataset *ds_alloc(const char *name, const char *split, int64_t n, int64_t c) {
    CHECK(n >= 0 && c > 0, "ds_alloc: n=%lld c=%lld", (long long)n, (long long)c);
    Dataset *ds = xcalloc(1, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "%s", name);
    snprintf(ds->split, sizeof ds->split, "%s", split);
    ds->n = n;
    ds->c = c;
    ds->class_names = xcalloc((size_t)c, sizeof *ds->class_names);
    ds->image_paths = xcalloc((size_t)(n ? n : 1), sizeof *ds->image_paths);
    ds->labels = xcalloc((size_t)(n ? n * c : 1), 1);
    return ds;
}

void ds_free(Dataset *ds) {
    if (!ds) return;
    if (ds->class_names)
        for (int64_t k = 0; k < ds->c; k++) free(ds->class_names[k]);
    if (ds->image_paths)
        for (int64_t i = 0; i < ds->n; i++) free(ds->image_paths[i]);
    free(ds->class_names);
    free(ds->image_paths);
    free(ds->labels);
    free(ds);
}

const char *ds_image_path(const Dataset *ds, int64_t i) {
    CHECK(ds && i >= 0 && i < ds->n, "ds_image_path: index %lld of %lld", (long long)i,
          (long long)(ds ? ds->n : 0));
    return ds->image_paths[i];
}

const int8_t *ds_label_row(const Dataset *ds, int64_t i) {
    CHECK(ds && i >= 0 && i < ds->n, "ds_label_row: index %lld of %lld", (long long)i,
          (long long)(ds ? ds->n : 0));
    return ds->labels + i * ds->c;
}

Status ds_labels_import(int8_t *labels, int64_t n, DsLabelConvention conv, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        int v = labels[i];
        if (v < -1 || v > 1)
            return error_set(STATUS_ERR_FORMAT, "%s: label value %d at entry %lld (expected "
                             "%s)", what, v, (long long)i,
                             conv == DS_LABELS_DUALCOOP ? "1, 0 or -1" : "+1, -1 or 0");
        /* DualCoOp: 1 positive, 0 negative, -1 unknown -> +1, -1, 0. */
        if (conv == DS_LABELS_DUALCOOP) labels[i] = (int8_t)(v == 1 ? 1 : v == 0 ? -1 : 0);
    }
    return STATUS_OK;
}

/* ---- helpers ------------------------------------------------------------------------------- */

Status ds_lines_open(DsLines *r, const char *path) {
    memset(r, 0, sizeof *r);
    Status st = xfopen_regular(path, "text file", &r->f);
    if (st != STATUS_OK) return st;
    r->path = path;
    r->cap = 4096;
    r->buf = xmalloc(r->cap);
    return STATUS_OK;
}

Status ds_lines_next(DsLines *r, char **line) {
    *line = NULL;
    size_t len = 0;
    for (;;) {
        if (!fgets(r->buf + len, (int)(r->cap - len), r->f)) {
            if (ferror(r->f))
                return error_set(STATUS_ERR_IO, "%s: read error after line %lld", r->path,
                                 (long long)r->lineno);
            if (len == 0) return STATUS_OK; /* end of file */
            break;                          /* last line without a newline */
        }
        len += strlen(r->buf + len);
        if (len > 0 && r->buf[len - 1] == '\n') break;
        if (len + 1 < r->cap) continue; /* fgets stopped at an embedded NUL or EOF */
        if (r->cap >= DS_MAX_LINE)
            return error_set(STATUS_ERR_FORMAT, "%s:%lld: line longer than %d bytes", r->path,
                             (long long)r->lineno + 1, DS_MAX_LINE);
        r->cap *= 2;
        r->buf = xrealloc(r->buf, r->cap);
    }
    r->lineno++;
    /* Lists written on Windows end in CRLF; trailing blanks are never part of a value. */
    while (len > 0 && (r->buf[len - 1] == '\n' || r->buf[len - 1] == '\r' ||
                       r->buf[len - 1] == ' ' || r->buf[len - 1] == '\t'))
        len--;
    r->buf[len] = 0;
    *line = r->buf;
    return STATUS_OK;
}

void ds_lines_close(DsLines *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

void ds_strings_push(DsStrings *s, const char *str, size_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->items = xrealloc(s->items, (size_t)s->cap * sizeof *s->items);
    }
    char *copy = xmalloc(len + 1);
    memcpy(copy, str, len);
    copy[len] = 0;
    s->items[s->n++] = copy;
}

void ds_strings_free(DsStrings *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

char *ds_strdup(const char *s) {
    size_t n = strlen(s);
    char *d = xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

char *ds_path_join(const char *a, const char *b) {
    if (!a || !*a || b[0] == '/') return ds_strdup(b);
    size_t na = strlen(a), nb = strlen(b);
    bool slash = a[na - 1] == '/';
    char *p = xmalloc(na + nb + 2);
    memcpy(p, a, na);
    if (!slash) p[na++] = '/';
    memcpy(p + na, b, nb + 1);
    return p;
}

bool ds_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool ds_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool ds_parse_int(const char *s, const char *end, int64_t min, int64_t max, int64_t *out) {
    bool neg = false;
    if (s < end && (*s == '+' || *s == '-')) neg = *s++ == '-';
    if (s >= end || end - s > 18) return false; /* 18 digits cannot overflow int64 */
    int64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    if (neg) v = -v;
    if (v < min || v > max) return false;
    *out = v;
    return true;
}

bool ds_token(char **cursor, const char *seps, char **tok, size_t *len) {
    char *p = *cursor;
    p += strspn(p, seps);
    if (!*p) {
        *cursor = p;
        return false;
    }
    size_t n = strcspn(p, seps);
    *tok = p;
    *len = n;
    *cursor = p + n;
    return true;
}
