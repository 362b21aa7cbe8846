/*
 * Criterion suite for cnode/proc.c: pids, references, the name registry,
 * mailboxes, links, monitors, exit propagation and noconnection, with the
 * remote side captured as a list of tether_out_t operations.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cnode/proc.h"
#include "test/out_capture.h"

#define NODE     "c1@127.0.0.1"
#define REMOTE   "a@127.0.0.1"
#define MAX_MSGS 64

/* A recording process: every message is kept (and decoded on demand). */
typedef struct {
    char data[MAX_MSGS][512];
    size_t len[MAX_MSGS];
    size_t n;
    int exits;
    char reason[64];
    size_t reason_len;
} rec_t;

static void rec_handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    (void)self;
    rec_t *r = arg;
    cr_assert_lt(r->n, MAX_MSGS);
    cr_assert_leq(msg->len, sizeof r->data[0]);
    memcpy(r->data[r->n], msg->data, msg->len);
    r->len[r->n++] = msg->len;
}

static void rec_exit(tether_proc_t *self, const char *reason, size_t len,
                     void *arg)
{
    (void)self;
    rec_t *r = arg;
    r->exits++;
    if (len <= sizeof r->reason) {
        memcpy(r->reason, reason, len);
        r->reason_len = len;
    }
}

static tether_procs_t *procs;

static void setup(void)
{
    nops = 0;
    out_rc = 0;
    cr_assert_eq(tether_procs_new(NODE, 7, capture, NULL, &procs), 0);
}

static void teardown(void)
{
    tether_procs_free(procs);
}

static tether_proc_t *spawn_rec(rec_t *r)
{
    memset(r, 0, sizeof *r);
    tether_proc_spec_t spec = {rec_handler, rec_exit, r};
    tether_proc_t *p = NULL;
    cr_assert_eq(tether_proc_spawn(procs, &spec, &p), 0);
    return p;
}

static erlang_pid remote_pid(unsigned num)
{
    return cap_pid(REMOTE, num, 3);
}

static size_t atom(char *buf, const char *a)
{
    return tether_term_atom(buf, TETHER_ATOM_TERM_MAX, a);
}

/* Decodes message i of r as a tuple; returns its arity, header index. */
static int tuple_at(const rec_t *r, size_t i, int *idx)
{
    int ver, arity;
    *idx = 0;
    cr_assert_eq(ei_decode_version(r->data[i], idx, &ver), 0);
    cr_assert_eq(ei_decode_tuple_header(r->data[i], idx, &arity), 0);
    return arity;
}

static void expect_atom(const char *buf, int *idx, const char *want)
{
    char a[MAXATOMLEN_UTF8];
    cr_assert_eq(ei_decode_atom(buf, idx, a), 0);
    cr_assert_str_eq(a, want);
}

/* Checks r's message i is {'DOWN', Ref, process, _, Reason}. */
static void expect_down(const rec_t *r, size_t i, const erlang_ref *ref,
                        const char *reason)
{
    int idx;
    erlang_ref got;
    cr_assert_eq(tuple_at(r, i, &idx), 5);
    expect_atom(r->data[i], &idx, "DOWN");
    cr_assert_eq(ei_decode_ref(r->data[i], &idx, &got), 0);
    cr_assert(tether_ref_eq(&got, ref));
    expect_atom(r->data[i], &idx, "process");
    cr_assert_eq(ei_skip_term(r->data[i], &idx), 0);
    expect_atom(r->data[i], &idx, reason);
}

/* Checks r's message i is {'EXIT', From, Reason}. */
static void expect_exit(const rec_t *r, size_t i, const erlang_pid *from,
                        const char *reason)
{
    int idx;
    erlang_pid got;
    cr_assert_eq(tuple_at(r, i, &idx), 3);
    expect_atom(r->data[i], &idx, "EXIT");
    cr_assert_eq(ei_decode_pid(r->data[i], &idx, &got), 0);
    cr_assert(tether_pid_eq(&got, from));
    expect_atom(r->data[i], &idx, reason);
}

