/* bertc_run: the on-device tool. Runs an artifact on text or on int64 input files, or benchmarks it,
 * and prints JSON on stdout.
 *
 *   bertc_run ART.bertc --text "a gripping film" [--text ...]      (the artifact's tokenizer.bin)
 *   bertc_run ART.bertc --input-ids ids.bin [--attention-mask m.bin] [--token-type-ids t.bin] [--seq N]
 *             ... [--threads T] [--cores LIST] [--out DIR] [--bench RUNS] [--warmup N] [--ops]
 *
 * --text, once per row of the artifact's batch, is tokenized on the device (no Python anywhere); the JSON
 * then has "texts": each one's token ids and whether it was cut to the compiled length, and --bench times
 * text in to outputs out, with "tokenize_ms": the median time to tokenize all the texts alone.
 * --cores pins the process and its pool (e.g. 4-7, the big cores of many phones; or 0,2,4-5)
 * with sched_setaffinity before the pool starts, since big.LITTLE placement decides latency.
 * Input files are raw little-endian int64, batch*seq values. --out writes NAME.bin (float32)
 * per output. --bench also reports "ops": each op's name, kernel, mean and median ms over the timed
 * runs (warm-up excluded), and "quiet_ms": the median of the quietest stretch of runs (quiet_window), of the whole
 * run and of each op, which `bertc calibrate` fits the cost model to; --ops adds them to a plain run (the first
 * run's times). Exit status: 0 on success, else the bertc_status code. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <time.h>

#include "../include/bertc.h"

static int64_t *read_ids(const char *path, int64_t *count) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "bertc_run: cannot open %s\n", path); exit(1); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n <= 0 || n % 8) { fprintf(stderr, "bertc_run: %s is not int64 data (%ld bytes)\n", path, n); exit(1); }
  int64_t *v = malloc((size_t)n);
  if (!v || fread(v, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "bertc_run: cannot read %s\n", path); exit(1); }
  fclose(f);
  *count = n / 8;
  return v;
}

/* The value of `flag` as a whole number in lo..hi, all of `text` (atoi read "2x" as 2 and wrapped
 * 3000000000 round); 0 with a message naming the flag, the value and the range otherwise. */
static int parse_int(const char *flag, const char *text, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
    fprintf(stderr, "bertc_run: %s %s is not a whole number in %lld..%lld\n", flag, text, lo, hi);
    return 0;
  }
  *out = v;
  return 1;
}

/* "4-7" or "0,2,4-5" -> affinity mask; 0 when the list is malformed or names no core. */
static int parse_cores(const char *list, cpu_set_t *set) {
  CPU_ZERO(set);
  const char *s = list;
  while (*s) {
    char *end;
    long lo = strtol(s, &end, 10), hi = lo;
    if (end == s || lo < 0) return 0;
    if (*end == '-') {
      s = end + 1;
      hi = strtol(s, &end, 10);
      if (end == s || hi < lo) return 0;
    }
    if (hi >= CPU_SETSIZE) return 0;
    for (long c = lo; c <= hi; c++) CPU_SET((int)c, set);
    if (*end != ',' && *end != '\0') return 0;
    s = *end ? end + 1 : end;
  }
  return CPU_COUNT(set) > 0;
}

#define MAX_RUNS 100000 /* --bench, --warmup: a timed run keeps a time per op */

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* A shared VM's host slows a run by 20-70% in stretches of 10-100 ms (2-core Zen 4 EPYC: a 40 us model ran
 * at 40 us and at 48-50 us in alternating stretches within one call), so one call's median can fall between the
 * machine's speeds. The "quiet" window: of the runs cut, in order, into windows of QUIET_WINDOW_MS (at least
 * QUIET_MIN_RUNS runs), the one of the lowest median. Returns its first run; *w: its runs (all of them where
 * fewer than two windows fit). `times` is in run order and is not changed. */
