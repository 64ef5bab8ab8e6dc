/* The chat members of the benchmark, in C: many UDP endpoints that answer 200 at once.
 *
 * Same job and control protocol as bench/receivers.py (which is the fallback when no C
 * compiler is around); built by bench/runner.py with `cc -O2` into the work directory.
 *
 *   receiver MEMBERS_FILE        MEMBERS_FILE: lines "id ip user"
 *
 * Every member gets a UDP socket on ip:5060 (4 MB receive buffer).  One epoll loop reads
 * each ready socket with recvmmsg() until it is empty, answers every request with
 * "SIP/2.0 200 OK" plus its Via/From/To/Call-ID/CSeq lines (sendmmsg(), one call per
 * batch) and keeps, per MESSAGE, a 40-byte record: member, the body's sequence number
 * ("bench n<seq> ..."), sipp's send time (the body's last tab-separated field,
 * "<sec>.<usec>"), the arrival time (CLOCK_REALTIME) and an FNV-1a hash of the datagram
 * (a retransmission is the same datagram).
 *
 * Commands on stdin, one a line; answers on stdout:
 *   reset | count | dump PATH | register IP PORT DOMAIN EXPIRES | quit
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT 5060
#define BATCH 32
#define BUF 8192
#define OUT 4096
#define RCVBUF (4 * 1024 * 1024)

struct record {
    uint32_t member;
    uint32_t pad;
    uint64_t seq;
    int64_t sent_us;
    int64_t arrived_us;
    uint64_t hash;
};

struct member {
    int fd;
    uint32_t id;
    char ip[64];
    char user[64];
};

static struct member *members;
static size_t nmembers;
static struct record *records;
static size_t nrecords, caprecords;
static int64_t last_us;
static unsigned long registered, other;

static char inbuf[BATCH][BUF];
static char outbuf[BATCH][OUT];
static struct sockaddr_in src[BATCH];
static struct mmsghdr in_msgs[BATCH], out_msgs[BATCH];
static struct iovec in_iov[BATCH], out_iov[BATCH];

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void keep(uint32_t member, uint64_t seq, int64_t sent, int64_t arrived, uint64_t h) {
    if (nrecords == caprecords) {
        caprecords = caprecords ? caprecords * 2 : 1 << 16;
        records = realloc(records, caprecords * sizeof *records);
        if (!records) {
            perror("realloc");
            exit(1);
        }
    }
    records[nrecords++] = (struct record){member, 0, seq, sent, arrived, h};
}

/* Is the header line starting at p (length n) one a 200 repeats? */
static int wanted(const char *p, size_t n) {
    static const char *names[] = {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"};
    const char *colon = memchr(p, ':', n);
    if (!colon) return 0;
    size_t len = (size_t)(colon - p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        if (strlen(names[k]) == len && strncasecmp(p, names[k], len) == 0) return 1;
    return 0;
}

/* Build the 200 for the request in msg (len bytes, head ends at head_end). */
static size_t answer(const char *msg, size_t head_end, char *out) {
    static const char first[] = "SIP/2.0 200 OK\r\n";
    static const char tail[] = "Content-Length: 0\r\n\r\n";
    size_t o = sizeof first - 1;
    memcpy(out, first, o);
    const char *p = memchr(msg, '\n', head_end);
    if (!p) return 0;
    p++;
    const char *end = msg + head_end;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p + 1) : (size_t)(end - p);
        if (wanted(p, n) && o + n + sizeof tail < OUT) {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    memcpy(out + o, tail, sizeof tail - 1);
    return o + sizeof tail - 1;
}

/* "bench n<seq> r<row> t<date>\t<time>\t<sec>.<usec>": seq and the send time. */
static void parse_body(const char *body, size_t n, uint64_t *seq, int64_t *sent) {
    *seq = 0;
    *sent = 0;
    const char *b = memmem(body, n, "bench n", 7);
    if (!b) return;
    const char *p = b + 7, *end = body + n;
    uint64_t s = 0;
    while (p < end && isdigit((unsigned char)*p)) s = s * 10 + (uint64_t)(*p++ - '0');
    const char *tab = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '\t') tab = q;
    if (!tab) return;
    p = tab + 1;
    int64_t sec = 0, usec = 0;
    int digits = 0;
    while (p < end && isdigit((unsigned char)*p)) sec = sec * 10 + (*p++ - '0');
    if (p < end && *p == '.') {
        p++;
        while (p < end && isdigit((unsigned char)*p) && digits < 6) {
            usec = usec * 10 + (*p++ - '0');
            digits++;
        }
        while (digits++ < 6) usec *= 10;
    }
    *seq = s;
    *sent = sec * 1000000 + usec;
}

static void drain(struct member *m) {
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            in_iov[i].iov_base = inbuf[i];
            in_iov[i].iov_len = BUF - 1;
            in_msgs[i].msg_hdr.msg_iov = &in_iov[i];
            in_msgs[i].msg_hdr.msg_iovlen = 1;
            in_msgs[i].msg_hdr.msg_name = &src[i];
            in_msgs[i].msg_hdr.msg_namelen = sizeof src[i];
            in_msgs[i].msg_hdr.msg_control = NULL;
            in_msgs[i].msg_hdr.msg_controllen = 0;
            in_msgs[i].msg_hdr.msg_flags = 0;
        }
        int got = recvmmsg(m->fd, in_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0) return;
        int64_t t = now_us();
        int nout = 0;
        for (int i = 0; i < got; i++) {
            char *msg = inbuf[i];
            size_t len = in_msgs[i].msg_len;
            msg[len] = 0;
            if (len >= 8 && memcmp(msg, "SIP/2.0 ", 8) == 0) {
                if (len > 8 && msg[8] == '2')
                    registered++;
                else
                    other++;
                continue;
            }
            char *sep = memmem(msg, len, "\r\n\r\n", 4);
            if (!sep) continue;
            size_t head_end = (size_t)(sep - msg) + 2;
            size_t n = answer(msg, head_end, outbuf[nout]);
            if (n) {
                out_iov[nout].iov_base = outbuf[nout];
                out_iov[nout].iov_len = n;
                memset(&out_msgs[nout].msg_hdr, 0, sizeof out_msgs[nout].msg_hdr);
                out_msgs[nout].msg_hdr.msg_iov = &out_iov[nout];
                out_msgs[nout].msg_hdr.msg_iovlen = 1;
                out_msgs[nout].msg_hdr.msg_name = &src[i];
                out_msgs[nout].msg_hdr.msg_namelen = in_msgs[i].msg_hdr.msg_namelen;
                nout++;
            }
            if (len >= 8 && memcmp(msg, "MESSAGE ", 8) == 0) {
                uint64_t seq;
                int64_t sent;
                size_t body = head_end + 2;
                parse_body(msg + body, len - body, &seq, &sent);
                keep(m->id, seq, sent, t, fnv1a(msg, len));
            } else {
                other++;
            }
        }
        for (int done = 0; done < nout;) {
            int r = sendmmsg(m->fd, out_msgs + done, (unsigned)(nout - done), 0);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                break; /* a full buffer toward the engine: the engine retransmits */
            }
            done += r;
        }
        last_us = t;
        if (got < BATCH) return;
    }
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void do_register(int epfd, const char *ip, int port, const char *domain, int expires) {
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &to.sin_addr);
    registered = 0;
    char msg[2048];
    for (size_t k = 0; k < nmembers; k++) {
        struct member *m = &members[k];
        unsigned r = (unsigned)rand();
        int n = snprintf(msg, sizeof msg,
                         "REGISTER sip:%s SIP/2.0\r\n"
                         "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKreg%zu.%u;rport\r\n"
                         "From: <sip:%s@%s>;tag=r%u\r\n"
                         "To: <sip:%s@%s>\r\n"
                         "Call-ID: reg-%zu-%u@%s\r\n"
                         "CSeq: 1 REGISTER\r\n"
                         "Contact: <sip:%s@%s:%d>\r\n"
                         "Expires: %d\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                         domain, m->ip, PORT, k, r, m->user, domain, r, m->user, domain, k, r,
                         m->ip, m->user, m->ip, PORT, expires);
        sendto(m->fd, msg, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
    }
    int64_t deadline = now_us() + 10 * 1000000;
    struct epoll_event ev[64];
    while (registered < nmembers && now_us() < deadline) {
        int n = epoll_wait(epfd, ev, 64, 100);
        for (int i = 0; i < n; i++)
            if (ev[i].data.u32 != UINT32_MAX) drain(&members[ev[i].data.u32]);
    }
}

