/* main.c — the `trmml` command-line tool: git-style subcommands, each with --help.
 * Global options (before or after the subcommand): --device auto|cpu|cuda[:N], --threads N
 * (tools/flags.h). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/device.h"
#include "tensor/dist.h"
#include "tensor/dist_nccl.h"
#include "tensor/isa.h"
#include "tensor/text.h"
#include "tools/command.h"
#include "tools/flags.h"

#define TRMML_VERSION "0.1.0"

int bench_main(int argc, char **argv);

typedef struct {
    const char *name, *summary, *usage;
    CommandFn run;
} Command;

static Command commands[64];
static int ncommands;
static const Command *g_running; /* the command main chose */

void command_register(const char *name, const char *summary, const char *usage, CommandFn fn) {
    CHECK(ncommands < 64, "too many commands");
    commands[ncommands++] = (Command){name, summary, usage, fn};
}

const char *tool_command(void) { return g_running ? g_running->name : NULL; }

void tool_print_usage(FILE *f) {
    if (g_running) fprintf(f, "%s\n\n%s\n", g_running->summary, g_running->usage);
}

/* "trmml CMD" or "trmml" before a command is chosen. */
static void print_prefix(void) {
    fprintf(stderr, "trmml%s%s: ", g_running ? " " : "", g_running ? g_running->name : "");
}

int tool_fail(Status st) {
    const int code = st == STATUS_ERR_USAGE ? 2 : 1;
    /* Under MPI: a failure every rank shares (dist_agree) is printed once, by rank 0; one rank's
     * own failure is printed by that rank, named, before main ends the job. */
    if (dist_size() > 1 && dist_failure_agreed() && !dist_is_root()) return code;
    print_prefix();
    if (dist_size() > 1 && !dist_failure_agreed()) fprintf(stderr, "rank %d: ", dist_rank());
    fprintf(stderr, "%s\n", error_last());
    return code;
}

int tool_usage_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_prefix();
    fprintf(stderr, "%s (see trmml%s%s --help)\n", text_for_message(msg), g_running ? " " : "",
            g_running ? g_running->name : "");
    return 2;
}

static int cmp_commands(const void *a, const void *b) {
    return strcmp(((const Command *)a)->name, ((const Command *)b)->name);
}

COMMAND(version, "print the version, the compiled-in backends and the selected device",
        "trmml version [--device auto|cpu|cuda[:N]]") {
    int rc = flags_parse(NULL, 0, 0, argc, argv, NULL);
    if (rc != FLAGS_GO) return rc;
    DeviceKind dev;
    int idx;
    Status st = device_parse(tool_device(), &dev, &idx);
    if (st != STATUS_OK) return tool_fail(st);
    printf("trmml %s\n", TRMML_VERSION);
    printf("backends: %s\n", device_summary());
    printf("kernels: %d per backend\n", device_kernel_count());
    printf("selected device: %s\n", device_name(dev));
    printf("cpu isa: %s\n", isa_name());
    printf("mpi: %s\n", dist_summary());
    printf("nccl: %s%s\n", dist_nccl_summary(), dist_nccl_compiled() ? " compiled in" : "");
    return 0;
}

COMMAND(bench, "run benchmarks (TSV on stdout, a readable log on stderr)",
        "trmml bench [--quick] [--list] [--case TEXT] [NAME]\n"
        "trmml bench --random-clip rn50|rn101 --out PATH\n"
        "  NAME: run one benchmark (see --list); all by default. make bench runs them all and\n"
        "  writes docs/benchmarks.md. --random-clip writes the benchmarks' random-weight CLIP\n"
        "  as a checkpoint (a --model for measurements without downloads) and exits.") {
    return bench_main(argc, argv);
}

static void usage(FILE *f) {
    fprintf(f, "usage: trmml [--device auto|cpu|cuda[:N]] [--threads N] <command> [options]\n\n"
               "commands:\n");
    for (int i = 0; i < ncommands; i++) fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`trmml <command> --help` describes one command.\n");
}

static int run_command(int argc, char **argv);

/* Under mpirun or srun every rank runs main (tensor/dist.h). A command's failure that every rank
 * shares ends each rank normally; one rank's own failure ends the whole job (MPI_Abort), since
 * the others may be waiting for it in a collective. */
int main(int argc, char **argv) {
    device_init_profiler(); /* TRMML_PROFILE=1 */
    if (dist_init(&argc, &argv) != STATUS_OK) {
        fprintf(stderr, "trmml: %s\n", error_last());
        dist_abort(2);
    }
    const int rc = run_command(argc, argv);
    if (rc != 0 && dist_size() > 1 && !dist_failure_agreed()) dist_abort(rc);
    dist_finalize();
    return rc;
}

static int run_command(int argc, char **argv) {
    qsort(commands, ncommands, sizeof *commands, cmp_commands);
    int first;
    if (flags_parse_global(argc, argv, &first) != FLAGS_GO) return 2;
    if (first >= argc || strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "help") == 0) {
        usage(first >= argc ? stderr : stdout);
        return first >= argc ? 2 : 0;
    }
    for (int i = 0; i < ncommands; i++) {
        if (strcmp(argv[first], commands[i].name) != 0) continue;
        g_running = &commands[i];
        return commands[i].run(argc - first - 1, argv + first + 1);
    }
    fprintf(stderr, "trmml: unknown command '%s'\n", text_for_message(argv[first]));
    usage(stderr);
    return 2;
}
