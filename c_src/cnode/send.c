/*
 * cnode/send.c: plain messages from C (tether/send.h), from any thread:
 * on the loop thread they go at once, from any other thread through a
 * post to the loop. A message to a remote registered name is sent from
 * rex, as the BEAM's rpc would.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/send.h"
#include "tether/term.h"

int tether__send_any(tether_node_t *node, const erlang_pid *self,
                     const erlang_pid *to, const erlang_ref *alias,
                     const char *msg, size_t len)
{
    if (tether_node_on_loop(node))
        return tether__node_send_now(node, self, to, alias, msg, len);
    if (alias)
        return tether_node_post_send_alias(node, self, alias, msg, len);
    return tether_node_post_send(node, self, to, msg, len);
}

typedef struct name_send {
    char name[TETHER_NAME_MAX];
    char peer[TETHER_NAME_MAX];
    bool remote;
    size_t len;
    char msg[];
} name_send_t;

static void do_name_send(tether_node_t *node, void *arg)
{
    name_send_t *ns = arg;
    if (ns->remote && node->rex)
        (void)tether_proc_send_name(node->rex, ns->name, ns->peer, ns->msg,
                                    ns->len);
    else if (!ns->remote)
        tether_procs_reg_send_in(node->procs, NULL, ns->name, ns->msg, ns->len);
    free(ns);
}

int tether_send(tether_node_t *node, const erlang_pid *to, const char *term,
                size_t len)
{
    if (node == NULL || to == NULL || !tether_term_valid(term, len))
        return TETHER_EINVAL;
    return tether__send_any(node, NULL, to, NULL, term, len);
}

int tether_send_name(tether_node_t *node, const char *name, const char *peer,
                     const char *term, size_t len)
{
    if (node == NULL || !tether__name_ok(name) ||
        !tether_term_valid(term, len) ||
        (peer && !tether_node_name_valid(peer)))
        return TETHER_EINVAL;
    name_send_t *ns = calloc(1, sizeof *ns + len);
    if (ns == NULL)
        return TETHER_ENOMEM;
    snprintf(ns->name, sizeof ns->name, "%s", name);
    ns->remote = peer && strcmp(peer, tether_node_name(node)) != 0;
    if (ns->remote)
        snprintf(ns->peer, sizeof ns->peer, "%s", peer);
    ns->len = len;
    memcpy(ns->msg, term, len);
    if (tether_node_on_loop(node)) {
        do_name_send(node, ns);
        return 0;
    }
    int rc = tether_node_post(node, do_name_send, ns);
    if (rc < 0)
        free(ns);
    return rc;
}
