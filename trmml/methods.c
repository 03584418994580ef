/* methods.c — the registry of training methods (trmml/method.h). A method is one file that
 * defines its TrmmlMethodOps and one entry here; RunConfig.method indexes this list, so the
 * order of the built-in four is fixed by TRMML_METHOD_* (trmml/run.h) and by the checkpoints
 * that record it. */
#include "trmml/method.h"

#include <string.h>

extern const TrmmlMethodOps METHOD_TRMML, METHOD_DUALCOOP, METHOD_BASELINE, METHOD_PVLR;

const TrmmlMethodOps *const trmml_methods[] = {
    &METHOD_TRMML,    /* TRMML_METHOD_TRMML: trmml/method_trmml.c */
    &METHOD_DUALCOOP, /* TRMML_METHOD_DUALCOOP: trmml/method_dualcoop.c */
    &METHOD_BASELINE, /* TRMML_METHOD_BASELINE: trmml/method_baseline.c */
    &METHOD_PVLR,     /* TRMML_METHOD_PVLR: trmml/method_pvlr.c */
};

int trmml_method_count(void) { return (int)(sizeof trmml_methods / sizeof trmml_methods[0]); }

const TrmmlMethodOps *trmml_method_ops(int method) {
    CHECK(method >= 0 && method < trmml_method_count(), "unknown method %d", method);
    return trmml_methods[method];
}

const char *trmml_method_name(int method) { return trmml_method_ops(method)->name; }

int trmml_method_parse(const char *s) {
    for (int i = 0; i < trmml_method_count(); i++)
        if (strcmp(s, trmml_methods[i]->name) == 0) return i;
    return -1;
}

char *trmml_method_list(char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < trmml_method_count(); i++) {
        const size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", trmml_methods[i]->name);
    }
    return buf;
}

int trmml_method_owning_key(const char *key, int except) {
    for (int i = 0; i < trmml_method_count(); i++)
        if (i != except && keys_find(trmml_methods[i]->keys, trmml_methods[i]->nkeys, key))
            return i;
    return -1;
}