TestSuite(proc, .init = setup, .fini = teardown);

Test(proc, pids_are_distinct_and_carry_node_and_creation)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    const erlang_pid *x = tether_proc_pid(pa), *y = tether_proc_pid(pb);
    cr_assert_str_eq(x->node, NODE);
    cr_assert_eq(x->creation, 7);
    cr_assert_not(tether_pid_eq(x, y));
    cr_assert_leq(x->num, TETHER_PID_NUM_MAX);
    cr_assert_eq(tether_procs_find(procs, x), pa);
    cr_assert_eq(tether_procs_find(procs, y), pb);
    erlang_pid r = remote_pid(x->num);
    cr_assert_null(tether_procs_find(procs, &r));
}

Test(proc, pid_numbers_wrap_into_the_serial)
{
    rec_t r;
    for (unsigned i = 0; i < TETHER_PID_NUM_MAX + 5; i++) {
        tether_proc_t *p = spawn_rec(&r);
        cr_assert_leq(tether_proc_pid(p)->num, TETHER_PID_NUM_MAX);
        tether_proc_exit(p, NULL, 0);
        tether_procs_run(procs, 0);
    }
    tether_proc_t *p = spawn_rec(&r);
    cr_assert_eq(tether_proc_pid(p)->serial, 1);
}

Test(proc, refs_are_unique)
{
    erlang_ref a, b;
    tether_procs_make_ref(procs, &a);
    tether_procs_make_ref(procs, &b);
    cr_assert_str_eq(a.node, NODE);
    cr_assert_eq(a.len, TETHER_REF_WORDS);
    cr_assert_eq(a.creation, 7);
    cr_assert_leq(a.n[0], TETHER_REF_W0_MAX);
    cr_assert_not(tether_ref_eq(&a, &b));
    cr_assert(tether_ref_eq(&a, &a));
}

Test(proc, registry_rejects_duplicates_and_bad_names)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    cr_assert_eq(tether_proc_register(pa, "svc"), 0);
    cr_assert_eq(tether_proc_register(pb, "svc"), TETHER_EEXIST);
    cr_assert_eq(tether_proc_register(pa, "other"), TETHER_EEXIST);
    cr_assert_eq(tether_proc_register(pb, ""), TETHER_EINVAL);
    cr_assert_eq(tether_proc_register(pb, "undefined"), TETHER_EINVAL);
    cr_assert_eq(tether_procs_whereis(procs, "svc"), pa);
    cr_assert_str_eq(tether_proc_name(pa), "svc");
    cr_assert_eq(tether_procs_unregister(procs, "svc"), 0);
    cr_assert_eq(tether_procs_unregister(procs, "svc"), TETHER_ENOTFOUND);
    cr_assert_null(tether_procs_whereis(procs, "svc"));
    cr_assert_eq(tether_proc_register(pb, "svc"), 0);
}

Test(proc, name_dies_with_its_process)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    cr_assert_eq(tether_proc_register(pa, "svc"), 0);
    tether_proc_exit(pa, NULL, 0);
    cr_assert_null(tether_procs_whereis(procs, "svc"));
    tether_procs_run(procs, 0);
    cr_assert_eq(a.exits, 1);
}

Test(proc, mailbox_delivers_in_order_with_sender)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    char m1[32], m2[32];
    size_t l1 = atom(m1, "one"), l2 = atom(m2, "two");
    erlang_pid from = remote_pid(5);
    tether_procs_send_in(procs, &from, tether_proc_pid(pa), m1, l1);
    cr_assert_eq(tether_proc_register(pa, "svc"), 0);
    tether_procs_reg_send_in(procs, &from, "svc", m2, l2);
    tether_procs_reg_send_in(procs, &from, "nobody", m2, l2);
    cr_assert(tether_procs_pending(procs));
    cr_assert_eq(tether_procs_run(procs, 0), 2);
    cr_assert_eq(a.n, 2);
    cr_assert(tether_term_is_atom(a.data[0], a.len[0], "one"));
    cr_assert(tether_term_is_atom(a.data[1], a.len[1], "two"));
    tether_procs_stats_t st;
    tether_procs_stats(procs, &st);
    cr_assert_eq(st.dropped, 1);
}

