// connrate: TCP connections per second, for bench/proxy.ts.
//
//   connrate server PORT [THREADS]
//       Listens on 0.0.0.0:PORT and accepts and closes connections as fast as it can (an epoll
//       loop per thread on one non-blocking listener, EPOLLEXCLUSIVE so one thread wakes per
//       connection), until killed.
//   connrate client HOST PORT SECONDS MAX [THREADS] [WARMUP]
//       Resolves HOST once (getaddrinfo, IPv4; in a container HOST is a service name from
//       /etc/hosts), then each thread loops socket → connect → close until SECONDS have passed or
//       MAX connects have been made in all. Before the clock starts each thread makes WARMUP
//       connects (default 100). Prints one JSON line:
//       {"connects":N,"errors":E,"seconds":S,"rate":R,"threads":T,"firstError":"..."}
//
// The client closes with SO_LINGER {1, 0}, i.e. with a RST: no TIME_WAIT, so a few seconds at tens
// of thousands of connects per second do not run out of ephemeral ports. It is set after connect
// on the connected socket, which is a host socket in both cases (native, or injected by the
// supervisor), so both paths make the same calls except the connect itself.
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_EVENTS 64

static double now_s (void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_int (const char *s, const char *what, long min, long max)
{
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "connrate: bad %s \"%s\" (%ld..%ld)\n", what, s, min, max);
    exit(2);
  }
  return (int)v;
}

/* ---- server ---- */

static int listen_fd = -1;

static void *serve (void *arg)
{
  (void)arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) { perror("connrate: epoll_create1"); exit(1); }
  struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) { perror("connrate: epoll_ctl"); exit(1); }
  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("connrate: epoll_wait");
      exit(1);
    }
    for (;;) {
      int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) { close(c); continue; }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) continue;
      perror("connrate: accept4");
      exit(1);
    }
  }
  return NULL;
}

static int server (int argc, char **argv)
{
  if (argc < 3 || argc > 4) { fprintf(stderr, "usage: connrate server PORT [THREADS]\n"); return 2; }
  int port = parse_int(argv[2], "PORT", 1, 65535);
  int threads = argc > 3 ? parse_int(argv[3], "THREADS", 1, MAX_THREADS) : 1;
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) { perror("connrate: socket"); return 1; }
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connrate: bind"); return 1; }
  if (listen(listen_fd, 4096) < 0) { perror("connrate: listen"); return 1; }
  fprintf(stderr, "connrate: listening on port %d with %d thread(s)\n", port, threads);
  pthread_t tids[MAX_THREADS];
  for (int i = 1; i < threads; i++) {
    if (pthread_create(&tids[i], NULL, serve, NULL) != 0) { fprintf(stderr, "connrate: pthread_create failed\n"); return 1; }
  }
  serve(NULL);
  return 0;
}

/* ---- client ---- */

static struct sockaddr_storage target;
static socklen_t target_len;
static double duration_s;
static long max_total;
static int warmup;
static atomic_long total_connects;
static atomic_long total_errors;
static atomic_int first_errno;
static double clock_start;

static int connect_once (void)
{
  int fd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int err = 0;
  if (connect(fd, (struct sockaddr *)&target, target_len) < 0) {
    err = errno;
  } else {
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(fd);
  return err;
}

// Two barriers: every thread has warmed up (ready), then the clock starts and they go (go).
// pthread_barrier_wait orders the main thread's write of clock_start before the threads' reads.
static pthread_barrier_t ready_barrier;
static pthread_barrier_t go_barrier;

static void *client_thread (void *arg)
{
  (void)arg;
  for (int i = 0; i < warmup; i++) {
    int err = connect_once();
    if (err != 0) {
      int zero = 0;
      atomic_compare_exchange_strong(&first_errno, &zero, err);
    }
  }
  pthread_barrier_wait(&ready_barrier);
  pthread_barrier_wait(&go_barrier);
  double end = clock_start + duration_s;
  long errors = 0;
  for (;;) {
    if (atomic_fetch_add(&total_connects, 1) >= max_total) { atomic_fetch_sub(&total_connects, 1); break; }
    int err = connect_once();
    if (err != 0) {
      errors++;
      int zero = 0;
      atomic_compare_exchange_strong(&first_errno, &zero, err);
      // A refused or failing target would otherwise spin at full speed printing nothing useful.
      if (errors > 1000 && errors * 2 > atomic_load(&total_connects)) break;
    }
    if (now_s() >= end) break;
  }
  atomic_fetch_add(&total_errors, errors);
  return NULL;
}

static int client (int argc, char **argv)
{
  if (argc < 6 || argc > 8) { fprintf(stderr, "usage: connrate client HOST PORT SECONDS MAX [THREADS] [WARMUP]\n"); return 2; }
  const char *host = argv[2];
  const char *port = argv[3];
  duration_s = parse_int(argv[4], "SECONDS", 1, 3600);
  max_total = parse_int(argv[5], "MAX", 1, 2000000000);
  int threads = argc > 6 ? parse_int(argv[6], "THREADS", 1, MAX_THREADS) : 1;
  warmup = argc > 7 ? parse_int(argv[7], "WARMUP", 0, 1000000) : 100;

  struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(host, port, &hints, &res);
  if (gai != 0 || res == NULL) { fprintf(stderr, "connrate: resolving %s:%s: %s\n", host, port, gai_strerror(gai)); return 1; }
  memcpy(&target, res->ai_addr, res->ai_addrlen);
  target_len = res->ai_addrlen;
  freeaddrinfo(res);

  // One connect first, so a target that is not there fails clearly instead of as a zero rate.
  int err = connect_once();
  if (err != 0) { fprintf(stderr, "connrate: connect %s:%s: %s\n", host, port, strerror(err)); return 1; }

  pthread_barrier_init(&ready_barrier, NULL, (unsigned)threads + 1);
  pthread_barrier_init(&go_barrier, NULL, (unsigned)threads + 1);
  pthread_t tids[MAX_THREADS];
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&tids[i], NULL, client_thread, NULL) != 0) { fprintf(stderr, "connrate: pthread_create failed\n"); return 1; }
  }
  pthread_barrier_wait(&ready_barrier);
  clock_start = now_s();
  pthread_barrier_wait(&go_barrier);
  for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
  double elapsed = now_s() - clock_start;
  long n = atomic_load(&total_connects);
  long e = atomic_load(&total_errors);
  int fe = atomic_load(&first_errno);
  printf("{\"connects\":%ld,\"errors\":%ld,\"seconds\":%.6f,\"rate\":%.1f,\"threads\":%d,\"firstError\":\"%s\"}\n",
         n, e, elapsed, (double)(n - e) / elapsed, threads, fe == 0 ? "" : strerror(fe));
  return 0;
}

int main (int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "server") == 0) return server(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "client") == 0) return client(argc, argv);
  fprintf(stderr, "usage: connrate server PORT [THREADS] | connrate client HOST PORT SECONDS MAX [THREADS] [WARMUP]\n");
  return 2;
}
