/* device_guard.c — the guard device: the CPU kernels on memory the host cannot touch.
 *
 * A test instrument, not a user-facing device (docs/guard.md). It proves on a machine without a
 * GPU that code never reads or writes device memory except through the device table. Its memory
 * is carved out of one large reserved address range that stays PROT_NONE except while the table
 * itself works on it: every kernel run through KERNEL_RUN (the kernel_begin/kernel_end hooks)
 * and every copy or memset opens the used part of the range for reading and writing, runs the
 * CPU code and closes it again. Any other access — a wrapper reading a tensor's values, a host
 * struct written into device memory — faults, and the SIGSEGV handler installed here reports
 * the address, the allocation it falls in and the call stack, then aborts.
 *
 * The allocator is deliberately simple. Sizes round up to a power of two of at least 64 bytes
 * (so every block is 64-byte aligned); a freed block goes to the free list of its size class and
 * is handed out again for the next request of that class; new blocks are cut from the top of the
 * used span. Blocks are never split or merged, so the host-side array that records them stays
 * in address order, which lets the signal handler find a block by binary search.
 *
 * One host thread drives the device (as with CUDA's single stream); the kernels' own OpenMP
 * threads run inside the bracket. */
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "tensor/device.h"
#include "tensor/kernels_cpu.h"

#define GUARD_DEFAULT_GB 64
#define GUARD_MIN_CLASS 6      /* 64-byte blocks */
#define GUARD_CLASSES 48       /* up to 2^47 bytes */
#define GUARD_RELEASE_BYTES ((size_t)1 << 20) /* freed blocks this large give their pages back */

typedef struct {
    size_t off;    /* from the start of the range */
    size_t bytes;  /* the size asked for */
    int cls;       /* capacity 2^cls bytes */
    bool live;
    int next_free; /* next block of the same class on its free list, -1 at the end */
} GuardBlock;

static struct {
    char *base;
    size_t reserved;   /* bytes of address space */
    size_t top;        /* [base, base + top) holds every block made so far */
    size_t open_top;   /* bytes opened read/write while depth > 0 */
    int depth;         /* nesting of open brackets (a copy inside a kernel's arguments) */
    GuardBlock *blocks;
    int nblocks, cap;
    int free_head[GUARD_CLASSES];
} g;

static struct sigaction g_prev_segv;

/* ---- opening and closing the range ------------------------------------------------------ */

/* The range is 2 MiB aligned and asks for transparent huge pages, and the spans changed here are
 * rounded up to whole 2 MiB pages (the part above the used span holds no block), so an
 * mprotect changes one page-table entry per 2 MiB where the kernel gives huge pages instead of
 * 512: the bracket around every kernel then costs microseconds, not milliseconds, on a span of
 * hundreds of MiB. */
#define GUARD_PAGE ((size_t)2 << 20)

static void guard_protect(size_t from, size_t to, int prot) {
    to = (to + GUARD_PAGE - 1) / GUARD_PAGE * GUARD_PAGE;
    if (to > g.reserved) to = g.reserved;
    if (to <= from) return;
    CHECK(mprotect(g.base + from, to - from, prot) == 0, "guard device: mprotect of %zu bytes: %s",
          to - from, strerror(errno));
}

static void guard_open(void) {
    if (g.depth++ == 0) {
        guard_protect(0, g.top, PROT_READ | PROT_WRITE);
        g.open_top = g.top;
    }
}

static void guard_close(void) {
    CHECK(g.depth > 0, "guard device: kernel_end without kernel_begin");
    if (--g.depth == 0) {
        guard_protect(0, g.open_top, PROT_NONE);
        g.open_top = 0;
    }
}

/* ---- the allocator ------------------------------------------------------------------------ */

static int guard_class(size_t bytes) {
    int c = GUARD_MIN_CLASS;
    while (c < GUARD_CLASSES && ((size_t)1 << c) < bytes) c++;
    return c;
}

/* Index of the block containing offset `off`, or -1. Async-signal-safe (reads only). */
static int guard_find(size_t off) {
    int lo = 0, hi = g.nblocks - 1, found = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (g.blocks[mid].off <= off) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (found >= 0 && off - g.blocks[found].off >= ((size_t)1 << g.blocks[found].cls)) return -1;
    return found;
}

static void *guard_alloc(size_t bytes) {
    const int cls = guard_class(bytes);
    const size_t cap = cls < GUARD_CLASSES ? (size_t)1 << cls : SIZE_MAX;
    int i = cls < GUARD_CLASSES ? g.free_head[cls] : -1;
    if (i >= 0) {
        g.free_head[cls] = g.blocks[i].next_free;
    } else {
        if (cap > g.reserved - g.top) {
            error_set(STATUS_ERR_OOM,
                      "guard device: %zu bytes (a block of %zu) do not fit in its reserved range: "
                      "%zu of %zu bytes left (TRMML_GUARD_GB sets the reservation, in GiB)",
                      bytes, cap, g.reserved - g.top, g.reserved);
            return NULL;
        }
        if (g.nblocks == g.cap) {
            g.cap = g.cap ? 2 * g.cap : 256;
            g.blocks = xrealloc(g.blocks, (size_t)g.cap * sizeof *g.blocks);
        }
        i = g.nblocks++;
        g.blocks[i] = (GuardBlock){.off = g.top, .cls = cls};
        g.top += cap;
        /* A block made inside an open bracket (a buffer allocated in a kernel call's
         * arguments) is opened with the rest. */
        if (g.depth > 0) {
            guard_protect(0, g.top, PROT_READ | PROT_WRITE);
            g.open_top = g.top;
        }
    }
    g.blocks[i].bytes = bytes;
    g.blocks[i].live = true;
    g.blocks[i].next_free = -1;
    return g.base + g.blocks[i].off;
}

