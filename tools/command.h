/* command.h — self-registering `trmml` subcommands.
 *
 *     COMMAND(tokenize, "print BPE token ids", "trmml tokenize [--vocab F] TEXT... | --file F") {
 *         ... return 0;   // exit status: 0 success, 1 failure, 2 usage error (STYLE.md §5)
 *     }
 *
 * The body receives the arguments after the subcommand name and reads them with flags_parse
 * (tools/flags.h), which also answers --help: the summary, then the usage text (synopsis and
 * description; the flags themselves are listed from the command's key tables). */
#pragma once
#include <stdio.h>

#include "tensor/error.h"

typedef int (*CommandFn)(int argc, char **argv);
void command_register(const char *name, const char *summary, const char *usage, CommandFn fn);

#define COMMAND(name, summary, usage) COMMAND_AS(name, #name, summary, usage)
/* For names that are not C identifiers: COMMAND_AS(verify_dataset, "verify-dataset", ...). */
#define COMMAND_AS(ident, name, summary, usage)                                            \
    static int command_##ident(int argc, char **argv);                                     \
    __attribute__((constructor)) static void command_register_##ident(void) {              \
        command_register((name), (summary), (usage), command_##ident);                     \
    }                                                                                      \
    static int command_##ident(int argc, char **argv)

/* The running command's name ("zeroshot-eval"); NULL before main has chosen one. */
const char *tool_command(void);
/* The running command's summary and usage text, as --help begins. */
void tool_print_usage(FILE *f);
/* "trmml CMD: <last error>" on stderr; returns the exit status: 2 for STATUS_ERR_USAGE, else 1. */
int tool_fail(Status st);
/* "trmml CMD: <message> (see trmml CMD --help)" on stderr; returns 2 (a usage error). */
int tool_usage_error(const char *fmt, ...) TRMML_PRINTF(1, 2);
