/* tokenizer.h — OpenAI CLIP's byte-level BPE tokenizer (SPEC §1.8).
 *
 * Gives the same ids as the reference `SimpleTokenizer.encode` for any input, with one documented
 * exception: the reference first runs a text-repair library (ftfy) that this tokenizer leaves out
 * (SPEC DECISION 2). Everything else is reproduced: HTML unescaping (twice, as html.unescape),
 * whitespace collapsing and stripping, Unicode lower-casing (str.lower, final sigma included), the
 * reference's case-insensitive pre-tokenisation pattern, and the BPE merges. Invalid UTF-8 is
 * decoded as Python's bytes.decode("utf-8", errors="replace") would (each maximal invalid
 * subsequence becomes U+FFFD). docs/clip-tokenizer.md walks through every step.
 *
 * The vocabulary file (bpe_simple_vocab_16e6.txt.gz) is never part of the repository: it is read
 * from --vocab PATH, $TRMML_VOCAB or ../shared/clip/ (clip_vocab_path). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

#define CLIP_SOT 49406            /* <|startoftext|> */
#define CLIP_EOT 49407            /* <|endoftext|>: also the largest id */
#define CLIP_VOCAB_SIZE 49408
#define CLIP_NUM_MERGES 48894     /* merge lines used (the file holds more) */
#define CLIP_CONTEXT_LENGTH 77
#define CLIP_VOCAB_FILE "bpe_simple_vocab_16e6.txt.gz"
#define CLIP_MAX_INPUT_BYTES (16u << 20) /* longer inputs are refused (a caption is ~100 bytes) */

typedef struct ClipTokenizer ClipTokenizer;

/* The vocabulary path to use: `flag_value` if non-empty, else $TRMML_VOCAB if non-empty, else
 * ../shared/clip/bpe_simple_vocab_16e6.txt.gz if it exists relative to the current directory,
 * else the same relative to the repository holding the running executable (its directory or an
 * ancestor up to three levels). When none exists, returns the current-directory path, so that
 * the load error names it. The result is a static buffer or `flag_value`/the environment string. */
const char *clip_vocab_path(const char *flag_value);

/* Read the gzip'd merges file at `path` and build the tokenizer (*out owned by the caller, free
 * with clip_tokenizer_free). STATUS_ERR_IO when unreadable, STATUS_ERR_FORMAT when not gzip,
 * truncated or malformed; the message names the path (and the line for a bad merge line). */
Status clip_tokenizer_load(const char *path, ClipTokenizer **out);
/* The same from the file's bytes in memory; `name` is used in error messages. */
Status clip_tokenizer_load_mem(const void *gz, size_t size, const char *name, ClipTokenizer **out);
void clip_tokenizer_free(ClipTokenizer *tok);

/* Encode NUL-terminated text: writes the first min(count, max_ids) ids (no SOT/EOT) to `ids` and
 * returns count, the full number of ids (like snprintf: count > max_ids means `ids` holds a
 * prefix). Negative Status, with error_last() set, for inputs over CLIP_MAX_INPUT_BYTES. */
int clip_tokenize(const ClipTokenizer *tok, const char *utf8, int32_t *ids, int max_ids);
/* The same for `len` bytes that may contain NUL bytes (U+0000 is an ordinary symbol). */
int clip_tokenize_n(const ClipTokenizer *tok, const char *bytes, size_t len, int32_t *ids,
                    int max_ids);

/* The cleaned text the pre-tokeniser sees (UTF-8, NUL-terminated, caller frees with free()):
 * invalid UTF-8 replaced, HTML-unescaped twice, whitespace collapsed and stripped, lower-cased.
 * For tests and debugging. NULL (error_last set) for inputs over CLIP_MAX_INPUT_BYTES. */
char *clip_clean_text(const char *bytes, size_t len);

/* Padded batch: row i of `tokens` (n, context_length), int64, is SOT, the ids of texts[i], EOT,
 * then zeros; eot_pos[i] (may be NULL) is the EOT column, i.e. the argmax of the row. A text
 * whose ids do not fit (count + 2 > context_length) is an error (STATUS_ERR_USAGE naming the text
 * index and its length), as in the reference, unless `truncate`: then the row keeps SOT and the
 * first context_length - 2 ids and ends with EOT (the reference's truncate=True). */
Status clip_tokenize_batch(const ClipTokenizer *tok, const char *const *texts, int n,
                           int context_length, bool truncate, int64_t *tokens, int64_t *eot_pos);
/* clip_tokenize_batch into a new int64 tensor (n, 77) taken from the current arena, on its
 * device. On error *out is NULL. */
Status clip_tokenize_tensor(const ClipTokenizer *tok, const char *const *texts, int n,
                            bool truncate, Tensor **out, int64_t *eot_pos);