#define QUIET_WINDOW_MS 10.0
#define QUIET_MIN_RUNS 3
static int quiet_window(const double *times, int n, double median, int *w, double *quiet_ms) {
  int size = (int)(QUIET_WINDOW_MS / (median > 1e-6 ? median : 1e-6)) + 1;
  if (size < QUIET_MIN_RUNS) size = QUIET_MIN_RUNS;
  if (size > n / 2) size = n;
  double *buf = malloc(sizeof(double) * (size_t)size);
  int best = 0;
  *w = size;
  *quiet_ms = median;
  if (!buf) return 0;
  for (int start = 0; start + size <= n; start += size) {
    memcpy(buf, times + start, sizeof(double) * (size_t)size);
    qsort(buf, (size_t)size, sizeof(double), cmp_double);
    if (start == 0 || buf[size / 2] < *quiet_ms) { *quiet_ms = buf[size / 2]; best = start; }
  }
  free(buf);
  return best;
}

/* ", "outputs": [...]" (names and shapes), each written to DIR/NAME.bin with --out; 1 when a write fails */
static int print_outputs(bertc_model *m, const char *out_dir) {
  printf(", \"outputs\": [");
  for (int i = 0; i < bertc_num_outputs(m); i++) {
    int64_t shape[4];
    int rank;
    const float *data = bertc_output(m, i, shape, &rank);
    int64_t n = 1;
    printf("%s{\"name\": \"%s\", \"shape\": [", i ? ", " : "", bertc_output_name(m, i));
    for (int d = 0; d < rank; d++) { printf("%s%lld", d ? ", " : "", (long long)shape[d]); n *= shape[d]; }
    printf("]}");
    if (out_dir) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s.bin", out_dir, bertc_output_name(m, i));
      FILE *f = fopen(path, "wb");
      if (!f || fwrite(data, sizeof(float), (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "bertc_run: cannot write %s\n", path);
        return 1;
      }
      fclose(f);
    }
  }
  printf("]");
  return 0;
}

