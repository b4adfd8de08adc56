/*
 * tcpgen: TCP load generator and kernel TCP servers, for ustack's TCP
 * benchmarks (bench/bench_tcp.py) and the TCP interop tests.
 *
 * Client modes (one result line on stdout, see below):
 *   crr        connection per request: C connections in flight; each one
 *              connects, sends one line, reads the same line back, closes.
 *              Counts completed connections per second and failures by errno.
 *   bulk-send  one connection, write as fast as possible for -t seconds or
 *              -n bytes, then FIN; goodput counts bytes the peer acknowledged.
 *   bulk-recv  one connection, read as fast as possible for -t s or -n bytes.
 * Server modes (-m), for the kernel baselines and as interop peers:
 *   echo       send back every byte as it arrives (RFC 862 over TCP)
 *   echo-line  send back complete lines only
 *   discard    read and drop (RFC 863), optionally hashing what arrived
 *   source     send the data stream (-n bytes per connection, or until the
 *              peer goes away; chargen-like, RFC 864, but with our pattern)
 *
 * The data stream is a pseudo-random pattern from -S SEED (splitmix64,
 * little-endian) repeated with a period of PERIOD bytes, a prime: a segment
 * placed at a wrong offset changes the hash unless it is off by a multiple of
 * the period.  -f FILE sends a file instead.  -H hashes what was sent or
 * received (SHA-256, via libcrypto when it can be loaded, else a portable
 * implementation), so a transfer can be checked end to end.
 *
 * Every run is bounded by time (-t) and by count (-n): nothing runs forever.
 * Result lines (key=value, one line, last line of stdout):
 *   crr:   conns=N seconds=S rate=R fail=F errors=ECONNREFUSED:2,... bad=B
 *          p50_us=X p99_us=Y cpu=C wait=W
 *   bulk:  bytes=N seconds=S MBps=X total=T sha256=HEX|- end=WHY cpu=C wait=W
 *   server: ready: server MODE ADDR:PORT          (once listening)
 *          conn peer=A:P rx=N tx=N seconds=S sha256_rx=.. sha256_tx=.. end=WHY
 *                                                 (per connection, with -v)
 *          served=N rx=B tx=B seconds=S errors=...  (when it stops)
 * cpu: this process's CPU time / wall time while counting; wait: time spent
 * waiting on a run queue for a CPU / wall time (-1: unknown).
 *
 * Build: cc -O2 -o bench/bin/tcpgen bench/tcpgen.c -ldl   (tcpgen.py does it)
 */
#define _GNU_SOURCE
#define PROG "tcpgen"
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define PERIOD 1048573u      /* pattern period: prime, just under 1 MiB */
#define IO_MAX (256 * 1024)  /* largest single read or write */
#define LINE_MAX_ 65536      /* crr line and echo-line buffer limit */
#define HIST_US 10           /* crr latency histogram: 10 us buckets ... */
#define HIST_N 100000        /* ... up to 1 s, then one overflow bucket */
#define NERR 160             /* errno values counted individually */
#define ERR_EOF NERR         /* pseudo-errno: connection closed too early */
#define ERR_TIMEOUT (NERR + 1)

enum mode { M_CRR, M_BULK_SEND, M_BULK_RECV, M_SERVER };
enum smode { S_ECHO, S_ECHO_LINE, S_DISCARD, S_SOURCE };

struct opts {
    enum mode mode;
    enum smode smode;
    const char *addr;
    int port;
    int conc;        /* crr: connections in flight */
    int size;        /* crr: line length including the newline */
    double seconds;  /* measured duration (client) or lifetime (server) */
    double warmup;
    long long count; /* crr: connections; bulk: bytes; server: connections */
    long long nbytes; /* server source: bytes per connection (0: until peer leaves) */
    double timeout;  /* seconds: crr per connection, bulk idle/connect/drain */
    int hash;
    uint64_t seed;
    const char *file;
    int io;          /* read/write size */
    int sockbuf;     /* SO_SNDBUF/SO_RCVBUF, 0: kernel autotuning */
    const char *cc;  /* TCP_CONGESTION, NULL: the namespace's default */
    int verbose;
};

static void usage(void) {
    fprintf(stderr,
            "usage: tcpgen crr       -a DST -p PORT [-c CONC] [-s LINE] [-t SEC] [-u WARMUP]\n"
            "                        [-n CONNS] [-T TIMEOUT_MS]\n"
            "       tcpgen bulk-send -a DST -p PORT [-t SEC] [-n BYTES] [-u WARMUP] [-H]\n"
            "                        [-S SEED | -f FILE] [-T IDLE_MS] [-b IO] [-B SOCKBUF] [-C CC]\n"
            "       tcpgen bulk-recv -a DST -p PORT [-t SEC] [-n BYTES] [-u WARMUP] [-H]\n"
            "                        [-T IDLE_MS] [-b IO] [-B SOCKBUF] [-C CC]\n"
            "       tcpgen server    -m echo|echo-line|discard|source -a BIND -p PORT\n"
            "                        [-t SEC] [-n CONNS] [-N BYTES_PER_CONN] [-H] [-v]\n"
            "                        [-S SEED | -f FILE] [-b IO] [-B SOCKBUF] [-C CC]\n"
            "       -C CC: TCP_CONGESTION (cubic, reno, bbr...), else the default\n");
    exit(2);
}

