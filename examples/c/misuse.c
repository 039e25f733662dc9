/*
 * Misuse of the jim-export C ABI: every case must return an error status (with a message where the
 * function has an out_error) and never crash, leak or touch freed memory. Needs no servers: the
 * "database" of the freed-during-a-run case is a socket of this program that accepts and never answers.
 *
 *   misuse
 *
 * Prints one TAP line per check ("ok N - ..." / "not ok N - ...") and exits with 1 when any failed.
 * The test suite also runs it under valgrind (--leak-check=full --error-exitcode=1).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "jim_export.h"

static int checks = 0;
static int failures = 0;

static void check(int ok, const char *what) {
  checks++;
  if (!ok) {
    failures++;
  }
  printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, what);
}

/* Checks a status and, when given, that a message came with it; frees the message. */
static void check_status(jim_status got, jim_status want, char *message, int want_message,
                         const char *needle, const char *what) {
  int ok = got == want;
  if (want_message) {
    ok = ok && message != NULL && (needle == NULL || strstr(message, needle) != NULL);
  }
  if (!ok) {
    printf("# %s: got %s (%s), wanted %s%s%s\n", what, jim_status_name(got),
           message != NULL ? message : "no message", jim_status_name(want),
           needle != NULL ? " mentioning " : "", needle != NULL ? needle : "");
  }
  check(ok, what);
  if (message != NULL) {
    check(jim_string_free(message) == JIM_STATUS_OK, "the message frees once");
  }
}

/* Runs EXPR, which writes its message to `error`, and checks status and message. (The call must come
 * first: C leaves the order of evaluation of function arguments unspecified.) */
#define CHECK_ERROR(expr, want, needle, what)                  \
  do {                                                          \
    char *error = NULL;                                         \
    jim_status got_ = (expr);                                   \
    check_status(got_, (want), error, 1, (needle), (what));     \
  } while (0)

/* Out-parameters must stay untouched on failure: they start as this sentinel. */
static char sentinel_storage;
#define SENTINEL ((char *)&sentinel_storage)

static const char *VALID_REQUEST_TEMPLATE =
    "{\"database\": {\"connection\": \"postgres://jim:pg-secret@127.0.0.1:%d/jim\", "
    "\"connect_timeout_ms\": %d},"
    " \"connected_system_id\": 1,"
    " \"directory\": {\"urls\": [\"ldap://127.0.0.1:1\"], \"allow_password_without_tls\": true, "
    "\"bind\": {\"kind\": \"simple\", \"dn\": \"cn=admin,dc=example,dc=org\", \"password\": \"ldap-secret\"}}}";

/* The same directory without the opt-in: a password over ldap:// without TLS is refused. */
static const char *CLEAR_PASSWORD_REQUEST =
    "{\"database\": {\"connection\": \"postgres://jim:pg-secret@127.0.0.1:1/jim\"},"
    " \"connected_system_id\": 1,"
    " \"directory\": {\"urls\": [\"ldap://127.0.0.1:1\"], \"bind\": {\"kind\": \"simple\", "
    "\"dn\": \"cn=admin,dc=example,dc=org\", \"password\": \"ldap-secret\"}}}";

static void versions(void) {
  check(jim_abi_version() == JIM_EXPORT_ABI_VERSION, "jim_abi_version matches the header");
  check(jim_version() != NULL && strlen(jim_version()) > 0, "jim_version is a string");
  check(strcmp(jim_status_name(JIM_STATUS_INVALID_JSON), "JIM_STATUS_INVALID_JSON") == 0,
        "jim_status_name names a status");
  check(strcmp(jim_status_name(12345), "JIM_STATUS_UNKNOWN") == 0, "jim_status_name of an unknown value");
}

