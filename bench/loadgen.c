/*
 * loadgen: closed-loop UDP / ICMP echo load generator and a kernel UDP echo
 * server, for ustack's echo-rate benchmarks (bench/bench_echo.py).
 *
 * Closed loop: W requests are outstanding at any time; each reply (or the
 * timeout of a stale request) frees its slot, which is refilled at once.  So
 * the rate measures the responder's capacity, not a send rate we chose, and a
 * lost datagram costs one timeout on one slot instead of stalling the run.
 *
 * Every request carries magic, slot and sequence number in its first 16
 * payload bytes and a fixed pattern after them; a reply counts only if its
 * length, header and pattern match the request now outstanding in that slot.
 *
 * Every run is bounded by time (-t) and by count (-n); the result is one line
 *   replies=N seconds=S rate=R lost=L late=X bad=B sent=T cpu=C wait=W
 * (cpu: CPU time / wall time; wait: time spent waiting for a CPU / wall time)
 * on stdout.  The server prints  served=N seconds=S  when it stops.
 *
 * Build: cc -O2 -o bench/bin/loadgen bench/loadgen.c   (loadgen.py does it)
 */
#define _GNU_SOURCE
#define PROG "loadgen"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define MAGIC 0x75737462u /* "ustb" */
#define HDR 16            /* magic u32, slot u32, seq u64 */
#define MAX_BATCH 256
#define MAX_WINDOW 4096
#define MAX_SIZE 9000
#define ICMP_HDR 8

enum mode { M_UDP, M_ICMP, M_SERVER };

struct opts {
    enum mode mode;
    const char *addr;
    int port;
    int size;        /* payload bytes (after UDP / ICMP header) */
    int window;
    double seconds;  /* measured duration */
    double warmup;   /* seconds before counting starts */
    long count;      /* stop after this many counted replies */
    double timeout;  /* seconds until an outstanding request is given up */
    int batch;
};

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen udp    -a DST -p PORT [-s SIZE] [-w WINDOW] [-t SEC] [-u WARMUP]\n"
            "                      [-n COUNT] [-T TIMEOUT_MS] [-b BATCH]\n"
            "       loadgen icmp   -a DST [same options; ping socket, raw socket fallback]\n"
            "       loadgen server -a BIND -p PORT [-t SEC] [-n COUNT] [-b BATCH]\n");
    exit(2);
}

static uint8_t pattern[MAX_SIZE + ICMP_HDR];

static void fill_pattern(void) {
    for (int i = 0; i < (int)sizeof pattern; i++) pattern[i] = (uint8_t)(i * 7 + 3);
}

/* RFC 1071 Internet checksum, only for the raw-socket ICMP fallback. */
static uint16_t inet_csum(const uint8_t *p, int n) {
    uint32_t s = 0;
    for (; n > 1; p += 2, n -= 2) s += (uint32_t)(p[0] << 8 | p[1]);
    if (n) s += (uint32_t)(p[0] << 8);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return htons((uint16_t)~s);
}

/* ------------------------------------------------------------------ client */

struct client {
    struct opts o;
    int fd;
    int raw;           /* icmp over a raw socket: replies carry the IP header */
    int l4;            /* bytes before our payload in a request: 0 udp, 8 icmp */
    uint16_t ident;    /* icmp identifier for the raw fallback */
    uint64_t next_seq;
    uint64_t *slot_seq;
    double *slot_sent;
    uint8_t *txbuf;    /* one request buffer per slot */
    uint8_t *rxbuf;
    int *sendq;
    int nsendq;
    long replies, lost, late, bad, sent;
};

static void build_request(struct client *c, int slot) {
    uint8_t *b = c->txbuf + (size_t)slot * (size_t)(c->l4 + c->o.size);
    uint64_t seq = c->next_seq++;
    uint8_t *p = b + c->l4;
    uint32_t magic = MAGIC, s32 = (uint32_t)slot;
    memcpy(p, &magic, 4);
    memcpy(p + 4, &s32, 4);
    memcpy(p + 8, &seq, 8);
    if (c->l4) {
        struct icmphdr *ic = (struct icmphdr *)b;
        ic->type = ICMP_ECHO;
        ic->code = 0;
        ic->checksum = 0;
        ic->un.echo.id = htons(c->ident);  /* the kernel overwrites it on ping sockets */
        ic->un.echo.sequence = htons((uint16_t)seq);
        if (c->raw) ic->checksum = inet_csum(b, c->l4 + c->o.size);
    }
    c->slot_seq[slot] = seq;
}

