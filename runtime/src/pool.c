#define _GNU_SOURCE /* sched_getcpu, CPU_SET */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Each parallel call gives every thread chunks_per_thread consecutive chunks of rows: thread t
 * owns rows [t, t + 1) * rows / threads, as with a static split, so the rows an op writes on one
 * core are the rows the next op reads there. A thread that runs out of its own chunks takes the
 * others' that no one has started, so a worker that wakes late (an idle vCPU can take
 * milliseconds to be scheduled again) leaves its share to the rest instead of stalling the call. */
#define MAX_THREADS 256

struct bertc_pool {
  int threads;
  pthread_t *workers;
  float **scratch; /* [threads][scratch_floats] */
  pthread_mutex_t lock;
  pthread_cond_t work;
  /* generation: the call being run. owned[t] = generation << 32 | thread t's chunks not yet
   * claimed. The caller publishes fn/arg/rows/chunk, then owned[], then generation (all
   * sequentially consistent); a thread claims a chunk by decrementing owned[t]'s low half with a
   * CAS that also checks the generation. While a chunk of generation g is unclaimed or running, g
   * cannot finish, so fn/arg/... are g's when a claim succeeds. */
  _Atomic uint32_t generation;
  _Atomic uint64_t owned[MAX_THREADS];
  _Atomic int64_t done; /* chunks of the current call finished */
  _Atomic int sleepers; /* workers on the condition variable: the caller must wake them */
  _Atomic int active;   /* inside bertc_pool_begin .. end: idle workers spin */
  _Atomic uint32_t runs; /* bertc_pool_begin calls: wakes sleeping workers to spin */
  _Atomic int stop;
  bertc_rows_fn fn;
  void *arg;
  int64_t rows, chunk, chunks;
  bertc_tuning tuning; /* the target's parameters, from the program */
  /* Placement. The scheduler tends to wake a worker on the waking thread's core, where it then
   * competes with the caller until the load balancer moves it (and half the run is lost). So each
   * run, the workers pin themselves to the CPUs the pool may use (the creating thread's affinity:
   * bertc_run --cores, taskset) other than the one the caller is on. */
  int cpus[MAX_THREADS], ncpus; /* the allowed CPUs, or ncpus = 0: placement left to the OS */
  _Atomic int caller_cpu;       /* sched_getcpu() of the caller at bertc_pool_begin */
  struct bertc_pool *serial;    /* bertc_pool_sized's one-thread view: the caller's scratch, the same tuning */
};

typedef struct { bertc_pool *p; int id; } worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t generation_of(uint64_t owned) { return (uint32_t)(owned >> 32); }

/* Claim and run the chunks of generation `gen` that thread `owner` owns, until none is left. */
static void run_owned(bertc_pool *p, uint32_t gen, int owner, int id) {
  _Atomic uint64_t *word = &p->owned[owner];
  uint64_t s = atomic_load(word);
  for (;;) {
    if (generation_of(s) != gen || (uint32_t)s == 0) return;
    if (!atomic_compare_exchange_weak(word, &s, s - 1)) continue; /* s reloaded */
    /* claimed: chunk c */
    const int64_t c = (int64_t)(owner + 1) * p->tuning.chunks_per_thread - (int64_t)(uint32_t)s;
    const int64_t lo = c * p->chunk, hi = lo + p->chunk < p->rows ? lo + p->chunk : p->rows;
    if (lo < hi) p->fn(p->arg, lo, hi, p->scratch[id]);
    atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    s = atomic_load(word);
  }
}

/* This thread's own chunks first, then anyone's not yet started. */
static void run_chunks(bertc_pool *p, uint32_t gen, int id) {
  for (int t = 0; t < p->threads; t++) run_owned(p, gen, (id + t) % p->threads, id);
}

/* Wait for a generation other than `seen` (or stop): spin while a run is active and the spin
 * budget lasts, then sleep until a call or the next bertc_pool_begin wakes this thread. */