static void engine_new_misuse(void) {
  CHECK_ERROR(jim_engine_new(NULL, NULL, &error), JIM_STATUS_NULL_PARAMETER, "out_engine",
               "jim_engine_new with a NULL out_engine");

  jim_engine *engine = (jim_engine *)SENTINEL;
  CHECK_ERROR(jim_engine_new("{\"worker_threads\": ", &engine, &error), JIM_STATUS_INVALID_JSON, "not valid JSON", "jim_engine_new with invalid JSON");
  check(engine == (jim_engine *)SENTINEL, "out_engine untouched on failure");

  CHECK_ERROR(jim_engine_new("{\"worker_threads\": \"two\"}", &engine, &error),
               JIM_STATUS_INVALID_REQUEST, "worker_threads", "jim_engine_new with a bad field");
  CHECK_ERROR(jim_engine_new("{\"threads\": 2}", &engine, &error), JIM_STATUS_INVALID_REQUEST, "threads", "jim_engine_new with an unknown field");
  CHECK_ERROR(jim_engine_new("{\"worker_threads\": 1, \"x\": \"\xff\xfe\"}", &engine, &error),
               JIM_STATUS_INVALID_UTF8, "UTF-8", "jim_engine_new with invalid UTF-8");
  check(engine == (jim_engine *)SENTINEL, "out_engine still untouched");
  /* A NULL out_error is allowed: the status alone reports the failure. */
  check(jim_engine_new("nope", &engine, NULL) == JIM_STATUS_INVALID_JSON, "a NULL out_error is allowed");
}

static void run_misuse(jim_engine *engine) {
  char *result = SENTINEL;
  char request[1024];
  snprintf(request, sizeof request, VALID_REQUEST_TEMPLATE, 1, 200);

  CHECK_ERROR(jim_engine_run(NULL, request, NULL, NULL, &result, &error), JIM_STATUS_NULL_PARAMETER, "engine", "jim_engine_run with a NULL engine");
  CHECK_ERROR(jim_engine_run(engine, NULL, NULL, NULL, &result, &error), JIM_STATUS_NULL_PARAMETER, "request_json", "jim_engine_run with a NULL request");
  CHECK_ERROR(jim_engine_run(engine, request, NULL, NULL, NULL, &error), JIM_STATUS_NULL_PARAMETER, "out_result_json", "jim_engine_run with a NULL out_result_json");
  CHECK_ERROR(jim_engine_run(engine, "{\"database\": {", NULL, NULL, &result, &error),
               JIM_STATUS_INVALID_JSON, "line 1", "jim_engine_run with invalid JSON");
  CHECK_ERROR(jim_engine_run(engine, "{\"database\": \"\xc3\x28\"}", NULL, NULL, &result, &error),
               JIM_STATUS_INVALID_UTF8, "request_json", "jim_engine_run with invalid UTF-8");
  CHECK_ERROR(jim_engine_run(engine, "{}", NULL, NULL, &result, &error), JIM_STATUS_INVALID_REQUEST, "database", "jim_engine_run with a request missing its fields");
  CHECK_ERROR(jim_engine_run(engine,
                              "{\"database\": {\"connection\": \"Host=h;Port=notaport;Password=pg-secret\"},"
                              " \"connected_system_id\": 0, \"directory\": {\"urls\": [\"http://x\"],"
                              " \"bind\": {\"kind\": \"simple\", \"dn\": \"\", \"password\": \"ldap-secret\"}}}",
                              NULL, NULL, &result, &error),
               JIM_STATUS_INVALID_REQUEST, "directory.urls[0]",
               "jim_engine_run names every bad field by path");
  CHECK_ERROR(jim_engine_run(engine, CLEAR_PASSWORD_REQUEST, NULL, NULL, &result, &error), JIM_STATUS_INVALID_REQUEST,
               "directory.bind", "jim_engine_run refuses a password over ldap:// without TLS");
  CHECK_ERROR(jim_engine_run(engine, request, NULL, NULL, &result, &error), JIM_STATUS_DATABASE, "database", "jim_engine_run with an unreachable database");
  check(result == SENTINEL, "out_result_json untouched on failure");

  /* A cancellation handle passed where an engine belongs. */
  jim_cancel *cancel = NULL;
  check(jim_cancel_new(&cancel) == JIM_STATUS_OK, "jim_cancel_new");
  CHECK_ERROR(jim_engine_run((const jim_engine *)cancel, request, NULL, NULL, &result, &error),
               JIM_STATUS_INVALID_HANDLE, "jim_engine", "a jim_cancel is not a jim_engine");
  check(jim_cancel_free(cancel) == JIM_STATUS_OK, "jim_cancel_free");
  CHECK_ERROR(jim_engine_run(engine, request, NULL, cancel, &result, &error), JIM_STATUS_INVALID_HANDLE, "cancel", "jim_engine_run with a freed cancellation handle");
  check(result == SENTINEL, "out_result_json still untouched");
}