Test(proc, send_to_remote_pid_goes_out)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_pid to = remote_pid(9);
    char m[32];
    size_t l = atom(m, "hi");
    cr_assert_eq(tether_proc_send(pa, &to, m, l), 0);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_SEND);
    cr_assert_str_eq(ops[0].node, REMOTE);
    cr_assert(tether_pid_eq(&ops[0].to, &to));
    cr_assert(tether_pid_eq(&ops[0].from, tether_proc_pid(pa)));
    cr_assert_eq(tether_proc_send_name(pa, "x", REMOTE, m, l), 0);
    cr_assert_eq(ops[1].kind, TETHER_OUT_REG_SEND);
    cr_assert_str_eq(ops[1].to_name, "x");
    cr_assert_eq(tether_proc_send_name(pa, "nobody", NULL, m, l),
                 TETHER_ENOTFOUND);
}

Test(proc, alias_receives_until_dropped)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_ref al;
    cr_assert_eq(tether_proc_alias(pa, &al), 0);
    erlang_pid from = remote_pid(5);
    char m[32];
    size_t l = atom(m, "x");
    tether_procs_alias_send_in(procs, &from, &al, m, l);
    cr_assert_eq(tether_proc_unalias(pa, &al), 0);
    tether_procs_alias_send_in(procs, &from, &al, m, l);
    tether_procs_run(procs, 0);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(tether_proc_unalias(pa, &al), TETHER_ENOTFOUND);
}

Test(proc, local_link_propagates_abnormal_exit)
{
    rec_t a, b, c;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b), *pc = spawn_rec(&c);
    cr_assert_eq(tether_proc_link(pa, tether_proc_pid(pb)), 0);
    cr_assert_eq(tether_proc_link(pb, tether_proc_pid(pc)), 0);
    char r[32];
    size_t rl = atom(r, "boom");
    tether_proc_exit(pa, r, rl);
    cr_assert_not(tether_proc_alive(pb));
    cr_assert_not(tether_proc_alive(pc));
    tether_procs_run(procs, 0);
    cr_assert_eq(c.exits, 1);
    cr_assert(tether_term_is_atom(c.reason, c.reason_len, "boom"));
}

Test(proc, normal_exit_does_not_kill_links)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    cr_assert_eq(tether_proc_link(pa, tether_proc_pid(pb)), 0);
    tether_proc_exit(pa, NULL, 0);
    cr_assert(tether_proc_alive(pb));
}

Test(proc, trapping_process_gets_exit_message)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    erlang_pid apid = *tether_proc_pid(pa);
    tether_proc_trap_exit(pb, true);
    cr_assert_eq(tether_proc_link(pa, tether_proc_pid(pb)), 0);
    char r[32];
    size_t rl = atom(r, "boom");
    tether_proc_exit(pa, r, rl);
    cr_assert(tether_proc_alive(pb));
    tether_procs_run(procs, 0);
    cr_assert_eq(b.n, 1);
    expect_exit(&b, 0, &apid, "boom");
}

Test(proc, exit2_kill_is_untrappable)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    tether_proc_trap_exit(pb, true);
    char r[32];
    size_t rl = atom(r, "kill");
    cr_assert_eq(tether_proc_send_exit(pa, tether_proc_pid(pb), r, rl), 0);
    cr_assert_not(tether_proc_alive(pb));
    tether_procs_run(procs, 0);
    cr_assert(tether_term_is_atom(b.reason, b.reason_len, "killed"));
}