static const char *errname(int e) {
    static char other[16];
    switch (e) {
    case ERR_EOF: return "EOF";
    case ERR_TIMEOUT: return "TIMEOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EPIPE: return "EPIPE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    default: snprintf(other, sizeof other, "E%d", e); return other;
    }
}

/* "NAME:COUNT,..." for the non-zero entries of errs, or "-". */
static void format_errors(const long long *errs, int n, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int e = 0; e < n; e++) {
        if (!errs[e]) continue;
        int w = snprintf(out + len, cap - len, "%s%s:%lld", len ? "," : "", errname(e), errs[e]);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    if (!len) snprintf(out, cap, "-");
}

/* ------------------------------------------------------------------ sha256 */

/* libcrypto's EVP interface, looked up at run time so building needs no
 * OpenSSL headers; it uses the SHA extensions of the CPU when present, which
 * keeps hashing from being the bottleneck of a fast transfer. */
static struct {
    int tried, ok;
    void *(*ctx_new)(void);
    const void *(*sha256)(void);
    int (*init)(void *, const void *, void *);
    int (*update)(void *, const void *, size_t);
    int (*final)(void *, unsigned char *, unsigned int *);
    void (*ctx_free)(void *);
} evp;

static void evp_load(void) {
    if (evp.tried) return;
    evp.tried = 1;
    if (getenv("TCPGEN_NO_LIBCRYPTO")) return; /* to test the fallback */
    void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libcrypto.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    *(void **)&evp.ctx_new = dlsym(h, "EVP_MD_CTX_new");
    *(void **)&evp.sha256 = dlsym(h, "EVP_sha256");
    *(void **)&evp.init = dlsym(h, "EVP_DigestInit_ex");
    *(void **)&evp.update = dlsym(h, "EVP_DigestUpdate");
    *(void **)&evp.final = dlsym(h, "EVP_DigestFinal_ex");
    *(void **)&evp.ctx_free = dlsym(h, "EVP_MD_CTX_free");
    evp.ok = evp.ctx_new && evp.sha256 && evp.init && evp.update && evp.final && evp.ctx_free;
}

/* The portable fallback: FIPS 180-4 section 6.2. */
static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

