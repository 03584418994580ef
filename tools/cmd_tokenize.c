/* cmd_tokenize.c — `trmml tokenize`: CLIP BPE token ids of texts, one line per text.
 *
 * Each line holds the ids from SOT (49406) to EOT (49407) inclusive, space-separated, with no
 * padding and no context-length limit (a text longer than 75 tokens prints all its ids; the
 * model-facing batch helper is where truncation or the too-long error applies). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip/tokenizer.h"
#include "tools/command.h"
#include "tools/flags.h"

/* Print one text's line; returns false when the input is refused (message printed). */
static bool print_ids(const ClipTokenizer *tok, const char *text, size_t len, int32_t **ids,
                      int *cap) {
    int n = clip_tokenize_n(tok, text, len, *ids, *cap);
    if (n > *cap) {
        *cap = n;
        *ids = xrealloc(*ids, (size_t)n * sizeof **ids);
        n = clip_tokenize_n(tok, text, len, *ids, *cap);
    }
    if (n < 0) {
        fprintf(stderr, "trmml tokenize: %s\n", error_last());
        return false;
    }
    printf("%d", CLIP_SOT);
    for (int i = 0; i < n; i++) printf(" %d", (*ids)[i]);
    printf(" %d\n", CLIP_EOT);
    return true;
}

/* The whole file in memory (NUL-terminated); NULL with the error printed. */
static char *read_file(const char *path, size_t *len) {
    FILE *f;
    if (xfopen_regular(path, "text file", &f) != STATUS_OK) {
        fprintf(stderr, "trmml tokenize: --file: %s\n", error_last());
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = xrealloc(buf, cap + 1);
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "trmml tokenize: --file '%s': read error\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

typedef struct {
    ModelFlags model; /* --vocab only */
    const char *file;
} TokenizeFlags;

static const KeySpec TOKENIZE_FLAGS[] = {
    FLAG_ARG(TokenizeFlags, "file", file, "F", "read the texts from F, one per line"),
};

COMMAND(tokenize, "print CLIP BPE token ids (SOT ... EOT), one line per text",
        "trmml tokenize [--vocab F] TEXT... | --file F\n"
        "  TEXT: one or more texts, one output line each (after `--` a text may begin with --).\n"
        "Output: the ids from 49406 (start of text) to 49407 (end of text) inclusive, separated\n"
        "by spaces, no padding, no context-length limit.") {
    TokenizeFlags o = {0};
    const KeyGroup groups[] = {VOCAB_GROUP(&o.model), FLAGS_OF(TOKENIZE_FLAGS, &o)};
    FlagsParsed fp;
    int rc = flags_parse(groups, KEY_COUNT(groups), -1, argc, argv, &fp);
    if (rc != FLAGS_GO) return rc;
    if ((o.file != NULL) == (fp.npos > 0)) return tool_usage_error("give either texts or --file F");
    const char *vocab = o.model.vocab, *file = o.file;
    char **texts = argv;
    const int ntexts = fp.npos;

    const char *path = clip_vocab_path(vocab);
    ClipTokenizer *tok;
    if (clip_tokenizer_load(path, &tok) != STATUS_OK) {
        fprintf(stderr, "trmml tokenize: %s\n", error_last());
        if (!vocab)
            fprintf(stderr, "HINT: pass --vocab PATH/%s or set TRMML_VOCAB\n", CLIP_VOCAB_FILE);
        return 1;
    }

    int cap = 256;
    rc = 0;
    int32_t *ids = xmalloc((size_t)cap * sizeof *ids);
    if (file) {
        size_t len;
        char *buf = read_file(file, &len);
        if (!buf) rc = 1;
        /* One text per line; a final line without '\n' counts, an empty file has no texts. */
        for (size_t start = 0; buf && start < len && rc == 0;) {
            char *nl = memchr(buf + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - buf) : len;
            if (!print_ids(tok, buf + start, end - start, &ids, &cap)) rc = 1;
            start = end + 1;
        }
        free(buf);
    } else {
        for (int i = 0; i < ntexts && rc == 0; i++)
            if (!print_ids(tok, texts[i], strlen(texts[i]), &ids, &cap)) rc = 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "trmml tokenize: error writing the output\n");
        rc = 1;
    }
    free(ids);
    clip_tokenizer_free(tok);
    return rc;
}
