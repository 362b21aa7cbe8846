/*
 * Criterion suite for dist/control.c: the term validator, decoding of
 * every OTP 25 control message (both framings), vectors produced by a
 * real OTP 25 node, hostile input, and encoder round trips.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dist/control.h"
#include "dist/flags.h"
#include "dist/frame.h"

/* term_to_binary({29, R, self(), group_leader(), {erpc, execute_call, 4},
   [monitor, {reply, error_only}]}) on node gen6784@vm, OTP 25. */
static const uint8_t otp_spawn_ctl[] = {
    131, 104, 6,   97,  29,  90,  0,   3,   100, 0,   10,  103, 101, 110,
    54,  55,  56,  52,  64,  118, 109, 107, 1,   43,  239, 0,   3,   171,
    68,  136, 216, 0,   2,   69,  191, 115, 232, 88,  100, 0,   10,  103,
    101, 110, 54,  55,  56,  52,  64,  118, 109, 0,   0,   0,   9,   0,
    0,   0,   0,   107, 1,   43,  239, 88,  100, 0,   10,  103, 101, 110,
    54,  55,  56,  52,  64,  118, 109, 0,   0,   0,   71,  0,   0,   0,
    0,   107, 1,   43,  239, 104, 3,   100, 0,   4,   101, 114, 112, 99,
    100, 0,   12,  101, 120, 101, 99,  117, 116, 101, 95,  99,  97,  108,
    108, 97,  4,   108, 0,   0,   0,   2,   100, 0,   7,   109, 111, 110,
    105, 116, 111, 114, 104, 2,   100, 0,   5,   114, 101, 112, 108, 121,
    100, 0,   10,  101, 114, 114, 111, 114, 95,  111, 110, 108, 121, 106};
/* term_to_binary([R, lists, reverse, [[1,2,3]]]) */
static const uint8_t otp_spawn_args[] = {
    131, 108, 0,   0,   0,   4,   90,  0,   3,   100, 0,   10,  103, 101,
    110, 54,  55,  56,  52,  64,  118, 109, 107, 1,   43,  239, 0,   3,
    171, 68,  136, 216, 0,   2,   69,  191, 115, 232, 100, 0,   5,   108,
    105, 115, 116, 115, 100, 0,   7,   114, 101, 118, 101, 114, 115, 101,
    108, 0,   0,   0,   1,   107, 0,   3,   1,   2,   3,   106, 106};
/* term_to_binary({6, self(), '', net_kernel}) */
static const uint8_t otp_reg_send_ctl[] = {
    131, 104, 4,   97, 6,  88,  100, 0,   10, 103, 101, 110, 54,  55,  56,  52,
    64,  118, 109, 0,  0,  0,   9,   0,   0,  0,   0,   107, 1,   43,  239, 100,
    0,   0,   100, 0,  10, 110, 101, 116, 95, 107, 101, 114, 110, 101, 108};
/* term_to_binary({'$gen_call', {self(), R}, {is_auth, node()}}) */
static const uint8_t otp_gen_call[] = {
    131, 104, 3,   100, 0,   9,   36,  103, 101, 110, 95,  99,  97,  108, 108,
    104, 2,   88,  100, 0,   10,  103, 101, 110, 54,  55,  56,  52,  64,  118,
    109, 0,   0,   0,   9,   0,   0,   0,   0,   107, 1,   43,  239, 90,  0,
    3,   100, 0,   10,  103, 101, 110, 54,  55,  56,  52,  64,  118, 109, 107,
    1,   43,  239, 0,   3,   171, 68,  136, 216, 0,   2,   69,  191, 115, 232,
    104, 2,   100, 0,   7,   105, 115, 95,  97,  117, 116, 104, 100, 0,   10,
    103, 101, 110, 54,  55,  56,  52,  64,  118, 109};

/* Concatenates a and b into a fresh buffer; returns its size. */
static size_t cat(uint8_t **out, const uint8_t *a, size_t na, const uint8_t *b,
                  size_t nb)
{
    *out = malloc(na + nb + 1);
    memcpy(*out, a, na);
    if (nb)
        memcpy(*out + na, b, nb);
    return na + nb;
}

