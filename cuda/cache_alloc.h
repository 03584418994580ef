/* cache_alloc.h — a caching allocator over any raw allocator (header-only, C and C++).
 *
 * cuda/runtime.cu puts it in front of cudaMalloc/cudaFree: device allocation and release are
 * slow and synchronising, and a training run allocates the same few sizes again and again (arena
 * chunks, parameter blocks, optimizer state). Freed blocks are kept in size-bucketed free lists
 * and handed out again; `trim` returns every cached block to the raw allocator.
 *
 * Sizes are rounded up (to 512 B below 1 MiB, to 2 MiB above) so that nearby requests share
 * blocks. Bucket b holds cached blocks whose rounded size lies in [2^b, 2^(b+1)); a request is
 * served by the first cached block of its own bucket that is large enough, so a block is never
 * more than twice the request. When the raw allocator fails, the cache is trimmed and the
 * request retried once. Blocks are tracked in linked lists of small host nodes: live blocks
 * (to find a pointer's size on free) and one free list per bucket.
 *
 * The same code runs in test/test_cuda.c over malloc/free, so its bookkeeping is tested on a
 * machine without a GPU. Not thread-safe by itself: the caller serialises (runtime.cu holds a
 * mutex). */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tensor/error.h"

#define CACHE_ALLOC_BUCKETS 64

typedef struct CacheBlock {
    void *ptr;
    size_t size; /* rounded size actually allocated */
    struct CacheBlock *next;
} CacheBlock;

typedef struct {
    void *(*raw_alloc)(size_t bytes); /* NULL on failure */
    void (*raw_free)(void *p);
    CacheBlock *live; /* blocks handed out */
    CacheBlock *free_list[CACHE_ALLOC_BUCKETS];
    size_t live_bytes, cached_bytes;
    uint64_t raw_allocs, hits; /* counters, for tests and the summary */
} CacheAlloc;

static inline size_t cache_alloc_round(size_t bytes) {
    const size_t small = 512, large = (size_t)2 << 20;
    if (bytes == 0) bytes = 1;
    if (bytes < ((size_t)1 << 20)) return (bytes + small - 1) / small * small;
    return (bytes + large - 1) / large * large;
}

static inline int cache_alloc_bucket(size_t rounded) {
    int b = 0;
    while (b < CACHE_ALLOC_BUCKETS - 1 && (rounded >> (b + 1)) != 0) b++;
    return b;
}

/* Return every cached (free) block to the raw allocator; returns the bytes released. */
static inline size_t cache_alloc_trim(CacheAlloc *ca) {
    size_t released = 0;
    for (int b = 0; b < CACHE_ALLOC_BUCKETS; b++) {
        CacheBlock *blk = ca->free_list[b];
        while (blk) {
            CacheBlock *next = blk->next;
            ca->raw_free(blk->ptr);
            released += blk->size;
            free(blk);
            blk = next;
        }
        ca->free_list[b] = NULL;
    }
    ca->cached_bytes -= released;
    return released;
}

/* A block of at least `bytes`, or NULL when the raw allocator fails even after a trim. */
static inline void *cache_alloc_get(CacheAlloc *ca, size_t bytes) {
    size_t rounded = cache_alloc_round(bytes);
    int b = cache_alloc_bucket(rounded);
    for (CacheBlock **pp = &ca->free_list[b]; *pp; pp = &(*pp)->next) {
        CacheBlock *blk = *pp;
        if (blk->size < rounded) continue;
        *pp = blk->next;
        blk->next = ca->live;
        ca->live = blk;
        ca->cached_bytes -= blk->size;
        ca->live_bytes += blk->size;
        ca->hits++;
        return blk->ptr;
    }
    void *p = ca->raw_alloc(rounded);
    if (!p && ca->cached_bytes > 0) {
        cache_alloc_trim(ca); /* the memory may be sitting in other buckets */
        p = ca->raw_alloc(rounded);
    }
    if (!p) return NULL;
    CacheBlock *blk = (CacheBlock *)xmalloc(sizeof *blk);
    blk->ptr = p;
    blk->size = rounded;
    blk->next = ca->live;
    ca->live = blk;
    ca->live_bytes += rounded;
    ca->raw_allocs++;
    return p;
}

/* Give a block back to the cache (not to the raw allocator). p must come from cache_alloc_get. */
static inline void cache_alloc_put(CacheAlloc *ca, void *p) {
    if (!p) return;
    for (CacheBlock **pp = &ca->live; *pp; pp = &(*pp)->next) {
        CacheBlock *blk = *pp;
        if (blk->ptr != p) continue;
        *pp = blk->next;
        int b = cache_alloc_bucket(blk->size);
        blk->next = ca->free_list[b];
        ca->free_list[b] = blk;
        ca->live_bytes -= blk->size;
        ca->cached_bytes += blk->size;
        return;
    }
    CHECK(0, "cache_alloc_put: %p was not allocated by this allocator (or freed twice)", p);
}