struct sha {
    int on;
    void *ctx;       /* libcrypto context, or NULL for the fallback */
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t *h, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA_K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha_init(struct sha *s, int on) {
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memset(s, 0, sizeof *s);
    s->on = on;
    if (!on) return;
    evp_load();
    if (evp.ok) {
        s->ctx = evp.ctx_new();
        if (s->ctx && evp.init(s->ctx, evp.sha256(), NULL) == 1) return;
        if (s->ctx) evp.ctx_free(s->ctx);
        s->ctx = NULL;
    }
    memcpy(s->h, H0, sizeof H0);
}

static void sha_update(struct sha *s, const uint8_t *p, size_t n) {
    if (!s->on || !n) return;
    if (s->ctx) {
        evp.update(s->ctx, p, n);
        return;
    }
    s->len += n;
    if (s->nbuf) {
        size_t take = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        n -= take;
        if (s->nbuf < 64) return;
        sha_block(s->h, s->buf);
        s->nbuf = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(s->h, p);
    memcpy(s->buf, p, n);
    s->nbuf = n;
}

/* Hex digest into out (65 bytes), or "-" when hashing is off. */
static void sha_final(struct sha *s, char *out) {
    uint8_t d[32];
    if (!s->on) {
        strcpy(out, "-");
        return;
    }
    if (s->ctx) {
        unsigned int dl = 32;
        evp.final(s->ctx, d, &dl);
        evp.ctx_free(s->ctx);
        s->ctx = NULL;
    } else {
        uint64_t bits = s->len * 8;
        uint8_t pad[72] = {0x80};
        size_t padlen = (s->nbuf < 56 ? 56 : 120) - s->nbuf;
        for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
        uint64_t len = s->len;
        sha_update(s, pad, padlen + 8);
        s->len = len;
        for (int i = 0; i < 8; i++) {
            d[4 * i] = (uint8_t)(s->h[i] >> 24);
            d[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
            d[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
            d[4 * i + 3] = (uint8_t)s->h[i];
        }
    }
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
    s->on = 0;
}

/* ------------------------------------------------------------ data source */

/* The byte stream a sender writes: the pattern (buf holds PERIOD + IO_MAX
 * bytes, so any chunk starting inside the period is contiguous) or a file. */
struct source {
    uint8_t *buf;
    int is_file;
    uint64_t file_len;
};

static void source_init(struct source *src, const struct opts *o) {
    memset(src, 0, sizeof *src);
    if (o->file) {
        int fd = open(o->file, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) die(o->file);
        src->is_file = 1;
        src->file_len = (uint64_t)st.st_size;
        src->buf = malloc(src->file_len ? src->file_len : 1);
        if (!src->buf) die("malloc");
        uint64_t got = 0;
        while (got < src->file_len) {
            ssize_t r = read(fd, src->buf + got, src->file_len - got);
            if (r <= 0) die(o->file);
            got += (uint64_t)r;
        }
        close(fd);
        return;
    }
    src->buf = malloc((size_t)PERIOD + IO_MAX + 8);
    if (!src->buf) die("malloc");
    /* splitmix64 (Steele, Lea, Flood 2014): cheap, and every seed gives a
     * different stream; bench/tcpgen.py computes the same bytes. */
    uint64_t state = o->seed;
    for (size_t off = 0; off < PERIOD; off += 8) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (int i = 0; i < 8; i++) src->buf[off + (size_t)i] = (uint8_t)(z >> (8 * i));
    }
    memcpy(src->buf + PERIOD, src->buf, IO_MAX);
}

/* Up to max bytes of the stream at offset off; 0 at the end of a file. */
static size_t source_chunk(const struct source *src, uint64_t off, size_t max,
                           const uint8_t **p) {
    if (src->is_file) {
        if (off >= src->file_len) return 0;
        *p = src->buf + off;
        return src->file_len - off < max ? (size_t)(src->file_len - off) : max;
    }
    *p = src->buf + off % PERIOD;
    return max;
}

/* ------------------------------------------------------------ socket help */

/* The congestion control by name: root may pick any the kernel has, where
 * a namespace's sysctl only takes tcp_allowed_congestion_control. */
static void set_cc(int fd, const char *cc) {
    if (cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
        die("setsockopt TCP_CONGESTION");
}

static void set_bufs(int fd, int size) {
    if (size <= 0) return;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

/* A connected non-blocking socket, or -1 with errno set; bounded by timeout. */
static int connect_timeout(const struct opts *o, double timeout) {
    struct sockaddr_in dst = make_addr(o->addr, o->port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_bufs(fd, o->sockbuf);
    set_cc(fd, o->cc);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    double end = now_s() + timeout;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        double left = end - now_s();
        if (left <= 0) {
            close(fd);
            errno = ETIMEDOUT;
            return -1;
        }
        int pr = poll(&pfd, 1, (int)(left * 1000.0) + 1);
        if (pr < 0 && errno != EINTR) die("poll");
        if (pr <= 0) continue;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            close(fd);
            errno = err;
            return -1;
        }
        return fd;
    }
}

/* ------------------------------------------------------------------- bulk */

struct meter {
    double t0, start, cpu0, wait0;
    uint64_t base; /* bytes already moved when counting started */
    int counting;
};

static void meter_start(struct meter *m, double now, uint64_t base) {
    m->counting = 1;
    m->start = now;
    m->base = base;
    m->cpu0 = cpu_s();
    m->wait0 = wait_s();
}

static void print_bulk(const struct meter *m, double end, uint64_t total, uint64_t moved,
                       struct sha *h, const char *why) {
    char hex[65];
    double secs = end - m->start;
    if (secs <= 0) secs = 1e-9;
    uint64_t bytes = moved > m->base ? moved - m->base : 0;
    double waited = m->wait0 < 0 ? -1.0 : (wait_s() - m->wait0) / secs;
    sha_final(h, hex);
    printf("bytes=%llu seconds=%.6f MBps=%.3f total=%llu sha256=%s end=%s cpu=%.3f wait=%.3f\n",
           (unsigned long long)bytes, secs, (double)bytes / secs / 1e6,
           (unsigned long long)total, hex, why, (cpu_s() - m->cpu0) / secs, waited);
    fflush(stdout);
}

static void connect_or_report(const struct opts *o, int *fd) {
    *fd = connect_timeout(o, o->timeout);
    if (*fd < 0) {
        int e = errno;
        fprintf(stderr, "tcpgen: connect %s:%d: %s\n", o->addr, o->port, strerror(e));
        printf("bytes=0 seconds=0 MBps=0 total=0 sha256=- end=connect:%s cpu=0 wait=0\n",
               errname(e));
        exit(1);
    }
}

/* Bytes written but not yet acknowledged by the peer (SIOCOUTQ). */
static uint64_t unacked(int fd) {
    int q = 0;
    if (ioctl(fd, SIOCOUTQ, &q) < 0) return 0;
    return q > 0 ? (uint64_t)q : 0;
}

static void run_bulk_send(const struct opts *o) {
    struct source src;
    source_init(&src, o);
    struct sha h;
    sha_init(&h, o->hash);
    int fd;
    connect_or_report(o, &fd);
    struct meter m = {0};
    m.t0 = now_s();
    double warm_end = m.t0 + o->warmup, deadline = warm_end + o->seconds;
    uint64_t sent = 0, limit = (uint64_t)o->count;
    if (src.is_file && src.file_len < limit) limit = src.file_len;
    const char *why = "time";
    double last_progress = m.t0;
    if (o->warmup <= 0) meter_start(&m, m.t0, 0);
    for (;;) {
        double now = now_s();
        /* Counting starts from what the peer has acknowledged, not from
         * what we wrote: the send buffer may hold megabytes. */
        if (!m.counting && now >= warm_end) meter_start(&m, now, sent - unacked(fd));
        if (stop_flag) { why = "signal"; break; }
        if (now >= deadline) break;
        if (sent >= limit) { why = "count"; break; }
        const uint8_t *p = NULL;
        size_t want = limit - sent < (uint64_t)o->io ? (size_t)(limit - sent) : (size_t)o->io;
        size_t n = source_chunk(&src, sent, want, &p);
        ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            sha_update(&h, p, (size_t)r);
            sent += (uint64_t)r;
            last_progress = now;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            static char buf[32];
            snprintf(buf, sizeof buf, "error:%s", errname(errno));
            why = buf;
            break;
        }
        if (now - last_progress > o->timeout) { why = "stall"; break; }
        double left = deadline - now;
        if (left > 0.05) left = 0.05;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)(left * 1000.0) + 1);
    }
    if (!m.counting) meter_start(&m, m.t0, 0);
    /* FIN, then wait until the peer has acknowledged every byte: that is
     * when the data has arrived, and the time goodput is measured to.  Then
     * wait a little for the peer's FIN, so the connection ends cleanly. */
    shutdown(fd, SHUT_WR);
    double end = now_s(), drain_end = end + o->timeout;
    int drained = 0, closed = 0;
    uint8_t sink[4096];
    while (!closed && now_s() < drain_end) {
        if (!drained && unacked(fd) == 0) {
            drained = 1;
            end = now_s();
            if (end + 1.0 < drain_end) drain_end = end + 1.0;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 1) <= 0) continue;
        ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r == 0) {
            closed = 1;
        } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
            /* A reset empties the send queue: what was unacknowledged then
             * never arrived, so this is not "drained". */
            closed = 1;
            if (!drained) why = "reset";
        }
    }
    if (!drained && closed && strcmp(why, "reset") != 0 && unacked(fd) == 0) {
        drained = 1;
        end = now_s();
    }
    if (!drained && strcmp(why, "reset") != 0) why = "undrained";
    print_bulk(&m, end, sent, sent - unacked(fd), &h, why);
    close(fd);
}

