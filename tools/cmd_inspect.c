/* cmd_inspect.c — `trmml inspect FILE [--tensors]`: what a checkpoint holds and whether it is a
 * verified OpenAI CLIP release (SPEC §1.1). Dtypes are printed as stored. */
#include <stdio.h>
#include <string.h>

#include "clip/checkpoint.h"
#include "tools/command.h"
#include "tools/flags.h"

typedef struct {
    bool tensors;
} InspectFlags;

static const KeySpec INSPECT_FLAGS[] = {
    FLAG_SWITCH(InspectFlags, "tensors", tensors,
                "also list every tensor: name, dtype as stored, shape"),
};

COMMAND(inspect, "describe a checkpoint: format, model and SHA-256 verdict, tensor counts",
        "trmml inspect FILE [--tensors]\n"
        "  FILE: TorchScript .pt (e.g. OpenAI's RN50.pt), torch.save state dict, or safetensors") {
    InspectFlags o = {0};
    const KeyGroup groups[] = {FLAGS_OF(INSPECT_FLAGS, &o)};
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), 1, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    if (fp.npos != 1) return tool_usage_error("missing FILE");
    const char *path = argv[0];
    const bool tensors = o.tensors;
    ParamStore *ps = NULL;
    CkptInfo info;
    Status st = ckpt_load(path, NULL, &ps, &info);
    if (st != STATUS_OK) return tool_fail(st);
    char verdict[64];
    printf("file: %s\n", path);
    printf("format: %s\n", ckpt_format_name(info.format));
    printf("sha256: %s\n", info.sha256);
    printf("model: %s\n", ckpt_verdict(&info, verdict, sizeof verdict));
    printf("tensors: %d\n", info.ntensors);
    printf("elements: %lld\n", (long long)info.nelements);
    printf("parameters: %lld (without BatchNorm statistics, attention masks and scalar extras)\n",
           (long long)info.nparams);
    if (tensors)
        for (int i = 0; i < param_count(ps); i++) {
            const Tensor *t = param_at(ps, i);
            printf("%s\t%s\t%s\n", t->name, dtype_name(t->dtype), tensor_shape_str(t));
        }
    param_store_destroy(ps);
    return 0;
}
