/* test_device_parity.c — the whole pipeline on the CPU and on the guard device, every product
 * compared byte for byte (scripts/device-parity.sh; docs/cuda.md "The commands on the device").
 * The guard device runs the CPU's kernels on memory the host cannot touch outside the device
 * table (docs/guard.md), so this proves two things at once: no command reads or writes device
 * memory from the host (it would crash), and the device-resident path computes exactly what the
 * host path does: pretrain-clip, embed, zeroshot, zeroshot-eval, extract, train of every method
 * (from the cache, and TRM-ML from the images), eval, predict and visualize. */
#include <stdio.h>
#include <string.h>

#include "clip/tokenizer.h"
#include "test/test.h"
#include "test/util_clip.h"

TEST(device_parity_pipeline) {
    char exe[512];
    if (!test_trmml_path(exe, sizeof exe)) return;
    ClipTokenizer *tok = test_load_vocab(); /* embed, zeroshot and the prompts need it */
    if (!tok) return;
    clip_tokenizer_free(tok);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "TRMML='%s' scripts/device-parity.sh cpu guard 2>&1", exe);
    static char out[1 << 16];
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "cpu and guard agree on all"), "device-parity.sh: exit %d\n%s",
           rc, out);
}
