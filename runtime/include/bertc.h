/* bertc runtime: the public C API of a compiled bertc artifact.
 *
 *   bertc_model *m;
 *   if (bertc_open("minilm.bertc", 2, &m) != BERTC_OK) { puts(bertc_open_error()); return 1; }
 *   bertc_run(m, ids, mask, types, batch, seq);   // int64 [batch*seq]; mask/types may be NULL
 *   const float *h = bertc_output(m, 0, shape, &rank);
 *   bertc_close(m);
 *
 * One arena is allocated at open; bertc_run never calls malloc. Weights are mapped read-only.
 * Every failure returns a status code and leaves a message in bertc_last_error(m).
 *
 * Threads. A bertc_model runs one call at a time: its runs share one arena (and one thread pool, or
 * one Vulkan command buffer), so bertc_run holds a per-model mutex, and concurrent bertc_run calls on
 * one model wait for each other instead of overwriting each other's activations. What a run leaves
 * behind (bertc_output's data, bertc_last_error, the op timers) belongs to the model, not to the
 * caller, and the next run on any thread replaces it: callers that share a model across threads hold
 * their own lock across bertc_run and the reads of its outputs, or open one model per thread (the
 * weights are mapped, so a second model costs its arena and pool, not another copy of the weights).
 * Different models are independent: any number of threads may each run their own. bertc_close waits
 * for a run already inside bertc_run to finish, but must not race any other call on the same model:
 * a call that starts during or after bertc_close uses freed memory. bertc_open and
 * bertc_open_error are safe from any thread (the open error is per thread).
 */
#ifndef BERTC_H
#define BERTC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  BERTC_OK = 0,
  BERTC_ERR_IO = 1,       /* a file is missing or unreadable */
  BERTC_ERR_FORMAT = 2,   /* manifest or file size does not match this library */
  BERTC_ERR_CHECKSUM = 3, /* weights.bin differs from what was compiled */
  BERTC_ERR_INPUT = 4,    /* token id, token type, mask value or shape out of range */
  BERTC_ERR_MEMORY = 5,   /* allocation at open failed */
  BERTC_ERR_ARGUMENT = 6, /* NULL model, bad thread count, bad output index */
  BERTC_ERR_DEVICE = 7    /* Vulkan artifacts: no libvulkan, no device, or the device lacks a feature */
} bertc_status;

typedef struct bertc_model bertc_model;

bertc_status bertc_open(const char *artifact_dir, int threads, bertc_model **out);
const char *bertc_open_error(void); /* message of the last failed bertc_open in this thread */

/* input_ids, attention_mask, token_type_ids: int64 [batch * seq], row-major, 1 <= seq <=
 * bertc_seq_len(m). An artifact compiled with --max-seq-len runs at seq itself, every op sized for it
 * (no padded work), and its per-token outputs have seq rows; one compiled with --seq-len pads a shorter
 * input to its length and masks the rest. NULL mask = all ones, NULL token types = zeros. */
bertc_status bertc_run(bertc_model *m, const int64_t *input_ids, const int64_t *attention_mask,
                       const int64_t *token_type_ids, int64_t batch, int64_t seq);

/* Text in. An artifact compiled from a model folder with a tokenizer bertc reads (WordPiece so far; its
 * report.json says) carries tokenizer.bin, and takes UTF-8 text, tokenized as the Hugging Face tokenizers
 * pipeline it came from does, id for id.
 *
 * bertc_tokenize: text[0..len) (len < 0: up to its NUL) as [CLS] tokens [SEP] into ids and types (room for
 * max_tokens >= 2 each), the text's tokens cut to fit; *count gets the number written (at least 2). To learn
 * whether bertc_run_text would cut a text, give bertc_text_max_tokens(m) + 1 and compare. It reads only the
 * tokenizer: any thread may call it at any time, during runs too. On failure (BERTC_ERR_INPUT: not UTF-8;
 * BERTC_ERR_ARGUMENT: no tokenizer) the message is bertc_text_error() of the calling thread.
 *
 * bertc_run_text: bertc_run on n == bertc_batch(m) NUL-terminated texts, each tokenized and cut to the
 * compiled length (or to a sentence-transformers model's max_seq_length, when shorter), the batch padded to
 * its longest. Errors as bertc_run's, in bertc_last_error(m). */
