/*
 * common.h: what the C load tools in bench/ (loadgen.c, tcpgen.c) share:
 * the clocks a run is measured with, exits with a message, IPv4 addresses,
 * and the signals that end a run early.
 *
 * Header only (static inline functions): each tool stays one translation
 * unit, compiled by bench/cbuild.py, which also rebuilds a tool when a
 * header next to it changes.  Define PROG, the tool's name as a string
 * literal, before including this file: messages start with it.
 */
#ifndef USTACK_BENCH_COMMON_H
#define USTACK_BENCH_COMMON_H

#ifndef PROG
#error "define PROG (the tool's name) before including common.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ------------------------------------------------------------------ clocks */

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) this process has used so far. */
static inline double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* Seconds this process has waited on a run queue for a CPU (schedstat's
 * second field); -1 when the kernel does not provide it.  A tool that waits
 * a lot ran on a busy machine and its figure is not a capacity. */
static inline double wait_s(void) {
    FILE *f = fopen("/proc/self/schedstat", "r");
    unsigned long long run = 0, wait = 0;
    int ok = f && fscanf(f, "%llu %llu", &run, &wait) == 2;
    if (f) fclose(f);
    return ok ? (double)wait * 1e-9 : -1.0;
}

/* ------------------------------------------------------------------- exits */

/* A system call failed: "PROG: what: strerror(errno)", exit status 2. */
__attribute__((noreturn)) static inline void die(const char *what) {
    fprintf(stderr, PROG ": %s: %s\n", what, strerror(errno));
    exit(2);
}

/* A bad option or value: "PROG: message", exit status 2. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---------------------------------------------------------------- addresses */

/* ADDR:PORT as a sockaddr_in; a string that is not an IPv4 address fails. */
static inline struct sockaddr_in make_addr(const char *addr, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) fail("bad address %s", addr);
    return a;
}

/* ----------------------------------------------------------------- signals */

static volatile sig_atomic_t stop_flag;

static inline void on_stop(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* SIGTERM/SIGINT set stop_flag, so a run ends early but still prints its
 * result line; no SA_RESTART, so a blocked poll() returns EINTR and the loop
 * sees the flag.  SIGPIPE is ignored: a peer that went away is an EPIPE to
 * count, not the end of the tool. */
static inline void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

#endif /* USTACK_BENCH_COMMON_H */