static void run_bulk_recv(const struct opts *o) {
    struct sha h;
    sha_init(&h, o->hash);
    int fd;
    connect_or_report(o, &fd);
    uint8_t *buf = malloc((size_t)o->io);
    if (!buf) die("malloc");
    struct meter m = {0};
    m.t0 = now_s();
    double warm_end = m.t0 + o->warmup, deadline = warm_end + o->seconds;
    uint64_t got = 0, limit = (uint64_t)o->count;
    const char *why = "time";
    double last_progress = m.t0;
    if (o->warmup <= 0) meter_start(&m, m.t0, 0);
    for (;;) {
        double now = now_s();
        if (!m.counting && now >= warm_end) meter_start(&m, now, got);
        if (stop_flag) { why = "signal"; break; }
        if (now >= deadline) break;
        if (got >= limit) { why = "count"; break; }
        size_t want = limit - got < (uint64_t)o->io ? (size_t)(limit - got) : (size_t)o->io;
        ssize_t r = recv(fd, buf, want, MSG_DONTWAIT);
        if (r > 0) {
            sha_update(&h, buf, (size_t)r);
            got += (uint64_t)r;
            last_progress = now;
            continue;
        }
        if (r == 0) { why = "eof"; break; }
        if (errno != EAGAIN && errno != EINTR) {
            static char ebuf[32];
            snprintf(ebuf, sizeof ebuf, "error:%s", errname(errno));
            why = ebuf;
            break;
        }
        if (now - last_progress > o->timeout) { why = "stall"; break; }
        double left = deadline - now;
        if (left > 0.05) left = 0.05;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)(left * 1000.0) + 1);
    }
    if (!m.counting) meter_start(&m, m.t0, 0);
    print_bulk(&m, now_s(), got, got, &h, why);
    close(fd);
    free(buf);
}

/* -------------------------------------------------------------------- crr */

enum cstate { C_IDLE, C_CONNECTING, C_READING };

struct cslot {
    int fd;
    enum cstate st;
    double t0;
    int sent, got;
    char line[LINE_MAX_];
};

struct crr {
    struct opts o;
    struct sockaddr_in dst;
    int ep;
    struct cslot *slots;
    uint64_t seq;
    long long done, bad, fail, errs[NERR + 2];
    uint32_t *hist;
    int counting;
    char rbuf[LINE_MAX_];
};