int bertc_has_tokenizer(const bertc_model *m);
/* The most tokens bertc_run_text keeps of a text: the compiled length, or a sentence-transformers model's
 * max_seq_length when shorter; 0 without a tokenizer. */
int64_t bertc_text_max_tokens(const bertc_model *m);
bertc_status bertc_tokenize(const bertc_model *m, const char *utf8, int64_t len, int64_t max_tokens, int64_t *ids,
                            int64_t *types, int64_t *count);
const char *bertc_text_error(void);
bertc_status bertc_run_text(bertc_model *m, const char *const *texts, int64_t n);

/* Task heads. An artifact compiled from a sequence classifier or a sentence-transformers folder carries
 * head.bin, and each run ends with the head, on the CPU: its outputs follow the encoder's, [batch, width]:
 * "logits" and "probabilities" (softmax, or sigmoid for a multi-label model) of a classifier, whose label
 * names bertc_label gives (index 0.., NULL past the last); "sentence_embedding" of a sentence-transformers
 * model, pooled over the attention mask as its Pooling module does, through its Dense layers, L2-normalized
 * when it has a Normalize module. */
const char *bertc_label(const bertc_model *m, int index);

int bertc_num_outputs(const bertc_model *m);
const char *bertc_output_name(const bertc_model *m, int index);
/* shape receives up to 4 dims; returns NULL for a bad index. The data stays valid until the next
 * bertc_run on this model from any thread, or bertc_close: read it under the lock that guards the run.
 * A --max-seq-len artifact's per-token output is [batch, seq, ...] at the last run's seq (contiguous);
 * a --seq-len artifact's is at the compiled length whatever the input's. */
const float *bertc_output(const bertc_model *m, int index, int64_t shape[4], int *rank);

/* The kernels this program calls, and the implementation each resolved to at link time ("ref",
 * "neon", "avx2"): index 0.. until NULL. */
const char *bertc_kernel(const bertc_model *m, int index, const char **impl);

/* Per-op times: every kernel call of a run is timed (a monotonic clock around the call, all threads
 * included), summed since open or the last bertc_reset_op_times, over bertc_timed_runs(m) runs.
 * Op index 0..bertc_num_ops(m)-1 in execution order; a bad index gives NULL or -1. */
int bertc_num_ops(const bertc_model *m);
const char *bertc_op_name(const bertc_model *m, int index);   /* op and result shape: "bertc.linear [1, 128, 1536]" */
const char *bertc_op_kernel(const bertc_model *m, int index); /* the kernel it calls: "bertc_linear_packed" */
double bertc_op_seconds(const bertc_model *m, int index);
int64_t bertc_timed_runs(const bertc_model *m);
void bertc_reset_op_times(bertc_model *m);

/* Where the program runs: "cpu", or "vulkan: DEVICE NAME" for a Vulkan artifact. */
const char *bertc_device(const bertc_model *m);

int64_t bertc_batch(const bertc_model *m);
/* The compiled length: of a --seq-len artifact the one length it runs (shorter inputs padded to it), of
 * a --max-seq-len artifact the longest input it takes (each runs at its own length). */
int64_t bertc_seq_len(const bertc_model *m);
int bertc_threads(const bertc_model *m);
/* What one parallel call costs on m's threads now beyond its share of the work, in microseconds: over `calls`
 * (1..1000000) calls that hand each thread a row of 0.2 us, less that work run on one thread divided among them
 * (the median of up to 16 batches; waking the spinning workers, the barrier, the rows crossing cores), as
 * every op split across threads pays once. It moves with the machine (on a 2-vCPU cloud EPYC 0.3 us in one hour,
 * 1.2 in another), which is why bertc_run --bench reports it beside its timings. 0 for a model on one thread, -1 where the backend
 * splits no op across CPU threads (Vulkan) or for a bad argument. Waits for a run in progress. */
double bertc_handoff_us(bertc_model *m, int calls);
const char *bertc_last_error(const bertc_model *m);
/* Waits for a run in progress, then frees the model. No other call on m may start during or after it. */
void bertc_close(bertc_model *m);

#ifdef __cplusplus
}
#endif
#endif
