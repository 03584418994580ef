/* csv.c — reading and writing numeric matrices as comma-separated text (format in csv.h).
 *
 * The reader is a bounds-checked single pass over an in-memory buffer (the file is read whole
 * first), so it can be fuzzed directly (fuzz/fuzz_csv.c): every index stays below len, fields are
 * copied into a fixed 64-byte buffer before strtod, and the value array grows geometrically. */
#include "datasets/csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CSV_FIELD_MAX 63 /* longest accepted field; any finite double prints in 24 characters */

/* The field (up to 32 bytes, non-printable bytes as '?') for error messages. */
static void field_preview(char *out, const char *s, size_t n) {
    size_t m = n < 32 ? n : 32;
    for (size_t i = 0; i < m; i++) out[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    strcpy(out + m, n > 32 ? "..." : "");
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* Parse one field s[0..n) into *v; errors name file, line and column. */
static Status parse_field(const char *s, size_t n, const char *name, int64_t line, int64_t col,
                          double *v) {
    while (n > 0 && is_blank(*s)) s++, n--;
    while (n > 0 && is_blank(s[n - 1])) n--;
    if (n == 0)
        return error_set(STATUS_ERR_FORMAT,
                         "%s: line %lld, column %lld: empty field (expected a number)", name,
                         (long long)line, (long long)col);
    char shown[40];
    field_preview(shown, s, n);
    if (n > CSV_FIELD_MAX || memchr(s, '\0', n))
        return error_set(STATUS_ERR_FORMAT, "%s: line %lld, column %lld: '%s' is not a number",
                         name, (long long)line, (long long)col, shown);
    char buf[CSV_FIELD_MAX + 1];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double x = strtod(buf, &end);
    if (end != buf + n)
        return error_set(STATUS_ERR_FORMAT, "%s: line %lld, column %lld: '%s' is not a number",
                         name, (long long)line, (long long)col, shown);
    /* ERANGE on underflow still yields a usable (denormal or zero) value; overflow gives inf. */
    if (!isfinite(x))
        return error_set(STATUS_ERR_FORMAT,
                         "%s: line %lld, column %lld: '%s' is not a finite number", name,
                         (long long)line, (long long)col, shown);
    *v = x;
    return STATUS_OK;
}

static Status csv_parse(const char *text, size_t len, const char *name, bool labels_only,
                        double **data, int64_t *rows, int64_t *cols) {
    CHECK((text || len == 0) && name && data && rows && cols, "ds_csv_parse: NULL argument");
    *data = NULL;
    double *vals = NULL;
    size_t nvals = 0, cap = 0;
    int64_t line = 0, nrows = 0, ncols = -1, first_line = 0;
    Status st = STATUS_OK;
    size_t p = 0;
    while (p < len && st == STATUS_OK) {
        line++;
        size_t end = p;
        while (end < len && text[end] != '\n') end++;
        size_t next = end < len ? end + 1 : end;
        size_t e = end > p && text[end - 1] == '\r' ? end - 1 : end;
        size_t q = p;
        while (q < e && is_blank(text[q])) q++;
        if (q == e || text[q] == '#') { /* blank line or comment */
            p = next;
            continue;
        }
        int64_t field = 0;
        for (size_t f = p;;) {
            size_t fe = f;
            while (fe < e && text[fe] != ',') fe++;
            field++;
            double v = 0.0;
            st = parse_field(text + f, fe - f, name, line, field, &v);
            if (st != STATUS_OK) break;
            if (labels_only && v != 1.0 && v != 0.0 && v != -1.0) {
                st = error_set(
                    STATUS_ERR_FORMAT,
                    "%s: line %lld, column %lld: %.17g is not a label (expected -1, 0 or 1)", name,
                    (long long)line, (long long)field, v);
                break;
            }
            if (nvals == cap) {
                cap = cap ? 2 * cap : 1024;
                vals = xrealloc(vals, cap * sizeof *vals);
            }
            vals[nvals++] = v;
            if (fe == e) break;
            f = fe + 1;
        }
        if (st != STATUS_OK) break;
        if (ncols < 0) {
            ncols = field;
            first_line = line;
        } else if (field != ncols) {
            st = error_set(
                STATUS_ERR_FORMAT, "%s: line %lld: %lld fields, expected %lld (as on line %lld)",
                name, (long long)line, (long long)field, (long long)ncols, (long long)first_line);
            break;
        }
        nrows++;
        p = next;
    }
    if (st == STATUS_OK && nrows == 0)
        st = error_set(STATUS_ERR_FORMAT, "%s: no data rows (expected an N x C matrix of numbers)",
                       name);
    if (st != STATUS_OK) {
        free(vals);
        return st;
    }
    *data = vals;
    *rows = nrows;
    *cols = ncols;
    return STATUS_OK;
}

Status ds_csv_parse(const char *text, size_t len, const char *name, double **data, int64_t *rows,
                    int64_t *cols) {
    return csv_parse(text, len, name, false, data, rows, cols);
}

static Status csv_read(const char *path, bool labels_only, double **data, int64_t *rows,
                       int64_t *cols) {
    uint8_t *text = NULL;
    size_t len = 0;
    Status st = xread_file(path, "CSV file", &text, &len);
    if (st != STATUS_OK) return st;
    st = csv_parse((const char *)text, len, path, labels_only, data, rows, cols);
    free(text);
    return st;
}

Status ds_csv_read(const char *path, double **data, int64_t *rows, int64_t *cols) {
    return csv_read(path, false, data, rows, cols);
}

Status ds_csv_read_labels(const char *path, int8_t **labels, int64_t *rows, int64_t *cols) {
    double *v;
    Status st = csv_read(path, true, &v, rows, cols);
    if (st != STATUS_OK) return st;
    int64_t n = *rows * *cols;
    int8_t *out = xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) out[i] = (int8_t)v[i];
    free(v);
    *labels = out;
    return STATUS_OK;
}

char *ds_format_double(char *buf, size_t cap, double v) {
    CHECK(cap >= 32, "ds_format_double: buffer of %zu bytes (need 32)", cap);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return buf;
}

/* Shared writer: doubles when values != NULL, else int8 labels. */
static Status csv_write(const char *path, const double *values, const int8_t *labels, int64_t rows,
                        int64_t cols, const char *comment) {
    CHECK(path && (values || labels || rows * cols == 0) && rows >= 0 && cols >= 0,
          "ds_csv_write: bad arguments (%lld x %lld)", (long long)rows, (long long)cols);
    AtomicFile af;
    Status st = xatomic_open(path, &af);
    if (st != STATUS_OK) return st;
    FILE *f = af.f;
    const char *tmp = af.tmp;
    /* One output line at a time: 25 bytes bound a field and its separator. */
    size_t cap = 64 + (size_t)cols * 26;
    char *line = xmalloc(cap);
    for (const char *c = comment; c && *c && st == STATUS_OK;) {
        const char *nl = strchr(c, '\n');
        size_t n = nl ? (size_t)(nl - c) : strlen(c);
        st = xfwrite("# ", 1, 2, f, tmp);
        if (st == STATUS_OK && n) st = xfwrite(c, 1, n, f, tmp);
        if (st == STATUS_OK) st = xfwrite("\n", 1, 1, f, tmp);
        c = nl ? nl + 1 : c + n;
    }
    for (int64_t r = 0; r < rows && st == STATUS_OK; r++) {
        size_t n = 0;
        for (int64_t c = 0; c < cols; c++) {
            if (c) line[n++] = ',';
            if (values) {
                char num[40];
                ds_format_double(num, sizeof num, values[r * cols + c]);
                size_t k = strlen(num);
                memcpy(line + n, num, k);
                n += k;
            } else {
                n += (size_t)snprintf(line + n, cap - n, "%d", labels[r * cols + c]);
            }
        }
        line[n++] = '\n';
        st = xfwrite(line, 1, n, f, tmp);
    }
    free(line);
    return xatomic_close(&af, st);
}

Status ds_csv_write(const char *path, const double *data, int64_t rows, int64_t cols,
                    const char *comment) {
    CHECK(data || rows * cols == 0, "ds_csv_write: NULL data");
    return csv_write(path, data, NULL, rows, cols, comment);
}

Status ds_csv_write_labels(const char *path, const int8_t *labels, int64_t rows, int64_t cols,
                           const char *comment) {
    CHECK(labels || rows * cols == 0, "ds_csv_write_labels: NULL labels");
    return csv_write(path, NULL, labels, rows, cols, comment);
}
