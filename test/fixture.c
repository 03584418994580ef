/* fixture.c — fixture reader (see fixture.h for the layout). Fixtures are trusted test data,
 * but the reader still bound-checks every count so a truncated file fails cleanly. */
#include "test/fixture.h"

#include <stdlib.h>
#include <string.h>

#include "test/test.h"

struct Fixture {
    char family[64];
    FixtureTensor *t;
    int n;
};

static Fixture *g_cache[64];
static int g_ncache;

static Status read_fixture(const char *path, Fixture *fx) {
    FILE *f = xfopen(path, "rb");
    if (!f) return STATUS_ERR_IO;
    Status st = STATUS_OK;
    char magic[8];
    uint32_t version, count;
    if ((st = xfread(magic, 1, 8, f, path)) || (st = xfread(&version, 4, 1, f, path)) ||
        (st = xfread(&count, 4, 1, f, path)))
        goto done;
    if (memcmp(magic, "TRMMLFX1", 8) != 0 || version != 1) {
        st = error_set(STATUS_ERR_FORMAT, "%s: not a trmml fixture (bad magic or version)", path);
        goto done;
    }
    if (count > 100000) {
        st = error_set(STATUS_ERR_FORMAT, "%s: implausible tensor count %u", path, count);
        goto done;
    }
    fx->t = xcalloc(count ? count : 1, sizeof *fx->t);
    for (uint32_t i = 0; i < count; i++) {
        FixtureTensor *t = &fx->t[i];
        uint16_t len;
        uint8_t dt, nd;
        if ((st = xfread(&len, 2, 1, f, path))) goto done;
        if (len >= sizeof t->name) {
            st = error_set(STATUS_ERR_FORMAT, "%s: tensor name of %u bytes", path, len);
            goto done;
        }
        if ((st = xfread(t->name, 1, len, f, path)) || (st = xfread(&dt, 1, 1, f, path)) ||
            (st = xfread(&nd, 1, 1, f, path)))
            goto done;
        if (dt > 1 || nd > TENSOR_MAX_DIMS) {
            st = error_set(STATUS_ERR_FORMAT, "%s: '%s' has dtype %u ndim %u", path, t->name, dt, nd);
            goto done;
        }
        t->dtype = dt;
        t->ndim = nd;
        if (nd && (st = xfread(t->shape, 8, nd, f, path))) goto done;
        t->numel = 1;
        for (int d = 0; d < nd; d++) {
            if (t->shape[d] < 0 || t->shape[d] > (1LL << 31)) {
                st = error_set(STATUS_ERR_FORMAT, "%s: '%s' has dimension %lld", path, t->name,
                               (long long)t->shape[d]);
                goto done;
            }
            t->numel *= t->shape[d];
        }
        if (t->numel > (1LL << 28)) {
            st = error_set(STATUS_ERR_FORMAT, "%s: '%s' is implausibly large", path, t->name);
            goto done;
        }
        if (dt == 0) {
            t->f32 = xmalloc(t->numel * 4);
            st = xfread(t->f32, 4, t->numel, f, path);
        } else {
            t->i64 = xmalloc(t->numel * 8);
            st = xfread(t->i64, 8, t->numel, f, path);
        }
        if (st) goto done;
        fx->n++;
    }
done:
    fclose(f);
    return st;
}

Fixture *fixture_open(const char *family) {
    for (int i = 0; i < g_ncache; i++)
        if (strcmp(g_cache[i]->family, family) == 0) return g_cache[i];
    const char *dir = getenv("TRMML_FIXTURES");
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir && *dir ? dir : "test/fixtures", family);
    Fixture *fx = xcalloc(1, sizeof *fx);
    snprintf(fx->family, sizeof fx->family, "%s", family);
    if (read_fixture(path, fx) != STATUS_OK) {
        test_fail(__FILE__, __LINE__, "fixture '%s': %s (regenerate with `make fixtures`)", family,
                  error_last());
        for (int i = 0; i < fx->n; i++) {
            free(fx->t[i].f32);
            free(fx->t[i].i64);
        }
        free(fx->t);
        free(fx);
        return NULL;
    }
    CHECK(g_ncache < 64, "too many fixture files");
    g_cache[g_ncache++] = fx;
    return fx;
}

const FixtureTensor *fixture_get(Fixture *fx, const char *name) {
    if (!fx) return NULL;
    for (int i = 0; i < fx->n; i++)
        if (strcmp(fx->t[i].name, name) == 0) return &fx->t[i];
    test_fail(__FILE__, __LINE__, "fixture '%s' has no tensor '%s' (regenerate with `make fixtures`)",
              fx->family, name);
    return NULL;
}

Tensor *fixture_tensor(Fixture *fx, const char *name) {
    const FixtureTensor *ft = fixture_get(fx, name);
    if (!ft) return NULL;
    if (ft->dtype == 1) {
        Tensor *t = tensor_empty(DT_I64, ft->ndim, ft->shape);
        memcpy(t->data, ft->i64, ft->numel * 8);
        return t;
    }
    return tensor_from_f32(ft->ndim, ft->shape, ft->f32);
}

int fixture_count(const Fixture *fx) { return fx ? fx->n : 0; }
const FixtureTensor *fixture_at(const Fixture *fx, int i) { return &fx->t[i]; }

bool fixture_fill_params(Fixture *fx, ParamStore *ps, const char *prefix) {
    for (int i = 0; i < param_count(ps); i++) {
        Tensor *t = param_at(ps, i);
        if (t->dtype != DT_F32) continue; /* BN counters and other integer buffers */
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, t->name);
        const FixtureTensor *v = fixture_get(fx, key);
        if (!v) return false;
        CHECK(v->numel == t->numel, "fixture %s: %lld values for %lld", key, (long long)v->numel,
              (long long)t->numel);
        tensor_copy_from_host(t, v->f32);
    }
    return true;
}
