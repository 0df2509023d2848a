/*
 * benchtool: small load-generator helpers for bench/run (built by the script,
 * never committed as a binary).
 *
 *   benchtool tlsconn HOST PORT SNI MODE SECONDS PROCS
 *       New TLS connection per request. MODE is "new" (every handshake is a
 *       full TLS 1.3 handshake: no session is ever offered) or "reuse" (every
 *       connection after the first of each process offers the newest session
 *       ticket, so handshakes are TLS 1.3 PSK resumptions with (EC)DHE, as
 *       browsers do). Each connection sends one
 *       "GET / HTTP/1.1 / Host: SNI / Connection: close" request and reads the
 *       response to EOF. Prints one JSON line with counts.
 *
 *   benchtool bulk-server PORT
 *       Passthrough backend: accepts a connection, reads one TLS record (the
 *       ClientHello relayed by the proxy) and then writes zeros until the
 *       peer goes away. One process per connection.
 *
 *   benchtool bulk-client HOST PORT HELLO_FILE SECONDS CONNS
 *       Sends a real ClientHello (captured from OpenSSL, with the passthrough
 *       SNI) and then reads for SECONDS, counting bytes. Prints a JSON line.
 *
 * The passthrough relay therefore carries a real ClientHello followed by
 * opaque bytes: proxies route on the SNI and then relay without looking, so
 * this measures the relay itself rather than the client's and backend's
 * AES-GCM speed (which on a shared core would be the bottleneck).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tcp_connect(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        close(fd);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Counters a worker process reports to the parent (summed over workers). */
struct counts {
    long conns, ok, resumed, errors;
    long long bytes;
};

/* Runs work(arg, &counts) in `procs` forked processes until they return and
 * sums their counters into *tot. Returns the elapsed wall time. */
static double fan_out(int procs, void (*work)(void *, struct counts *), void *arg,
                      struct counts *tot) {
    int pfd[2];
    memset(tot, 0, sizeof *tot);
    if (pipe(pfd) != 0) return 0.0;
    double start = now_s();
    for (int i = 0; i < (procs < 1 ? 1 : procs); i++) {
        if (fork() == 0) {
            close(pfd[0]);
            struct counts c;
            memset(&c, 0, sizeof c);
            work(arg, &c);
            if (write(pfd[1], &c, sizeof c) != (ssize_t)sizeof c) _exit(1);
            _exit(0);
        }
    }
    close(pfd[1]);
    struct counts c;
    while (read(pfd[0], &c, sizeof c) == (ssize_t)sizeof c) {
        tot->conns += c.conns;
        tot->ok += c.ok;
        tot->resumed += c.resumed;
        tot->errors += c.errors;
        tot->bytes += c.bytes;
    }
    close(pfd[0]);
    while (wait(NULL) > 0) {
    }
    return now_s() - start;
}

/* Newest session ticket received (TLS 1.3 tickets arrive after the
 * handshake, so they are collected by the new-session callback). */
static SSL_SESSION *latest_session;

static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
    (void)ssl;
    if (latest_session) SSL_SESSION_free(latest_session);
    latest_session = sess;
    return 1; /* we keep the reference */
}

struct tlsconn_args {
    const char *host, *sni;
    int port, reuse;
    double deadline;
};

