/*
 * Criterion suite for cnode/builtins.c: net_kernel's is_auth answer (to an
 * alias or a pid) and the echo protocol, with the remote side captured as
 * tether_out_t operations.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cnode/builtins.h"
#include "test/out_capture.h"

#define NODE   "c1@127.0.0.1"
#define REMOTE "a@127.0.0.1"

static tether_procs_t *procs;

static void setup(void)
{
    nops = 0;
    cr_assert_eq(tether_procs_new(NODE, 5, capture, NULL, &procs), 0);
    cr_assert_eq(tether__builtins_start(procs), 0);
}

static void teardown(void)
{
    tether_procs_free(procs);
}

TestSuite(builtins, .init = setup, .fini = teardown);

static erlang_pid remote_pid(unsigned num)
{
    return cap_pid(REMOTE, num, 2);
}

static erlang_ref remote_ref(unsigned n)
{
    erlang_ref r;
    memset(&r, 0, sizeof r);
    strcpy(r.node, REMOTE);
    r.len = 3;
    r.n[0] = n;
    r.creation = 2;
    return r;
}

/* Sends x (then frees it) to the registered name from `from`. */
static void reg_send(const char *name, const erlang_pid *from, ei_x_buff *x)
{
    tether_procs_reg_send_in(procs, from, name, x->buff, (size_t)x->index);
    ei_x_free(x);
    tether_procs_run(procs, 0);
}

static void start(ei_x_buff *x, int arity, const char *tag)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(x, arity), 0);
    cr_assert_eq(ei_x_encode_atom(x, tag), 0);
}

static void expect_atom(const char *buf, int *idx, const char *want)
{
    char a[MAXATOMLEN_UTF8];
    cr_assert_eq(ei_decode_atom(buf, idx, a), 0);
    cr_assert_str_eq(a, want);
}

/* Builds {'$gen_call', {From, Tag}, {is_auth, Node}}; alias picks the tag. */
static void is_auth(const erlang_pid *from, const erlang_ref *ref, bool alias)
{
    ei_x_buff x;
    start(&x, 3, "$gen_call");
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_pid(&x, from);
    if (alias) {
        ei_x_encode_list_header(&x, 1);
        ei_x_encode_atom(&x, "alias");
        ei_x_encode_ref(&x, ref);
    } else {
        ei_x_encode_ref(&x, ref);
    }
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "is_auth");
    ei_x_encode_atom(&x, REMOTE);
    reg_send("net_kernel", from, &x);
}

/* Checks a reply {Tag, yes} and that Tag ends with `ref`. */
static void expect_yes(const cap_op_t *op, const erlang_ref *ref, bool alias)
{
    int idx = 0, ver, arity, n;
    erlang_ref got;
    cr_assert_eq(ei_decode_version(op->msg, &idx, &ver), 0);
    cr_assert_eq(ei_decode_tuple_header(op->msg, &idx, &arity), 0);
    cr_assert_eq(arity, 2);
    if (alias) {
        cr_assert_eq(ei_decode_list_header(op->msg, &idx, &n), 0);
        cr_assert_eq(n, 1);
        expect_atom(op->msg, &idx, "alias");
    }
    cr_assert_eq(ei_decode_ref(op->msg, &idx, &got), 0);
    cr_assert(tether_ref_eq(&got, ref));
    expect_atom(op->msg, &idx, "yes");
    cr_assert_eq((size_t)idx, op->msg_len);
}

Test(builtins, is_auth_replies_yes_to_the_alias)
{
    erlang_pid from = remote_pid(40);
    erlang_ref ref = remote_ref(7);
    is_auth(&from, &ref, true);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_ALIAS_SEND);
    cr_assert(tether_ref_eq(&ops[0].ref, &ref));
    expect_yes(&ops[0], &ref, true);
}

Test(builtins, is_auth_replies_yes_to_the_pid_without_alias)
{
    erlang_pid from = remote_pid(40);
    erlang_ref ref = remote_ref(8);
    is_auth(&from, &ref, false);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_SEND);
    cr_assert(tether_pid_eq(&ops[0].to, &from));
    expect_yes(&ops[0], &ref, false);
}

Test(builtins, echo_sends_the_term_back)
{
    erlang_pid from = remote_pid(41);
    ei_x_buff x;
    start(&x, 3, "echo");
    ei_x_encode_pid(&x, &from);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "hello");
    ei_x_encode_long(&x, 123456789);
    reg_send("echo", &from, &x);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_SEND);
    cr_assert(tether_pid_eq(&ops[0].to, &from));
    int idx = 0, ver, arity;
    long v;
    cr_assert_eq(ei_decode_version(ops[0].msg, &idx, &ver), 0);
    cr_assert_eq(ei_decode_tuple_header(ops[0].msg, &idx, &arity), 0);
    expect_atom(ops[0].msg, &idx, "hello");
    cr_assert_eq(ei_decode_long(ops[0].msg, &idx, &v), 0);
    cr_assert_eq(v, 123456789);
}