Test(control, otp_spawn_request_decodes)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_spawn_ctl, sizeof(otp_spawn_ctl), otp_spawn_args,
                   sizeof(otp_spawn_args));
    tether_ctl_t c;
    int idx, arity;

    cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), 0);
    cr_assert_eq(c.op, TETHER_DOP_SPAWN_REQUEST);
    cr_assert_str_eq(c.from.pid.node, "gen6784@vm");
    cr_assert_eq(c.from.pid.num, 9);
    cr_assert_eq(c.group_leader.num, 71);
    cr_assert_eq(c.from.pid.creation, 0x6b012bef);
    cr_assert_eq(c.ref.len, 3);
    cr_assert_str_eq(c.module, "erpc");
    cr_assert_str_eq(c.function, "execute_call");
    cr_assert_eq(c.arity, 4);
    /* The option list slice decodes as a 2-element list. */
    idx = (int)c.spawn_opts.off;
    cr_assert_eq(ei_decode_list_header((char *)buf, &idx, &arity), 0);
    cr_assert_eq(arity, 2);
    /* The argument list slice starts past the 131 of the second term. */
    cr_assert_eq(c.message.off, sizeof(otp_spawn_ctl) + 1);
    cr_assert_eq(c.message.len, sizeof(otp_spawn_args) - 1);
    cr_assert_eq(c.reason.len, 0);
    free(buf);
}

Test(control, otp_reg_send_decodes)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_reg_send_ctl, sizeof(otp_reg_send_ctl),
                   otp_gen_call, sizeof(otp_gen_call));
    tether_ctl_t c;
    char atom[MAXATOMLEN_UTF8];
    int idx, arity;

    cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), 0);
    cr_assert_eq(c.op, TETHER_DOP_REG_SEND);
    cr_assert_eq(c.to.is_name, 1);
    cr_assert_str_eq(c.to.name, "net_kernel");
    idx = (int)c.message.off;
    cr_assert_eq(ei_decode_tuple_header((char *)buf, &idx, &arity), 0);
    cr_assert_eq(arity, 3);
    cr_assert_eq(ei_decode_atom((char *)buf, &idx, atom), 0);
    cr_assert_str_eq(atom, "$gen_call");
    free(buf);
}

/* Fields an op does not use read as zero or empty, even when the struct
 * held garbage before the call (decode resets it without a full memset). */
Test(control, unused_fields_are_reset)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_reg_send_ctl, sizeof(otp_reg_send_ctl),
                   otp_gen_call, sizeof(otp_gen_call));
    tether_ctl_t c;

    memset(&c, 0xA5, sizeof c);
    cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), 0);
    cr_assert_eq(c.op, TETHER_DOP_REG_SEND);
    cr_assert_eq(c.has_ref, 0);
    cr_assert_eq(c.ref.len, 0);
    cr_assert_eq(c.ref.node[0], '\0');
    cr_assert_eq(c.unlink_id, 0);
    cr_assert_eq(c.reason.len, 0);
    cr_assert_eq(c.token.len, 0);
    cr_assert_eq(c.spawn_opts.len, 0);
    cr_assert_eq(c.result.len, 0);
    cr_assert_eq(c.group_leader.node[0], '\0');
    cr_assert_eq(c.group_leader.num, 0);
    cr_assert_eq(c.module[0], '\0');
    cr_assert_eq(c.function[0], '\0');
    cr_assert_eq(c.arity, 0);
    cr_assert_eq(c.spawn_flags, 0);
    cr_assert_eq(c.result_is_pid, 0);
    cr_assert_eq(c.result_pid.node[0], '\0');
    cr_assert_eq(c.from.is_name, 0);
    cr_assert_eq(c.to.pid.node[0], '\0');
    free(buf);
}

Test(control, header_form_without_version_bytes)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_reg_send_ctl + 1, sizeof(otp_reg_send_ctl) - 1,
                   otp_gen_call + 1, sizeof(otp_gen_call) - 1);
    tether_ctl_t c;

    cr_assert_eq(tether__ctl_decode(buf, n, 0, &c), 0);
    cr_assert_eq(c.op, TETHER_DOP_REG_SEND);
    cr_assert_eq(c.message.off, sizeof(otp_reg_send_ctl) - 1);
    /* The versioned flag must match the data. */
    cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), TETHER_EPROTO);
    free(buf);
}

Test(control, truncation_at_every_length_is_rejected)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_spawn_ctl, sizeof(otp_spawn_ctl), otp_spawn_args,
                   sizeof(otp_spawn_args));
    tether_ctl_t c;

    for (size_t k = 0; k < n; k++) {
        /* A fresh copy of exactly k bytes lets ASan see any over-read. */
        uint8_t *cut = malloc(k ? k : 1);
        memcpy(cut, buf, k);
        cr_assert_eq(tether__ctl_decode(cut, k, 1, &c), TETHER_EPROTO,
                     "len %zu", k);
        free(cut);
    }
    free(buf);
}