/* --text: tokenize and run on the device; --bench times text in to outputs out */
static int run_texts(bertc_model *m, const char **texts, int n_texts, int bench, int warmup, const char *out_dir,
                     double open_ms, int threads, const char *cores) {
  const int64_t S = bertc_text_max_tokens(m) ? bertc_text_max_tokens(m) : bertc_seq_len(m);
  /* each text's ids as it runs, [n_texts][S + 1], and their counts: one more than fits, so that a text cut to
   * the length kept says so, then cut as bertc_run_text cuts (its first tokens, then its [SEP]); one more row
   * for --bench's tokenizing */
  int64_t *ids = malloc(sizeof *ids * (size_t)((n_texts + 1) * (S + 1))), *types = malloc(sizeof *types * (size_t)(S + 1));
  int64_t *counts = malloc(sizeof *counts * (size_t)n_texts), count;
  if (!ids || !types || !counts) { fprintf(stderr, "bertc_run: out of memory\n"); return 5; }
  double t0 = now_ms();
  bertc_status st = bertc_run_text(m, texts, n_texts);
  double first_ms = now_ms() - t0;
  if (st != BERTC_OK) { fprintf(stderr, "bertc_run: %s\n", bertc_last_error(m)); return (int)st; }
  printf("{\"device_name\": \"%s\", \"open_ms\": %.3f, \"first_run_ms\": %.3f, \"threads\": %d, \"cores\": \"%s\", "
         "\"texts\": [", bertc_device(m), open_ms, first_ms, threads, cores ? cores : "all");
  for (int b = 0; b < n_texts; b++) {
    int64_t *row = ids + b * (S + 1);
    bertc_tokenize(m, texts[b], -1, S + 1, row, types, &counts[b]);
    const int cut = counts[b] > S;
    if (cut) {
      row[S - 1] = row[counts[b] - 1];
      counts[b] = S;
    }
    printf("%s{\"cut\": %s, \"ids\": [", b ? ", " : "", cut ? "true" : "false");
    for (int64_t i = 0; i < counts[b]; i++) printf("%s%lld", i ? ", " : "", (long long)row[i]);
    printf("]}");
  }
  printf("]");
  if (bench > 0) {
    double *times = malloc(sizeof(double) * (size_t)bench * 2), sum = 0;
    if (!times) { fprintf(stderr, "bertc_run: out of memory for %d run times\n", bench); return 5; }
    for (int i = 0; i < warmup; i++) bertc_run_text(m, texts, n_texts);
    for (int i = 0; i < bench; i++) {
      t0 = now_ms();
      bertc_run_text(m, texts, n_texts);
      times[i] = now_ms() - t0;
      sum += times[i];
      t0 = now_ms();
      for (int b = 0; b < n_texts; b++) bertc_tokenize(m, texts[b], -1, S, ids + n_texts * (S + 1), types, &count);
      times[bench + i] = now_ms() - t0;
    }
    qsort(times, (size_t)bench, sizeof(double), cmp_double);
    qsort(times + bench, (size_t)bench, sizeof(double), cmp_double);
    printf(", \"runs\": %d, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"min_ms\": %.3f, \"mean_ms\": %.3f, "
           "\"tokenize_ms\": %.4f", bench, times[bench / 2], times[(int)(bench * 0.9)], times[0], sum / bench,
           times[bench + bench / 2]);
    free(times);
  }
  if (bertc_label(m, 0)) { /* a classifier: each text's most probable label, or each token's */
    printf(", \"predictions\": [");
    for (int i = 0; i < bertc_num_outputs(m); i++) {
      if (strcmp(bertc_output_name(m, i), "probabilities")) continue;
      int64_t shape[4];
      int rank;
      const float *p = bertc_output(m, i, shape, &rank);
      const int64_t rows = rank == 3 ? shape[1] : 1, W = shape[rank - 1];
      for (int64_t b = 0; b < n_texts; b++) {
        printf("%s%s", b ? ", " : "", rank == 3 ? "[" : "");
        for (int64_t r = 0; r < (rank == 3 ? counts[b] : rows); r++) { /* a token classifier: the text's tokens */
          const float *row = p + (b * rows + r) * W;
          int64_t top = 0;
          for (int64_t j = 1; j < W; j++) if (row[j] > row[top]) top = j;
          printf("%s{", r ? ", " : "");
          if (rank == 3) printf("\"id\": %lld, ", (long long)ids[b * (S + 1) + r]);
          printf("\"label\": \"");
          for (const char *c = bertc_label(m, (int)top); *c; c++) /* JSON-escaped: a label is any string */
            if (*c == '"' || *c == '\\') printf("\\%c", *c);
            else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
            else putchar(*c);
          printf("\", \"index\": %lld, \"probability\": %.6f}", (long long)top, row[top]);
        }
        printf("%s", rank == 3 ? "]" : "");
      }
    }
    printf("]");
  }
  int failed = print_outputs(m, out_dir);
  printf("}\n");
  bertc_close(m);
  free(ids);
  free(types);
  free(counts);
  return failed;
}

