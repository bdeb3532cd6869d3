/* netprobe: a tiny static network client for agentbox's egress tests, run
 * inside the sandboxes. Every operation is bounded in time and prints one
 * line a test can parse. Exit 0: it worked; 1: it did not; 2: usage.
 *
 *   netprobe [-4|-6] [-t MS] tcp HOST PORT      connect
 *   netprobe [-4|-6] [-t MS] udp HOST PORT      send "ping", wait for an answer
 *   netprobe [-4|-6] [-t MS] icmp HOST          one echo request
 *   netprobe [-4|-6] [-t MS] resolve NAME       the addresses NAME resolves to
 *   netprobe [-4|-6] [-t MS] get HOST PORT      connect, send "GET", count bytes to EOF
 *   netprobe [-4|-6] [-t MS] hold HOST PORT SEC connect, then every 200 ms send a
 *                                               line and read its echo; "cut: ERR"
 *                                               (exit 3) when the connection breaks
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int family = AF_UNSPEC;
static int timeout_ms = 3000;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void show(const struct sockaddr *sa, char *out, size_t n) {
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, n);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, n);
}

static struct addrinfo *lookup(const char *host, const char *port, int socktype) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        printf("failed: resolve %s: %s\n", host, gai_strerror(rc));
        return NULL;
    }
    return res;
}

static int wait_fd(int fd, short ev, int ms) {
    struct pollfd p = {.fd = fd, .events = ev};
    int rc = poll(&p, 1, ms);
    return rc > 0 ? 0 : (rc == 0 ? ETIMEDOUT : errno);
}

/* connect with a deadline; the connected socket or -1 (message printed) */
static int tcp_connect(const char *host, const char *port, char *shown, size_t n) {
    struct addrinfo *res = lookup(host, port, SOCK_STREAM);
    if (!res) return -1;
    int err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        show(ai->ai_addr, shown, n);
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { err = errno; continue; }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) err = 0;
        else if (errno != EINPROGRESS) err = errno;
        else if ((err = wait_fd(fd, POLLOUT, timeout_ms)) == 0) {
            socklen_t l = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        }
        if (err == 0) {
            fcntl(fd, F_SETFL, fl);
            freeaddrinfo(res);
            return fd;
        }
        close(fd);
    }
    freeaddrinfo(res);
    printf("failed: tcp %s port %s: %s\n", shown, port, strerror(err));
    return -1;
}

static int do_tcp(const char *host, const char *port) {
    char s[64] = "";
    int fd = tcp_connect(host, port, s, sizeof s);
    if (fd < 0) return 1;
    printf("connected tcp %s port %s\n", s, port);
    close(fd);
    return 0;
}

static int do_udp(const char *host, const char *port) {
    struct addrinfo *res = lookup(host, port, SOCK_DGRAM);
    if (!res) return 1;
    char s[64] = "";
    show(res->ai_addr, s, sizeof s);
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        printf("failed: udp %s port %s: %s\n", s, port, strerror(errno));
        return 1;
    }
    freeaddrinfo(res);
    char buf[512];
    long end = now_ms() + timeout_ms;
    /* a few tries: the first datagram may wait for neighbour discovery */
    while (now_ms() < end) {
        send(fd, "ping\n", 5, 0);
        int left = (int)(end - now_ms());
        if (wait_fd(fd, POLLIN, left < 500 ? left : 500) == 0) {
            ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = 0;
                buf[strcspn(buf, "\n")] = 0;
                printf("answered udp %s port %s: %s\n", s, port, buf);
                return 0;
            }
            if (n < 0 && errno != EAGAIN) {
                printf("failed: udp %s port %s: %s\n", s, port, strerror(errno));
                return 1;
            }
        }
    }
    printf("failed: udp %s port %s: no answer\n", s, port);
    return 1;
}

