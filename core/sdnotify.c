/* systemd's notification protocol, spoken directly: one datagram per
 * message to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or
 * "@name" for the abstract namespace). A few lines instead of a libsystemd
 * dependency that containers and runit hosts would not use. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addrlen;

int sd_notify_init(void) {
    sd_notify_close();
    const char *p = getenv("NOTIFY_SOCKET");
    if (!p || !*p) return 0;
    size_t n = strlen(p);
    if ((p[0] != '/' && p[0] != '@') || n >= sizeof addr.sun_path) return -1;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, p, n);
    if (p[0] == '@') addr.sun_path[0] = 0;
    addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (p[0] == '/'));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return fd < 0 ? -1 : 1;
}

int sd_notify_send(const char *msg) {
    if (fd < 0) return 0;
    ssize_t r;
    do
        r = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 1;
}

int64_t sd_watchdog_interval_ms(void) {
    const char *us = getenv("WATCHDOG_USEC");
    if (!us || !*us) return 0;
    const char *pid = getenv("WATCHDOG_PID");
    int64_t v;
    /* The watchdog is meant for the main process only. */
    if (pid && *pid && (parse_i64(pid, &v) || v != (int64_t)getpid())) return 0;
    if (parse_i64(us, &v) || v <= 0 || v > (int64_t)86400 * 1000000) return 0;
    int64_t ms = v / 2000;
    return ms > 0 ? ms : 1;
}

void sd_notify_close(void) {
    if (fd >= 0) close(fd);
    fd = -1;
}
