/*
 * test/out_capture.h: the shell side of a tether_procs_t in the suites of
 * cnode/proc.c and cnode/builtins.c (header only, static): capture()
 * records every tether_out_t operation in ops[] (nops of them, at most
 * CAP_OPS_MAX) and answers out_rc (0 unless a test sets it).
 */
#ifndef TETHER_TEST_OUT_CAPTURE_H
#define TETHER_TEST_OUT_CAPTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cnode/proc.h"

#define CAP_OPS_MAX 64

/* One captured operation: copies of what it pointed at. */
typedef struct cap_op {
    tether_out_kind_t kind;
    char node[64];
    erlang_pid from, to;
    bool has_to;
    char to_name[64];
    char from_name[64];
    erlang_ref ref;
    char msg[1024];
    size_t msg_len;
} cap_op_t;

static cap_op_t ops[CAP_OPS_MAX];
static size_t nops;
static int out_rc;

static inline int capture(void *ctx, const tether_out_t *op)
{
    (void)ctx;
    cr_assert_lt(nops, CAP_OPS_MAX);
    cap_op_t *c = &ops[nops++];
    memset(c, 0, sizeof *c);
    c->kind = op->kind;
    if (op->node)
        snprintf(c->node, sizeof c->node, "%s", op->node);
    if (op->from)
        c->from = *op->from;
    if (op->to) {
        c->to = *op->to;
        c->has_to = true;
    }
    if (op->to_name)
        snprintf(c->to_name, sizeof c->to_name, "%s", op->to_name);
    if (op->from_name)
        snprintf(c->from_name, sizeof c->from_name, "%s", op->from_name);
    if (op->ref)
        c->ref = *op->ref;
    if (op->msg) {
        cr_assert_leq(op->msg_len, sizeof c->msg);
        memcpy(c->msg, op->msg, op->msg_len);
        c->msg_len = op->msg_len;
    }
    return out_rc;
}

/* The pid <num> of node at creation `creation`. */
static inline erlang_pid cap_pid(const char *node, unsigned num,
                                 unsigned creation)
{
    erlang_pid p;
    memset(&p, 0, sizeof p);
    snprintf(p.node, sizeof p.node, "%s", node);
    p.num = num;
    p.creation = creation;
    return p;
}

#endif /* TETHER_TEST_OUT_CAPTURE_H */