static uint32_t next_generation(bertc_pool *p, uint32_t seen) {
  for (;;) {
    const uint32_t run = atomic_load(&p->runs);
    int64_t start = -1;
    for (uint32_t i = 0; atomic_load_explicit(&p->active, memory_order_relaxed); i++) {
      const uint32_t g = atomic_load_explicit(&p->generation, memory_order_acquire);
      if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
      cpu_relax();
      if ((i & 1023) == 1023) { /* and let a thread that shares this core run (see the wait below) */
        sched_yield();
        if (start < 0) start = now_ns();
        else if (now_ns() - start > BERTC_POOL_SPIN_US * 1000) break;
      }
    }
    /* sleepers goes up before generation and runs are read again, and the caller changes them before
     * it reads sleepers (all sequentially consistent): either this thread sees the change, or the
     * caller sees a sleeper and broadcasts under the lock this thread holds until it waits. */
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add(&p->sleepers, 1);
    uint32_t g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop) &&
           atomic_load(&p->runs) == run)
      pthread_cond_wait(&p->work, &p->lock);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->lock);
    if (g != seen || atomic_load(&p->stop)) return g;
    /* else a run began (bertc_pool_begin): spin for its first op */
  }
}

/* Pin worker `id` to the (id - 1)-th allowed CPU, skipping the caller's. */
static void pin_worker(const bertc_pool *p, int id, int caller) {
  int others[MAX_THREADS], n = 0;
  for (int i = 0; i < p->ncpus; i++)
    if (p->cpus[i] != caller) others[n++] = p->cpus[i];
  if (n == 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(others[(id - 1) % n], &set);
  sched_setaffinity(0, sizeof set, &set); /* 0: this thread. A failure leaves placement to the OS */
}

static void *worker_main(void *raw) {
  worker_arg *w = raw;
  bertc_pool *p = w->p;
  uint32_t seen = 0;
  int pinned_for = -1;
  for (;;) {
    seen = next_generation(p, seen);
    if (atomic_load(&p->stop)) break;
    const int caller = atomic_load_explicit(&p->caller_cpu, memory_order_relaxed);
    if (p->ncpus > 0 && caller != pinned_for) {
      pin_worker(p, w->id, caller);
      pinned_for = caller;
    }
    run_chunks(p, seen, w->id);
  }
  free(w);
  return NULL;
}

bertc_pool *bertc_pool_create(int threads, int64_t scratch_floats, const bertc_tuning *tuning) {
  const bertc_tuning t = tuning ? *tuning : (bertc_tuning)BERTC_TUNING_DEFAULT;
  if (threads < 1 || threads > MAX_THREADS || t.chunks_per_thread < 1 || t.chunks_per_thread > 64 ||
      (t.attention_block != 4 && t.attention_block != 8) || t.gemm_row_block < 1)
    return NULL;
  bertc_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->threads = threads;
  p->tuning = t;
  p->workers = calloc((size_t)threads, sizeof *p->workers);
  p->scratch = calloc((size_t)threads, sizeof *p->scratch);
  if (!p->workers || !p->scratch) { bertc_pool_destroy(p); return NULL; }
  for (int i = 0; i < threads; i++) {
    p->scratch[i] = aligned_alloc(64, (size_t)((scratch_floats * 4 + 63) / 64 * 64 + 64));
    if (!p->scratch[i]) { bertc_pool_destroy(p); return NULL; }
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  cpu_set_t allowed;
  if (threads > 1 && sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) >= threads)
    for (int c = 0; c < CPU_SETSIZE && p->ncpus < MAX_THREADS; c++)
      if (CPU_ISSET(c, &allowed)) p->cpus[p->ncpus++] = c;
  atomic_store(&p->caller_cpu, -1);
  if (threads > 1) {
    p->serial = calloc(1, sizeof *p->serial);
    if (!p->serial) { bertc_pool_destroy(p); return NULL; }
    p->serial->threads = 1;
    p->serial->tuning = t;
    p->serial->scratch = p->scratch; /* scratch[0]: the caller's */
  }
  for (int i = 1; i < threads; i++) { /* thread 0 is the caller */
    worker_arg *w = malloc(sizeof *w);
    w->p = p;
    w->id = i;
    pthread_create(&p->workers[i], NULL, worker_main, w);
  }
  return p;
}

static void wake_sleepers(bertc_pool *p) {
  if (atomic_load(&p->sleepers) == 0) return;
  pthread_mutex_lock(&p->lock);
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
}

void bertc_pool_destroy(bertc_pool *p) {
  if (!p) return;
  if (p->workers) {
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++)
      if (p->workers[i]) pthread_join(p->workers[i], NULL);
  }
  free(p->serial); /* its scratch is p's */
  if (p->scratch)
    for (int i = 0; i < p->threads; i++) free(p->scratch[i]);
  free(p->scratch);
  free(p->workers);
  free(p);
}