int main(int argc, char **argv) {
  const char *art = NULL, *ids_path = NULL, *mask_path = NULL, *types_path = NULL, *out_dir = NULL, *cores = NULL;
  int threads = 1, bench = 0, warmup = 5, ops = 0;
  int64_t seq = 0;
  long long n;
  const char *texts[256];
  int n_texts = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      puts("usage: bertc_run ART.bertc --text \"a gripping film\" [--text ...]\n"
           "       bertc_run ART.bertc --input-ids ids.bin [--attention-mask m.bin] [--token-type-ids t.bin] [--seq N]\n"
           "                 ... [--threads T] [--cores LIST] [--out DIR] [--bench RUNS] [--warmup N] [--ops]\n"
           "--text (once per row of the batch) is tokenized by the artifact's tokenizer.bin; input files are raw\n"
           "int64 files of batch*seq values. Prints JSON. --bench reports per-op mean times (\"ops\") too, and what\n"
           "a parallel call cost just after the runs (\"handoff_us\", 0 on one thread); --ops reports them for a\n"
           "single run.");
      return 0;
    }
    if (!strcmp(a, "--ops")) { ops = 1; continue; }
    if (a[0] == '-' && !v) { fprintf(stderr, "bertc_run: %s needs a value\n", a); return 6; }
    if (!strcmp(a, "--input-ids")) ids_path = argv[++i];
    else if (!strcmp(a, "--attention-mask")) mask_path = argv[++i];
    else if (!strcmp(a, "--token-type-ids")) types_path = argv[++i];
    else if (!strcmp(a, "--out")) out_dir = argv[++i];
    else if (!strcmp(a, "--text")) {
      if (n_texts == 256) { fprintf(stderr, "bertc_run: more than 256 --text\n"); return 6; }
      texts[n_texts++] = argv[++i];
    }
    else if (!strcmp(a, "--cores")) cores = argv[++i];
    /* --threads: the range bertc_open takes; --seq: bertc_run checks it against the compiled length */
    else if (!strcmp(a, "--threads")) { if (!parse_int(a, argv[++i], 1, 256, &n)) return 6; threads = (int)n; }
    else if (!strcmp(a, "--bench")) { if (!parse_int(a, argv[++i], 0, MAX_RUNS, &n)) return 6; bench = (int)n; }
    else if (!strcmp(a, "--warmup")) { if (!parse_int(a, argv[++i], 0, MAX_RUNS, &n)) return 6; warmup = (int)n; }
    else if (!strcmp(a, "--seq")) { if (!parse_int(a, argv[++i], 1, INT32_MAX, &n)) return 6; seq = n; }
    else if (a[0] != '-' && !art) art = a;
    else { fprintf(stderr, "bertc_run: unknown argument %s (try --help)\n", a); return 6; }
  }
  if (!art || (!ids_path) == (!n_texts)) {
    fprintf(stderr, "bertc_run: need ART.bertc and either --text or --input-ids (try --help)\n");
    return 6;
  }
  if (n_texts && (mask_path || types_path || seq)) {
    fprintf(stderr, "bertc_run: --attention-mask, --token-type-ids and --seq go with --input-ids; --text makes its own\n");
    return 6;
  }
  if (cores) {
    cpu_set_t set;
    if (!parse_cores(cores, &set)) { fprintf(stderr, "bertc_run: --cores %s is not a core list like 4-7 or 0,2\n", cores); return 6; }
    if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("bertc_run: --cores"); return 6; }
  }
  double t0 = now_ms();
  bertc_model *m;
  bertc_status st = bertc_open(art, threads, &m);
  if (st != BERTC_OK) { fprintf(stderr, "bertc_run: %s\n", bertc_open_error()); return (int)st; }
  double open_ms = now_ms() - t0;
  int64_t n_ids = 0, n_mask = 0, n_types = 0, batch = bertc_batch(m);
  int64_t *ids = NULL, *mask = NULL, *types = NULL;
  if (n_texts) return run_texts(m, texts, n_texts, bench, warmup, out_dir, open_ms, threads, cores);
  ids = read_ids(ids_path, &n_ids);
  mask = mask_path ? read_ids(mask_path, &n_mask) : NULL;
  types = types_path ? read_ids(types_path, &n_types) : NULL;
  if (!seq) seq = n_ids / batch;
  if (n_ids != batch * seq || (mask && n_mask != n_ids) || (types && n_types != n_ids)) {
    fprintf(stderr, "bertc_run: inputs hold %lld/%lld/%lld values, expected batch %lld x seq %lld\n",
            (long long)n_ids, (long long)n_mask, (long long)n_types, (long long)batch, (long long)seq);
    return 4;
  }
  t0 = now_ms();
  st = bertc_run(m, ids, mask, types, batch, seq);
  double first_ms = now_ms() - t0;
  if (st != BERTC_OK) { fprintf(stderr, "bertc_run: %s\n", bertc_last_error(m)); return (int)st; }
  printf("{\"device_name\": \"%s\", \"open_ms\": %.3f, \"first_run_ms\": %.3f, \"threads\": %d, \"cores\": \"%s\"",
         bertc_device(m), open_ms, first_ms, threads, cores ? cores : "all");
  int n_ops = bertc_num_ops(m), timed = bench > 0 ? bench : 1;
  int quiet_start = 0, quiet_runs = 1;
  double quiet_ms = 0;
  double *op_ms = malloc(sizeof(double) * ((size_t)n_ops * (size_t)timed + 1)); /* [op][timed run] */
  if (!op_ms) { fprintf(stderr, "bertc_run: out of memory\n"); return 5; }
  for (int k = 0; k < n_ops; k++) op_ms[k] = bertc_op_seconds(m, k) * 1e3; /* the first run, for --ops */
  if (bench > 0) {
    double *times = malloc(sizeof(double) * (size_t)bench), sum = 0;
    if (!times) { fprintf(stderr, "bertc_run: out of memory for %d run times\n", bench); return 5; }
    for (int i = 0; i < warmup; i++) bertc_run(m, ids, mask, types, batch, seq);
    for (int i = 0; i < bench; i++) {
      bertc_reset_op_times(m);
      t0 = now_ms();
      bertc_run(m, ids, mask, types, batch, seq);
      times[i] = now_ms() - t0;
      sum += times[i];
      for (int k = 0; k < n_ops; k++) op_ms[k * bench + i] = bertc_op_seconds(m, k) * 1e3;
    }
    double *order = malloc(sizeof(double) * (size_t)bench);
    if (!order) { fprintf(stderr, "bertc_run: out of memory for %d run times\n", bench); return 5; }
    memcpy(order, times, sizeof(double) * (size_t)bench);
    qsort(times, (size_t)bench, sizeof(double), cmp_double);
    printf(", \"runs\": %d, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"min_ms\": %.3f, \"mean_ms\": %.3f", bench,
           times[bench / 2], times[(int)(bench * 0.9)], times[0], sum / bench);
    quiet_start = quiet_window(order, bench, times[bench / 2], &quiet_runs, &quiet_ms);
    printf(", \"quiet_ms\": %.5f, \"quiet_runs\": %d", quiet_ms, quiet_runs);
    free(order);
    const double handoff = bertc_handoff_us(m, 2000); /* the machine's cost of a parallel call, right after */
    if (handoff >= 0) printf(", \"handoff_us\": %.4f", handoff);
    free(times);
    ops = 1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf(", \"peak_rss_kb\": %ld, \"kernels\": {", ru.ru_maxrss);
  const char *impl, *kernel;
  for (int i = 0; (kernel = bertc_kernel(m, i, &impl)); i++) printf("%s\"%s\": \"%s\"", i ? ", " : "", kernel, impl);
  printf("}");
  if (ops) { /* per op: the mean over the timed runs, and the median, which a preempted run does not move */
    printf(", \"ops\": [");
    for (int k = 0; k < n_ops; k++) {
      double *row = op_ms + (size_t)k * (size_t)timed, mean = 0;
      for (int i = 0; i < timed; i++) mean += row[i] / timed;
      printf("%s{\"name\": \"%s\", \"kernel\": \"%s\", \"ms\": %.5f", k ? ", " : "", bertc_op_name(m, k),
             bertc_op_kernel(m, k), mean);
      if (bench > 0) { /* the op's median over the quiet window's runs (quiet_window), before row is sorted */
        qsort(row + quiet_start, (size_t)quiet_runs, sizeof(double), cmp_double);
        printf(", \"quiet_ms\": %.5f", row[quiet_start + quiet_runs / 2]);
      }
      qsort(row, (size_t)timed, sizeof(double), cmp_double);
      printf(", \"p50_ms\": %.5f}", row[timed / 2]);
    }
    printf("]");
  }
  free(op_ms);
  if (print_outputs(m, out_dir)) return 1;
  printf("}\n");
  bertc_close(m);
  free(ids);
  free(mask);
  free(types);
  return 0;
}
