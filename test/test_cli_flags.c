/* test_cli_flags.c — the command-line parser (tools/flags.h) seen from outside: the messages of
 * its usage errors, --name=value, switches, values checked by the key tables, and --help listing
 * the flags of each command's tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test/test.h"

/* Run `trmml ARGS 2>&1`; its exit status, output in out. */
static int run_trmml(const char *exe, const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
    return test_run_capture(cmd, out, cap);
}

/* Each usage error: exit status 2 and one message naming the flag. */
TEST(cli_flags_usage_errors) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"metrics --scores s.csv --bogus 1", "trmml metrics: unknown option '--bogus'"},
        {"metrics --bogus=1", "trmml metrics: unknown option '--bogus'"},
        {"zeroshot --image a.png --model", "trmml zeroshot: --model needs a value"},
        {"inspect m.pt --tensors=yes", "trmml inspect: --tensors takes no value"},
        {"synth --out /nonexistent/d --train x", "--train: expected an integer, got 'x'"},
        {"synth --out=/nonexistent/d --quality=101", "--quality: 101 is outside [1, 100]"},
        {"predict run a.png --top 0", "--top: 0 is outside [1, 1000]"},
        {"extract --resample nearest",
         "--resample: expected one of bicubic|bilinear, got 'nearest'"},
        {"embed --model m.pt --text hi --size 50", "--size: 50 is not a multiple of 32"},
        {"eval run1 run2", "trmml eval: unexpected argument 'run2'"},
        {"embed stray", "trmml embed: unexpected argument 'stray'"},
        {"tokenize --threads 0 hi", "--threads: 0 is outside [1, 1024]"},
        {"--threads", "trmml: --threads needs a value"},
        {"version --device gpu", "--device 'gpu': expected auto, cpu, cuda or cuda:N"},
    };
    static char out[1 << 14];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int rc = run_trmml(exe, cases[k].args, out, sizeof out);
        EXPECT(rc == 2 && strstr(out, cases[k].want) && strstr(out, "--help"),
               "trmml %s: exit %d, want '%s': %s", cases[k].args, rc, cases[k].want, out);
    }
}

/* --name=value is --name value; a value may begin with '-'; `--` ends the flags. */
TEST(cli_flags_value_forms) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    char dir[64] = "/tmp/trmml-flags-XXXXXX", args[512];
    CHECK(mkdtemp(dir), "mkdtemp");
    static char a[1 << 14], b[1 << 14];
    snprintf(args, sizeof args, "synth --out=%s/a --train=2 --test=1 --size=32 --seed=7", dir);
    int rca = run_trmml(exe, args, a, sizeof a);
    snprintf(args, sizeof args, "--threads 1 synth --out %s/b --train 2 --test 1 --size 32 "
             "--seed 7 --threads=1", dir);
    int rcb = run_trmml(exe, args, b, sizeof b);
    EXPECT(rca == 0 && strstr(a, "seed=7 train=2 test=1 size=32"), "synth with '=': %d %s", rca, a);
    EXPECT(rcb == 0 && strstr(b, "seed=7 train=2 test=1 size=32"), "synth: %d %s", rcb, b);
    /* The same bytes either way. */
    char pa[160], pb[160];
    snprintf(pa, sizeof pa, "%s/a/captions.txt", dir);
    snprintf(pb, sizeof pb, "%s/b/captions.txt", dir);
    FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
    EXPECT(fa && fb, "captions missing");
    if (fa && fb) {
        size_t na = fread(a, 1, sizeof a, fa), nb = fread(b, 1, sizeof b, fb);
        EXPECT(na > 0 && na == nb && memcmp(a, b, na) == 0, "captions differ");
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    /* A value that begins with '-' is a value, not a flag. */
    snprintf(args, sizeof args, "metrics --scores -x.csv --targets --y.csv");
    int rc = run_trmml(exe, args, a, sizeof a);
    EXPECT(rc == 1 && strstr(a, "-x.csv") && !strstr(a, "unknown option"), "metrics: %d %s", rc, a);
    test_remove_tree(dir);
}

/* The flags named "--x" in a --help text up to its options list. */
static bool listed(const char *options, const char *flag, size_t len) {
    for (const char *p = options; (p = strstr(p, "\n  --")); p++)
        if (strncmp(p + 5, flag, len) == 0 && (p[5 + len] == ' ' || p[5 + len] == '\n'))
            return true;
    return false;
}

/* --help of every command lists its flags, and every flag its usage text mentions is listed
 * (and so known to the parser: the list and the parser read the same tables). */
TEST(cli_flags_help_lists_every_flag) {
    char exe[4200];
    if (!test_trmml_path(exe, sizeof exe)) return;
    static char out[1 << 17], cmd[16384];
    snprintf(cmd, sizeof cmd,
             "for c in $('%s' --help | awk '/^  [a-z]/ {print $1}'); do echo \"@@ $c\"; '%s' $c "
             "--help 2>&1 || echo \"exit $?\"; done",
             exe, exe);
    int rc = test_run_capture(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "@@ zeroshot-eval") && !strstr(out, "exit "), "help: %.2000s",
           out);
    int commands = 0;
    for (char *c = strstr(out, "@@ "); c; commands++) {
        char *next = strstr(c + 3, "@@ ");
        if (next) next[-1] = 0;
        char name[64];
        sscanf(c + 3, "%63s", name);
        char *options = strstr(c, "\noptions:\n");
        char *global = strstr(c, "\nglobal options");
        EXPECT(global && listed(global, "device", 6) && listed(global, "threads", 7),
               "%s --help lacks the global options: %s", name, c);
        if (options) *options = 0; /* c: the usage text; options + 1: the list */
        /* The synopsis: lines "trmml ..." and their indented continuations. */
        for (const char *line = c; line;
             line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            if (strncmp(line, "trmml ", 6) != 0 && strncmp(line, "          ", 10) != 0) continue;
            const char *end = strchr(line, '\n') ? strchr(line, '\n') : line + strlen(line);
            for (const char *p = line; (p = strstr(p, "--")) && p < end; p += 2) {
                size_t len = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
                if (!len) continue;
                EXPECT((options && listed(options + 1, p + 2, len)) ||
                           (global && listed(global, p + 2, len)),
                       "trmml %s --help mentions --%.*s but does not list it", name, (int)len,
                       p + 2);
            }
        }
        if (options) *options = '\n';
        c = next;
    }
    EXPECT(commands >= 18, "%d commands", commands);
    /* Two commands in full: each flag of the table, in table order. */
    static const struct {
        const char *cmd, *flags;
    } want[] = {
        {"synth", "out seed train test size quality force device threads tf32"},
        {"embed", "model vocab image text dense size precision device threads tf32"},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        char args[64], got[512] = "";
        snprintf(args, sizeof args, "%s --help", want[k].cmd);
        rc = run_trmml(exe, args, out, sizeof out);
        for (const char *p = out; (p = strstr(p, "\n  --")); p++) {
            size_t len = strcspn(p + 5, " \n");
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", got[0] ? " " : "",
                     (int)len, p + 5);
        }
        EXPECT(rc == 0 && strcmp(got, want[k].flags) == 0, "trmml %s --help lists '%s', want '%s'",
               want[k].cmd, got, want[k].flags);
    }
}