/* Abortive close (RST): a failed connection must not linger. */
static void crr_abort(struct cslot *s) {
    if (s->fd >= 0) {
        struct linger lg = {1, 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(s->fd);
    }
    s->fd = -1;
    s->st = C_IDLE;
}

static void crr_fail(struct crr *c, struct cslot *s, int err) {
    if (err < 0 || (err >= NERR && err != ERR_EOF && err != ERR_TIMEOUT)) err = NERR - 1;
    c->errs[err]++;
    c->fail++;
    crr_abort(s);
}

static void crr_start(struct crr *c, int i, double now) {
    struct cslot *s = &c->slots[i];
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s->t0 = now;
    s->sent = s->got = 0;
    if (s->fd < 0) {
        crr_fail(c, s, errno);
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A line unique to this connection: slot and sequence number, then a
     * fixed filler, so an echo from another connection is caught. */
    int n = snprintf(s->line, sizeof s->line, "%06d %012llu ", i,
                     (unsigned long long)++c->seq);
    for (int k = n; k < c->o.size - 1; k++) s->line[k] = (char)('a' + k % 26);
    s->line[c->o.size - 1] = '\n';
    if (connect(s->fd, (struct sockaddr *)&c->dst, sizeof c->dst) < 0 && errno != EINPROGRESS) {
        crr_fail(c, s, errno);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(c->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
    s->st = C_CONNECTING;
}

static void crr_event(struct crr *c, int i, uint32_t events, double now) {
    struct cslot *s = &c->slots[i];
    if (s->st == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { crr_fail(c, s, err); return; }
        if (!(events & EPOLLOUT)) return;
        ssize_t r = send(s->fd, s->line, (size_t)c->o.size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r != c->o.size) {
            /* A fresh connection always has room for one short line. */
            crr_fail(c, s, r < 0 ? errno : EAGAIN);
            return;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(c->ep, EPOLL_CTL_MOD, s->fd, &ev);
        s->st = C_READING;
        return;
    }
    if (s->st != C_READING) return;
    ssize_t r = recv(s->fd, c->rbuf, sizeof c->rbuf, MSG_DONTWAIT);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) crr_fail(c, s, errno);
        return;
    }
    if (r == 0) { crr_fail(c, s, ERR_EOF); return; }
    if (s->got + r > c->o.size || memcmp(c->rbuf, s->line + s->got, (size_t)r) != 0) {
        c->bad++; /* a failure, but not one with an errno */
        c->fail++;
        crr_abort(s);
        return;
    }
    s->got += (int)r;
    if (s->got < c->o.size) return;
    close(s->fd); /* the client closes first: TIME-WAIT stays with us */
    s->fd = -1;
    s->st = C_IDLE;
    if (c->counting) {
        c->done++;
        long b = (long)((now - s->t0) * 1e6 / HIST_US);
        c->hist[b < HIST_N ? b : HIST_N]++;
    }
}

static double hist_pct(const struct crr *c, double pct) {
    long long total = 0, acc = 0;
    for (int b = 0; b <= HIST_N; b++) total += c->hist[b];
    if (!total) return 0;
    long long want = (long long)(pct * (double)total + 0.5);
    if (want < 1) want = 1;
    for (int b = 0; b <= HIST_N; b++) {
        acc += c->hist[b];
        if (acc >= want) return (b + 0.5) * HIST_US;
    }
    return HIST_N * HIST_US;
}

static void run_crr(const struct opts *o) {
    struct crr *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->o = *o;
    c->dst = make_addr(o->addr, o->port);
    if (o->size < 22 || o->size > LINE_MAX_) fail("crr line size must be 22..%d", LINE_MAX_);
    if (o->conc < 1 || o->conc > 4096) fail("-c must be 1..4096");
    c->slots = calloc((size_t)o->conc, sizeof *c->slots);
    c->hist = calloc(HIST_N + 1, sizeof *c->hist);
    if (!c->slots || !c->hist) die("calloc");
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    if (c->ep < 0) die("epoll_create1");
    double t0 = now_s(), start = t0 + o->warmup, end = start + o->seconds;
    double cpu0 = cpu_s(), wait0 = wait_s(), next_scan = t0 + 0.01;
    c->counting = o->warmup <= 0;
    for (int i = 0; i < o->conc; i++) crr_start(c, i, t0);
    struct epoll_event evs[256];
    for (;;) {
        double now = now_s();
        if (!c->counting && now >= start) {
            /* Failures and connections before this point were warm-up. */
            c->counting = 1;
            c->done = c->bad = c->fail = 0;
            memset(c->errs, 0, sizeof c->errs);
            cpu0 = cpu_s();
            wait0 = wait_s();
        }
        if (now >= end || stop_flag || (c->counting && c->done >= o->count)) break;
        int n = epoll_wait(c->ep, evs, 256, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        now = now_s();
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            crr_event(c, i, evs[k].events, now);
            if (c->slots[i].st == C_IDLE && now < end) crr_start(c, i, now);
        }
        if (now >= next_scan) {
            for (int i = 0; i < o->conc; i++) {
                struct cslot *s = &c->slots[i];
                if (s->st != C_IDLE && now - s->t0 > o->timeout) crr_fail(c, s, ERR_TIMEOUT);
                if (s->st == C_IDLE && now < end) crr_start(c, i, now);
            }
            next_scan = now + 0.01;
        }
    }
    double t1 = now_s();
    for (int i = 0; i < o->conc; i++) crr_abort(&c->slots[i]);
    double secs = t1 - (o->warmup > 0 && t1 > start ? start : t0);
    if (secs <= 0) secs = 1e-9;
    char errs[1024];
    format_errors(c->errs, NERR + 2, errs, sizeof errs);
    double waited = wait0 < 0 ? -1.0 : (wait_s() - wait0) / secs;
    printf("conns=%lld seconds=%.6f rate=%.1f fail=%lld errors=%s bad=%lld p50_us=%.0f "
           "p99_us=%.0f cpu=%.3f wait=%.3f\n",
           c->done, secs, (double)c->done / secs, c->fail, errs, c->bad, hist_pct(c, 0.50),
           hist_pct(c, 0.99), (cpu_s() - cpu0) / secs, waited);
    fflush(stdout);
}

/* ----------------------------------------------------------------- server */

struct sconn {
    int fd;
    char peer[48];
    double t0;
    uint64_t rx, tx;
    struct sha hrx, htx;
    uint8_t *pend;      /* echo: bytes to write back that did not fit yet */
    size_t pend_off, pend_len, pend_cap;
    uint8_t *line;      /* echo-line: the incomplete last line */
    size_t line_len;
    int rd_eof, fin_sent;
};

struct server {
    struct opts o;
    struct source src;
    int ep, lfd;
    struct sconn **conns; /* by fd */
    int maxfd;
    long long served, errs[NERR + 2];
    uint64_t rx, tx;
    uint8_t *buf;
};

static void srv_close(struct server *s, struct sconn *c, const char *why) {
    char hrx[65], htx[65];
    sha_final(&c->hrx, hrx);
    sha_final(&c->htx, htx);
    if (s->o.verbose) {
        printf("conn peer=%s rx=%llu tx=%llu seconds=%.6f sha256_rx=%s sha256_tx=%s end=%s\n",
               c->peer, (unsigned long long)c->rx, (unsigned long long)c->tx,
               now_s() - c->t0, hrx, htx, why);
        fflush(stdout);
    }
    s->served++;
    s->rx += c->rx;
    s->tx += c->tx;
    s->conns[c->fd] = NULL;
    close(c->fd);
    free(c->pend);
    free(c->line);
    free(c);
}

static void srv_error(struct server *s, struct sconn *c, int err) {
    static char why[32];
    s->errs[err >= 0 && err < NERR ? err : NERR - 1]++;
    snprintf(why, sizeof why, "%s", errname(err));
    srv_close(s, c, err == ECONNRESET ? "reset" : why);
}

static void srv_want(struct server *s, struct sconn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = c->fd};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what can go now; keep the rest in c->pend.  0 ok, else an errno. */
static int srv_write(struct server *s, struct sconn *c, const uint8_t *p, size_t n) {
    (void)s;
    while (n && !c->pend_len) {
        ssize_t w = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return errno;
            break;
        }
        sha_update(&c->htx, p, (size_t)w);
        c->tx += (uint64_t)w;
        p += w;
        n -= (size_t)w;
    }
    if (!n) return 0;
    if (c->pend_len + n > c->pend_cap) {
        size_t cap = c->pend_len + n;
        memmove(c->pend, c->pend + c->pend_off, c->pend_len);
        c->pend_off = 0;
        uint8_t *np = realloc(c->pend, cap);
        if (!np) die("realloc");
        c->pend = np;
        c->pend_cap = cap;
    } else if (c->pend_off + c->pend_len + n > c->pend_cap) {
        memmove(c->pend, c->pend + c->pend_off, c->pend_len);
        c->pend_off = 0;
    }
    memcpy(c->pend + c->pend_off + c->pend_len, p, n);
    c->pend_len += n;
    return 0;
}

/* Flush c->pend; 0 ok (maybe still pending), else an errno. */
static int srv_flush(struct sconn *c) {
    while (c->pend_len) {
        ssize_t w = send(c->fd, c->pend + c->pend_off, c->pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : errno;
        }
        sha_update(&c->htx, c->pend + c->pend_off, (size_t)w);
        c->tx += (uint64_t)w;
        c->pend_off += (size_t)w;
        c->pend_len -= (size_t)w;
    }
    c->pend_off = 0;
    return 0;
}

/* echo, echo-line, discard: read what is there and react. */
static void srv_readable(struct server *s, struct sconn *c) {
    for (int rounds = 0; rounds < 16 && !c->pend_len; rounds++) {
        ssize_t r = recv(c->fd, s->buf, (size_t)s->o.io, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN) return;
            if (errno == EINTR) continue;
            srv_error(s, c, errno);
            return;
        }
        if (r == 0) {
            c->rd_eof = 1;
            break;
        }
        sha_update(&c->hrx, s->buf, (size_t)r);
        c->rx += (uint64_t)r;
        int err = 0;
        if (s->o.smode == S_ECHO) {
            err = srv_write(s, c, s->buf, (size_t)r);
        } else if (s->o.smode == S_ECHO_LINE) {
            /* Append to the partial line, answer every complete line. */
            if (!c->line) c->line = malloc(LINE_MAX_ + IO_MAX);
            if (!c->line) die("malloc");
            memcpy(c->line + c->line_len, s->buf, (size_t)r);
            c->line_len += (size_t)r;
            size_t upto = 0;
            for (size_t k = c->line_len; k > 0; k--)
                if (c->line[k - 1] == '\n') { upto = k; break; }
            /* A line longer than the buffer is flushed as it is, so the
             * remainder kept is always shorter than LINE_MAX_. */
            if (c->line_len - upto >= LINE_MAX_) upto = c->line_len;
            if (upto) {
                err = srv_write(s, c, c->line, upto);
                memmove(c->line, c->line + upto, c->line_len - upto);
                c->line_len -= upto;
            }
        }
        if (err) {
            srv_error(s, c, err);
            return;
        }
    }
    if (c->pend_len) {
        srv_want(s, c, EPOLLOUT); /* stop reading until the echo is out */
        return;
    }
    if (c->rd_eof) {
        if (s->o.smode == S_ECHO_LINE && c->line_len) {
            int err = srv_write(s, c, c->line, c->line_len); /* unterminated last line */
            c->line_len = 0;
            if (err) { srv_error(s, c, err); return; }
            if (c->pend_len) { srv_want(s, c, EPOLLOUT); return; }
        }
        srv_close(s, c, "eof");
    }
}

/* source: send until the per-connection limit, then FIN and wait for EOF. */
static void srv_source(struct server *s, struct sconn *c) {
    uint64_t limit = s->o.nbytes > 0 ? (uint64_t)s->o.nbytes : UINT64_MAX;
    for (int rounds = 0; rounds < 16 && !c->fin_sent; rounds++) {
        const uint8_t *p = NULL;
        size_t want = limit - c->tx < (uint64_t)s->o.io ? (size_t)(limit - c->tx) : (size_t)s->o.io;
        size_t n = want ? source_chunk(&s->src, c->tx, want, &p) : 0;
        if (!n) {
            shutdown(c->fd, SHUT_WR);
            c->fin_sent = 1;
            srv_want(s, c, EPOLLIN);
            return;
        }
        ssize_t w = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) return;
            if (errno == EINTR) continue;
            srv_error(s, c, errno);
            return;
        }
        sha_update(&c->htx, p, (size_t)w);
        c->tx += (uint64_t)w;
    }
}

