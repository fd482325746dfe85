/* tokenizer.h - Hugging Face tokenizer.json (byte-level BPE) in C.
 *
 * Loads the tokenizer of a model directory (tokenizer.json, and
 * tokenizer_config.json for BOS/EOS), encodes text to ids and decodes ids to
 * text exactly as Hugging Face's `tokenizers` does for Qwen2/Qwen3 and
 * Llama-3 style tokenizers:
 *   added/special tokens split off first (leftmost-longest),
 *   normalizer (NFC, or none),
 *   pre-tokenizer (Split regex with Unicode categories via PCRE2, ByteLevel),
 *   BPE merges by rank, post-processor template (BOS) when asked.
 *
 *     loom_tokenizer *tok;
 *     if (loom_tokenizer_load("/path/to/Qwen3-0.6B", &tok) != LOOM_OK)
 *         fprintf(stderr, "%s\n", loom_last_error());
 *     int32_t *ids; int32_t n;
 *     loom_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n);
 *     loom_detok *dt;
 *     loom_detok_new(tok, true, &dt);
 *     for each generated id:
 *         const char *s; size_t len;
 *         loom_detok_push(dt, id, &s, &len);   // complete UTF-8 only
 *         fwrite(s, 1, len, stdout);
 *     loom_detok_flush(dt, &s, &len);          // what was held back
 *     loom_detok_free(dt); free(ids); loom_tokenizer_free(tok);
 *
 * A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once (each loom_detok belongs to one thread). */
#ifndef LOOM_TOKENIZER_H
#define LOOM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom.h"

typedef struct loom_tokenizer loom_tokenizer;
typedef struct loom_detok loom_detok;

/* Loads <model_dir>/tokenizer.json (required) and
 * <model_dir>/tokenizer_config.json (optional: bos_token, eos_token,
 * add_bos_token). *out is set only on success; free with loom_tokenizer_free.
 * Errors: LOOM_ERR_IO (missing file), LOOM_ERR_FORMAT (malformed JSON, with
 * line:column, or inconsistent vocab/merges), LOOM_ERR_UNSUPPORTED (model
 * type other than BPE, unknown pre-tokenizer/normalizer/decoder). */
loom_status loom_tokenizer_load(const char *model_dir, loom_tokenizer **out);

/* Same, from an explicit tokenizer.json path; config_path may be NULL. */
loom_status loom_tokenizer_load_files(const char *json_path, const char *config_path,
                                      loom_tokenizer **out);

void loom_tokenizer_free(loom_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. add_special: apply the post-processor
 * (Llama-3: prepend <|begin_of_text|>), or prepend the BOS of
 * tokenizer_config.json when it sets add_bos_token; Qwen adds nothing. Like
 * `tokenizer.encode(text, add_special_tokens=add_special).ids`.
 * *ids is malloc'ed (caller frees), *n its length; both untouched on failure.
 * Errors: LOOM_ERR_INVALID_ARGUMENT for invalid UTF-8 (names the byte offset). */
loom_status loom_tokenizer_encode(const loom_tokenizer *tok, const char *text, size_t len,
                                  bool add_special, int32_t **ids, int32_t *n);

/* Decodes ids to UTF-8 text like `tokenizer.decode(ids,
 * skip_special_tokens=skip_special)`: bytes that are not valid UTF-8 become
 * U+FFFD (one per maximal invalid subsequence). *text is malloc'ed and
 * NUL-terminated, *len excludes the NUL. An id that names no token (a hole
 * in the vocabulary, or past its end: a model's embedding is often padded)
 * is skipped, as tokenizers does. Errors: LOOM_ERR_LIMIT for a negative id. */
loom_status loom_tokenizer_decode(const loom_tokenizer *tok, const int32_t *ids, int32_t n,
                                  bool skip_special, char **text, size_t *len);

/* Streaming decode: push one id at a time; *out and *out_len receive the text
 * that became complete (possibly empty), valid until the next call on dt.
 * A character whose bytes are split across tokens is held back until its
 * last byte arrives; the concatenation of all pushes and the final flush is
 * exactly loom_tokenizer_decode of the whole sequence. */
loom_status loom_detok_new(const loom_tokenizer *tok, bool skip_special, loom_detok **out);
loom_status loom_detok_push(loom_detok *dt, int32_t id, const char **out, size_t *out_len);
/* Emits what is still held back (as U+FFFD: it can no longer complete) and
 * resets dt for a new sequence. */
loom_status loom_detok_flush(loom_detok *dt, const char **out, size_t *out_len);
void loom_detok_free(loom_detok *dt);

/* Special ids, or -1 when the tokenizer defines none. eos: tokenizer_config
 * eos_token (the model's generation_config.json may name more stop ids). */
int32_t loom_tokenizer_bos(const loom_tokenizer *tok);
int32_t loom_tokenizer_eos(const loom_tokenizer *tok);
/* Number of ids (max id + 1, vocabulary and added tokens). */
int32_t loom_tokenizer_vocab_size(const loom_tokenizer *tok);
/* Id of an exact token string (vocab form, or added token content); -1 if none. */
int32_t loom_tokenizer_token_id(const loom_tokenizer *tok, const char *token);
/* Whether id is an added token marked special (e.g. <|im_end|>). */
bool loom_tokenizer_is_special(const loom_tokenizer *tok, int32_t id);

#endif
