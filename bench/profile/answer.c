/* Members for profiling: one UDP socket per member address, all answered 200 by one
 * process (epoll + recvmmsg).  Counts MESSAGEs received and repeated Via branches
 * (retransmissions).  Usage: answer HOSTS_FILE PORT STATS_FILE
 * HOSTS_FILE: one IPv4 address a line.  Writes "received retransmits" to STATS_FILE
 * every 0.5 s and on SIGTERM.
 *
 * Private to profiling (bench/profile/); the official benchmark lives in bench/.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUF 4096
#define SEEN_BITS 22

static volatile sig_atomic_t stop_flag = 0;
static void on_term(int sig) { (void)sig; stop_flag = 1; }

static uint64_t *seen;
static uint64_t received = 0, retrans = 0;

static uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ULL; }
    return h | 1;
}

static void remember(const char *p, size_t n) {
    uint64_t h = fnv(p, n);
    size_t mask = ((size_t)1 << SEEN_BITS) - 1, i = h & mask;
    while (seen[i]) {
        if (seen[i] == h) { retrans++; return; }
        i = (i + 1) & mask;
    }
    seen[i] = h;
}

static const char *line_end(const char *p, const char *end) {
    const char *q = memchr(p, '\n', end - p);
    return q ? q + 1 : end;
}

/* Build "SIP/2.0 200 OK" echoing Via, From, To, Call-ID, CSeq. Returns length or 0. */
static size_t answer(const char *in, size_t n, char *out) {
    const char *end = in + n;
    if (n < 8 || memcmp(in, "MESSAGE ", 8) != 0) return 0;
    received++;
    size_t len = 0;
    memcpy(out, "SIP/2.0 200 OK\r\n", 16); len = 16;
    const char *p = line_end(in, end);
    while (p < end && *p != '\r' && *p != '\n') {
        const char *q = line_end(p, end);
        if (!strncasecmp(p, "Via:", 4) || !strncasecmp(p, "From:", 5) || !strncasecmp(p, "To:", 3)
            || !strncasecmp(p, "Call-ID:", 8) || !strncasecmp(p, "CSeq:", 5)) {
            if (!strncasecmp(p, "Via:", 4)) {
                const char *b = memmem(p, q - p, "branch=", 7);
                if (b) {
                    const char *e = b + 7;
                    while (e < q && *e != ';' && *e != '\r' && *e != '\n' && *e != ',') e++;
                    remember(b + 7, e - b - 7);
                }
            }
            if (len + (q - p) + 32 > BUF) return 0;
            memcpy(out + len, p, q - p); len += q - p;
        }
        p = q;
    }
    memcpy(out + len, "Content-Length: 0\r\n\r\n", 21); len += 21;
    return len;
}

static void dump(const char *path) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%llu %llu\n", (unsigned long long)received, (unsigned long long)retrans);
    fclose(f);
    rename(tmp, path);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: answer HOSTS PORT STATS\n"); return 2; }
    seen = calloc((size_t)1 << SEEN_BITS, sizeof(uint64_t));
    int port = atoi(argv[2]);
    FILE *hosts = fopen(argv[1], "r");
    if (!hosts) { perror("hosts"); return 1; }
    int ep = epoll_create1(0);
    char line[128];
    int count = 0;
    while (fgets(line, sizeof line, hosts)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int sz = 4 << 20;
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, line, &a.sin_addr);
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror(line); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
        count++;
    }
    fclose(hosts);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    fprintf(stderr, "answering on %d sockets\n", count);
    static char bufs[BATCH][BUF], outs[BATCH][BUF];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec iin[BATCH], iout[BATCH];
    struct sockaddr_in from[BATCH];
    struct timespec last = {0, 0}, now;
    while (!stop_flag) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            int s = evs[i].data.fd;
            for (;;) {
                for (int k = 0; k < BATCH; k++) {
                    iin[k].iov_base = bufs[k]; iin[k].iov_len = BUF;
                    memset(&in[k].msg_hdr, 0, sizeof in[k].msg_hdr);
                    in[k].msg_hdr.msg_iov = &iin[k]; in[k].msg_hdr.msg_iovlen = 1;
                    in[k].msg_hdr.msg_name = &from[k]; in[k].msg_hdr.msg_namelen = sizeof from[k];
                }
                int got = recvmmsg(s, in, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                int m = 0;
                for (int k = 0; k < got; k++) {
                    size_t len = answer(bufs[k], in[k].msg_len, outs[m]);
                    if (!len) continue;
                    iout[m].iov_base = outs[m]; iout[m].iov_len = len;
                    memset(&out[m].msg_hdr, 0, sizeof out[m].msg_hdr);
                    out[m].msg_hdr.msg_iov = &iout[m]; out[m].msg_hdr.msg_iovlen = 1;
                    out[m].msg_hdr.msg_name = &from[k]; out[m].msg_hdr.msg_namelen = sizeof from[k];
                    m++;
                }
                if (m) sendmmsg(s, out, m, 0);
                if (got < BATCH) break;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec != last.tv_sec || now.tv_nsec - last.tv_nsec > 500000000L) {
            dump(argv[3]);
            last = now;
        }
    }
    dump(argv[3]);
    return 0;
}
