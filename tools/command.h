/* command.h — self-registering `trmml` subcommands.
 *
 *     COMMAND(tokenize, "print BPE token ids", "trmml tokenize [--vocab F] TEXT... | --file F") {
 *         ... return 0;   // exit status: 0 success, 1 failure, 2 usage error (STYLE.md §5)
 *     }
 *
 * The body receives the arguments after the subcommand name (global options --device and
 * --threads already removed; `tool_device()` gives the parsed --device value). `--help` is
 * answered by main from the usage text, so bodies never see it. */
#pragma once

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

/* For an option that takes a value ("--flag value"): when argv[*i] is one of `known` (a
 * NULL-terminated list) and a value follows, sets *value, advances *i and returns 0. Otherwise
 * prints "trmml CMD: unknown option" or "... needs a value" and returns 2 (a usage error): an
 * unknown flag in last position is still reported as unknown. */
int tool_flag_value(const char *cmd, int argc, char **argv, int *i, const char *const *known,
                    const char **value);

/* The --device value given on the command line ("auto" by default) and --threads (0 = default). */
const char *tool_device(void);
int tool_threads(void);
