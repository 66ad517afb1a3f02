/* Building the router state (R) from a manifest: config.c. */
#ifndef ROUTERD_CONFIG_H
#define ROUTERD_CONFIG_H

#include <routerd/plugin.h>

#include <stdio.h>

/* The keys of [router] and of each [persona.NAME] section. */
extern const rd_option router_opts[];
extern const rd_option persona_opts[];

/* Loads and validates the manifest at path, loads and creates the plugins
 * and fills R. 0, or -1 with a one-line message in err. */
int config_build(const char *path, const char *plugin_dir_override, char *err, size_t errsz);
/* Writes the effective configuration (secrets as ***) for --print-config. */
void config_print(FILE *out);
/* Frees what config_build made; it may then run again. */
void config_free(void);
/* The plugin folder that belongs to this executable (malloc()ed). */
char *config_default_plugin_dir(void);

#endif