Test(control, every_single_byte_corruption_is_safe)
{
    uint8_t *buf;
    size_t n = cat(&buf, otp_spawn_ctl, sizeof(otp_spawn_ctl), otp_spawn_args,
                   sizeof(otp_spawn_args));
    tether_ctl_t c;
    const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 82, 104, 108, 116};

    for (size_t k = 0; k < n; k++) {
        for (size_t v = 0; v < sizeof(vals); v++) {
            uint8_t *m = malloc(n);
            int rc;
            memcpy(m, buf, n);
            m[k] = vals[v];
            rc = tether__ctl_decode(m, n, 1, &c);
            cr_assert(rc == 0 || rc == TETHER_EPROTO || rc == TETHER_EUNSUPP,
                      "byte %zu = %u: %d", k, vals[v], rc);
            free(m);
        }
    }
    free(buf);
}

/* Test identities. */
static erlang_pid P1, P2;
static erlang_ref R1;

static void ids(void)
{
    memset(&P1, 0, sizeof(P1));
    memset(&P2, 0, sizeof(P2));
    memset(&R1, 0, sizeof(R1));
    strcpy(P1.node, "a@host");
    P1.num = 11;
    P1.serial = 1;
    P1.creation = 0x1234;
    strcpy(P2.node, "b@host");
    P2.num = 22;
    P2.creation = 0x5678;
    strcpy(R1.node, "a@host");
    R1.len = 3;
    R1.n[0] = 1;
    R1.n[1] = 2;
    R1.n[2] = 3;
    R1.creation = 0x1234;
}

/*
 * Encodes a representative control tuple for op into x (no version byte),
 * plus its payload term into p when the op has one (p->index stays 0
 * otherwise).
 */
static void build(int op, ei_x_buff *x, ei_x_buff *p)
{
    ei_x_new(x);
    ei_x_new(p);
    switch (op) {
    case TETHER_DOP_NODE_LINK:
        ei_x_encode_tuple_header(x, 1);
        ei_x_encode_long(x, op);
        return;
    case TETHER_DOP_LINK:
    case TETHER_DOP_UNLINK:
    case TETHER_DOP_GROUP_LEADER:
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT2:
        ei_x_encode_tuple_header(x, 3);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        break;
    case TETHER_DOP_SEND_SENDER_TT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
        ei_x_encode_tuple_header(x, 4);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_EXIT:
    case TETHER_DOP_EXIT2:
        ei_x_encode_tuple_header(x, 4);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        ei_x_encode_atom(x, "killed");
        break;
    case TETHER_DOP_EXIT_TT:
    case TETHER_DOP_EXIT2_TT:
        ei_x_encode_tuple_header(x, 5);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        ei_x_encode_atom(x, "token");
        ei_x_encode_atom(x, "killed");
        break;
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_SEND ? 3 : 4);
        ei_x_encode_long(x, op);
        ei_x_encode_atom(x, "");
        ei_x_encode_pid(x, &P2);
        if (op == TETHER_DOP_SEND_TT)
            ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_REG_SEND ? 4 : 5);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_atom(x, "");
        ei_x_encode_atom(x, "server");
        if (op == TETHER_DOP_REG_SEND_TT)
            ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_MONITOR_P:
    case TETHER_DOP_DEMONITOR_P:
        ei_x_encode_tuple_header(x, 4);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_atom(x, "server");
        ei_x_encode_ref(x, &R1);
        break;
    case TETHER_DOP_MONITOR_P_EXIT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_MONITOR_P_EXIT ? 5 : 4);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        ei_x_encode_ref(x, &R1);
        if (op == TETHER_DOP_MONITOR_P_EXIT)
            ei_x_encode_atom(x, "killed");
        break;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_SPAWN_REQUEST ? 6 : 7);
        ei_x_encode_long(x, op);
        ei_x_encode_ref(x, &R1);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        ei_x_encode_tuple_header(x, 3);
        ei_x_encode_atom(x, "mod");
        ei_x_encode_atom(x, "fun");
        ei_x_encode_long(x, 2);
        ei_x_encode_empty_list(x);
        if (op == TETHER_DOP_SPAWN_REQUEST_TT)
            ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_SPAWN_REPLY:
    case TETHER_DOP_SPAWN_REPLY_TT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_SPAWN_REPLY ? 5 : 6);
        ei_x_encode_long(x, op);
        ei_x_encode_ref(x, &R1);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_long(x, TETHER_SPAWN_FLAG_MONITOR);
        ei_x_encode_pid(x, &P2);
        if (op == TETHER_DOP_SPAWN_REPLY_TT)
            ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        ei_x_encode_tuple_header(x, op == TETHER_DOP_ALIAS_SEND ? 3 : 4);
        ei_x_encode_long(x, op);
        ei_x_encode_pid(x, &P1);
        ei_x_encode_ref(x, &R1);
        if (op == TETHER_DOP_ALIAS_SEND_TT)
            ei_x_encode_atom(x, "token");
        break;
    case TETHER_DOP_UNLINK_ID:
    case TETHER_DOP_UNLINK_ID_ACK:
        ei_x_encode_tuple_header(x, 4);
        ei_x_encode_long(x, op);
        ei_x_encode_ulonglong(x, UINT64_C(0x123456789abc));
        ei_x_encode_pid(x, &P1);
        ei_x_encode_pid(x, &P2);
        return;
    default:
        cr_assert_fail("no builder for op %d", op);
    }
    switch (op) {
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_SEND_SENDER_TT:
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        ei_x_encode_tuple_header(p, 2);
        ei_x_encode_atom(p, "hello");
        ei_x_encode_long(p, 42);
        break;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        ei_x_encode_list_header(p, 2);
        ei_x_encode_long(p, 1);
        ei_x_encode_long(p, 2);
        ei_x_encode_empty_list(p);
        break;
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        ei_x_encode_atom(p, "killed");
        break;
    default:
        break;
    }
}

