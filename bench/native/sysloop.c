// sysloop: the cost of a syscall, for bench/proxy.ts.
//
//   sysloop [--allow-all-filter] N PATH [MAX_MS]
//
// Times three loops, each split in CHUNKS chunks of N/CHUNKS calls (the open loop N/OPEN_DIVISOR
// calls, since an open is ten times dearer, or a hundred when trapped):
//   getpid  syscall(SYS_getpid)                      never trapped by berth's filter
//   read    read(fd of /dev/zero, buf, 1)            never trapped
//   open    open(PATH, O_RDONLY) + close             trapped only with --chaos-calls open
// Each loop stops early once it has run MAX_MS (default 3000) in total, so a slow machine or a
// slow supervisor does not hang the run. Prints one JSON line with, per loop, the calls made and
// the best and median chunk in ns per call: the best chunk is the least disturbed by other work
// on a shared machine, the median says how typical that is.
//
// --allow-all-filter first installs a seccomp filter that allows everything (no_new_privs, one
// `ret ALLOW`): the floor of what any seccomp filter costs an untrapped call on this kernel (its
// syscall entry and exit take the slow path with work flags set), whatever the filter's content.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHUNKS 10
#define OPEN_DIVISOR 10

static double now_ns (void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum loop_kind { LOOP_GETPID, LOOP_READ, LOOP_OPEN };

struct result {
  long calls;
  int chunks;
  double best;
  double median;
};

static int zero_fd = -1;
static const char *open_path;

static void run_chunk (enum loop_kind kind, long n)
{
  char buf[1];
  switch (kind) {
    case LOOP_GETPID:
      for (long i = 0; i < n; i++) syscall(SYS_getpid);
      break;
    case LOOP_READ:
      for (long i = 0; i < n; i++) {
        if (read(zero_fd, buf, 1) != 1) { perror("sysloop: read /dev/zero"); exit(1); }
      }
      break;
    case LOOP_OPEN:
      for (long i = 0; i < n; i++) {
        int fd = open(open_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { fprintf(stderr, "sysloop: open %s: %s\n", open_path, strerror(errno)); exit(1); }
        close(fd);
      }
      break;
  }
}

static struct result measure (enum loop_kind kind, long n, double max_ns)
{
  long per_chunk = n / CHUNKS > 0 ? n / CHUNKS : 1;
  double ns_per_call[CHUNKS];
  struct result r = { 0, 0, 0, 0 };
  double spent = 0;
  run_chunk(kind, per_chunk / 10 + 1); // warm caches and, when trapped, the supervisor's path
  for (int c = 0; c < CHUNKS && spent < max_ns; c++) {
    double t0 = now_ns();
    run_chunk(kind, per_chunk);
    double dt = now_ns() - t0;
    spent += dt;
    ns_per_call[c] = dt / (double)per_chunk;
    r.calls += per_chunk;
    r.chunks++;
  }
  qsort(ns_per_call, (size_t)r.chunks, sizeof ns_per_call[0], cmp_double);
  r.best = ns_per_call[0];
  r.median = ns_per_call[r.chunks / 2];
  return r;
}

static void print_result (const char *name, struct result r, int last)
{
  printf("\"%s\":{\"calls\":%ld,\"chunks\":%d,\"bestNs\":%.2f,\"medianNs\":%.2f}%s",
         name, r.calls, r.chunks, r.best, r.median, last ? "" : ",");
}

static void install_allow_all_filter (void)
{
  struct sock_filter insns[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
  struct sock_fprog prog = { .len = 1, .filter = insns };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("sysloop: PR_SET_NO_NEW_PRIVS"); exit(1); }
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) { perror("sysloop: seccomp"); exit(1); }
}

int main (int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--allow-all-filter") == 0) {
    install_allow_all_filter();
    argv++;
    argc--;
  }
  if (argc < 3 || argc > 4) { fprintf(stderr, "usage: sysloop [--allow-all-filter] N PATH [MAX_MS]\n"); return 2; }
  char *end = NULL;
  long n = strtol(argv[1], &end, 10);
  if (*end != '\0' || n < CHUNKS || n > 1000000000L) { fprintf(stderr, "sysloop: bad N \"%s\"\n", argv[1]); return 2; }
  open_path = argv[2];
  long max_ms = 3000;
  if (argc > 3) {
    max_ms = strtol(argv[3], &end, 10);
    if (*end != '\0' || max_ms < 1 || max_ms > 600000) { fprintf(stderr, "sysloop: bad MAX_MS \"%s\"\n", argv[3]); return 2; }
  }
  zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  if (zero_fd < 0) { perror("sysloop: open /dev/zero"); return 1; }

  struct result g = measure(LOOP_GETPID, n, (double)max_ms * 1e6);
  struct result r = measure(LOOP_READ, n, (double)max_ms * 1e6);
  struct result o = measure(LOOP_OPEN, n / OPEN_DIVISOR, (double)max_ms * 1e6);
  printf("{");
  print_result("getpid", g, 0);
  print_result("read", r, 0);
  print_result("open", o, 1);
  printf("}\n");
  return 0;
}