static void flush_sendq(struct client *c, double now) {
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    int done = 0;
    while (done < c->nsendq) {
        int n = c->nsendq - done;
        if (n > c->o.batch) n = c->o.batch;
        for (int i = 0; i < n; i++) {
            int slot = c->sendq[done + i];
            build_request(c, slot);
            c->slot_sent[slot] = now;
            iov[i].iov_base = c->txbuf + (size_t)slot * (size_t)(c->l4 + c->o.size);
            iov[i].iov_len = (size_t)(c->l4 + c->o.size);
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(c->fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            /* ECONNREFUSED etc. report an earlier ICMP error; the requests
             * not sent stay outstanding and time out like lost ones. */
            if (errno == EINTR) continue;
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENOBUFS ||
                errno == EAGAIN || errno == ENETUNREACH) {
                done += n;
                continue;
            }
            die("sendmmsg");
        }
        c->sent += r;
        done += (r > 0 ? r : n);
    }
    c->nsendq = 0;
}

/* One reply: returns its slot if it answers the request outstanding there. */
static int check_reply(struct client *c, const uint8_t *b, int len) {
    if (c->raw) {
        if (len < (int)sizeof(struct iphdr)) return -2;
        int ihl = (b[0] & 0x0f) * 4;
        b += ihl;
        len -= ihl;
        if (len < ICMP_HDR) return -2;
        const struct icmphdr *ic = (const struct icmphdr *)b;
        if (ic->type != ICMP_ECHOREPLY || ntohs(ic->un.echo.id) != c->ident) return -3;
    } else if (c->l4) {
        if (len < ICMP_HDR || ((const struct icmphdr *)b)->type != ICMP_ECHOREPLY) return -2;
    }
    b += c->l4;
    len -= c->l4;
    if (len != c->o.size) return -2;
    uint32_t magic, s32;
    uint64_t seq;
    memcpy(&magic, b, 4);
    memcpy(&s32, b + 4, 4);
    memcpy(&seq, b + 8, 8);
    if (magic != MAGIC || s32 >= (uint32_t)c->o.window) return -2;
    if (memcmp(b + HDR, pattern + HDR, (size_t)(c->o.size - HDR)) != 0) return -2;
    if (c->slot_seq[s32] != seq) return -1; /* answer to a request we gave up on */
    return (int)s32;
}

static int open_icmp(struct client *c, struct sockaddr_in *dst) {
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (fd >= 0) {
        c->raw = 0;
    } else {
        /* Ping sockets need net.ipv4.ping_group_range to cover our gid. */
        fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        if (fd < 0) die("icmp socket (set net.ipv4.ping_group_range or run as root)");
        c->raw = 1;
    }
    c->ident = (uint16_t)(getpid() & 0xffff);
    (void)dst;
    return fd;
}

static void run_client(struct opts o) {
    struct client c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.l4 = o.mode == M_ICMP ? ICMP_HDR : 0;
    if (o.size < HDR || o.size > MAX_SIZE) fail("size must be %d..%d", HDR, MAX_SIZE);
    if (o.window < 1 || o.window > MAX_WINDOW) fail("window must be 1..%d", MAX_WINDOW);
    struct sockaddr_in dst = make_addr(o.addr, o.port);
    if (o.mode == M_UDP) {
        c.fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (c.fd < 0) die("socket");
    } else {
        c.fd = open_icmp(&c, &dst);
        dst.sin_port = 0;
    }
    int buf = 4 << 20;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (connect(c.fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect");

    size_t reqlen = (size_t)(c.l4 + o.size);
    c.slot_seq = calloc((size_t)o.window, sizeof *c.slot_seq);
    c.slot_sent = calloc((size_t)o.window, sizeof *c.slot_sent);
    c.sendq = calloc((size_t)o.window, sizeof *c.sendq);
    c.txbuf = calloc((size_t)o.window, reqlen);
    size_t rxlen = reqlen + 128; /* room for an IP header (raw) and oversize replies */
    c.rxbuf = calloc(MAX_BATCH, rxlen);
    if (!c.slot_seq || !c.slot_sent || !c.sendq || !c.txbuf || !c.rxbuf) die("calloc");
    for (int s = 0; s < o.window; s++) {
        memcpy(c.txbuf + (size_t)s * reqlen + (size_t)c.l4 + HDR, pattern + HDR,
               (size_t)(o.size - HDR));
        c.sendq[c.nsendq++] = s;
    }
    c.next_seq = 1;

    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    double t0 = now_s();
    double start = t0 + o.warmup, end = start + o.seconds;
    double next_scan = t0 + o.timeout / 4;
    int counting = o.warmup <= 0;
    double cpu0 = cpu_s(), wait0 = wait_s();
    long counted_lost_base = 0;
    flush_sendq(&c, t0);

    for (;;) {
        double now = now_s();
        if (!counting && now >= start) {
            counting = 1;
            c.replies = 0;
            cpu0 = cpu_s();
            wait0 = wait_s();
            counted_lost_base = c.lost;
        }
        if (now >= end || (counting && c.replies >= o.count)) break;
        double wait = next_scan - now;
        if (end - now < wait) wait = end - now;
        if (wait < 0) wait = 0;
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(wait * 1000.0) + 1);
        if (pr < 0 && errno != EINTR) die("poll");
        if (pr > 0) {
            for (int i = 0; i < o.batch; i++) {
                iov[i].iov_base = c.rxbuf + (size_t)i * rxlen;
                iov[i].iov_len = rxlen;
                memset(&msgs[i], 0, sizeof msgs[i]);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int n = recvmmsg(c.fd, msgs, (unsigned)o.batch, MSG_DONTWAIT, NULL);
            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED &&
                    errno != EHOSTUNREACH && errno != ENETUNREACH)
                    die("recvmmsg");
                n = 0;
            }
            for (int i = 0; i < n; i++) {
                int slot = check_reply(&c, iov[i].iov_base, (int)msgs[i].msg_len);
                if (slot >= 0) {
                    c.slot_seq[slot] = 0;  /* answered: a duplicate now counts as late */
                    c.replies++;
                    c.sendq[c.nsendq++] = slot;
                } else if (slot == -1) {
                    c.late++;
                } else if (slot == -2) {
                    c.bad++;
                }
            }
        }
        now = now_s();
        if (now >= next_scan) {
            /* Give up on requests older than the timeout and reuse their slots:
             * a lost datagram must not shrink the window for the rest of the run. */
            double limit = now - o.timeout;
            for (int s = 0; s < o.window; s++) {
                if (c.slot_seq[s] != 0 && c.slot_sent[s] < limit) {
                    c.lost++;
                    c.slot_seq[s] = 0;
                    c.sendq[c.nsendq++] = s;
                }
            }
            next_scan = now + o.timeout / 4;
        }
        if (c.nsendq) flush_sendq(&c, now);
    }
    double t1 = now_s();
    double secs = t1 - (counting ? start : t0);
    if (secs <= 0) secs = 1e-9;
    /* cpu: the generator's share of its core while counting; near 1.0 means
     * the generator, not the responder, may be the bottleneck. */
    double waited = wait0 < 0 ? -1.0 : (wait_s() - wait0) / secs;
    printf("replies=%ld seconds=%.6f rate=%.1f lost=%ld late=%ld bad=%ld sent=%ld cpu=%.3f "
           "wait=%.3f\n",
           c.replies, secs, (double)c.replies / secs, c.lost - counted_lost_base, c.late, c.bad,
           c.sent, (cpu_s() - cpu0) / secs, waited);
    fflush(stdout);
}

