/*
 * A C host of jim-export: runs one export through the C ABI and prints what it got back.
 *
 *   export_host REQUEST_FILE SUMMARY_REQUEST_FILE [CANCEL_AFTER_BATCHES]
 *
 * REQUEST_FILE holds the export request (see jim_engine_run in jim_export.h), SUMMARY_REQUEST_FILE the
 * request of jim_engine_queue_summary for the same connected system. With CANCEL_AFTER_BATCHES > 0 the
 * host fires its cancellation handle from the batch callback once that many batch reports arrived.
 *
 * Output, one line each:
 *   VERSION <library version> ABI <abi version>
 *   RESULT <result document>
 *   EVENTS progress=<n> batches=<n> items=<n> logs=<n> completed=<0|1> max_sequence=<n>
 *   QUEUE <queue summary document>
 * Exit status 0 on success; otherwise the failing call's status name and message go to stderr.
 *
 * Builds with the shared library (-ljim_export) or the static one (libjim_export.a plus the native
 * libraries rustc names); see docs/c-api.md and examples/c/Makefile.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jim_export.h"

/* What the callbacks saw. Callbacks run on the engine's worker threads, possibly concurrently. */
struct events {
  pthread_mutex_t lock;
  unsigned progress;
  unsigned batches;
  unsigned items;
  unsigned logs;
  unsigned long max_sequence;
  int completed;
  unsigned cancel_after;
  const jim_cancel *cancel;
};

static unsigned count_occurrences(const char *haystack, const char *needle) {
  unsigned n = 0;
  size_t len = strlen(needle);
  for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + len, needle)) {
    n++;
  }
  return n;
}

static void on_progress(void *user_data, const char *json, size_t json_len) {
  struct events *ev = user_data;
  (void)json_len;
  pthread_mutex_lock(&ev->lock);
  ev->progress++;
  if (strstr(json, "\"phase\":\"Completed\"") != NULL) {
    ev->completed = 1;
  }
  pthread_mutex_unlock(&ev->lock);
}

static void on_batch(void *user_data, const char *json, size_t json_len) {
  struct events *ev = user_data;
  unsigned long sequence = 0;
  const char *seq = strstr(json, "\"sequence\":");
  (void)json_len;
  if (seq != NULL) {
    sequence = strtoul(seq + strlen("\"sequence\":"), NULL, 10);
  }
  pthread_mutex_lock(&ev->lock);
  ev->batches++;
  ev->items += count_occurrences(json, "\"pending_export_id\"");
  if (sequence > ev->max_sequence) {
    ev->max_sequence = sequence;
  }
  int fire = ev->cancel_after > 0 && ev->batches == ev->cancel_after;
  pthread_mutex_unlock(&ev->lock);
  /* Cancelling from inside a callback is allowed; the run stops after its in-flight work. */
  if (fire && jim_cancel_cancel(ev->cancel) != JIM_STATUS_OK) {
    fprintf(stderr, "jim_cancel_cancel failed\n");
  }
}

static void on_log(void *user_data, jim_log_level level, const char *json, size_t json_len) {
  struct events *ev = user_data;
  pthread_mutex_lock(&ev->lock);
  ev->logs++;
  pthread_mutex_unlock(&ev->lock);
  if (level >= JIM_LOG_LEVEL_WARN) {
    fprintf(stderr, "log: %.*s\n", (int)json_len, json);
  }
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0;
  size_t cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap == 0 ? 8192 : cap * 2;
      char *grown = realloc(buf, cap);
      if (grown == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = grown;
    }
    size_t n = fread(buf + len, 1, 4096, f);
    len += n;
    if (n < 4096) {
      break;
    }
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

/* Reports a failed call and frees its message. */
static int fail(const char *what, jim_status status, char *error) {
  fprintf(stderr, "%s failed: %s: %s\n", what, jim_status_name(status),
          error != NULL ? error : "(no message)");
  jim_string_free(error);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s REQUEST_FILE SUMMARY_REQUEST_FILE [CANCEL_AFTER_BATCHES]\n", argv[0]);
    return 2;
  }
  if (jim_abi_version() != JIM_EXPORT_ABI_VERSION) {
    fprintf(stderr, "library ABI %u, header ABI %u: rebuild against the library's header\n",
            jim_abi_version(), JIM_EXPORT_ABI_VERSION);
    return 1;
  }
  printf("VERSION %s ABI %u\n", jim_version(), jim_abi_version());

  char *request = read_file(argv[1]);
  char *summary_request = read_file(argv[2]);
  if (request == NULL || summary_request == NULL) {
    free(request);
    free(summary_request);
    return 1;
  }

  int rc = 0;
  jim_engine *engine = NULL;
  jim_cancel *cancel = NULL;
  char *error = NULL;
  jim_status status = jim_engine_new("{\"worker_threads\": 2}", &engine, &error);
  if (status != JIM_STATUS_OK) {
    rc = fail("jim_engine_new", status, error);
    goto out;
  }
  status = jim_cancel_new(&cancel);
  if (status != JIM_STATUS_OK) {
    rc = fail("jim_cancel_new", status, NULL);
    goto out;
  }

  struct events ev;
  memset(&ev, 0, sizeof ev);
  pthread_mutex_init(&ev.lock, NULL);
  ev.cancel = cancel;
  ev.cancel_after = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 0;
  jim_callbacks callbacks = {
      .user_data = &ev,
      .on_progress = on_progress,
      .on_batch = on_batch,
      .on_log = on_log,
  };

  /* The blocking run; a real host runs it on a thread of its own. */
  char *result = NULL;
  status = jim_engine_run(engine, request, &callbacks, cancel, &result, &error);
  if (status != JIM_STATUS_OK) {
    rc = fail("jim_engine_run", status, error);
    pthread_mutex_destroy(&ev.lock);
    goto out;
  }
  printf("RESULT %s\n", result);
  jim_string_free(result);
  /* No callback runs after jim_engine_run returned, so the counters are final without the lock. */
  printf("EVENTS progress=%u batches=%u items=%u logs=%u completed=%d max_sequence=%lu\n", ev.progress,
         ev.batches, ev.items, ev.logs, ev.completed, ev.max_sequence);
  pthread_mutex_destroy(&ev.lock);

  char *summary = NULL;
  status = jim_engine_queue_summary(engine, summary_request, &summary, &error);
  if (status != JIM_STATUS_OK) {
    rc = fail("jim_engine_queue_summary", status, error);
    goto out;
  }
  printf("QUEUE %s\n", summary);
  jim_string_free(summary);

out:
  if (jim_cancel_free(cancel) != JIM_STATUS_OK) {
    rc = 1;
  }
  /* Stops the engine's threads; nothing of the library runs after this. */
  if (jim_engine_free(engine) != JIM_STATUS_OK) {
    rc = 1;
  }
  free(request);
  free(summary_request);
  fflush(stdout);
  return rc;
}