static void srv_accept(struct server *s, double now) {
    for (int k = 0; k < 64; k++) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            if (errno == ECONNABORTED) continue;
            s->errs[errno < NERR ? errno : NERR - 1]++;
            return; /* EMFILE etc.: try again on the next event */
        }
        if (fd >= s->maxfd) {
            s->errs[EMFILE]++;
            close(fd);
            continue;
        }
        struct sconn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        c->t0 = now;
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, ntohs(peer.sin_port));
        /* Hash only what is asked for: a per-connection context costs. */
        sha_init(&c->hrx, s->o.hash && s->o.smode != S_SOURCE);
        sha_init(&c->htx, s->o.hash && s->o.smode != S_DISCARD);
        s->conns[fd] = c;
        uint32_t events = s->o.smode == S_SOURCE ? EPOLLOUT | EPOLLIN : EPOLLIN;
        struct epoll_event ev = {.events = events, .data.fd = fd};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

static void srv_event(struct server *s, struct sconn *c, uint32_t events) {
    if (s->o.smode == S_SOURCE) {
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            /* Whatever the peer sends is dropped; its EOF or RST ends us. */
            ssize_t r = recv(c->fd, s->buf, (size_t)s->o.io, MSG_DONTWAIT);
            if (r == 0) { srv_close(s, c, c->fin_sent ? "eof" : "peer-closed"); return; }
            if (r < 0 && errno != EAGAIN && errno != EINTR) { srv_error(s, c, errno); return; }
            if (r > 0) c->rx += (uint64_t)r;
        }
        if (events & EPOLLOUT) srv_source(s, c);
        return;
    }
    if (c->pend_len) {
        int err = srv_flush(c);
        if (err) { srv_error(s, c, err); return; }
        if (c->pend_len) return;
        if (c->rd_eof) { srv_close(s, c, "eof"); return; }
        srv_want(s, c, EPOLLIN);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) srv_readable(s, c);
}

