/* error.c — CHECK failures, the last-error message and checked allocation/I/O. */
#include "tensor/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/text.h"

void check_fail(const char *file, int line, const char *func, const char *cond, const char *fmt,
                ...) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: %s: CHECK(%s) failed: ", file, line, func, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fatal_oom(const char *file, int line, const char *what, size_t requested, size_t available) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: out of memory in %s: asked for %zu bytes (%.1f MiB), %zu bytes available\n",
            file, line, what, requested, requested / 1048576.0, available);
    exit(1);
}

/* Per thread: loader workers and OpenMP regions may fail at the same time. */
static _Thread_local char g_error[1024];

/* Messages quote file names and file contents, which may hold any bytes: they are stored with
 * invalid UTF-8 and control characters escaped (text.h), so that printing one is always safe. */
Status error_set(Status status, const char *fmt, ...) {
    char raw[sizeof g_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    text_escape_message(g_error, sizeof g_error, raw);
    return status;
}

const char *error_last(void) { return g_error; }

const char *status_name(Status s) {
    switch (s) {
    case STATUS_OK: return "ok";
    case STATUS_ERR_IO: return "io";
    case STATUS_ERR_FORMAT: return "format";
    case STATUS_ERR_OOM: return "out of memory";
    case STATUS_ERR_DEVICE: return "device";
    case STATUS_ERR_USAGE: return "usage";
    }
    return "unknown";
}

void *xmalloc_at(const char *file, int line, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fatal_oom(file, line, "malloc", n, 0);
    return p;
}

void *xcalloc_at(const char *file, int line, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fatal_oom(file, line, "calloc", n * size, 0);
    return p;
}

void *xrealloc_at(const char *file, int line, void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) fatal_oom(file, line, "realloc", n, 0);
    return q;
}

FILE *xfopen(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f) error_set(STATUS_ERR_IO, "cannot open '%s' (mode %s): %s", path, mode, strerror(errno));
    return f;
}

Status xfopen_regular(const char *path, const char *what, FILE **out) {
    *out = NULL;
    /* Open, then fstat what was opened (no window for another file to take the name between a
     * stat and the open). O_NONBLOCK so that opening a FIFO returns instead of waiting for a
     * writer; a directory opens fine but would read as an error or size as 2^63 - 1 bytes. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return error_set(STATUS_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
    struct stat sb;
    Status st = STATUS_OK;
    if (fstat(fd, &sb) != 0)
        st = error_set(STATUS_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = error_set(STATUS_ERR_IO, "%s '%s': is a directory, expected a file", what, path);
    else if (!S_ISREG(sb.st_mode))
        st = error_set(STATUS_ERR_IO, "%s '%s': not a regular file", what, path);
    /* Reads of a regular file never block: the flag is dropped so that stdio sees a plain one. */
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
             !(*out = fdopen(fd, "rb")))
        st = error_set(STATUS_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
    if (st != STATUS_OK) close(fd);
    return st;
}

Status xread_file(const char *path, const char *what, uint8_t **buf, size_t *size) {
    *buf = NULL;
    *size = 0;
    FILE *f;
    Status st = xfopen_regular(path, what, &f);
    if (st != STATUS_OK) return st;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return error_set(STATUS_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
    }
    const size_t n = (size_t)sb.st_size;
    uint8_t *b = xmalloc(n + 1);
    st = n ? xfread(b, 1, n, f, path) : STATUS_OK;
    fclose(f);
    if (st != STATUS_OK) {
        free(b);
        return st;
    }
    b[n] = 0;
    *buf = b;
    *size = n;
    return STATUS_OK;
}

Status xfread(void *buf, size_t size, size_t count, FILE *f, const char *what) {
    size_t got = fread(buf, size, count, f);
    if (got != count)
        return error_set(STATUS_ERR_IO, "%s: short read: wanted %zu bytes, got %zu%s", what,
                         size * count, size * got, ferror(f) ? " (read error)" : " (end of file)");
    return STATUS_OK;
}

Status xfwrite(const void *buf, size_t size, size_t count, FILE *f, const char *what) {
    if (fwrite(buf, size, count, f) != count)
        return error_set(STATUS_ERR_IO, "%s: write of %zu bytes failed: %s", what, size * count,
                         strerror(errno));
    return STATUS_OK;
}

Status xatomic_open(const char *path, AtomicFile *af) {
    const size_t n = strlen(path);
    af->f = NULL;
    af->path = path;
    static const char suffix[] = ".tmpXXXXXX";
    af->tmp = xmalloc(n + sizeof suffix);
    memcpy(af->tmp, path, n);
    memcpy(af->tmp + n, suffix, sizeof suffix);
    int fd = mkstemp(af->tmp);
    if (fd < 0)
        return error_set(STATUS_ERR_IO, "%s: cannot create a temporary beside it (%s: %s)", path,
                         af->tmp, strerror(errno));
    /* mkstemp creates 0600; the file is published like one fopen would make. */
    af->f = fchmod(fd, 0644) == 0 ? fdopen(fd, "wb") : NULL;
    if (!af->f) {
        const int err = errno;
        close(fd);
        remove(af->tmp);
        return error_set(STATUS_ERR_IO, "%s: %s", af->tmp, strerror(err));
    }
    return STATUS_OK;
}

Status xatomic_close(AtomicFile *af, Status st) {
    if (af->f) {
        if (st == STATUS_OK && (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0))
            st = error_set(STATUS_ERR_IO, "%s: write failed (%s)", af->tmp, strerror(errno));
        if (fclose(af->f) != 0 && st == STATUS_OK)
            st = error_set(STATUS_ERR_IO, "%s: write failed when closing (%s)", af->tmp,
                           strerror(errno));
        if (st == STATUS_OK && rename(af->tmp, af->path) != 0)
            st = error_set(STATUS_ERR_IO, "%s: cannot rename to %s (%s)", af->tmp, af->path,
                           strerror(errno));
        if (st != STATUS_OK) remove(af->tmp);
    }
    free(af->tmp);
    *af = (AtomicFile){0};
    return st;
}

Status xwrite_file_atomic(const char *path, const void *data, size_t n) {
    AtomicFile af;
    Status st = xatomic_open(path, &af);
    if (st == STATUS_OK && n) st = xfwrite(data, 1, n, af.f, af.tmp);
    return xatomic_close(&af, st);
}