static void tlsconn_worker(void *argp, struct counts *c) {
    const struct tlsconn_args *a = argp;
    const char *host = a->host, *sni = a->sni;
    int port = a->port, reuse = a->reuse;
    double deadline = a->deadline;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (reuse) {
        /* Keep only the newest ticket, through the callback. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    const char *alpn = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn, 9);
    char req[512];
    int reqlen = snprintf(req, sizeof req,
                          "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: benchtool\r\n"
                          "Connection: close\r\n\r\n",
                          sni);
    char buf[16384];
    while (now_s() < deadline) {
        c->conns++;
        int fd = tcp_connect(host, port);
        if (fd < 0) {
            c->errors++;
            usleep(1000);
            continue;
        }
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, sni);
        if (reuse && latest_session) SSL_set_session(ssl, latest_session);
        int good = 0;
        if (SSL_connect(ssl) == 1 && SSL_write(ssl, req, reqlen) == reqlen) {
            size_t got = 0;
            char head[16] = {0};
            for (;;) {
                int n = SSL_read(ssl, buf, sizeof buf);
                if (n <= 0) break;
                if (got < 12) memcpy(head + got, buf, (size_t)(n < 12 - (int)got ? n : 12 - (int)got));
                got += (size_t)n;
            }
            good = strncmp(head, "HTTP/1.1 200", 12) == 0;
            if (SSL_session_reused(ssl)) c->resumed++;
        }
        if (good) c->ok++; else c->errors++;
        /* The server closed after its response: mark the connection shut
         * down cleanly, or OpenSSL would flag the session not resumable. */
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    if (latest_session) SSL_SESSION_free(latest_session);
    latest_session = NULL;
    SSL_CTX_free(ctx);
}

static int cmd_tlsconn(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: benchtool tlsconn HOST PORT SNI new|reuse SECONDS PROCS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct tlsconn_args a = {argv[2], argv[4], atoi(argv[3]), strcmp(argv[5], "reuse") == 0,
                             now_s() + atof(argv[6])};
    struct counts tot;
    double elapsed = fan_out(atoi(argv[7]), tlsconn_worker, &a, &tot);
    printf("{\"mode\":\"%s\",\"conns\":%ld,\"ok\":%ld,\"resumed\":%ld,\"errors\":%ld,"
           "\"elapsed\":%.3f}\n",
           argv[5], tot.conns, tot.ok, tot.resumed, tot.errors, elapsed);
    return 0;
}

static int read_full(int fd, unsigned char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int cmd_bulk_server(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: benchtool bulk-server PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[2]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0) {
        perror("bulk-server bind/listen");
        return 1;
    }
    static unsigned char zeros[256 * 1024];
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        if (fork() == 0) {
            close(lfd);
            unsigned char hdr[5];
            static unsigned char rec[1 << 16];
            if (read_full(fd, hdr, 5) != 0) _exit(0);
            size_t len = ((size_t)hdr[3] << 8) | hdr[4];
            if (read_full(fd, rec, len) != 0) _exit(0);
            for (;;) {
                ssize_t w = write(fd, zeros, sizeof zeros);
                if (w <= 0) _exit(0);
            }
        }
        close(fd);
    }
}

struct bulk_args {
    const char *host;
    int port;
    double deadline;
    unsigned char hello[16384];
    size_t hlen;
};

static void bulk_worker(void *argp, struct counts *c) {
    const struct bulk_args *a = argp;
    int fd = tcp_connect(a->host, a->port);
    if (fd < 0 || write(fd, a->hello, a->hlen) != (ssize_t)a->hlen) {
        c->errors++;
        return;
    }
    static unsigned char buf[256 * 1024];
    while (now_s() < a->deadline) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) break;
        c->bytes += r;
    }
    close(fd);
}

static int cmd_bulk_client(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: benchtool bulk-client HOST PORT HELLO_FILE SECONDS CONNS\n");
        return 2;
    }
    struct bulk_args a = {argv[2], atoi(argv[3]), now_s() + atof(argv[5]), {0}, 0};
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror("hello file");
        return 1;
    }
    a.hlen = fread(a.hello, 1, sizeof a.hello, f);
    fclose(f);
    signal(SIGPIPE, SIG_IGN);
    struct counts tot;
    double elapsed = fan_out(atoi(argv[6]), bulk_worker, &a, &tot);
    printf("{\"bytes\":%lld,\"errors\":%ld,\"elapsed\":%.3f}\n", tot.bytes, tot.errors, elapsed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "tlsconn") == 0) return cmd_tlsconn(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "bulk-server") == 0) return cmd_bulk_server(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "bulk-client") == 0) return cmd_bulk_client(argc, argv);
    fprintf(stderr, "usage: benchtool tlsconn|bulk-server|bulk-client ...\n");
    return 2;
}
