/* main.c — the `trmml` command-line tool: git-style subcommands, each with --help.
 * Global options (before or after the subcommand): --device auto|cpu|cuda[:N], --threads N. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/isa.h"
#include "tensor/text.h"
#include "tools/command.h"

#define TRMML_VERSION "0.1.0"

int bench_main(int argc, char **argv, int threads);

typedef struct {
    const char *name, *summary, *usage;
    CommandFn run;
} Command;

static Command commands[64];
static int ncommands;
static int g_threads = 0;
static const char *g_device = "auto";

void command_register(const char *name, const char *summary, const char *usage, CommandFn fn) {
    CHECK(ncommands < 64, "too many commands");
    commands[ncommands++] = (Command){name, summary, usage, fn};
}

const char *tool_device(void) { return g_device; }
int tool_threads(void) { return g_threads; }

int tool_flag_value(const char *cmd, int argc, char **argv, int *i, const char *const *known,
                    const char **value) {
    const char *f = argv[*i];
    bool is_known = false;
    for (int k = 0; known[k] && !is_known; k++) is_known = strcmp(f, known[k]) == 0;
    if (!is_known) {
        fprintf(stderr, "trmml %s: unknown option '%s' (see trmml %s --help)\n", cmd,
                text_for_message(f), cmd);
        return 2;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "trmml %s: %s needs a value (see trmml %s --help)\n", cmd, f, cmd);
        return 2;
    }
    *value = argv[++*i];
    return 0;
}

static int cmp_commands(const void *a, const void *b) {
    return strcmp(((const Command *)a)->name, ((const Command *)b)->name);
}

COMMAND(version, "print the version, the compiled-in backends and the selected device",
        "trmml version [--device auto|cpu|cuda[:N]]") {
    (void)argc;
    (void)argv;
    DeviceKind dev;
    int idx;
    Status st = device_parse(g_device, &dev, &idx);
    if (st != STATUS_OK) {
        fprintf(stderr, "trmml: %s\n", error_last());
        return st == STATUS_ERR_USAGE ? 2 : 1;
    }
    printf("trmml %s\n", TRMML_VERSION);
    printf("backends: %s\n", device_summary());
    printf("kernels: %d per backend\n", device_kernel_count());
    printf("selected device: %s\n", device_name(dev));
    printf("cpu isa: %s\n", isa_name());
    return 0;
}

COMMAND(bench, "run benchmarks (TSV on stdout, a readable log on stderr)",
        "trmml bench [--threads N] [--quick] [--list] [--case TEXT] [NAME]\n"
        "  NAME     run one benchmark (see --list); all by default\n"
        "  --quick  fewer repetitions (a smoke test)\n"
        "  --case TEXT  only the rows whose key contains TEXT (e.g. \"rn101 img 448 b8\");\n"
        "               train and loader run all their rows\n"
        "  make bench runs them all and writes docs/benchmarks.md") {
    return bench_main(argc, argv, g_threads);
}

static void usage(FILE *f) {
    fprintf(f, "usage: trmml [--device auto|cpu|cuda[:N]] [--threads N] <command> [options]\n\n"
               "commands:\n");
    for (int i = 0; i < ncommands; i++) fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`trmml <command> --help` describes one command.\n");
}

/* Remove the global options from argv (they may appear anywhere); returns the new argc or -1. */
static int take_global_options(int argc, char **argv) {
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int which = 0;
        if (strcmp(a, "--device") == 0 || strcmp(a, "--threads") == 0) {
            which = a[2] == 'd' ? 1 : 2;
            if (i + 1 >= argc) {
                fprintf(stderr, "trmml: %s needs a value\n", a);
                return -1;
            }
            val = argv[++i];
        } else if (strncmp(a, "--device=", 9) == 0) {
            which = 1;
            val = a + 9;
        } else if (strncmp(a, "--threads=", 10) == 0) {
            which = 2;
            val = a + 10;
        }
        if (which == 1) g_device = val;
        else if (which == 2) {
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "trmml: --threads '%s': expected an integer in [1, 1024]\n", val);
                return -1;
            }
            g_threads = (int)n;
        } else argv[out++] = argv[i];
    }
    return out;
}

int main(int argc, char **argv) {
    qsort(commands, ncommands, sizeof *commands, cmp_commands);
    argc = take_global_options(argc, argv);
    if (argc < 0) return 2;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (g_threads) device_set_threads(g_threads);
    for (int i = 0; i < ncommands; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        for (int k = 2; k < argc; k++)
            if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
                printf("%s\n\n%s\n", commands[i].summary, commands[i].usage);
                return 0;
            }
        return commands[i].run(argc - 2, argv + 2);
    }
    fprintf(stderr, "trmml: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