static void run_server(const struct opts *o) {
    struct server *s = calloc(1, sizeof *s);
    if (!s) die("calloc");
    s->o = *o;
    if (o->smode == S_SOURCE) source_init(&s->src, o);
    s->buf = malloc((size_t)o->io);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    s->maxfd = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
    s->conns = calloc((size_t)s->maxfd, sizeof *s->conns);
    if (!s->buf || !s->conns) die("calloc");
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0) die("socket");
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    set_bufs(s->lfd, o->sockbuf); /* inherited by accepted sockets */
    set_cc(s->lfd, o->cc);        /* so is this (tcp_assign_congestion_control) */
    struct sockaddr_in a = make_addr(o->addr, o->port);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(s->lfd, 4096) < 0) die("listen");
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = s->lfd};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &lev) < 0) die("epoll_ctl");
    static const char *names[] = {"echo", "echo-line", "discard", "source"};
    printf("ready: server %s %s:%d\n", names[o->smode], o->addr, o->port);
    fflush(stdout);
    struct epoll_event evs[256];
    double t0 = now_s(), end = t0 + o->seconds;
    while (!stop_flag && s->served < o->count) {
        double now = now_s();
        if (now >= end) break;
        double left = end - now;
        int n = epoll_wait(s->ep, evs, 256, left > 0.1 ? 100 : (int)(left * 1000.0) + 1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        now = now_s();
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == s->lfd) {
                srv_accept(s, now);
            } else if (fd < s->maxfd && s->conns[fd]) {
                srv_event(s, s->conns[fd], evs[k].events);
            }
        }
    }
    for (int fd = 0; fd < s->maxfd; fd++)
        if (s->conns[fd]) srv_close(s, s->conns[fd], stop_flag ? "signal" : "deadline");
    close(s->lfd);
    char errs[1024];
    format_errors(s->errs, NERR + 2, errs, sizeof errs);
    printf("served=%lld rx=%llu tx=%llu seconds=%.6f errors=%s\n", s->served,
           (unsigned long long)s->rx, (unsigned long long)s->tx, now_s() - t0, errs);
    fflush(stdout);
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    if (argc < 2) usage();
    struct opts o = {.port = 7, .conc = 32, .size = 64, .seconds = 2.0, .warmup = 0.0,
                     .count = 1LL << 60, .timeout = 5.0, .io = 128 * 1024, .seed = 1};
    int timeout_set = 0;
    if (!strcmp(argv[1], "crr")) o.mode = M_CRR;
    else if (!strcmp(argv[1], "bulk-send")) o.mode = M_BULK_SEND;
    else if (!strcmp(argv[1], "bulk-recv")) o.mode = M_BULK_RECV;
    else if (!strcmp(argv[1], "server")) o.mode = M_SERVER;
    else usage();
    const char *smode = NULL;
    int ch;
    optind = 2;
    while ((ch = getopt(argc, argv, "a:p:c:s:t:u:n:N:T:HS:f:m:b:B:C:v")) != -1) {
        switch (ch) {
        case 'a': o.addr = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'c': o.conc = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 't': o.seconds = atof(optarg); break;
        case 'u': o.warmup = atof(optarg); break;
        case 'n': o.count = atoll(optarg); break;
        case 'N': o.nbytes = atoll(optarg); break;
        case 'T': o.timeout = atof(optarg) / 1000.0; timeout_set = 1; break;
        case 'H': o.hash = 1; break;
        case 'S': o.seed = strtoull(optarg, NULL, 0); break;
        case 'f': o.file = optarg; break;
        case 'm': smode = optarg; break;
        case 'b': o.io = atoi(optarg); break;
        case 'B': o.sockbuf = atoi(optarg); break;
        case 'C': o.cc = optarg; break;
        case 'v': o.verbose = 1; break;
        default: usage();
        }
    }
    if (!o.addr || optind != argc) usage();
    if (o.mode == M_SERVER) {
        if (!smode) usage();
        if (!strcmp(smode, "echo")) o.smode = S_ECHO;
        else if (!strcmp(smode, "echo-line")) o.smode = S_ECHO_LINE;
        else if (!strcmp(smode, "discard")) o.smode = S_DISCARD;
        else if (!strcmp(smode, "source")) o.smode = S_SOURCE;
        else usage();
    }
    if (o.mode == M_CRR && !timeout_set) o.timeout = 1.0;
    /* Hard bounds, so a typo cannot start an unbounded run. */
    if (o.seconds <= 0 || o.seconds > 3600 || o.warmup < 0 || o.warmup > 60 || o.count < 1 ||
        o.timeout <= 0 || o.timeout > 600 || o.io < 1 || o.io > IO_MAX || o.port < 1 ||
        o.port > 65535 || o.nbytes < 0)
        fail("-t must be in (0, 3600], -u in [0, 60], -n >= 1, -T in (0, 600000] ms, "
             "-b 1..%d, -p 1..65535", IO_MAX);
    /* Many connections in flight (and in TIME-WAIT) need many descriptors. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    catch_signals();
    switch (o.mode) {
    case M_CRR: run_crr(&o); break;
    case M_BULK_SEND: run_bulk_send(&o); break;
    case M_BULK_RECV: run_bulk_recv(&o); break;
    case M_SERVER: run_server(&o); break;
    }
    return 0;
}
