/*
 * tether/plugin.h: the entry point of a service plugin.
 *
 * A plugin is a shared object loaded with `tether_cnode --load PATH.so`.
 * It defines this entry point, which runs after the node started (on the
 * loop thread, before the ready line) and registers its functions and
 * services. Returning a negative TETHER_E* code stops tether_cnode with
 * an error. Plugins use the tether_* symbols of the executable: build
 * them with -fPIC -shared and do not link libtether.a into them.
 */
#ifndef TETHER_PLUGIN_H
#define TETHER_PLUGIN_H

#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_PLUGIN_INIT_SYMBOL "tether_plugin_init"
typedef int (*tether_plugin_init_fn)(tether_node_t *node);
int tether_plugin_init(tether_node_t *node);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_PLUGIN_H */