Test(builtins, spawn_registers_and_rejects_a_taken_name)
{
    erlang_pid from = remote_pid(42);
    for (int i = 0; i < 2; i++) {
        ei_x_buff x;
        start(&x, 3, "spawn");
        ei_x_encode_pid(&x, &from);
        ei_x_encode_atom(&x, "e2");
        reg_send("echo", &from, &x);
    }
    cr_assert_eq(nops, 2);
    tether_proc_t *p = tether_procs_whereis(procs, "e2");
    cr_assert_not_null(p);
    int idx = 0, ver, arity;
    erlang_pid got;
    ei_decode_version(ops[0].msg, &idx, &ver);
    ei_decode_tuple_header(ops[0].msg, &idx, &arity);
    cr_assert_eq(arity, 3);
    expect_atom(ops[0].msg, &idx, "spawned");
    expect_atom(ops[0].msg, &idx, "e2");
    cr_assert_eq(ei_decode_pid(ops[0].msg, &idx, &got), 0);
    cr_assert(tether_pid_eq(&got, tether_proc_pid(p)));
    idx = 0;
    ei_decode_version(ops[1].msg, &idx, &ver);
    ei_decode_tuple_header(ops[1].msg, &idx, &arity);
    expect_atom(ops[1].msg, &idx, "error");
}

Test(builtins, stop_ends_the_process_and_tells_monitors)
{
    erlang_pid from = remote_pid(43);
    erlang_ref ref = remote_ref(9);
    tether_procs_monitor_in(procs, &from, NULL, "echo", &ref);
    ei_x_buff x;
    start(&x, 2, "stop");
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "shutdown");
    ei_x_encode_atom(&x, "because");
    reg_send("echo", &from, &x);
    cr_assert_null(tether_procs_whereis(procs, "echo"));
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR_EXIT);
    cr_assert_str_eq(ops[0].from_name, "echo");
    int idx = 0, ver, arity;
    ei_decode_version(ops[0].msg, &idx, &ver);
    cr_assert_eq(ei_decode_tuple_header(ops[0].msg, &idx, &arity), 0);
    expect_atom(ops[0].msg, &idx, "shutdown");
    expect_atom(ops[0].msg, &idx, "because");
}

Test(builtins, trapped_exits_are_reported)
{
    erlang_pid from = remote_pid(44), linker = remote_pid(45);
    ei_x_buff x;
    start(&x, 2, "trap_exit");
    ei_x_encode_atom(&x, "true");
    reg_send("echo", &from, &x);
    tether_proc_t *echo = tether_procs_whereis(procs, "echo");
    tether_procs_link_in(procs, &linker, tether_proc_pid(echo));
    char reason[TETHER_ATOM_TERM_MAX];
    size_t rl = tether_term_atom(reason, sizeof reason, "bye");
    tether_procs_exit_in(procs, &linker, tether_proc_pid(echo), reason, rl,
                         false);
    tether_procs_run(procs, 0);
    cr_assert(tether_proc_alive(echo));
    start(&x, 2, "get_exits");
    ei_x_encode_pid(&x, &from);
    reg_send("echo", &from, &x);
    cr_assert_eq(nops, 1);
    int idx = 0, ver, arity, n;
    erlang_pid got;
    ei_decode_version(ops[0].msg, &idx, &ver);
    ei_decode_tuple_header(ops[0].msg, &idx, &arity);
    expect_atom(ops[0].msg, &idx, "exits");
    cr_assert_eq(ei_decode_list_header(ops[0].msg, &idx, &n), 0);
    cr_assert_eq(n, 1);
    ei_decode_tuple_header(ops[0].msg, &idx, &arity);
    cr_assert_eq(arity, 2);
    cr_assert_eq(ei_decode_pid(ops[0].msg, &idx, &got), 0);
    cr_assert(tether_pid_eq(&got, &linker));
    expect_atom(ops[0].msg, &idx, "bye");
}

Test(builtins, garbage_and_unknown_messages_are_ignored)
{
    erlang_pid from = remote_pid(46);
    const char garbage[] = {(char)131, 104, 3, 119, 4, 'e', 'c'};
    tether_procs_reg_send_in(procs, &from, "echo", garbage, sizeof garbage);
    tether_procs_reg_send_in(procs, &from, "net_kernel", garbage,
                             sizeof garbage);
    ei_x_buff x;
    start(&x, 2, "whatever");
    ei_x_encode_atom(&x, "x");
    reg_send("echo", &from, &x);
    tether_procs_run(procs, 0);
    cr_assert_eq(nops, 0);
    cr_assert_not_null(tether_procs_whereis(procs, "echo"));
}

Test(builtins, monitor_request_forwards_down)
{
    erlang_pid from = remote_pid(47), target = remote_pid(48);
    ei_x_buff x;
    start(&x, 3, "monitor");
    ei_x_encode_pid(&x, &from);
    ei_x_encode_pid(&x, &target);
    reg_send("echo", &from, &x);
    cr_assert_eq(nops, 2);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR);
    erlang_ref ref = ops[0].ref;
    char reason[TETHER_ATOM_TERM_MAX];
    size_t rl = tether_term_atom(reason, sizeof reason, "gone");
    tether_proc_t *echo = tether_procs_whereis(procs, "echo");
    tether_procs_monitor_exit_in(procs, &target, NULL, NULL,
                                 tether_proc_pid(echo), &ref, reason, rl);
    tether_procs_run(procs, 0);
    cr_assert_eq(nops, 3);
    cr_assert_eq(ops[2].kind, TETHER_OUT_SEND);
    cr_assert(tether_pid_eq(&ops[2].to, &from));
    int idx = 0, ver, arity;
    ei_decode_version(ops[2].msg, &idx, &ver);
    ei_decode_tuple_header(ops[2].msg, &idx, &arity);
    cr_assert_eq(arity, 5);
    expect_atom(ops[2].msg, &idx, "DOWN");
}
