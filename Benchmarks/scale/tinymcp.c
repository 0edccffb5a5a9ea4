/*
 * tinymcp: the smallest server that passes mcpfleet's MCP probe, for the scale benchmark.
 *
 *   tinymcp PORT [PORT...]        listen on 127.0.0.1:PORT for each PORT
 *   tinymcp --range FIRST-LAST[:STEP]
 *
 * One process, one thread, epoll: it never forks per connection, so thousands of replicas (one
 * process each on the local driver) or thousands of ports (one process for every simulated pod on the
 * Kubernetes test API server) cost a few hundred KiB each and no CPU while idle. Streamable HTTP,
 * JSON responses, keep-alive:
 *   POST initialize                 -> 200 result {protocolVersion, capabilities, serverInfo} + Mcp-Session-Id
 *   POST notifications/...          -> 202
 *   POST tools/list                 -> 200 result {tools: [echo]}
 *   POST ping                       -> 200 result {}
 *   POST anything else              -> 200 JSON-RPC error -32601
 *   GET (http probes)               -> 200 "ok"
 *   DELETE (end of session)         -> 200
 * Not a general MCP server and not part of mcpfleet: a benchmark fixture (Benchmarks/scale/README.md).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384

struct conn {
    int fd;
    int listener;
    size_t len;
    char *buf; /* BUF bytes; NULL for a listening socket */
};

static unsigned long sessions;

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0) {
        fprintf(stderr, "tinymcp: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The raw text of the JSON-RPC "id" member (a number or a string), or NULL for a notification. */
static int rpc_id(const char *body, size_t n, char *out, size_t cap) {
    const char *p = memmem(body, n, "\"id\"", 4);
    if (!p) return 0;
    p += 4;
    const char *end = body + n;
    while (p < end && (*p == ' ' || *p == ':')) p++;
    const char *s = p;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"') p++;
        if (p < end) p++;
    } else {
        while (p < end && (*p == '-' || (*p >= '0' && *p <= '9'))) p++;
    }
    size_t len = (size_t)(p - s);
    if (len == 0 || len >= cap) return 0;
    memcpy(out, s, len);
    out[len] = 0;
    return 1;
}

static int has_method(const char *body, size_t n, const char *method) {
    char needle[96];
    snprintf(needle, sizeof needle, "\"%s\"", method);
    const char *m = memmem(body, n, "\"method\"", 8);
    return m && memmem(m, n - (size_t)(m - body), needle, strlen(needle)) != NULL;
}

static void reply(struct conn *c, int status, const char *extra, const char *ctype, const char *body) {
    char head[512];
    size_t blen = body ? strlen(body) : 0;
    const char *reason = status == 200 ? "OK" : status == 202 ? "Accepted" : status == 400 ? "Bad Request" : "Not Found";
    int h = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s%s%s\r\n", status, reason, blen,
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", extra ? extra : "");
    /* Small responses on a loopback socket: a blocking-style write loop is enough. */
    const char *parts[2] = {head, body};
    size_t lens[2] = {(size_t)h, blen};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = write(c->fd, parts[i] + off, lens[i] - off);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (w <= 0) return;
            off += (size_t)w;
        }
    }
}

static void handle(struct conn *c, const char *method, const char *body, size_t n) {
    if (strcmp(method, "GET") == 0) return reply(c, 200, NULL, "text/plain", "ok\n");
    if (strcmp(method, "DELETE") == 0) return reply(c, 200, NULL, NULL, NULL);
    if (strcmp(method, "POST") != 0) return reply(c, 404, NULL, "text/plain", "not found\n");
    char id[64];
    if (!rpc_id(body, n, id, sizeof id)) return reply(c, 202, NULL, NULL, NULL); /* a notification */
    char out[1024], extra[96];
    if (has_method(body, n, "initialize")) {
        snprintf(extra, sizeof extra, "Mcp-Session-Id: tiny-%lu\r\n", ++sessions);
        snprintf(out, sizeof out,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{\"tools\":{}},"
                 "\"serverInfo\":{\"name\":\"tinymcp\",\"version\":\"1.0.0\"}}}",
                 id);
        return reply(c, 200, extra, "application/json", out);
    }
    if (has_method(body, n, "tools/list") || has_method(body, n, "tools\\/list")) { /* JSON may escape the slash */
        snprintf(out, sizeof out,
                 "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"echo\",\"description\":\"Echoes its input.\","
                 "\"inputSchema\":{\"type\":\"object\"}}]}}",
                 id);
        return reply(c, 200, NULL, "application/json", out);
    }
    if (has_method(body, n, "ping")) {
        snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}", id);
        return reply(c, 200, NULL, "application/json", out);
    }
    snprintf(out, sizeof out, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}", id);
    return reply(c, 200, NULL, "application/json", out);
}

/* Serves every complete request in the buffer; returns 0 to close the connection. */
static int serve(struct conn *c) {
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return c->len < BUF;
        size_t head = (size_t)(end - c->buf) + 4;
        size_t body = 0;
        int keep = 1;
        char method[16] = {0};
        sscanf(c->buf, "%15s", method);
        for (char *line = memchr(c->buf, '\n', head); line && line < c->buf + head; line = memchr(line + 1, '\n', (size_t)(c->buf + head - line - 1))) {
            if (strncasecmp(line + 1, "Content-Length:", 15) == 0) body = strtoul(line + 16, NULL, 10);
            if (strncasecmp(line + 1, "Connection: close", 17) == 0) keep = 0;
        }
        if (head + body > BUF) return 0;
        if (c->len < head + body) return 1;
        handle(c, method, c->buf + head, body);
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
        if (!keep) return 0;
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int listeners = 0;
    for (int i = 1; i < argc; i++) {
        int first, last, step = 1;
        if (strcmp(argv[i], "--range") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%d-%d:%d", &first, &last, &step) < 2 || step < 1) {
                fprintf(stderr, "tinymcp: bad range %s\n", argv[i]);
                return 2;
            }
        } else {
            first = last = atoi(argv[i]);
        }
        for (int port = first; port <= last; port += step) {
            int fd = listen_on(port);
            if (fd < 0) return 1;
            struct conn *l = calloc(1, sizeof *l);
            l->fd = fd;
            l->listener = 1;
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            listeners++;
        }
    }
    if (listeners == 0) {
        fprintf(stderr, "usage: tinymcp PORT [PORT...] | --range FIRST-LAST[:STEP]\n");
        return 2;
    }
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->listener) {
                int fd;
                while ((fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    nc->fd = fd;
                    nc->listener = 0;
                    nc->len = 0;
                    nc->buf = malloc(BUF);
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int open = 1;
            for (;;) {
                ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
                if (r > 0) {
                    c->len += (size_t)r;
                    if (!serve(c)) { open = 0; break; }
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                open = 0;
                break;
            }
            if (!open) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c->buf);
                free(c);
            }
        }
    }
}
