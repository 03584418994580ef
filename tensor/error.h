/* error.h — the two kinds of failure in trmml (STYLE.md §5).
 *
 * Contract violations are bugs (bad shape, NULL, wrong device, missing kernel): CHECK prints
 * file:line, the function and a message with the offending values, then aborts. It stays on in
 * release builds.
 *
 * Environment failures (missing file, bad magic, out of memory, no GPU) return a Status and set a
 * last-error message with error_set(); callers propagate, and only main prints it. The message
 * is stored with invalid UTF-8 and control characters escaped (tensor/text.h).
 *
 * The x* wrappers are the only way the code base calls malloc/fopen/fread/fwrite: they report
 * file:line and sizes on failure. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    STATUS_OK = 0,
    STATUS_ERR_IO = -1,      /* file missing, unreadable, short read */
    STATUS_ERR_FORMAT = -2,  /* bad magic, version, corrupt content */
    STATUS_ERR_OOM = -3,     /* allocation failed */
    STATUS_ERR_DEVICE = -4,  /* requested device unavailable */
    STATUS_ERR_USAGE = -5,   /* bad flag or argument */
} Status;

#if defined(__GNUC__)
#define TRMML_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define TRMML_NORETURN __attribute__((noreturn))
#else
#define TRMML_PRINTF(a, b)
#define TRMML_NORETURN
#endif

/* Abort with "file:line: function: CHECK(cond) failed: message". */
TRMML_NORETURN void check_fail(const char *file, int line, const char *func, const char *cond,
                               const char *fmt, ...) TRMML_PRINTF(5, 6);

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) check_fail(__FILE__, __LINE__, __func__, #cond, __VA_ARGS__);         \
    } while (0)

/* Fatal out-of-memory: reports the bytes asked for and what was available, then exits 1. */
TRMML_NORETURN void fatal_oom(const char *file, int line, const char *what, size_t requested,
                              size_t available);

/* Record an environment failure; returns `status` so callers can `return error_set(...)`. */
Status error_set(Status status, const char *fmt, ...) TRMML_PRINTF(2, 3);
const char *error_last(void);      /* message of the last error_set, "" if none */
const char *status_name(Status s); /* "io", "format", ... */

/* Checked allocation and I/O. xmalloc/xcalloc/xrealloc abort via fatal_oom on failure. */
#define xmalloc(n) xmalloc_at(__FILE__, __LINE__, (n))
#define xcalloc(n, s) xcalloc_at(__FILE__, __LINE__, (n), (s))
#define xrealloc(p, n) xrealloc_at(__FILE__, __LINE__, (p), (n))
void *xmalloc_at(const char *file, int line, size_t n);
void *xcalloc_at(const char *file, int line, size_t n, size_t size);
void *xrealloc_at(const char *file, int line, void *p, size_t n);

/* xfopen returns NULL and sets the last error (naming the path) on failure. */
FILE *xfopen(const char *path, const char *mode);
/* Open a file the user named, for reading. STATUS_ERR_IO with one message naming `what` (e.g.
 * "CLIP checkpoint") and the path when it is missing, unreadable, a directory or not a regular
 * file; every reader of a user-given file opens it with this. */
Status xfopen_regular(const char *path, const char *what, FILE **out);
/* The whole regular file `path` (opened as xfopen_regular) in a new buffer (free()), with a NUL
 * after its *size bytes so that text can be read as a string. */
Status xread_file(const char *path, const char *what, uint8_t **buf, size_t *size);
/* xfread/xfwrite return STATUS_OK or STATUS_ERR_IO with a message naming `what` and the byte
 * counts. */
Status xfread(void *buf, size_t size, size_t count, FILE *f, const char *what);
Status xfwrite(const void *buf, size_t size, size_t count, FILE *f, const char *what);

/* Writing a file whole or not at all: a reader of `path` sees its old content or the new one,
 * never a part, and a failure leaves no temporary behind.
 *
 *     AtomicFile af;
 *     Status st = xatomic_open(path, &af);            // af.f: a temporary beside path
 *     if (st == STATUS_OK) st = xfwrite(data, 1, n, af.f, af.tmp);
 *     st = xatomic_close(&af, st);                    // published, or removed if st failed
 *
 * The temporary is "<path>.tmpXXXXXX" (mkstemp: two writers of one path never share it),
 * mode 0644, and reaches the disk (fsync) before the rename publishes it. */
typedef struct {
    FILE *f;          /* NULL when xatomic_open failed */
    char *tmp;        /* the temporary's name, for messages */
    const char *path; /* borrowed */
} AtomicFile;
/* STATUS_ERR_IO naming the path and the temporary when it cannot be created. */
Status xatomic_open(const char *path, AtomicFile *af);
/* Close af->f; if st is STATUS_OK, sync the temporary and rename it to the path, otherwise (or
 * when any of that fails) remove it. Returns st when it is an error, else the first failure. */
Status xatomic_close(AtomicFile *af, Status st);
/* data[0..n) as the whole new content of `path` (xatomic_open, xfwrite, xatomic_close). */
Status xwrite_file_atomic(const char *path, const void *data, size_t n);