static const int all_ops[] = {1,  2,  3,  4,  5,  6,  7,  8,  12, 13,
                              16, 18, 19, 20, 21, 22, 23, 24, 25, 26,
                              27, 28, 29, 30, 31, 32, 33, 34, 35, 36};

/* Joins ctl and payload, with 131 bytes when versioned. */
static size_t join(uint8_t *out, const ei_x_buff *x, const ei_x_buff *p,
                   int versioned)
{
    size_t n = 0;

    if (versioned)
        out[n++] = 131;
    memcpy(out + n, x->buff, (size_t)x->index);
    n += (size_t)x->index;
    if (p->index) {
        if (versioned)
            out[n++] = 131;
        memcpy(out + n, p->buff, (size_t)p->index);
        n += (size_t)p->index;
    }
    return n;
}

/* Checks the decoded fields an op must carry. */
static void check(int op, const uint8_t *buf, const tether_ctl_t *c)
{
    char atom[MAXATOMLEN_UTF8];
    int idx;

    cr_assert_eq(c->op, op);
    switch (op) {
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
        cr_assert_eq(c->to.pid.num, P2.num);
        break;
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
        cr_assert_eq(c->from.pid.num, P1.num);
        cr_assert_str_eq(c->to.name, "server");
        break;
    case TETHER_DOP_MONITOR_P:
    case TETHER_DOP_DEMONITOR_P:
        cr_assert_eq(c->to.is_name, 1);
        cr_assert_str_eq(c->to.name, "server");
        cr_assert_eq(c->ref.n[2], 3);
        break;
    case TETHER_DOP_SPAWN_REPLY:
    case TETHER_DOP_SPAWN_REPLY_TT:
        cr_assert_eq(c->result_is_pid, 1);
        cr_assert_eq(c->result_pid.num, P2.num);
        cr_assert_eq(c->spawn_flags, TETHER_SPAWN_FLAG_MONITOR);
        cr_assert_eq(c->to.pid.num, P1.num);
        break;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        cr_assert_str_eq(c->module, "mod");
        cr_assert_str_eq(c->function, "fun");
        cr_assert_eq(c->arity, 2);
        cr_assert_eq(c->group_leader.num, P2.num);
        cr_assert_gt(c->message.len, 0);
        break;
    case TETHER_DOP_UNLINK_ID:
    case TETHER_DOP_UNLINK_ID_ACK:
        cr_assert_eq(c->unlink_id, UINT64_C(0x123456789abc));
        cr_assert_eq(c->to.pid.num, P2.num);
        break;
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        cr_assert_eq(c->has_ref, 1);
        cr_assert_eq(c->from.pid.num, P1.num);
        break;
    case TETHER_DOP_NODE_LINK:
        break;
    default:
        cr_assert_eq(c->from.pid.num, P1.num, "op %d", op);
        cr_assert_eq(c->to.pid.num, P2.num, "op %d", op);
    }
    if (c->reason.len) {
        idx = (int)c->reason.off;
        cr_assert_eq(ei_decode_atom((const char *)buf, &idx, atom), 0);
        cr_assert_str_eq(atom, "killed");
    }
    if (op == TETHER_DOP_EXIT || op == TETHER_DOP_PAYLOAD_EXIT2_TT ||
        op == TETHER_DOP_MONITOR_P_EXIT ||
        op == TETHER_DOP_PAYLOAD_MONITOR_P_EXIT)
        cr_assert_gt(c->reason.len, 0, "op %d has a reason", op);
    if (op >= 12 && op != TETHER_DOP_MONITOR_P &&
        op != TETHER_DOP_DEMONITOR_P && op != TETHER_DOP_MONITOR_P_EXIT &&
        (op & 1) == 0 && op != 22 && op != 24 && op != 26 && op != 28 &&
        op != 36)
        cr_assert_gt(c->token.len, 0, "op %d has a token", op);
}