static void guard_free(void *p) {
    if (!p) return;
    const size_t off = (size_t)((char *)p - g.base);
    const int i = (char *)p >= g.base ? guard_find(off) : -1;
    CHECK(i >= 0 && g.blocks[i].off == off && g.blocks[i].live,
          "guard device: free(%p) of a pointer it did not hand out (or freed twice)", p);
    GuardBlock *b = &g.blocks[i];
    b->live = false;
    b->next_free = g.free_head[b->cls];
    g.free_head[b->cls] = i;
    if (((size_t)1 << b->cls) >= GUARD_RELEASE_BYTES)
        madvise(g.base + b->off, (size_t)1 << b->cls, MADV_DONTNEED);
}

/* ---- copies ------------------------------------------------------------------------------- */

static void guard_memset0(void *p, size_t bytes) {
    guard_open();
    memset(p, 0, bytes);
    guard_close();
}

static void guard_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    guard_open();
    memmove(dst, src, bytes);
    guard_close();
}

static void guard_sync(void) {}

/* ---- the fault handler (async-signal-safe: write(2), no stdio, no allocation) ------------- */

static void say(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void say_num(uintmax_t v, unsigned base) {
    char buf[32];
    int i = sizeof buf - 1;
    buf[i] = '\0';
    do {
        buf[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i > 0);
    if (base == 16) say("0x");
    say(buf + i);
}

static void guard_segv(int sig, siginfo_t *si, void *ctx) {
    const uintptr_t a = (uintptr_t)si->si_addr, b = (uintptr_t)g.base;
    if (!g.base || a < b || a - b >= g.reserved) {
        /* Not guard memory: whatever handled SIGSEGV before, else the default action when the
         * faulting instruction runs again. */
        if (g_prev_segv.sa_flags & SA_SIGINFO) {
            g_prev_segv.sa_sigaction(sig, si, ctx);
        } else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN) {
            g_prev_segv.sa_handler(sig);
        } else {
            signal(SIGSEGV, SIG_DFL);
        }
        return;
    }
    const size_t off = a - b;
    say("\nguard device: host access to guard-device memory at ");
    say_num(a, 16);
    const int i = guard_find(off);
    if (i < 0) { /* the blocks tile [0, top) */
        say(" (outside every allocation, ");
        say_num(off - g.top, 10);
        say(" bytes above the used span)");
    } else {
        const GuardBlock *bl = &g.blocks[i];
        say(" (");
        say_num(off - bl->off, 10);
        say(" bytes into ");
        say(bl->live ? "an allocation of " : "a freed allocation of ");
        say_num(bl->bytes, 10);
        say(" bytes)");
    }
#if defined(__x86_64__) && defined(REG_ERR)
    /* bit 1 of the page-fault error code: the access was a write */
    const ucontext_t *uc = ctx;
    say(uc->uc_mcontext.gregs[REG_ERR] & 2 ? ", a write" : ", a read");
#endif
    say(".\nThe host touched device memory outside the device table (copy_h2d/copy_d2h/copy_d2d/"
        "memset0 or a kernel through KERNEL_RUN); docs/guard.md. Backtrace:\n");
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    abort();
}

/* ---- the table ---------------------------------------------------------------------------- */

static size_t guard_reservation(void) {
    const char *env = getenv("TRMML_GUARD_GB");
    if (!env || !*env) return (size_t)GUARD_DEFAULT_GB << 30;
    char *end;
    unsigned long long gb = strtoull(env, &end, 10);
    CHECK(*end == '\0' && gb > 0 && gb <= ((size_t)1 << 17),
          "TRMML_GUARD_GB='%s' is not a size in GiB (1 to 131072)", env);
    return (size_t)gb << 30;
}

static void guard_init(void) {
    g.reserved = guard_reservation();
    void *p = mmap(NULL, g.reserved + GUARD_PAGE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(p != MAP_FAILED,
          "guard device: cannot reserve %zu GiB of address space (mmap PROT_NONE, MAP_NORESERVE: "
          "%s); a lower TRMML_GUARD_GB, or a higher `ulimit -v`, may help",
          g.reserved >> 30, strerror(errno));
    /* Aligned to 2 MiB (the slack below stays reserved and untouched), huge pages asked for. */
    g.base = (char *)(((uintptr_t)p + GUARD_PAGE - 1) / GUARD_PAGE * GUARD_PAGE);
    madvise(g.base, g.reserved, MADV_HUGEPAGE);
    for (int c = 0; c < GUARD_CLASSES; c++) g.free_head[c] = -1;
    /* backtrace() loads libgcc on its first call, which allocates: do it now, not in the
     * handler. */
    void *frame;
    backtrace(&frame, 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, &g_prev_segv) == 0, "guard device: sigaction: %s",
          strerror(errno));
}

static const DeviceTable guard_table = {
    .name = "guard",
    .available = true,
    .alloc = guard_alloc,
    .free = guard_free,
    .memset0 = guard_memset0,
    .copy_h2d = guard_copy,
    .copy_d2h = guard_copy,
    .copy_d2d = guard_copy,
    .synchronize = guard_sync,
    .kernel_begin = guard_open,
    .kernel_end = guard_close,
#define KERNEL(name, args) .name = name##_cpu,
#include "tensor/kernels.def"
#undef KERNEL
};

const DeviceTable *guard_device_table(void) {
    if (!g.base) guard_init();
    return &guard_table;
}