static unsigned short csum(const void *data, size_t len) {
    const unsigned short *p = data;
    unsigned long sum = 0;
    for (; len > 1; len -= 2) sum += *p++;
    if (len) sum += *(const unsigned char *)p;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

static int do_icmp(const char *host) {
    struct addrinfo *res = lookup(host, NULL, SOCK_RAW);
    if (!res) return 1;
    char s[64] = "";
    show(res->ai_addr, s, sizeof s);
    int v6 = res->ai_family == AF_INET6;
    int proto = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
    /* an unprivileged ping socket first, a raw socket otherwise */
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, proto);
    int raw = 0;
    if (fd < 0) {
        fd = socket(res->ai_family, SOCK_RAW | SOCK_CLOEXEC, proto);
        raw = 1;
    }
    if (fd < 0) {
        printf("failed: icmp %s: socket: %s\n", s, strerror(errno));
        return 1;
    }
    unsigned char pkt[64];
    memset(pkt, 0, sizeof pkt);
    pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
    pkt[4] = 0x12; pkt[5] = 0x34; pkt[7] = 1;
    memcpy(pkt + 8, "agentbox-netprobe", 17);
    if (!v6) {
        unsigned short c = csum(pkt, sizeof pkt);
        memcpy(pkt + 2, &c, 2);
    }
    long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (sendto(fd, pkt, sizeof pkt, 0, res->ai_addr, res->ai_addrlen) < 0) {
            printf("failed: icmp %s: %s\n", s, strerror(errno));
            return 1;
        }
        long stop = now_ms() + 500;
        while (now_ms() < stop) {
            unsigned char buf[1500];
            if (wait_fd(fd, POLLIN, (int)(stop - now_ms())) != 0) break;
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) continue;
            unsigned char *icmp = buf;
            if (raw && !v6) icmp = buf + (buf[0] & 0x0f) * 4; /* skip the IPv4 header */
            if (icmp[0] == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY)) {
                printf("answered icmp %s\n", s);
                return 0;
            }
        }
    }
    printf("failed: icmp %s: no answer\n", s);
    return 1;
}

static int do_resolve(const char *name) {
    struct addrinfo *res = lookup(name, NULL, SOCK_STREAM);
    if (!res) return 1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char s[64];
        show(ai->ai_addr, s, sizeof s);
        printf("address %s\n", s);
    }
    freeaddrinfo(res);
    return 0;
}

static int do_get(const char *host, const char *port) {
    char s[64] = "";
    int fd = tcp_connect(host, port, s, sizeof s);
    if (fd < 0) return 1;
    send(fd, "GET\n", 4, 0);
    long total = 0, end = now_ms() + timeout_ms;
    char buf[16384];
    for (;;) {
        long left = end - now_ms();
        if (left <= 0 || wait_fd(fd, POLLIN, (int)left) != 0) {
            printf("failed: get %s port %s: timed out after %ld bytes\n", s, port, total);
            return 1;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            printf("failed: get %s port %s: %s after %ld bytes\n", s, port, strerror(errno), total);
            return 1;
        }
        total += n;
    }
    printf("downloaded %ld bytes from %s port %s\n", total, s, port);
    return 0;
}

static int do_hold(const char *host, const char *port, int seconds) {
    char s[64] = "";
    int fd = tcp_connect(host, port, s, sizeof s);
    if (fd < 0) return 1;
    printf("connected tcp %s port %s\n", s, port);
    fflush(stdout);
    long end = now_ms() + seconds * 1000L;
    int n_ok = 0;
    while (now_ms() < end) {
        char buf[64];
        if (send(fd, "tick\n", 5, MSG_NOSIGNAL) < 0) {
            printf("cut: send: %s after %d\n", strerror(errno), n_ok);
            return 3;
        }
        int err = wait_fd(fd, POLLIN, 1500);
        if (err != 0) {
            printf("cut: no echo: %s after %d\n", strerror(err), n_ok);
            return 3;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            printf("cut: recv: %s after %d\n", n == 0 ? "closed" : strerror(errno), n_ok);
            return 3;
        }
        n_ok++;
        printf("ok %d\n", n_ok);
        fflush(stdout);
        usleep(200 * 1000);
    }
    printf("held %d\n", n_ok);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: netprobe [-4|-6] [-t MS] tcp|udp|icmp|resolve|get|hold ARGS\n");
    return 2;
}

int main(int argc, char **argv) {
    int i = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-4")) family = AF_INET;
        else if (!strcmp(argv[i], "-6")) family = AF_INET6;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) timeout_ms = atoi(argv[++i]);
        else return usage();
    }
    if (i >= argc) return usage();
    const char *op = argv[i++];
    int left = argc - i;
    if (!strcmp(op, "tcp") && left == 2) return do_tcp(argv[i], argv[i + 1]);
    if (!strcmp(op, "udp") && left == 2) return do_udp(argv[i], argv[i + 1]);
    if (!strcmp(op, "icmp") && left == 1) return do_icmp(argv[i]);
    if (!strcmp(op, "resolve") && left == 1) return do_resolve(argv[i]);
    if (!strcmp(op, "get") && left == 2) return do_get(argv[i], argv[i + 1]);
    if (!strcmp(op, "hold") && left == 3) return do_hold(argv[i], argv[i + 1], atoi(argv[i + 2]));
    return usage();
}