Test(control, every_op_decodes_in_both_forms)
{
    ids();
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++) {
        for (int v = 0; v < 2; v++) {
            ei_x_buff x, p;
            uint8_t buf[1024];
            tether_ctl_t c;
            size_t n;
            int rc;

            build(all_ops[i], &x, &p);
            n = join(buf, &x, &p, v);
            rc = tether__ctl_decode(buf, n, v, &c);
            cr_assert_eq(rc, 0, "op %d versioned %d: %d", all_ops[i], v, rc);
            check(all_ops[i], buf, &c);
            cr_assert_str_neq(tether__ctl_op_name(all_ops[i]), "UNKNOWN");
            ei_x_free(&x);
            ei_x_free(&p);
        }
    }
}

Test(control, payload_presence_is_enforced)
{
    ids();
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++) {
        ei_x_buff x, p, extra;
        uint8_t buf[1024];
        tether_ctl_t c;
        size_t n;

        build(all_ops[i], &x, &p);
        if (p.index) {
            /* Drop the payload. */
            p.index = 0;
            n = join(buf, &x, &p, 1);
            cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), TETHER_EPROTO,
                         "op %d without payload", all_ops[i]);
        } else {
            /* Add one it must not have. */
            ei_x_new(&extra);
            ei_x_encode_atom(&extra, "x");
            n = join(buf, &x, &extra, 1);
            cr_assert_eq(tether__ctl_decode(buf, n, 1, &c), TETHER_EPROTO,
                         "op %d with payload", all_ops[i]);
            ei_x_free(&extra);
        }
        ei_x_free(&x);
        ei_x_free(&p);
    }
}

Test(control, unknown_op_is_unsupported_and_bad_tuples_are_eproto)
{
    const uint8_t unknown[] = {131, 104, 2, 97, 99, 106};
    const uint8_t big_op[] = {131, 104, 1, 98, 0x7f, 0, 0, 0};
    const uint8_t not_int[] = {131, 104, 1, 100, 0, 1, 'x'};
    const uint8_t arity[] = {131, 104, 2, 97, 1, 106}; /* LINK arity 2 */
    const uint8_t empty[] = {131, 104, 0};
    const uint8_t list[] = {131, 106};
    const uint8_t trailing[] = {131, 104, 1, 97, 5, 131, 106, 0};
    const uint8_t cache_ref[] = {131, 104, 1, 82, 0};
    tether_ctl_t c;

    cr_assert_eq(tether__ctl_decode(unknown, sizeof(unknown), 1, &c),
                 TETHER_EUNSUPP);
    cr_assert_eq(c.op, 99);
    cr_assert_eq(tether__ctl_decode(big_op, sizeof(big_op), 1, &c),
                 TETHER_EUNSUPP);
    cr_assert_eq(tether__ctl_decode(not_int, sizeof(not_int), 1, &c),
                 TETHER_EPROTO);
    cr_assert_eq(tether__ctl_decode(arity, sizeof(arity), 1, &c),
                 TETHER_EPROTO);
    cr_assert_eq(tether__ctl_decode(empty, sizeof(empty), 1, &c),
                 TETHER_EPROTO);
    cr_assert_eq(tether__ctl_decode(list, sizeof(list), 1, &c), TETHER_EPROTO);
    cr_assert_eq(tether__ctl_decode(trailing, sizeof(trailing), 1, &c),
                 TETHER_EPROTO);
    cr_assert_eq(tether__ctl_decode(cache_ref, sizeof(cache_ref), 1, &c),
                 TETHER_EPROTO);
    cr_assert_str_eq(tether__ctl_op_name(99), "UNKNOWN");
}

