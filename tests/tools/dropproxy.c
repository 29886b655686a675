/* dropproxy: a loopback TCP proxy in front of a plain-HTTP CA that follows the HTTP/1.1 requests
 * and responses of each connection and drops chosen answers (the request reaches the upstream,
 * its response is read and discarded, the client connection is closed). Usage: README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)

static struct sockaddr_in upstream_addr;
static const char *match; /* NULL: every request is a candidate */
static unsigned long drop_first;
static double drop_rate;
static uint64_t prng_state;
static unsigned long candidates;
static pthread_mutex_t decide_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static volatile sig_atomic_t stopping;

/* ---- HTTP/1.1 message framing ----------------------------------------------------------- */

enum pstate { P_HEAD, P_LENGTH, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILER, P_CLOSE };
enum pevent { EV_NONE, EV_HEAD, EV_DONE, EV_ERROR };

typedef struct parser {
    enum pstate state;
    char head[MAX_HEAD + 1];
    size_t head_len;
    unsigned long long remaining;
    char line[512];
    size_t line_len;
} parser;

/* Consumes bytes of d until an event (or the end of d); returns how many. After EV_HEAD the
 * caller sets the body framing with parser_body(); after EV_DONE the parser waits for a head. */
static size_t parser_feed(parser *p, const char *d, size_t n, enum pevent *ev)
{
    size_t i = 0;
    *ev = EV_NONE;
    while (i < n) {
        switch (p->state) {
        case P_HEAD:
            if (p->head_len == MAX_HEAD) {
                *ev = EV_ERROR;
                return i;
            }
            p->head[p->head_len++] = d[i++];
            p->head[p->head_len] = '\0';
            if (p->head_len == 2 && strcmp(p->head, "\r\n") == 0) {
                p->head_len = 0; /* a stray CRLF between messages */
                break;
            }
            if ((p->head_len >= 4 && memcmp(p->head + p->head_len - 4, "\r\n\r\n", 4) == 0) ||
                (p->head_len >= 2 && memcmp(p->head + p->head_len - 2, "\n\n", 2) == 0)) {
                *ev = EV_HEAD;
                return i;
            }
            break;
        case P_LENGTH: {
            size_t take = n - i;
            if (take > p->remaining)
                take = (size_t)p->remaining;
            i += take;
            p->remaining -= take;
            if (p->remaining == 0) {
                p->state = P_HEAD;
                p->head_len = 0;
                *ev = EV_DONE;
                return i;
            }
            break;
        }
        case P_CHUNK_SIZE:
        case P_CHUNK_END:
        case P_TRAILER: {
            char c = d[i++];
            if (c != '\n') {
                if (p->line_len < sizeof p->line - 1)
                    p->line[p->line_len++] = c;
                break;
            }
            p->line[p->line_len] = '\0';
            if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
                p->line[--p->line_len] = '\0';
            size_t len = p->line_len;
            p->line_len = 0;
            if (p->state == P_CHUNK_END) {
                p->state = P_CHUNK_SIZE;
            } else if (p->state == P_TRAILER) {
                if (len == 0) {
                    p->state = P_HEAD;
                    p->head_len = 0;
                    *ev = EV_DONE;
                    return i;
                }
            } else {
                char *end;
                errno = 0;
                p->remaining = strtoull(p->line, &end, 16);
                if (end == p->line || errno != 0) {
                    *ev = EV_ERROR;
                    return i;
                }
                p->state = p->remaining == 0 ? P_TRAILER : P_CHUNK_DATA;
            }
            break;
        }
        case P_CHUNK_DATA: {
            size_t take = n - i;
            if (take > p->remaining)
                take = (size_t)p->remaining;
            i += take;
            p->remaining -= take;
            if (p->remaining == 0)
                p->state = P_CHUNK_END;
            break;
        }
        case P_CLOSE:
            i = n;
            break;
        }
    }
    return i;
}

/* The value of header `name` in the head (trimmed, copied into out), or NULL. */
static const char *header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *l = strchr(head, '\n'); l != NULL; l = strchr(l, '\n')) {
        l++;
        if (strncasecmp(l, name, nlen) != 0 || l[nlen] != ':')
            continue;
        const char *v = l + nlen + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\r\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        if (len >= cap)
            len = cap - 1;
        memcpy(out, v, len);
        out[len] = '\0';
        return out;
    }
    return NULL;
}

/* Sets the body framing from the head: chunked, Content-Length, or (when neither) none for a
 * request and close-delimited for a response. no_body: a HEAD answer, 1xx, 204, 304. Returns
 * EV_DONE when the message has no body, EV_NONE when one follows, EV_ERROR on a bad length. */