static void operator_misuse(jim_engine *engine) {
  char *out = SENTINEL;
  CHECK_ERROR(jim_engine_queue_summary(engine, NULL, &out, &error), JIM_STATUS_NULL_PARAMETER, "request_json", "jim_engine_queue_summary with a NULL request");
  CHECK_ERROR(jim_engine_release_stranded(engine, "[1,", &out, &error), JIM_STATUS_INVALID_JSON, NULL, "jim_engine_release_stranded with invalid JSON");
  CHECK_ERROR(jim_engine_reset_failed(engine, "{\"connected_system_id\": -1}", &out, &error),
               JIM_STATUS_INVALID_REQUEST, "database", "jim_engine_reset_failed with a bad request");
  CHECK_ERROR(jim_engine_queue_summary(engine, "{}", NULL, &error), JIM_STATUS_NULL_PARAMETER, "out_json", "jim_engine_queue_summary with a NULL out_json");
  check(out == SENTINEL, "out_json untouched on failure");
}

static void cancel_misuse(void) {
  jim_cancel *cancel = NULL;
  bool fired = true;
  check(jim_cancel_new(NULL) == JIM_STATUS_NULL_PARAMETER, "jim_cancel_new with NULL");
  check(jim_cancel_new(&cancel) == JIM_STATUS_OK && cancel != NULL, "jim_cancel_new");
  check(jim_cancel_is_cancelled(cancel, &fired) == JIM_STATUS_OK && !fired, "a new handle is not fired");
  check(jim_cancel_cancel(cancel) == JIM_STATUS_OK, "jim_cancel_cancel");
  check(jim_cancel_cancel(cancel) == JIM_STATUS_OK, "jim_cancel_cancel twice");
  check(jim_cancel_is_cancelled(cancel, &fired) == JIM_STATUS_OK && fired, "the handle is fired");
  check(jim_cancel_is_cancelled(cancel, NULL) == JIM_STATUS_NULL_PARAMETER, "jim_cancel_is_cancelled with NULL");
  check(jim_cancel_free(cancel) == JIM_STATUS_OK, "jim_cancel_free");
  check(jim_cancel_free(cancel) == JIM_STATUS_INVALID_HANDLE, "a double jim_cancel_free is refused");
  check(jim_cancel_cancel(cancel) == JIM_STATUS_INVALID_HANDLE, "jim_cancel_cancel after free is refused");
  check(jim_cancel_is_cancelled(cancel, &fired) == JIM_STATUS_INVALID_HANDLE,
        "jim_cancel_is_cancelled after free is refused");
  check(jim_cancel_cancel(NULL) == JIM_STATUS_NULL_PARAMETER, "jim_cancel_cancel with NULL");
  check(jim_cancel_free(NULL) == JIM_STATUS_OK, "jim_cancel_free(NULL) is a no-op");
}

static void string_misuse(void) {
  char *error = NULL;
  jim_engine *engine = NULL;
  check(jim_engine_new("[", &engine, &error) == JIM_STATUS_INVALID_JSON && error != NULL, "a message to free");
  check(jim_string_free(error) == JIM_STATUS_OK, "jim_string_free");
  check(jim_string_free(error) == JIM_STATUS_INVALID_HANDLE, "a double jim_string_free is refused");
  char local[16] = "not ours";
  check(jim_string_free(local) == JIM_STATUS_INVALID_HANDLE, "jim_string_free of a foreign pointer is refused");
  check(jim_string_free(NULL) == JIM_STATUS_OK, "jim_string_free(NULL) is a no-op");
}

/* --- a run on an engine freed from another thread ------------------------------------------------ */