/* ------------------------------------------------------------------ server */

static void run_server(struct opts o) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int one = 1, buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in a = make_addr(o.addr, o.port);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    catch_signals(); /* SIGTERM/SIGINT end the run with the served= line */
    printf("ready: server %s:%d\n", o.addr, o.port);
    fflush(stdout);

    static uint8_t bufs[MAX_BATCH][MAX_SIZE];
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    struct sockaddr_in peers[MAX_BATCH];
    long served = 0;
    double t0 = now_s(), end = t0 + o.seconds;
    while (served < o.count && !stop_flag) {
        double now = now_s();
        if (now >= end) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)((end - now) * 1000.0) + 1);
        if (pr < 0 && errno != EINTR) die("poll");
        if (pr <= 0) continue;
        for (int i = 0; i < o.batch; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = MAX_SIZE;
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &peers[i];
            msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        int n = recvmmsg(fd, msgs, (unsigned)o.batch, MSG_DONTWAIT, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int off = 0;
        while (off < n) {
            int r = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);
            if (r <= 0) break; /* an unreachable peer: drop the rest of this batch */
            off += r;
        }
        served += n;
    }
    printf("served=%ld seconds=%.6f\n", served, now_s() - t0);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    struct opts o = {.port = 7, .size = 64, .window = 64, .seconds = 2.0, .warmup = 0.0,
                     .count = 100000000L, .timeout = 0.1, .batch = 64};
    if (!strcmp(argv[1], "udp")) o.mode = M_UDP;
    else if (!strcmp(argv[1], "icmp")) o.mode = M_ICMP;
    else if (!strcmp(argv[1], "server")) o.mode = M_SERVER;
    else usage();
    int ch;
    optind = 2;
    while ((ch = getopt(argc, argv, "a:p:s:w:t:u:n:T:b:")) != -1) {
        switch (ch) {
        case 'a': o.addr = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 'w': o.window = atoi(optarg); break;
        case 't': o.seconds = atof(optarg); break;
        case 'u': o.warmup = atof(optarg); break;
        case 'n': o.count = atol(optarg); break;
        case 'T': o.timeout = atof(optarg) / 1000.0; break;
        case 'b': o.batch = atoi(optarg); break;
        default: usage();
        }
    }
    if (!o.addr) usage();
    /* Hard bounds, so a typo cannot start an unbounded run. */
    if (o.seconds <= 0 || o.seconds > 600 || o.warmup < 0 || o.warmup > 60 || o.count < 1 ||
        o.timeout <= 0 || o.batch < 1 || o.batch > MAX_BATCH)
        fail("-t must be in (0, 600], -u in [0, 60], -n >= 1, -b 1..%d", MAX_BATCH);
    fill_pattern();
    if (o.mode == M_SERVER) run_server(o);
    else run_client(o);
    return 0;
}