int bertc_pool_threads(const bertc_pool *p) { return p->threads; }

const bertc_tuning *bertc_pool_tuning(const bertc_pool *p) { return &p->tuning; }

/* Wake the workers as the run starts, so they are spinning by the time the first parallel op
 * (after the embedding) is published. */
void bertc_pool_begin(bertc_pool *p) {
  if (p->ncpus > 0) atomic_store_explicit(&p->caller_cpu, sched_getcpu(), memory_order_relaxed);
  atomic_store(&p->active, 1);
  atomic_fetch_add(&p->runs, 1);
  if (p->threads > 1) wake_sleepers(p);
}

void bertc_pool_end(bertc_pool *p) { atomic_store_explicit(&p->active, 0, memory_order_relaxed); }

bertc_pool *bertc_pool_sized(bertc_pool *p, int64_t work, int64_t serial_below) {
  return work < serial_below && p->serial ? p->serial : p;
}

/* A row of the hand-off probe: a dependent chain of 256 multiply-adds (about 0.2 us), nothing shared. */
static _Thread_local volatile float probe_sink;
static void probe_row(void *arg, int64_t lo, int64_t hi, float *scratch) {
  float x = probe_sink;
  for (int64_t r = lo; r < hi; r++)
    for (int i = 0; i < 256; i++) x = x * 0.999f + 1.0f;
  probe_sink = x;
}

/* The probe runs its calls in HANDOFF_BATCHES batches, each its serial rows then its parallel calls, and takes the
 * median batch: a batch the scheduler preempted (a 1 ms slice spread over 2000 calls read as 0.5 us more a call)
 * does not move it. */
#define HANDOFF_BATCHES 16
static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bertc_pool_handoff_us(bertc_pool *p, int calls) {
  if (p->threads == 1 || calls < 1) return 0.0;
  const int batches = calls < HANDOFF_BATCHES ? calls : HANDOFF_BATCHES;
  double us[HANDOFF_BATCHES];
  bertc_pool_begin(p);
  for (int b = 0; b < batches; b++) {
    const int n = calls / batches + (b < calls % batches);
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++) probe_row(NULL, 0, p->threads, NULL);
    const double serial = (double)(now_ns() - t0);
    t0 = now_ns();
    for (int i = 0; i < n; i++) bertc_parallel_rows(p, p->threads, probe_row, NULL);
    us[b] = ((double)(now_ns() - t0) - serial / p->threads) * 1e-3 / n;
  }
  bertc_pool_end(p);
  qsort(us, (size_t)batches, sizeof us[0], cmp_double);
  const double median = batches % 2 ? us[batches / 2] : 0.5 * (us[batches / 2 - 1] + us[batches / 2]);
  return median > 0 ? median : 0.0;
}

void bertc_parallel_rows(bertc_pool *p, int64_t rows, bertc_rows_fn fn, void *arg) {
  if (p->threads == 1 || rows < 2) { fn(arg, 0, rows, p->scratch[0]); return; }
  p->fn = fn;
  p->arg = arg;
  p->rows = rows;
  p->chunks = (int64_t)p->threads * p->tuning.chunks_per_thread; /* chunks past the rows are empty */
  p->chunk = (rows + p->chunks - 1) / p->chunks;
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  const uint32_t gen = atomic_load(&p->generation) + 1;
  for (int t = 0; t < p->threads; t++)
    atomic_store(&p->owned[t], (uint64_t)gen << 32 | (uint64_t)p->tuning.chunks_per_thread);
  atomic_store(&p->generation, gen); /* sequentially consistent */
  wake_sleepers(p);
  run_chunks(p, gen, 0);
  /* The last chunks are running on other threads. Yield often: just after a wake-up the scheduler
   * may have put a worker on this very core, and spinning here would keep it off until the time
   * slice ends (milliseconds). */
  for (uint32_t i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->chunks; i++) {
    cpu_relax();
    if ((i & 63) == 63) sched_yield();
  }
}