Test(proc, remote_link_exit_sends_exit_and_incoming_exit_kills)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    erlang_pid rp = remote_pid(11);
    cr_assert_eq(tether_proc_link(pa, &rp), 0);
    cr_assert_eq(ops[0].kind, TETHER_OUT_LINK);
    char r[32];
    size_t rl = atom(r, "bad");
    tether_proc_exit(pa, r, rl);
    cr_assert_eq(nops, 2);
    cr_assert_eq(ops[1].kind, TETHER_OUT_EXIT);
    cr_assert(tether_pid_eq(&ops[1].to, &rp));
    cr_assert(tether_term_is_atom(ops[1].msg, ops[1].msg_len, "bad"));

    /* Incoming LINK then EXIT kills pb; EXIT without a link does not. */
    erlang_pid other = remote_pid(12);
    tether_procs_exit_in(procs, &other, tether_proc_pid(pb), r, rl, false);
    cr_assert(tether_proc_alive(pb));
    tether_procs_link_in(procs, &rp, tether_proc_pid(pb));
    tether_procs_exit_in(procs, &rp, tether_proc_pid(pb), r, rl, false);
    cr_assert_not(tether_proc_alive(pb));
}

Test(proc, link_in_to_dead_pid_answers_noproc)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_pid dead = *tether_proc_pid(pa);
    tether_proc_exit(pa, NULL, 0);
    erlang_pid rp = remote_pid(11);
    nops = 0;
    tether_procs_link_in(procs, &rp, &dead);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_EXIT);
    cr_assert(tether_term_is_atom(ops[0].msg, ops[0].msg_len, "noproc"));
}

Test(proc, unlink_id_is_acked_and_removes_link)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_pid rp = remote_pid(11);
    tether_procs_link_in(procs, &rp, tether_proc_pid(pa));
    tether_procs_unlink_in(procs, &rp, tether_proc_pid(pa), 42);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_UNLINK_ID_ACK);
    char r[32];
    size_t rl = atom(r, "bad");
    tether_procs_exit_in(procs, &rp, tether_proc_pid(pa), r, rl, false);
    cr_assert(tether_proc_alive(pa));
    /* Our own unlink sends UNLINK_ID. */
    cr_assert_eq(tether_proc_link(pa, &rp), 0);
    cr_assert_eq(tether_proc_unlink(pa, &rp), 0);
    cr_assert_eq(ops[nops - 1].kind, TETHER_OUT_UNLINK_ID);
}

Test(proc, monitor_in_by_name_and_down_on_exit)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    cr_assert_eq(tether_proc_register(pa, "echo"), 0);
    erlang_pid rp = remote_pid(11);
    erlang_ref ref;
    memset(&ref, 0, sizeof ref);
    strcpy(ref.node, REMOTE);
    ref.len = 3;
    ref.n[0] = 99;
    tether_procs_monitor_in(procs, &rp, NULL, "echo", &ref);
    cr_assert_eq(nops, 0);
    char r[32];
    size_t rl = atom(r, "stopped");
    tether_proc_exit(pa, r, rl);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR_EXIT);
    cr_assert_str_eq(ops[0].from_name, "echo");
    cr_assert(tether_ref_eq(&ops[0].ref, &ref));
    cr_assert(tether_pid_eq(&ops[0].to, &rp));
    cr_assert(tether_term_is_atom(ops[0].msg, ops[0].msg_len, "stopped"));
}

Test(proc, monitor_in_unknown_name_answers_noproc_at_once)
{
    erlang_pid rp = remote_pid(11);
    erlang_ref ref;
    memset(&ref, 0, sizeof ref);
    strcpy(ref.node, REMOTE);
    ref.len = 3;
    tether_procs_monitor_in(procs, &rp, NULL, "nobody", &ref);
    cr_assert_eq(nops, 1);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR_EXIT);
    cr_assert_str_eq(ops[0].from_name, "nobody");
    cr_assert(tether_term_is_atom(ops[0].msg, ops[0].msg_len, "noproc"));
}

