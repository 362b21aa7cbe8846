/*
 * test/unstarted_node.h: a node that is never started (no socket, no
 * epmd), for the Criterion suites that drive its processes by hand
 * (header only, static).
 */
#ifndef TETHER_TEST_UNSTARTED_NODE_H
#define TETHER_TEST_UNSTARTED_NODE_H

#include <criterion/criterion.h>

#include "tether/node.h"

/* A node named `name` with the cookie "secret", logging errors only. */
static inline tether_node_t *unstarted_node(const char *name)
{
    tether_node_config_t cfg = {
        .name = name,
        .cookie = "secret",
        .log_level = TETHER_LOG_ERROR,
    };
    tether_node_t *node = NULL;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    return node;
}

#endif /* TETHER_TEST_UNSTARTED_NODE_H */