struct run_args {
  const jim_engine *engine;
  char request[1024];
  jim_status status;
  char *result;
  char *error;
};

static void *run_thread(void *arg) {
  struct run_args *a = arg;
  a->status = jim_engine_run(a->engine, a->request, NULL, NULL, &a->result, &a->error);
  return NULL;
}

/* A listening socket on 127.0.0.1 that never answers: a database that hangs. */
static int black_hole(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 4) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    perror("black hole socket");
    if (fd >= 0) {
      close(fd);
    }
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

static void freed_before_the_run(void) {
  jim_engine *engine = NULL;
  check(jim_engine_new("{\"worker_threads\": 1}", &engine, NULL) == JIM_STATUS_OK, "an engine to free");
  check(jim_engine_free(engine) == JIM_STATUS_OK, "jim_engine_free");
  struct run_args a;
  memset(&a, 0, sizeof a);
  a.engine = engine;
  a.result = SENTINEL;
  snprintf(a.request, sizeof a.request, VALID_REQUEST_TEMPLATE, 1, 200);
  pthread_t t;
  check(pthread_create(&t, NULL, run_thread, &a) == 0, "a run thread");
  pthread_join(t, NULL);
  check_status(a.status, JIM_STATUS_INVALID_HANDLE, a.error, 1, "jim_engine",
               "a run on an engine freed by another thread before it started");
  check(a.result == SENTINEL, "no result from a freed engine");
  check(jim_engine_free(engine) == JIM_STATUS_INVALID_HANDLE, "a double jim_engine_free is refused");
  char *out = SENTINEL;
  check(jim_engine_queue_summary(engine, "{}", &out, NULL) == JIM_STATUS_INVALID_HANDLE && out == SENTINEL,
        "an operator call on a freed engine is refused");
}

static void freed_during_the_run(void) {
  int port = 0;
  int fd = black_hole(&port);
  check(fd >= 0, "a black-hole database");
  if (fd < 0) {
    return;
  }
  jim_engine *engine = NULL;
  check(jim_engine_new("{\"worker_threads\": 2}", &engine, NULL) == JIM_STATUS_OK, "an engine to run on");
  struct run_args a;
  memset(&a, 0, sizeof a);
  a.engine = engine;
  a.result = SENTINEL;
  snprintf(a.request, sizeof a.request, VALID_REQUEST_TEMPLATE, port, 3000);
  pthread_t t;
  check(pthread_create(&t, NULL, run_thread, &a) == 0, "a run thread");
  /* Once the run's connection arrives, the run is inside jim_engine_run: free the engine under it. */
  int conn = accept(fd, NULL, NULL);
  check(conn >= 0, "the run reached the database");
  check(jim_engine_free(engine) == JIM_STATUS_OK, "jim_engine_free while a run is in progress");
  pthread_join(t, NULL);
  check_status(a.status, JIM_STATUS_ENGINE_CLOSED, a.error, 1, "freed during the run",
               "the run on the engine freed by another thread returns an error");
  check(a.result == SENTINEL, "no result from the interrupted run");
  if (conn >= 0) {
    close(conn);
  }
  close(fd);
}

int main(void) {
  versions();
  engine_new_misuse();

  jim_engine *engine = NULL;
  char *error = NULL;
  jim_status status = jim_engine_new("{\"worker_threads\": 1, \"shutdown_timeout_ms\": 5000}", &engine, &error);
  check(status == JIM_STATUS_OK && engine != NULL && error == NULL, "jim_engine_new");
  if (status == JIM_STATUS_OK) {
    run_misuse(engine);
    operator_misuse(engine);
    check(jim_engine_free(engine) == JIM_STATUS_OK, "jim_engine_free");
  } else {
    jim_string_free(error);
  }
  check(jim_engine_free(NULL) == JIM_STATUS_OK, "jim_engine_free(NULL) is a no-op");

  cancel_misuse();
  string_misuse();
  freed_before_the_run();
  freed_during_the_run();

  printf("1..%d\n", checks);
  if (failures > 0) {
    printf("# %d of %d checks failed\n", failures, checks);
    return 1;
  }
  return 0;
}