Test(proc, demonitor_in_stops_down)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_pid rp = remote_pid(11);
    erlang_ref ref;
    memset(&ref, 0, sizeof ref);
    strcpy(ref.node, REMOTE);
    ref.len = 3;
    tether_procs_monitor_in(procs, &rp, tether_proc_pid(pa), NULL, &ref);
    tether_procs_demonitor_in(procs, &rp, tether_proc_pid(pa), NULL, &ref);
    tether_proc_exit(pa, NULL, 0);
    cr_assert_eq(nops, 0);
}

Test(proc, local_monitor_gets_down_and_noproc)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    erlang_ref ref, ref2, ref3;
    cr_assert_eq(tether_proc_monitor(pa, tether_proc_pid(pb), &ref), 0);
    cr_assert_eq(tether_proc_monitor_name(pa, "nobody", NULL, &ref2), 0);
    char r[32];
    size_t rl = atom(r, "gone");
    tether_proc_exit(pb, r, rl);
    cr_assert_eq(tether_proc_monitor(pa, tether_proc_pid(pb), &ref3), 0);
    tether_procs_run(procs, 0);
    cr_assert_eq(a.n, 3);
    expect_down(&a, 0, &ref2, "noproc");
    expect_down(&a, 1, &ref, "gone");
    expect_down(&a, 2, &ref3, "noproc");
    cr_assert_eq(nops, 0);
}

Test(proc, remote_monitor_and_monitor_exit_in)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_pid rp = remote_pid(11);
    erlang_ref ref;
    cr_assert_eq(tether_proc_monitor(pa, &rp, &ref), 0);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR);
    cr_assert(tether_ref_eq(&ops[0].ref, &ref));
    char r[32];
    size_t rl = atom(r, "crashed");
    tether_procs_monitor_exit_in(procs, &rp, NULL, NULL, tether_proc_pid(pa),
                                 &ref, r, rl);
    /* A second one for the same ref is ignored. */
    tether_procs_monitor_exit_in(procs, &rp, NULL, NULL, tether_proc_pid(pa),
                                 &ref, r, rl);
    tether_procs_run(procs, 0);
    cr_assert_eq(a.n, 1);
    expect_down(&a, 0, &ref, "crashed");
}

Test(proc, demonitor_remote_sends_demonitor)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    erlang_ref ref;
    cr_assert_eq(tether_proc_monitor_name(pa, "svc", REMOTE, &ref), 0);
    cr_assert_eq(ops[0].kind, TETHER_OUT_MONITOR);
    cr_assert_str_eq(ops[0].to_name, "svc");
    cr_assert_eq(tether_proc_demonitor(pa, &ref), 0);
    cr_assert_eq(ops[1].kind, TETHER_OUT_DEMONITOR);
    cr_assert_eq(tether_proc_demonitor(pa, &ref), TETHER_ENOTFOUND);
}

Test(proc, node_down_delivers_noconnection)
{
    rec_t a, b;
    tether_proc_t *pa = spawn_rec(&a), *pb = spawn_rec(&b);
    erlang_pid rp = remote_pid(11);
    tether_proc_trap_exit(pa, true);
    cr_assert_eq(tether_proc_link(pa, &rp), 0);
    erlang_ref ref;
    cr_assert_eq(tether_proc_monitor_name(pa, "svc", REMOTE, &ref), 0);
    cr_assert_eq(tether_proc_link(pb, &rp), 0); /* not trapping: dies */
    /* The remote node also watched pa: forgotten silently. */
    erlang_ref wref;
    memset(&wref, 0, sizeof wref);
    strcpy(wref.node, REMOTE);
    wref.len = 3;
    tether_procs_monitor_in(procs, &rp, tether_proc_pid(pa), NULL, &wref);
    nops = 0;
    tether_procs_node_down(procs, REMOTE);
    cr_assert_not(tether_proc_alive(pb));
    cr_assert(tether_proc_alive(pa));
    tether_procs_run(procs, 0);
    cr_assert_eq(a.n, 2);
    expect_down(&a, 0, &ref, "noconnection");
    expect_exit(&a, 1, &rp, "noconnection");
    cr_assert(tether_term_is_atom(b.reason, b.reason_len, "noconnection"));
    /* pb's death must not be told to the dead node, nor pa's exit. */
    nops = 0;
    tether_proc_exit(pa, NULL, 0);
    cr_assert_eq(nops, 0);
}

