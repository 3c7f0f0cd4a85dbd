/* floor: the smallest useful HTTP server, forge's "static C floor" baseline.
 *
 * Answers every request with "HTTP/1.1 200 OK" and body "ok\n", Connection: close (no keep-alive),
 * one connection at a time, on 0.0.0.0:$PORT (default 8080). Exits 0 on SIGTERM/SIGINT, which
 * matters as PID 1 in a container: the kernel gives PID 1 no default signal actions, so without a
 * handler `docker stop` would wait its full timeout and then SIGKILL.
 *
 * Build: musl-gcc -static -Os -s -o floor floor.c   (forge.image.floor.build_floor does this)
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char reply[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 3\r\n"
    "Connection: close\r\n"
    "\r\n"
    "ok\n";

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
    const char *p = getenv("PORT");
    int port = p && *p ? atoi(p) : 8080;
    if (port <= 0 || port > 65535) return 2;

    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (s < 0) return 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 1024) < 0) return 1;

    struct timeval tmo = {.tv_sec = 2};
    char buf[4096];
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
        /* Read the request head (up to the blank line) before answering. */
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 && (n = read(c, buf + got, sizeof buf - 1 - got)) > 0) {
            got += (size_t)n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n")) break;
        }
        if (got > 0) write(c, reply, sizeof reply - 1);
        /* Half-close, then drain until the client closes: closing with unread bytes (a request
           body) would send RST and could destroy the reply before the client reads it. */
        shutdown(c, SHUT_WR);
        while (read(c, buf, sizeof buf) > 0) {}
        close(c);
    }
}