static enum pevent parser_body(parser *p, bool is_response, bool no_body)
{
    char v[128];
    p->line_len = 0;
    if (no_body) {
        p->state = P_HEAD;
        p->head_len = 0;
        return EV_DONE;
    }
    if (header(p->head, "Transfer-Encoding", v, sizeof v) != NULL && strcasestr(v, "chunked")) {
        p->state = P_CHUNK_SIZE;
        return EV_NONE;
    }
    if (header(p->head, "Content-Length", v, sizeof v) != NULL) {
        char *end;
        errno = 0;
        unsigned long long len = strtoull(v, &end, 10);
        if (end == v || *end != '\0' || errno != 0)
            return EV_ERROR;
        if (len == 0) {
            p->state = P_HEAD;
            p->head_len = 0;
            return EV_DONE;
        }
        p->state = P_LENGTH;
        p->remaining = len;
        return EV_NONE;
    }
    if (is_response) {
        p->state = P_CLOSE;
        return EV_NONE;
    }
    p->state = P_HEAD;
    p->head_len = 0;
    return EV_DONE;
}

/* ---- decisions and the log -------------------------------------------------------------- */

static uint64_t prng_next(void)
{
    uint64_t z = (prng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static bool decide_drop(const char *request_line)
{
    if (match != NULL && strstr(request_line, match) == NULL)
        return false;
    pthread_mutex_lock(&decide_lock);
    bool drop = candidates < drop_first;
    candidates++;
    if (!drop && drop_rate > 0)
        drop = (double)(prng_next() >> 11) * 0x1.0p-53 < drop_rate;
    pthread_mutex_unlock(&decide_lock);
    return drop;
}

static void log_line(const char *what, const char *method, const char *path, int status)
{
    if (log_fd < 0)
        return;
    char line[1200];
    int len = snprintf(line, sizeof line, "%s %s %s %d\n", what, method, path, status);
    if (len > (int)sizeof line - 1) {
        len = (int)sizeof line - 1;
        line[len - 1] = '\n';
    }
    if (len > 0 && write(log_fd, line, (size_t)len) < 0) {
        /* a lost log line: nothing to do */
    }
}

/* ---- one connection --------------------------------------------------------------------- */

typedef struct request {
    char method[32];
    char path[1024];
    bool drop;
    struct request *next;
} request;

typedef struct conn {
    int client, upstream;
    parser req, resp;
    request *head, *tail; /* requests waiting for their answers, oldest first */
    int status;           /* of the response being read */
    bool interim;         /* it is a 1xx */
    bool tunnel;          /* after a 101: bytes only */
} conn;

static int write_all(int fd, const char *d, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, d, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        d += w;
        n -= (size_t)w;
    }
    return 0;
}

static void on_request_head(conn *c)
{
    request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    char line[1100];
    size_t len = strcspn(c->req.head, "\r\n");
    if (len >= sizeof line)
        len = sizeof line - 1;
    memcpy(line, c->req.head, len);
    line[len] = '\0';
    if (sscanf(line, "%31s %1023s", r->method, r->path) != 2) {
        snprintf(r->method, sizeof r->method, "-");
        snprintf(r->path, sizeof r->path, "-");
    }
    r->drop = decide_drop(line);
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
}

/* Client bytes: followed for request boundaries and sent on to the upstream. -1: close. */
static int from_client(conn *c, const char *d, size_t n)
{
    if (write_all(c->upstream, d, n) != 0)
        return -1;
    if (c->tunnel)
        return 0;
    while (n > 0) {
        enum pevent ev;
        size_t used = parser_feed(&c->req, d, n, &ev);
        d += used;
        n -= used;
        if (ev == EV_ERROR)
            return -1;
        if (ev == EV_HEAD) {
            on_request_head(c);
            if (parser_body(&c->req, false, false) == EV_ERROR)
                return -1;
        }
    }
    return 0;
}

/* The response being read is complete. 1 when the connection ends here (dropped). */
static int response_done(conn *c)
{
    if (c->interim)
        return 0;
    request *r = c->head;
    bool drop = r != NULL && r->drop;
    log_line(drop ? "dropped" : "passed", r ? r->method : "-", r ? r->path : "-", c->status);
    if (r != NULL) {
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        free(r);
    }
    return drop ? 1 : 0;
}

/* Upstream bytes: answers of dropped requests are discarded, the rest sent to the client.
 * -1: close on an error; 1: close after a dropped answer. */
static int from_upstream(conn *c, const char *d, size_t n)
{
    if (c->tunnel)
        return write_all(c->client, d, n);
    while (n > 0) {
        enum pevent ev;
        bool in_head = c->resp.state == P_HEAD;
        size_t used = parser_feed(&c->resp, d, n, &ev);
        d += used;
        n -= used;
        if (ev == EV_ERROR)
            return -1;
        if (ev == EV_HEAD) {
            /* The status decides whether this is an interim answer: forwarded, not dropped. */
            c->status = 0;
            sscanf(c->resp.head, "HTTP/%*d.%*d %d", &c->status);
            c->interim = c->status >= 100 && c->status < 200;
        }
        bool discard = c->head != NULL && c->head->drop && !c->interim;
        /* A head is sent whole once complete; body bytes as they come. */
        if (!discard && in_head && ev == EV_HEAD &&
            write_all(c->client, c->resp.head, c->resp.head_len) != 0)
            return -1;
        if (!discard && !in_head && write_all(c->client, d - used, used) != 0)
            return -1;
        if (ev == EV_HEAD) {
            bool head_req = c->head != NULL && strcmp(c->head->method, "HEAD") == 0;
            bool no_body = c->interim || c->status == 204 || c->status == 304 || head_req;
            if (c->status == 101) {
                c->tunnel = true;
                return n > 0 ? write_all(c->client, d, n) : 0;
            }
            ev = parser_body(&c->resp, true, no_body);
            if (ev == EV_ERROR)
                return -1;
        }
        if (ev == EV_DONE) {
            if (response_done(c))
                return 1;
            c->interim = false;
        }
    }
    return 0;
}

static void *serve(void *arg)
{
    conn *c = arg;
    bool client_open = true;
    char buf[16384];
    while (!stopping) {
        struct pollfd fds[2] = {{c->upstream, POLLIN, 0},
                                {client_open ? c->client : -1, POLLIN, 0}};
        int r = poll(fds, 2, 500);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (fds[0].revents) {
            ssize_t n = recv(c->upstream, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                /* A close-delimited answer ends here. */
                if (!c->tunnel && c->resp.state == P_CLOSE)
                    response_done(c);
                break;
            }
            if (from_upstream(c, buf, (size_t)n) != 0)
                break;
        }
        if (client_open && fds[1].revents) {
            ssize_t n = recv(c->client, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                client_open = false;
                shutdown(c->upstream, SHUT_WR);
            } else if (from_client(c, buf, (size_t)n) != 0) {
                break;
            }
        }
    }
    close(c->client);
    close(c->upstream);
    while (c->head != NULL) {
        request *r = c->head;
        c->head = r->next;
        free(r);
    }
    free(c);
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: dropproxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT\n"
                    "         [--port-file F] [--pid-file F] [--log F] [--drop-first N]\n"
                    "         [--drop-rate P [--seed S]] [--match SUBSTRING]\n");
    exit(2);
}