Test(proc, failed_out_gives_noconnection_at_once)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    out_rc = TETHER_ECLOSED;
    erlang_pid rp = remote_pid(11);
    erlang_ref ref;
    cr_assert_eq(tether_proc_monitor(pa, &rp, &ref), 0);
    tether_procs_run(procs, 0);
    cr_assert_eq(a.n, 1);
    expect_down(&a, 0, &ref, "noconnection");
}

Test(proc, handler_may_exit_itself)
{
    rec_t a;
    memset(&a, 0, sizeof a);
    tether_proc_spec_t spec = {rec_handler, rec_exit, &a};
    tether_proc_t *p;
    cr_assert_eq(tether_proc_spawn(procs, &spec, &p), 0);
    char m[32];
    size_t l = atom(m, "x");
    erlang_pid from = remote_pid(1);
    tether_procs_send_in(procs, &from, tether_proc_pid(p), m, l);
    tether_procs_send_in(procs, &from, tether_proc_pid(p), m, l);
    tether_proc_exit(p, NULL, 0);
    cr_assert_eq(tether_procs_run(procs, 0), 0);
    cr_assert_eq(a.exits, 1);
}

Test(proc, atom_terms_are_checked_with_bounds)
{
    char t[TETHER_ATOM_TERM_MAX];
    size_t l = atom(t, "normal");
    cr_assert(tether_term_is_atom(t, l, "normal"));
    cr_assert_not(tether_term_is_atom(t, l - 1, "normal"));
    cr_assert_not(tether_term_is_atom(t, l, "norma"));
    cr_assert_not(tether_term_is_atom(t, 2, "normal"));
    cr_assert_not(tether_term_is_atom(NULL, 0, "normal"));
    char garbage[] = {(char)131, 119, (char)200, 'a'};
    cr_assert_not(tether_term_is_atom(garbage, sizeof garbage, "a"));
}

Test(proc, new_rejects_bad_node_names)
{
    tether_procs_t *p2 = NULL;
    cr_assert_eq(tether_procs_new("nohost", 1, NULL, NULL, &p2), TETHER_EINVAL);
    cr_assert_eq(tether_procs_new("@x", 1, NULL, NULL, &p2), TETHER_EINVAL);
    cr_assert_eq(tether_procs_new("a@", 1, NULL, NULL, &p2), TETHER_EINVAL);
}

/* ---- direct delivery ------------------------------------------------ */

Test(proc, direct_delivery_is_off_by_default)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    char m[32];
    size_t l = atom(m, "one");
    tether_procs_send_in(procs, NULL, tether_proc_pid(pa), m, l);
    cr_assert_eq(a.n, 0);
    cr_assert_eq(tether_procs_run(procs, 0), 1);
    cr_assert_eq(a.n, 1);
}

