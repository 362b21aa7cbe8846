/*
 * test/plugins/rpctest.c: the `rpctest` module as a tether_cnode plugin
 * (test support, built to c_src/build/plugins/rpctest.so). The common_test
 * suites call the same functions on a BEAM node running test/rpctest.erl
 * and compare the answers.
 *
 *   echo(X)                      -> X
 *   add(A, B)                    -> A + B for integers; anything else
 *                                   raises error:badarith
 *   throw(X) / error(X) / exit(X) -> raises X with that class
 *   sleep(Ms)                    -> sleeps Ms ms on a worker thread, ok
 *   node()                       -> this node's name
 *   call_erlang(Node, M, F, Args) -> {ok, Result} | {error, Reason}
 *                                   (Reason as erpc:call raises it),
 *                                   called from C with spawn_request
 *   send_name(Node, Name, Msg)   -> ok; Msg goes to Name on Node from C
 *
 * It also registers a service `rpctest` (gen_server:call/cast):
 *   {echo, X}    -> X, at once
 *   {sleep, Ms}  -> ok, replied later from a worker thread after Ms ms
 *   {crash, R}   -> the service exits with reason R (callers exit with
 *                   {R, {gen_server, call, ...}})
 *   cast {send, Pid, Msg} -> Pid ! Msg
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tether/tether.h"

#define SLEEP_MAX_MS 3600000L

/* Returns the term at args[idx] (without 131) as the call's value. */
static void return_slice(tether_call_t *call, const char *args, int idx)
{
    int end = idx;
    ei_x_buff x;
    if (ei_skip_term(args, &end) < 0 || ei_x_new_with_version(&x) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    if (ei_x_append_buf(&x, args + idx, end - idx) == 0)
        (void)tether_call_return(call, x.buff, (size_t)x.index);
    else
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    ei_x_free(&x);
}

/* Raises class:Term with Term = args[idx]. */
static void raise_slice(tether_call_t *call, tether_class_t cls,
                        const char *args, int idx)
{
    int end = idx;
    ei_x_buff x;
    if (ei_skip_term(args, &end) < 0 || ei_x_new_with_version(&x) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    if (ei_x_append_buf(&x, args + idx, end - idx) == 0)
        (void)tether_call_raise(call, cls, x.buff, (size_t)x.index, NULL, 0);
    else
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    ei_x_free(&x);
}

static void fn_echo(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    (void)argc;
    (void)ctx;
    return_slice(call, args, idx);
}

static void fn_throw(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    (void)argc;
    (void)ctx;
    raise_slice(call, TETHER_THROW, args, idx);
}

static void fn_error(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    (void)argc;
    (void)ctx;
    raise_slice(call, TETHER_ERROR, args, idx);
}

static void fn_exit(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    (void)argc;
    (void)ctx;
    raise_slice(call, TETHER_EXIT, args, idx);
}

/* An integer as sign and little-endian magnitude bytes (malloc'd). */
typedef struct bigint {
    int neg;
    unsigned char *d;
    size_t n;
} bigint_t;

/* Reads the integer at b[*idx]; -1 if it is not an integer. */
static int read_int(const char *b, int *idx, bigint_t *v)
{
    const unsigned char *p = (const unsigned char *)b + *idx;
    int type, size;
    if (ei_get_type(b, idx, &type, &size) < 0)
        return -1;
    if (type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT) {
        long l;
        if (ei_decode_long(b, idx, &l) < 0)
            return -1;
        unsigned long m = l < 0 ? 0ul - (unsigned long)l : (unsigned long)l;
        v->neg = l < 0;
        v->d = calloc(sizeof m, 1);
        if (v->d == NULL)
            return -1;
        for (v->n = 0; m; m >>= 8)
            v->d[v->n++] = (unsigned char)(m & 0xff);
        return 0;
    }
    size_t n, hdr;
    if (type == ERL_SMALL_BIG_EXT) {
        n = p[1];
        hdr = 2;
    } else if (type == ERL_LARGE_BIG_EXT) {
        n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        hdr = 5;
    } else {
        return -1;
    }
    v->neg = p[hdr] != 0;
    v->d = malloc(n ? n : 1);
    if (v->d == NULL)
        return -1;
    memcpy(v->d, p + hdr + 1, n);
    v->n = n;
    *idx += (int)(hdr + 1 + n);
    return 0;
}

/* Compares magnitudes. */
static int mag_cmp(const bigint_t *a, const bigint_t *b)
{
    size_t an = a->n, bn = b->n;
    while (an && a->d[an - 1] == 0)
        an--;
    while (bn && b->d[bn - 1] == 0)
        bn--;
    if (an != bn)
        return an < bn ? -1 : 1;
    for (size_t i = an; i > 0; i--)
        if (a->d[i - 1] != b->d[i - 1])
            return a->d[i - 1] < b->d[i - 1] ? -1 : 1;
    return 0;
}

static unsigned char digit(const bigint_t *v, size_t i)
{
    return i < v->n ? v->d[i] : 0;
}

/* Appends a + b (131-prefixed, smallest encoding) to out. */
static int big_add(const bigint_t *a, const bigint_t *b, ei_x_buff *out)
{
    size_t n = (a->n > b->n ? a->n : b->n) + 1;
    unsigned char *r = calloc(n + 6, 1);
    if (r == NULL)
        return -1;
    unsigned char *d = r + 6;
    int neg;
    if (a->neg == b->neg) {
        unsigned c = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned s = (unsigned)digit(a, i) + digit(b, i) + c;
            d[i] = (unsigned char)s;
            c = s >> 8;
        }
        neg = a->neg;
    } else {
        const bigint_t *hi = a, *lo = b;
        if (mag_cmp(a, b) < 0) {
            hi = b;
            lo = a;
        }
        int br = 0;
        for (size_t i = 0; i < n; i++) {
            int s = (int)digit(hi, i) - digit(lo, i) - br;
            br = s < 0;
            d[i] = (unsigned char)(s + (br ? 256 : 0));
        }
        neg = hi->neg;
    }
    /* LARGE_BIG_EXT, then the canonical (smallest) form of it. */
    r[0] = 131;
    r[1] = ERL_LARGE_BIG_EXT;
    r[2] = (unsigned char)(n >> 24);
    r[3] = (unsigned char)(n >> 16);
    r[4] = (unsigned char)(n >> 8);
    r[5] = (unsigned char)n;
    unsigned char *t = malloc(n + 7);
    int rc = -1;
    if (t) {
        memcpy(t, r, 6);
        t[6] = (unsigned char)neg;
        memcpy(t + 7, d, n);
        rc = tether_term_normalize((const char *)t, n + 7, out);
        free(t);
    }
    free(r);
    return rc;
}

/*
 * add(A, B): integers of any size add; anything else raises
 * error:badarith with the stack [{rpctest, add, 2, []}], as
 * test/rpctest.erl's erlang:error(badarith).
 */
static void fn_add(tether_call_t *call, const char *args, int idx, int argc,
                   void *ctx)
{
    (void)argc;
    (void)ctx;
    bigint_t a = {0}, b = {0};
    ei_x_buff x = {0};
    if (read_int(args, &idx, &a) < 0 || read_int(args, &idx, &b) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarith");
    } else if (ei_x_new(&x) < 0 || big_add(&a, &b, &x) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    } else {
        (void)tether_call_return(call, x.buff, (size_t)x.index);
    }
    if (x.buff)
        ei_x_free(&x);
    free(a.d);
    free(b.d);
}

#define SLEEP_SLICE_MS 10

/* Sleeps ms in slices, ending early when the node is stopping. */
static void nap(tether_node_t *node, long ms)
{
    while (ms > 0 && !tether_node_stopping(node)) {
        long step = ms < SLEEP_SLICE_MS ? ms : SLEEP_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
        ms -= step;
    }
}

/* sleep(Ms): the worker sleeps, then completes the call from its thread. */
typedef struct sleep_job {
    tether_call_t *call;
    long ms;
} sleep_job_t;

static void sleep_work(void *arg)
{
    sleep_job_t *j = arg;
    nap(tether_call_node(j->call), j->ms);
    (void)tether_call_return_atom(j->call, "ok");
    free(j);
}

static void fn_sleep(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    (void)argc;
    (void)ctx;
    long ms;
    if (ei_decode_long(args, &idx, &ms) < 0 || ms < 0 || ms > SLEEP_MAX_MS) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    sleep_job_t *j = malloc(sizeof *j);
    if (j == NULL) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    j->call = call;
    j->ms = ms;
    if (tether_node_submit(tether_call_node(call), sleep_work, NULL, j) < 0) {
        free(j);
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    }
}

static void fn_node(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    (void)tether_call_return_atom(call,
                                  tether_node_name(tether_call_node(call)));
}

/* call_erlang: the result arrives on the loop thread. */
static void call_erlang_done(tether_node_t *node, int status, const char *term,
                             size_t len, void *ctx)
{
    (void)node;
    tether_call_t *call = ctx;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    int rc;
    if (status < 0 || term == NULL || len < 2) {
        rc = ei_x_encode_tuple_header(&x, 2);
        rc |= ei_x_encode_atom(&x, "error");
        rc |= ei_x_encode_atom(&x, status == TETHER_ECLOSED ? "closed"
                                                            : "system_limit");
    } else if (status == TETHER_RETURN) {
        rc = ei_x_encode_tuple_header(&x, 2);
        rc |= ei_x_encode_atom(&x, "ok");
        rc |= ei_x_append_buf(&x, term + 1, (int)len - 1);
    } else {
        rc = ei_x_encode_tuple_header(&x, 2);
        rc |= ei_x_encode_atom(&x, "error");
        rc |= ei_x_append_buf(&x, term + 1, (int)len - 1);
    }
    if (rc == 0)
        (void)tether_call_return(call, x.buff, (size_t)x.index);
    else
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    ei_x_free(&x);
}

/* Copies the term at args[idx] into out, a new buffer with the version
 * byte (freed by the caller). Returns 0, or -1 (nothing to free). */
static int copy_term(const char *args, int idx, ei_x_buff *out)
{
    int end = idx;

    if (ei_skip_term(args, &end) < 0 || ei_x_new_with_version(out) < 0)
        return -1;
    if (ei_x_append_buf(out, args + idx, end - idx) < 0) {
        ei_x_free(out);
        return -1;
    }
    return 0;
}

static void fn_call_erlang(tether_call_t *call, const char *args, int idx,
                           int argc, void *ctx)
{
    (void)argc;
    (void)ctx;
    char node[MAXATOMLEN_UTF8], m[MAXATOMLEN_UTF8], f[MAXATOMLEN_UTF8];
    if (ei_decode_atom(args, &idx, node) < 0 ||
        ei_decode_atom(args, &idx, m) < 0 ||
        ei_decode_atom(args, &idx, f) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    ei_x_buff a;
    if (copy_term(args, idx, &a) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    int rc = tether_erlang_call(tether_call_node(call), node, m, f, a.buff,
                                (size_t)a.index, 0, call_erlang_done, call);
    ei_x_free(&a);
    if (rc < 0)
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
}

static void fn_send_name(tether_call_t *call, const char *args, int idx,
                         int argc, void *ctx)
{
    (void)argc;
    (void)ctx;
    char node[MAXATOMLEN_UTF8], name[MAXATOMLEN_UTF8];
    if (ei_decode_atom(args, &idx, node) < 0 ||
        ei_decode_atom(args, &idx, name) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    ei_x_buff m;
    if (copy_term(args, idx, &m) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    int rc = tether_send_name(tether_call_node(call), name, node, m.buff,
                              (size_t)m.index);
    ei_x_free(&m);
    if (rc < 0)
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
    else
        (void)tether_call_return_atom(call, "ok");
}

/* ---- the rpctest service ---------------------------------------------- */

typedef struct reply_job {
    tether_node_t *node;
    tether_from_t *from;
    long ms;
} reply_job_t;

static void reply_later(void *arg)
{
    reply_job_t *j = arg;
    nap(j->node, j->ms);
    (void)tether_reply_atom(j->from, "ok"); /* from the worker thread */
    free(j);
}

static void svc_call(tether_service_t *svc, tether_from_t *from, const char *b,
                     int idx, void *ctx)
{
    (void)ctx;
    int arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 ||
        ei_decode_atom(b, &idx, tag) < 0) {
        (void)tether_reply_atom(from, "bad_request");
        return;
    }
    int end = idx;
    ei_x_buff x;
    if (ei_skip_term(b, &end) < 0 || ei_x_new_with_version(&x) < 0 ||
        ei_x_append_buf(&x, b + idx, end - idx) < 0) {
        tether_from_free(from);
        return;
    }
    long ms;
    if (strcmp(tag, "echo") == 0) {
        (void)tether_reply(from, x.buff, (size_t)x.index);
    } else if (strcmp(tag, "sleep") == 0 && ei_decode_long(b, &idx, &ms) == 0 &&
               ms >= 0 && ms <= SLEEP_MAX_MS) {
        reply_job_t *j = malloc(sizeof *j);
        if (j == NULL) {
            tether_from_free(from);
        } else {
            j->node = tether_service_node(svc);
            j->from = from;
            j->ms = ms;
            if (tether_node_submit(tether_service_node(svc), reply_later, NULL,
                                   j) < 0) {
                tether_from_free(from);
                free(j);
            }
        }
    } else if (strcmp(tag, "crash") == 0) {
        tether_from_free(from);
        tether_service_exit(svc, x.buff, (size_t)x.index);
    } else {
        (void)tether_reply_atom(from, "bad_request");
    }
    ei_x_free(&x);
}

static void svc_cast(tether_service_t *svc, const char *b, int idx, void *ctx)
{
    (void)ctx;
    int arity;
    char tag[MAXATOMLEN_UTF8];
    erlang_pid to;
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 ||
        ei_decode_atom(b, &idx, tag) < 0 || strcmp(tag, "send") != 0 ||
        ei_decode_pid(b, &idx, &to) < 0)
        return;
    int end = idx;
    ei_x_buff x;
    if (ei_skip_term(b, &end) < 0 || ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_append_buf(&x, b + idx, end - idx) == 0)
        (void)tether_send(tether_service_node(svc), &to, x.buff,
                          (size_t)x.index);
    ei_x_free(&x);
}

int tether_plugin_init(tether_node_t *node)
{
    static const tether_service_ops_t ops = {.call = svc_call,
                                             .cast = svc_cast};
    static const struct {
        const char *name;
        int arity;
        tether_function_fn fn;
    } fns[] = {
        {"echo", 1, fn_echo},           {"add", 2, fn_add},
        {"throw", 1, fn_throw},         {"error", 1, fn_error},
        {"exit", 1, fn_exit},           {"sleep", 1, fn_sleep},
        {"node", 0, fn_node},           {"call_erlang", 4, fn_call_erlang},
        {"send_name", 3, fn_send_name},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int rc = tether_function_register(node, "rpctest", fns[i].name,
                                          fns[i].arity, fns[i].fn, NULL);
        if (rc < 0)
            return rc;
    }
    return tether_service_register(node, "rpctest", &ops, NULL, NULL);
}