static int control(int epfd, char *line) {
    char *cmd = strtok(line, " \t\r\n");
    if (!cmd) return 1;
    if (!strcmp(cmd, "reset")) {
        nrecords = 0;
        other = 0;
        last_us = 0;
        reply("ok");
    } else if (!strcmp(cmd, "count")) {
        reply("count %zu %.6f %lu", nrecords, last_us / 1e6, other);
    } else if (!strcmp(cmd, "dump")) {
        char *path = strtok(NULL, "\r\n");
        FILE *f = path ? fopen(path, "wb") : NULL;
        if (!f) {
            reply("error cannot write %s", path ? path : "(none)");
            return 1;
        }
        fwrite(records, sizeof *records, nrecords, f);
        fclose(f);
        reply("ok %zu", nrecords);
    } else if (!strcmp(cmd, "register")) {
        char *ip = strtok(NULL, " "), *port = strtok(NULL, " "), *domain = strtok(NULL, " ");
        char *expires = strtok(NULL, " \r\n");
        if (!ip || !port || !domain || !expires) {
            reply("error usage: register IP PORT DOMAIN EXPIRES");
            return 1;
        }
        do_register(epfd, ip, atoi(port), domain, atoi(expires));
        reply("registered %lu", registered);
    } else if (!strcmp(cmd, "quit")) {
        reply("bye");
        return 0;
    } else {
        reply("error unknown command %s", cmd);
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MEMBERS_FILE\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    size_t cap = 256;
    members = calloc(cap, sizeof *members);
    unsigned id;
    char ip[64], user[64];
    while (fscanf(f, "%u %63s %63s", &id, ip, user) == 3) {
        if (nmembers == cap) members = realloc(members, (cap *= 2) * sizeof *members);
        struct member *m = &members[nmembers++];
        m->id = id;
        snprintf(m->ip, sizeof m->ip, "%s", ip);
        snprintf(m->user, sizeof m->user, "%s", user);
    }
    fclose(f);
    int epfd = epoll_create1(0);
    for (size_t k = 0; k < nmembers; k++) {
        struct member *m = &members[k];
        m->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int size = RCVBUF;
        setsockopt(m->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        setsockopt(m->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
        if (inet_pton(AF_INET, m->ip, &a.sin_addr) != 1 ||
            bind(m->fd, (struct sockaddr *)&a, sizeof a) < 0) {
            fprintf(stderr, "bind %s:%d: %s\n", m->ip, PORT, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
        epoll_ctl(epfd, EPOLL_CTL_ADD, m->fd, &ev);
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &cev);
    srand((unsigned)getpid());
    reply("ready %zu %d", nmembers, (int)getpid());

    char pending[65536];
    size_t npending = 0;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(epfd, ev, 64, 1000);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 != UINT32_MAX) {
                drain(&members[ev[i].data.u32]);
                continue;
            }
            ssize_t r = read(0, pending + npending, sizeof pending - 1 - npending);
            if (r == 0) return 0;
            if (r < 0) continue;
            npending += (size_t)r;
            char *nl;
            while ((nl = memchr(pending, '\n', npending))) {
                *nl = 0;
                size_t used = (size_t)(nl - pending) + 1;
                char line[65536];
                memcpy(line, pending, used);
                memmove(pending, pending + used, npending - used);
                npending -= used;
                if (!control(epfd, line)) return 0;
            }
        }
    }
}