/* host:port with a loopback IPv4 host ("localhost" allowed). */
static int parse_addr(const char *s, struct sockaddr_in *out)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    char host[64];
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return -1;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -1;
    if ((ntohl(out->sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "dropproxy: %s is not a loopback address\n", s);
        return -1;
    }
    return 0;
}

/* Writes content to path through a temporary file and a rename. */
static int write_atomic(const char *path, const char *content)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL)
        return -1;
    int bad = fputs(content, fp) < 0;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *listen_s = NULL, *upstream_s = NULL, *port_file = NULL, *pid_file = NULL;
    const char *log_path = NULL;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        char *end = NULL;
        if (strcmp(a, "--listen") == 0)
            listen_s = v;
        else if (strcmp(a, "--upstream") == 0)
            upstream_s = v;
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--pid-file") == 0)
            pid_file = v;
        else if (strcmp(a, "--log") == 0)
            log_path = v;
        else if (strcmp(a, "--match") == 0)
            match = v;
        else if (strcmp(a, "--drop-first") == 0)
            drop_first = strtoul(v, &end, 10);
        else if (strcmp(a, "--drop-rate") == 0)
            drop_rate = strtod(v, &end);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, &end, 10);
        else
            usage();
        if (end != NULL && (end == v || *end != '\0'))
            usage();
    }
    if (drop_rate < 0 || drop_rate > 1)
        usage();
    struct sockaddr_in listen_addr;
    if (listen_s == NULL || upstream_s == NULL || parse_addr(listen_s, &listen_addr) != 0 ||
        parse_addr(upstream_s, &upstream_addr) != 0)
        usage();
    prng_state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B9E9E5ULL;
    if (log_path != NULL) {
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            perror(log_path);
            return 1;
        }
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&listen_addr, sizeof listen_addr) != 0 ||
        listen(lfd, 128) != 0) {
        perror("dropproxy: listen");
        return 1;
    }
    socklen_t alen = sizeof listen_addr;
    getsockname(lfd, (struct sockaddr *)&listen_addr, &alen);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() below returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals, old;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);

    char text[32];
    if (pid_file != NULL) {
        snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (write_atomic(pid_file, text) != 0) {
            perror(pid_file);
            return 1;
        }
    }
    if (port_file != NULL) {
        snprintf(text, sizeof text, "%u\n", (unsigned)ntohs(listen_addr.sin_port));
        if (write_atomic(port_file, text) != 0) {
            perror(port_file);
            return 1;
        }
    }

    while (!stopping) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int cfd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        if ((ntohl(peer.sin_addr.s_addr) >> 24) != 127) {
            close(cfd);
            continue;
        }
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ufd < 0 || connect(ufd, (struct sockaddr *)&upstream_addr, sizeof upstream_addr)) {
            fprintf(stderr, "dropproxy: upstream %s: %s\n", upstream_s, strerror(errno));
            if (ufd >= 0)
                close(ufd);
            close(cfd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(ufd);
            close(cfd);
            continue;
        }
        c->client = cfd;
        c->upstream = ufd;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Connection threads block the stop signals: they reach this loop's poll(). */
        pthread_sigmask(SIG_BLOCK, &stop_signals, &old);
        if (pthread_create(&t, &attr, serve, c) != 0) {
            close(ufd);
            close(cfd);
            free(c);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    close(lfd);
    return 0;
}
