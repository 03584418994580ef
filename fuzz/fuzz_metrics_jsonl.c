/* fuzz_metrics_jsonl.c — libFuzzer target for the metrics.jsonl reader (run_metrics_parse,
 * trmml/run.c, on tensor/json.h): arbitrary bytes must either parse into rows that satisfy the
 * reader's checks or fail with a message, never crash; every row parsed must survive
 * run_metrics_line and a second parse with the same counters and loss. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trmml/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* the reader takes text; a NUL cuts it, as run_metrics_read refuses */
    RunMetricsRow *rows = NULL;
    int64_t n = 0;
    Status st = run_metrics_parse(text, "fuzz.jsonl", &rows, &n);
    free(text);
    if (st != STATUS_OK) {
        if (rows != NULL || n != 0 || error_last()[0] == '\0') __builtin_trap();
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        const RunMetricsRow *r = &rows[i];
        if (r->stage < 1 || r->stage > 2 || r->epoch < 1 || r->global_epoch < r->epoch)
            __builtin_trap();
        RunMeta meta = {.stage = r->stage, .epochs_done = r->epoch,
                        .global_epochs = r->global_epoch, .step = r->step};
        char *line = run_metrics_line(&meta, r->loss, NULL, NULL);
        RunMetricsRow *back = NULL;
        int64_t m = 0;
        if (run_metrics_parse(line, "again", &back, &m) != STATUS_OK || m != 1 ||
            back[0].global_epoch != r->global_epoch || back[0].step != r->step ||
            (isfinite(r->loss) && fabs(back[0].loss - r->loss) > 1e-8 * fabs(r->loss)))
            __builtin_trap();
        free(back);
        free(line);
    }
    free(rows);
    return 0;
}
