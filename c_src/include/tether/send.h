/*
 * tether/send.h: plain messages (`!`) from C to Erlang processes.
 *
 * Terms are 131-prefixed external term format byte strings, copied.
 * Both functions may be called from any thread.
 */
#ifndef TETHER_SEND_H
#define TETHER_SEND_H

#include <stddef.h>

#include <ei.h>

#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sends `term` (copied) to a pid, local or remote. Any thread. */
int tether_send(tether_node_t *node, const erlang_pid *to, const char *term,
                size_t len);

/*
 * Sends `term` to the registered `name` on node `peer` (NULL: this node;
 * an unknown local name drops the message). Connects on demand. Any thread.
 */
int tether_send_name(tether_node_t *node, const char *name, const char *peer,
                     const char *term, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_SEND_H */
