/* Process metrics read from /proc on every scrape. */
#include "prom_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int proc_parse_stat(const char *text, double clk_tck, double page_size, double boot_time,
                    proc_stats *out) {
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses,
     * so fields are counted from the last ')'. */
    const char *p = text ? strrchr(text, ')') : NULL;
    if (!p || clk_tck <= 0) return -1;
    p++;
    while (*p == ' ')
        p++;
    if (!*p) return -1;
    while (*p && *p != ' ') /* field 3: the state letter */
        p++;
    double f[53] = {0};
    int field = 3;
    while (field < 52) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) break;
        f[++field] = v;
        p = end;
    }
    if (field < 24) return -1;
    out->have_stat = true;
    out->cpu_seconds = (f[14] + f[15]) / clk_tck;
    out->start_time_seconds = boot_time >= 0 ? boot_time + f[22] / clk_tck : 0;
    out->virtual_bytes = f[23];
    out->resident_bytes = f[24] * page_size;
    return 0;
}

double proc_parse_btime(const char *text) {
    const char *p = text ? strstr(text, "\nbtime ") : NULL;
    if (!p && text && !strncmp(text, "btime ", 6)) p = text - 1;
    if (!p) return -1;
    return strtod(p + 7, NULL);
}

static char *slurp(const char *path, char *buf, size_t sz) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t off = 0;
    ssize_t n;
    while (off + 1 < sz && (n = read(fd, buf + off, sz - 1 - off)) > 0)
        off += (size_t)n;
    close(fd);
    buf[off] = 0;
    return off ? buf : NULL;
}

void proc_read_self(proc_stats *out) {
    *out = (proc_stats){0};
    char self[1024];
    double btime = -1;
    char *statbuf = malloc(65536); /* /proc/stat grows with the CPU count */
    if (statbuf && slurp("/proc/stat", statbuf, 65536)) btime = proc_parse_btime(statbuf);
    free(statbuf);
    if (slurp("/proc/self/stat", self, sizeof self))
        proc_parse_stat(self, (double)sysconf(_SC_CLK_TCK), (double)sysconf(_SC_PAGESIZE), btime,
                        out);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        double n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') n++;
        closedir(d);
        out->open_fds = n - 1; /* minus the directory handle itself */
        out->have_fds = true;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
}

void proc_add_metrics(prom_doc *d, const proc_stats *ps) {
    if (ps->have_stat) {
        prom_doc_add_simple(d, RD_METRIC_COUNTER, "process_cpu_seconds_total",
                            "Total user and system CPU time spent in seconds.", ps->cpu_seconds);
        prom_doc_add_simple(d, RD_METRIC_GAUGE, "process_resident_memory_bytes",
                            "Resident memory size in bytes.", ps->resident_bytes);
        prom_doc_add_simple(d, RD_METRIC_GAUGE, "process_virtual_memory_bytes",
                            "Virtual memory size in bytes.", ps->virtual_bytes);
        if (ps->start_time_seconds > 0)
            prom_doc_add_simple(d, RD_METRIC_GAUGE, "process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.",
                                ps->start_time_seconds);
    }
    if (ps->have_fds) {
        prom_doc_add_simple(d, RD_METRIC_GAUGE, "process_open_fds",
                            "Number of open file descriptors.", ps->open_fds);
        if (ps->max_fds >= 0)
            prom_doc_add_simple(d, RD_METRIC_GAUGE, "process_max_fds",
                                "Maximum number of open file descriptors.", ps->max_fds);
    }
}
