/* Process metrics from /proc, named like the Prometheus client libraries'
 * (process_cpu_seconds_total, process_resident_memory_bytes, ...), so the
 * usual dashboards work unchanged. */
#ifndef ROUTERD_PROM_PROCESS_H
#define ROUTERD_PROM_PROCESS_H

#include <stdbool.h>

#include "prom_format.h"

typedef struct proc_stats {
    bool have_stat; /* /proc/self/stat parsed */
    double cpu_seconds, resident_bytes, virtual_bytes, start_time_seconds;
    bool have_fds;
    double open_fds, max_fds;
} proc_stats;

/* Parses the text of /proc/<pid>/stat. clk_tck and page_size from
 * sysconf(); boot_time is the btime line of /proc/stat (seconds since the
 * epoch). Returns 0, or -1 when the text is not a stat line. */
int proc_parse_stat(const char *text, double clk_tck, double page_size, double boot_time,
                    proc_stats *out);
/* The btime value from the text of /proc/stat, or -1. */
double proc_parse_btime(const char *text);
/* Reads this process's figures; fields it cannot read stay unset. */
void proc_read_self(proc_stats *out);
/* Adds the families that are set to the document. */
void proc_add_metrics(prom_doc *d, const proc_stats *ps);

#endif