Test(proc, direct_delivery_hands_an_idle_process_its_message_at_once)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    cr_assert_eq(tether_proc_register(pa, "svc"), 0);
    tether__procs_set_direct(procs, true);
    char m1[32], m2[32];
    size_t l1 = atom(m1, "one"), l2 = atom(m2, "two");
    erlang_pid from = remote_pid(5);
    tether_procs_send_in(procs, &from, tether_proc_pid(pa), m1, l1);
    cr_assert_eq(a.n, 1);
    tether_procs_reg_send_in(procs, &from, "svc", m2, l2);
    cr_assert_eq(a.n, 2);
    cr_assert(tether_term_is_atom(a.data[0], a.len[0], "one"));
    cr_assert(tether_term_is_atom(a.data[1], a.len[1], "two"));
    cr_assert_not(tether_procs_pending(procs));
    tether_procs_stats_t st;
    tether_procs_stats(procs, &st);
    cr_assert_eq(st.delivered, 2);
}

Test(proc, direct_delivery_never_overtakes_a_queued_message)
{
    rec_t a;
    tether_proc_t *pa = spawn_rec(&a);
    char m1[32], m2[32];
    size_t l1 = atom(m1, "one"), l2 = atom(m2, "two");
    /* Queued while direct delivery is off... */
    tether_procs_send_in(procs, NULL, tether_proc_pid(pa), m1, l1);
    tether__procs_set_direct(procs, true);
    /* ...so this one queues behind it. */
    tether_procs_send_in(procs, NULL, tether_proc_pid(pa), m2, l2);
    cr_assert_eq(a.n, 0);
    cr_assert_eq(tether_procs_run(procs, 0), 2);
    cr_assert_eq(a.n, 2);
    cr_assert(tether_term_is_atom(a.data[0], a.len[0], "one"));
    cr_assert(tether_term_is_atom(a.data[1], a.len[1], "two"));
}

/* Forwards every message to the pid in its arg through send_in. */
typedef struct {
    erlang_pid to;
    int calls;
    size_t seen_by_target; /* the target's count when the call returned */
    rec_t *target;
} fwd_t;

static void fwd_handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    fwd_t *f = arg;
    f->calls++;
    tether_procs_send_in(tether_proc_procs(self), NULL, &f->to, msg->data,
                         msg->len);
    f->seen_by_target = f->target->n;
}

Test(proc, direct_delivery_queues_what_a_handler_sends)
{
    rec_t b;
    tether_proc_t *pb = spawn_rec(&b);
    fwd_t f = {.to = *tether_proc_pid(pb), .target = &b};
    tether_proc_spec_t spec = {fwd_handler, NULL, &f};
    tether_proc_t *pf;
    cr_assert_eq(tether_proc_spawn(procs, &spec, &pf), 0);
    tether__procs_set_direct(procs, true);
    char m[32];
    size_t l = atom(m, "x");
    tether_procs_send_in(procs, NULL, tether_proc_pid(pf), m, l);
    cr_assert_eq(f.calls, 1);
    /* No handler runs inside another: b got it queued. */
    cr_assert_eq(f.seen_by_target, 0);
    cr_assert(tether_procs_pending(procs));
    cr_assert_eq(tether_procs_run(procs, 0), 1);
    cr_assert_eq(b.n, 1);
    cr_assert(tether_term_is_atom(b.data[0], b.len[0], "x"));
}

Test(proc, direct_delivery_lets_a_handler_exit_its_process)
{
    rec_t a;
    memset(&a, 0, sizeof a);
    tether_proc_spec_t spec = {rec_handler, rec_exit, &a};
    tether_proc_t *p;
    cr_assert_eq(tether_proc_spawn(procs, &spec, &p), 0);
    tether__procs_set_direct(procs, true);
    char m[32];
    size_t l = atom(m, "x");
    tether_procs_send_in(procs, NULL, tether_proc_pid(p), m, l);
    cr_assert_eq(a.n, 1);
    erlang_pid pid = *tether_proc_pid(p);
    tether_proc_exit(p, NULL, 0);
    /* The dead process gets nothing more and is freed by the next run. */
    tether_procs_send_in(procs, NULL, &pid, m, l);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(tether_procs_run(procs, 0), 0);
    cr_assert_eq(a.exits, 1);
}