Test(control, etf_skip_bounds_everything)
{
    /* A list claiming 2^32-1 elements in a few bytes. */
    const uint8_t huge_list[] = {108, 0xff, 0xff, 0xff, 0xff, 106};
    const uint8_t huge_bin[] = {109, 0x7f, 0xff, 0xff, 0xff, 1};
    const uint8_t huge_map[] = {116, 0xff, 0xff, 0xff, 0xff};
    const uint8_t long_atom[] = {118, 0x04, 0x00, 'a'};
    const uint8_t latin1_long[] = {100, 0x01, 0x00};
    const uint8_t ok_nested[] = {104, 2, 108, 0, 0, 0,  1, 97, 1, 106,
                                 116, 0, 0,   0, 1, 97, 1, 97, 2};
    const uint8_t compressed[] = {80, 0, 0, 0, 1, 0};
    size_t off;

    off = 0;
    cr_assert_eq(tether__etf_skip(huge_list, sizeof(huge_list), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(huge_bin, sizeof(huge_bin), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(huge_map, sizeof(huge_map), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(long_atom, sizeof(long_atom), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(latin1_long, sizeof(latin1_long), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(compressed, sizeof(compressed), &off),
                 TETHER_EPROTO);
    off = 0;
    cr_assert_eq(tether__etf_skip(ok_nested, sizeof(ok_nested), &off), 0);
    cr_assert_eq(off, sizeof(ok_nested));
}

Test(control, etf_skip_deep_nesting_without_recursion)
{
    size_t depth = 200000, n = depth * 2 + 1, off = 0;
    uint8_t *b = malloc(n);

    for (size_t i = 0; i < depth; i++) {
        b[2 * i] = 104;
        b[2 * i + 1] = 1;
    }
    b[n - 1] = 106;
    cr_assert_eq(tether__etf_skip(b, n, &off), 0);
    cr_assert_eq(off, n);
    off = 0;
    cr_assert_eq(tether__etf_skip(b, n - 1, &off), TETHER_EPROTO);
    free(b);
}

Test(control, etf_skip_accepts_what_otp_sends)
{
    size_t off = 1;
    cr_assert_eq(tether__etf_skip(otp_gen_call, sizeof(otp_gen_call), &off), 0);
    cr_assert_eq(off, sizeof(otp_gen_call));
    off = 1;
    cr_assert_eq(tether__etf_skip(otp_spawn_args, sizeof(otp_spawn_args), &off),
                 0);
    cr_assert_eq(off, sizeof(otp_spawn_args));
}

/* Reads the single frame in x back and decodes its control message. */
static int read_back(const ei_x_buff *x, tether_ctl_t *c, uint8_t **data)
{
    tether_dist_reader_t *r = tether__reader_new(0, 0, 0);
    tether_dist_ev_t ev;
    size_t used;
    int rc;

    cr_assert_eq(tether__reader_next(r, (const uint8_t *)x->buff,
                                     (size_t)x->index, &used, &ev),
                 0);
    cr_assert_eq(used, (size_t)x->index);
    cr_assert_eq(ev.kind, TETHER_DIST_EV_MSG);
    /* Copy out: the event points into the reader's buffers. */
    *data = malloc(ev.msg.len);
    memcpy(*data, ev.msg.data, ev.msg.len);
    rc = tether__ctl_decode(*data, ev.msg.len, ev.msg.versioned, c);
    tether__reader_free(r);
    return rc;
}

static const uint64_t OLD = TETHER_DIST_FLAGS_MANDATORY; /* no new ops */
static const uint64_t NEW = TETHER_DIST_FLAGS_ADVERTISED;

Test(control, encoders_round_trip)
{
    const uint8_t msg[] = {131, 100, 0, 2, 'h', 'i'};
    const uint8_t reason[] = {100, 0, 6, 'k', 'i', 'l', 'l', 'e', 'd'};
    const uint8_t args[] = {106};
    const uint8_t noproc[] = {131, 100, 0, 6, 'n', 'o', 'p', 'r', 'o', 'c'};
    tether_ctl_proc_t name = {.is_name = 1}, pid = {.is_name = 0};
    uint64_t modes[] = {OLD, NEW};

    ids();
    strcpy(name.name, "server");
    pid.pid = P2;
    for (int m = 0; m < 2; m++) {
        uint64_t f = modes[m];
        int k = 0;
#define RT(call, want_op)                                                      \
    do {                                                                       \
        ei_x_buff x;                                                           \
        tether_ctl_t c;                                                        \
        uint8_t *data;                                                         \
        ei_x_new(&x);                                                          \
        cr_assert_eq(call, 0, "%s", #call);                                    \
        cr_assert_eq(read_back(&x, &c, &data), 0, "%s", #call);                \
        cr_assert_eq(c.op, want_op, "%s mode %d", #call, m);                   \
        k++;                                                                   \
        free(data);                                                            \
        ei_x_free(&x);                                                         \
    } while (0)
        RT(tether__ctl_encode_send(&x, f, &P1, &P2, msg, sizeof(msg)),
           m ? TETHER_DOP_SEND_SENDER : TETHER_DOP_SEND);
        RT(tether__ctl_encode_reg_send(&x, f, &P1, "server", msg, sizeof(msg)),
           TETHER_DOP_REG_SEND);
        RT(tether__ctl_encode_link(&x, f, &P1, &P2), TETHER_DOP_LINK);
        RT(tether__ctl_encode_unlink_id(&x, f, 7, &P1, &P2),
           m ? TETHER_DOP_UNLINK_ID : TETHER_DOP_UNLINK);
        RT(tether__ctl_encode_exit(&x, f, &P1, &P2, reason, sizeof(reason)),
           m ? TETHER_DOP_PAYLOAD_EXIT : TETHER_DOP_EXIT);
        RT(tether__ctl_encode_exit2(&x, f, &P1, &P2, reason, sizeof(reason)),
           m ? TETHER_DOP_PAYLOAD_EXIT2 : TETHER_DOP_EXIT2);
        RT(tether__ctl_encode_monitor_p(&x, f, &P1, &name, &R1),
           TETHER_DOP_MONITOR_P);
        RT(tether__ctl_encode_demonitor_p(&x, f, &P1, &pid, &R1),
           TETHER_DOP_DEMONITOR_P);
        RT(tether__ctl_encode_monitor_p_exit(&x, f, &name, &P1, &R1, reason,
                                             sizeof(reason)),
           m ? TETHER_DOP_PAYLOAD_MONITOR_P_EXIT : TETHER_DOP_MONITOR_P_EXIT);
        if (m) {
            RT(tether__ctl_encode_unlink_id_ack(&x, f, 7, &P1, &P2),
               TETHER_DOP_UNLINK_ID_ACK);
            RT(tether__ctl_encode_alias_send(&x, f, &P1, &R1, msg, sizeof(msg)),
               TETHER_DOP_ALIAS_SEND);
            RT(tether__ctl_encode_spawn_request(&x, f, &R1, &P1, &P2, "m", "f",
                                                0, NULL, 0, args, sizeof(args)),
               TETHER_DOP_SPAWN_REQUEST);
            RT(tether__ctl_encode_spawn_reply(&x, f, &R1, &P1, 0, &P2, NULL, 0),
               TETHER_DOP_SPAWN_REPLY);
            RT(tether__ctl_encode_spawn_reply(&x, f, &R1, &P1, 0, NULL, noproc,
                                              sizeof(noproc)),
               TETHER_DOP_SPAWN_REPLY);
        }
#undef RT
        cr_assert_geq(k, 9);
    }
}

Test(control, encoded_fields_survive_the_round_trip)
{
    const uint8_t reason[] = {100, 0, 6, 'k', 'i', 'l', 'l', 'e', 'd'};
    const uint8_t noproc[] = {100, 0, 6, 'n', 'o', 'p', 'r', 'o', 'c'};
    tether_ctl_proc_t name = {.is_name = 1};
    ei_x_buff x;
    tether_ctl_t c;
    uint8_t *data;

    ids();
    strcpy(name.name, "server");
    ei_x_new(&x);
    cr_assert_eq(tether__ctl_encode_monitor_p_exit(&x, OLD, &name, &P1, &R1,
                                                   reason, sizeof(reason)),
                 0);
    cr_assert_eq(read_back(&x, &c, &data), 0);
    cr_assert_eq(c.from.is_name, 1);
    cr_assert_str_eq(c.from.name, "server");
    cr_assert_eq(c.to.pid.num, P1.num);
    cr_assert_str_eq(c.to.pid.node, "a@host");
    cr_assert_eq(c.to.pid.creation, 0x1234);
    cr_assert_eq(c.ref.n[1], 2);
    cr_assert_eq(c.reason.len, sizeof(reason));
    cr_assert_eq(memcmp(data + c.reason.off, reason, sizeof(reason)), 0);
    free(data);

    x.index = 0;
    cr_assert_eq(tether__ctl_encode_unlink_id(&x, NEW, UINT64_MAX, &P1, &P2),
                 0);
    cr_assert_eq(read_back(&x, &c, &data), 0);
    cr_assert_eq(c.unlink_id, UINT64_MAX);
    free(data);

    x.index = 0;
    cr_assert_eq(tether__ctl_encode_spawn_reply(&x, NEW, &R1, &P1, 3, NULL,
                                                noproc, sizeof(noproc)),
                 0);
    cr_assert_eq(read_back(&x, &c, &data), 0);
    cr_assert_eq(c.result_is_pid, 0);
    cr_assert_eq(c.spawn_flags, 3);
    cr_assert_eq(memcmp(data + c.result.off, noproc, sizeof(noproc)), 0);
    free(data);
    ei_x_free(&x);
}

Test(control, encoders_refuse_what_the_peer_cannot_take)
{
    const uint8_t msg[] = {106};
    ei_x_buff x;

    ids();
    ei_x_new(&x);
    cr_assert_eq(tether__ctl_encode_alias_send(&x, OLD, &P1, &R1, msg, 1),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether__ctl_encode_spawn_reply(&x, OLD, &R1, &P1, 0, &P2, NULL, 0),
        TETHER_EINVAL);
    cr_assert_eq(tether__ctl_encode_unlink_id_ack(&x, OLD, 1, &P1, &P2),
                 TETHER_EINVAL);
    cr_assert_eq(tether__ctl_encode_send(&x, NEW, &P1, &P2, NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(tether__ctl_encode_reg_send(&x, NEW, &P1, "", msg, 1),
                 TETHER_EINVAL);
    cr_assert_eq(x.index, 0);
    ei_x_free(&x);
}

Test(control, big_message_sent_in_fragments_decodes)
{
    /* A REG_SEND in header form whose message is a 300 kB binary, cut in
       64 KiB fragments as OTP 25 sends it. */
    ei_x_buff x, m;
    tether_dist_reader_t *r = tether__reader_new(0, 0, 0);
    uint8_t *bin = calloc(1, 300000), *stream;
    size_t body, frags, n = 0, off = 0, used, chunk = 65536;
    const uint8_t *data;
    tether_dist_ev_t ev;
    tether_ctl_t c;
    int done = 0;

    ids();
    ei_x_new(&m);
    ei_x_encode_binary(&m, bin, 300000);
    ei_x_new(&x);
    cr_assert_eq(tether__ctl_encode_reg_send(
                     &x, NEW, &P1, "sink", (uint8_t *)m.buff, (size_t)m.index),
                 0);
    /* Frame: 4-byte length, 131 'D' 0, then the terms. */
    data = (const uint8_t *)x.buff + 7;
    body = (size_t)x.index - 7;
    frags = (body + chunk - 1) / chunk;
    stream = malloc(body + frags * 32);
    for (size_t i = 0; i < frags; i++) {
        size_t k = body - i * chunk < chunk ? body - i * chunk : chunk;
        size_t plen = 18 + (i == 0) + k;
        uint64_t seq = 0xabc, id = frags - i;
        stream[n++] = (uint8_t)(plen >> 24);
        stream[n++] = (uint8_t)(plen >> 16);
        stream[n++] = (uint8_t)(plen >> 8);
        stream[n++] = (uint8_t)plen;
        stream[n++] = 131;
        stream[n++] = i == 0 ? 'E' : 'F';
        for (int b = 7; b >= 0; b--)
            stream[n++] = (uint8_t)(seq >> (8 * b));
        for (int b = 7; b >= 0; b--)
            stream[n++] = (uint8_t)(id >> (8 * b));
        if (i == 0)
            stream[n++] = 0;
        memcpy(stream + n, data + i * chunk, k);
        n += k;
    }
    while (off < n) {
        cr_assert_eq(tether__reader_next(r, stream + off, n - off, &used, &ev),
                     0);
        off += used;
        if (ev.kind != TETHER_DIST_EV_MSG)
            continue;
        cr_assert_eq(tether__ctl_decode(ev.msg.data, ev.msg.len, 0, &c), 0);
        cr_assert_eq(c.op, TETHER_DOP_REG_SEND);
        cr_assert_str_eq(c.to.name, "sink");
        cr_assert_eq(c.message.len, (size_t)m.index);
        done = 1;
    }
    cr_assert(done);
    cr_assert_gt(frags, 4);
    tether__reader_free(r);
    free(stream);
    free(bin);
    ei_x_free(&x);
    ei_x_free(&m);
}
