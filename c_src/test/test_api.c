/*
 * Criterion suite for the service API (cnode/functions.c, gen_service.c,
 * send.c, erlang_call.c, workers.c) without a network: registration rules
 * for functions and services, argument checks of the sending and calling
 * functions, the worker pool's absence before start, and the log hook.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "cnode/api.h"
#include "tether/tether.h"
#include "tether/term.h"

static tether_node_t *new_node(void)
{
    tether_node_config_t cfg = {
        .name = "t1@127.0.0.1",
        .cookie = "secret",
        .log_level = TETHER_LOG_INFO,
    };
    tether_node_t *node = NULL;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    return node;
}

static void fn(tether_call_t *call, const char *args, int idx, int argc,
               void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    (void)tether_call_return_atom(call, "ok");
}

Test(api, function_registration_rules)
{
    tether_node_t *node = new_node();
    cr_assert_eq(tether_function_register(node, "m", "f", 1, fn, NULL), 0);
    cr_assert_eq(tether_function_register(node, "m", "f", 1, fn, NULL),
                 TETHER_EEXIST);
    cr_assert_eq(tether_function_register(node, "m", "f", 2, fn, NULL), 0);
    cr_assert_eq(tether_function_register(node, "m", "f", -1, fn, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_function_register(node, "m", "f", 256, fn, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_function_register(node, "", "f", 0, fn, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_function_register(node, "m", NULL, 0, fn, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_function_register(node, "m", "g", 0, NULL, NULL),
                 TETHER_EINVAL);
    char longname[TETHER_NAME_MAX + 4];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(tether_function_register(node, longname, "f", 0, fn, NULL),
                 TETHER_EINVAL);
    tether_node_free(node);
}

Test(api, service_names_are_unique_before_start)
{
    tether_node_t *node = new_node();
    tether_service_ops_t ops = {0};
    tether_service_t *svc = NULL;
    cr_assert_eq(tether_service_register(node, "s", &ops, NULL, &svc), 0);
    cr_assert_not_null(svc);
    cr_assert_eq(tether_service_register(node, "s", &ops, NULL, NULL),
                 TETHER_EEXIST);
    cr_assert_eq(tether_service_register(node, "", &ops, NULL, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_service_register(node, "t", NULL, NULL, NULL),
                 TETHER_EINVAL);
    tether_node_free(node); /* frees the services never started */
}

static void work(void *arg)
{
    (void)arg;
}

Test(api, no_pool_before_start)
{
    tether_node_t *node = new_node();
    cr_assert_eq(tether_node_submit(node, work, NULL, NULL), TETHER_ECLOSED);
    tether_node_free(node);
}

static void done(tether_node_t *node, int status, const char *term, size_t len,
                 void *ctx)
{
    (void)node;
    (void)status;
    (void)term;
    (void)len;
    (void)ctx;
}

Test(api, checks_arguments_of_send_and_call)
{
    tether_node_t *node = new_node();
    static const char nil[] = {(char)131, 'j'};
    static const char atom[] = {(char)131, 'w', 1, 'x'};
    static const char bad[] = {(char)131, 'l', 0, 0, 0, 3};
    erlang_pid pid = {0};
    cr_assert_eq(tether_send(node, &pid, bad, sizeof bad), TETHER_EINVAL);
    cr_assert_eq(tether_send(node, NULL, nil, sizeof nil), TETHER_EINVAL);
    cr_assert_eq(tether_send_name(node, "n", "nohost", nil, sizeof nil),
                 TETHER_EINVAL);
    cr_assert_eq(tether_send_name(node, "", NULL, nil, sizeof nil),
                 TETHER_EINVAL);
    cr_assert_eq(tether_erlang_call(node, "b@127.0.0.1", "m", "f", atom,
                                    sizeof atom, 0, done, NULL),
                 TETHER_EINVAL); /* args must be a list */
    cr_assert_eq(tether_erlang_call(node, "nohost", "m", "f", nil, sizeof nil,
                                    0, done, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_erlang_call(node, "b@127.0.0.1", "m", "f", nil,
                                    sizeof nil, 0, NULL, NULL),
                 TETHER_EINVAL);
    ei_x_buff r;
    cr_assert_eq(ei_x_new(&r), 0);
    cr_assert_eq(tether_erlang_call_sync(node, "b@127.0.0.1", "m", "f", bad,
                                         sizeof bad, 0, &r),
                 TETHER_EINVAL);
    ei_x_free(&r);
    tether_node_free(node);
}

static char logged[256];
static int logged_level = -1;

static void sink(void *ctx, int level, const char *line)
{
    cr_assert_eq(ctx, (void *)logged);
    logged_level = level;
    snprintf(logged, sizeof logged, "%s", line);
}

Test(api, log_hook_receives_lines_at_or_below_level)
{
    tether_node_t *node = new_node();
    tether_node_set_log_fn(node, sink, logged);
    tether_node_log(node, TETHER_LOG_DEBUG, "hidden %d", 1);
    cr_assert_eq(logged_level, -1);
    tether_node_log(node, TETHER_LOG_WARNING, "shown %d", 2);
    cr_assert_eq(logged_level, TETHER_LOG_WARNING);
    cr_assert_str_eq(logged, "shown 2");
    tether_node_set_log_level(node, TETHER_LOG_DEBUG);
    tether_node_log(node, TETHER_LOG_DEBUG, "now %s", "shown");
    cr_assert_str_eq(logged, "now shown");
    cr_assert_eq(logged_level, TETHER_LOG_DEBUG);
    tether_node_free(node);
}

/* ---- tether__call_invoke: calls the node makes itself ------------------ */

#define OUTCOME_MAX 256
#define INVOKES_MAX 8

/* What an invoke's done callback saw; stop: end the loop then. */
typedef struct outcome {
    int calls;
    bool on_loop;
    bool stop;
    char text[OUTCOME_MAX];
} outcome_t;

static void invoke_done(tether_node_t *node, void *ctx, const char *term,
                        size_t len)
{
    outcome_t *o = ctx;
    o->calls++;
    o->on_loop = tether_node_on_loop(node);
    cr_assert_eq(tether_term_format(term, len, o->text, sizeof o->text), 0);
    if (o->stop)
        tether_node_stop(node);
}

/* Raises the class named by its atom argument (or returns it). */
static void fn_raise(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    char a[MAXATOMLEN_UTF8];
    (void)argc;
    (void)ctx;
    cr_assert_eq(ei_decode_atom(args, &idx, a), 0);
    if (strcmp(a, "throw") == 0)
        (void)tether_call_raise_atom(call, TETHER_THROW, "boom");
    else if (strcmp(a, "error") == 0)
        (void)tether_call_raise_atom(call, TETHER_ERROR, "boom");
    else if (strcmp(a, "exit") == 0)
        (void)tether_call_raise_atom(call, TETHER_EXIT, "boom");
    else
        (void)tether_call_return_atom(call, a);
}

/* Returns the sum of its integer arguments. */
static void fn_sum(tether_call_t *call, const char *args, int idx, int argc,
                   void *ctx)
{
    long sum = 0, v;
    (void)ctx;
    for (int i = 0; i < argc; i++) {
        cr_assert_eq(ei_decode_long(args, &idx, &v), 0);
        sum += v;
    }
    ei_x_buff x;
    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_long(&x, sum), 0);
    cr_assert_eq(tether_call_return(call, x.buff, (size_t)x.index), 0);
    ei_x_free(&x);
}

/* Completes with something that is not a term: the caller sees badarg. */
static void fn_bad_value(tether_call_t *call, const char *args, int idx,
                         int argc, void *ctx)
{
    static const char bad[] = {(char)131, 'l', 0, 0, 0, 7};
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    cr_assert_eq(tether_call_return(call, bad, sizeof bad), TETHER_EINVAL);
}

static void *complete_later(void *arg)
{
    cr_assert_not(tether_node_on_loop(tether_call_node(arg)));
    (void)tether_call_return_atom(arg, "late");
    return NULL;
}

static pthread_t worker;

/* Hands the call to a thread of its own, which completes it. */
static void fn_later(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    cr_assert_eq(pthread_create(&worker, NULL, complete_later, call), 0);
}

static tether_node_t *invoke_node(void)
{
    tether_node_t *node = new_node();
    cr_assert_eq(
        tether_function_register(node, "m", "raise", 1, fn_raise, NULL), 0);
    cr_assert_eq(tether_function_register(node, "m", "sum", 2, fn_sum, NULL),
                 0);
    cr_assert_eq(tether_function_register(node, "m", "sum", 3, fn_sum, NULL),
                 0);
    cr_assert_eq(
        tether_function_register(node, "m", "bad", 0, fn_bad_value, NULL), 0);
    cr_assert_eq(
        tether_function_register(node, "m", "later", 0, fn_later, NULL), 0);
    return node;
}

/* One invoke: module:function(Args), its result and its outcome. */
typedef struct invoke {
    const char *module, *function;
    ei_x_buff args;
    int rc;
    bool returned_first; /* invoke returned before done ran */
    outcome_t out;
} invoke_t;

/* Invokes to run one after the other in one turn of the loop. */
typedef struct batch {
    invoke_t *v;
    size_t n;
    bool wait_last; /* the last one completes later: its done stops */
} batch_t;

static void batch_on_loop(tether_node_t *node, void *arg)
{
    batch_t *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        invoke_t *iv = &b->v[i];
        iv->out.stop = b->wait_last && i + 1 == b->n;
        iv->rc =
            tether__call_invoke(node, iv->module, iv->function, iv->args.buff,
                                (size_t)iv->args.index, invoke_done, &iv->out);
        iv->returned_first = iv->out.calls == 0;
    }
    if (!b->wait_last)
        tether_node_stop(node);
}

/* Runs the batch on the node's loop (once per node: a stopped loop stays
 * stopped) and frees the argument buffers. */
static void run_batch(tether_node_t *node, invoke_t *v, size_t n,
                      bool wait_last)
{
    batch_t b = {v, n, wait_last};
    cr_assert_eq(tether_node_post(node, batch_on_loop, &b), 0);
    cr_assert_eq(tether_node_run(node), 0);
    for (size_t i = 0; i < n; i++)
        ei_x_free(&v[i].args);
}

/* Starts an argument list of n elements (n == 0: only the version). */
static void args_new(ei_x_buff *x, int n)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    if (n > 0)
        cr_assert_eq(ei_x_encode_list_header(x, n), 0);
}

Test(api, invoke_returns_the_value_of_a_registered_function)
{
    tether_node_t *node = invoke_node();
    invoke_t iv[2] = {{.module = "m", .function = "sum"},
                      {.module = "m", .function = "sum"}};
    args_new(&iv[0].args, 2);
    cr_assert_eq(ei_x_encode_long(&iv[0].args, 40), 0);
    cr_assert_eq(ei_x_encode_long(&iv[0].args, 2), 0);
    cr_assert_eq(ei_x_encode_empty_list(&iv[0].args), 0);
    /* A list of small integers travels as a string: [1, 2, 3]. */
    args_new(&iv[1].args, 0);
    cr_assert_eq(ei_x_encode_string(&iv[1].args, "\001\002\003"), 0);
    run_batch(node, iv, 2, false);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(iv[i].rc, 0);
        cr_assert_eq(iv[i].out.calls, 1);
        cr_assert(iv[i].out.on_loop);
        cr_assert_not(iv[i].returned_first, "completed inside the call");
    }
    cr_assert_str_eq(iv[0].out.text, "{return, 42}");
    cr_assert_str_eq(iv[1].out.text, "{return, 6}");
    tether_node_free(node);
}

Test(api, invoke_reports_each_exception_class)
{
    static const struct {
        const char *arg, *want;
    } cases[] = {
        {"ok", "{return, ok}"},
        {"throw", "{throw, boom}"},
        {"error", "{error, boom, [{m, raise, 1, []}]}"},
        {"exit", "{exit, boom}"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    invoke_t iv[INVOKES_MAX] = {{0}};
    tether_node_t *node = invoke_node();
    for (size_t i = 0; i < n; i++) {
        iv[i].module = "m";
        iv[i].function = "raise";
        args_new(&iv[i].args, 1);
        cr_assert_eq(ei_x_encode_atom(&iv[i].args, cases[i].arg), 0);
        cr_assert_eq(ei_x_encode_empty_list(&iv[i].args), 0);
    }
    iv[n].module = "m";
    iv[n].function = "bad";
    args_new(&iv[n].args, 0);
    cr_assert_eq(ei_x_encode_empty_list(&iv[n].args), 0);
    run_batch(node, iv, n + 1, false);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(iv[i].rc, 0);
        cr_assert_eq(iv[i].out.calls, 1, "%s", cases[i].arg);
        cr_assert_str_eq(iv[i].out.text, cases[i].want);
    }
    cr_assert_eq(iv[n].out.calls, 1);
    cr_assert_str_eq(iv[n].out.text, "{error, badarg, [{m, bad, 0, []}]}",
                     "a bad value is error:badarg");
    tether_node_free(node);
}

Test(api, invoke_of_an_unknown_function_is_undef)
{
    tether_node_t *node = invoke_node();
    invoke_t iv[2] = {{.module = "nomod", .function = "nofun"},
                      {.module = "m", .function = "raise"}};
    args_new(&iv[0].args, 2);
    cr_assert_eq(ei_x_encode_long(&iv[0].args, 1), 0);
    cr_assert_eq(ei_x_encode_atom(&iv[0].args, "x"), 0);
    cr_assert_eq(ei_x_encode_empty_list(&iv[0].args), 0);
    /* A registered name at another arity. */
    args_new(&iv[1].args, 0);
    cr_assert_eq(ei_x_encode_empty_list(&iv[1].args), 0);
    run_batch(node, iv, 2, false);
    cr_assert_eq(iv[0].rc, 0);
    cr_assert_eq(iv[0].out.calls, 1);
    cr_assert_str_eq(iv[0].out.text,
                     "{error, undef, [{nomod, nofun, [1, x], []}]}");
    cr_assert_eq(iv[1].rc, 0);
    cr_assert_eq(iv[1].out.calls, 1);
    cr_assert_str_eq(iv[1].out.text, "{error, undef, [{m, raise, [], []}]}");
    tether_node_free(node);
}

Test(api, invoke_completes_later_from_another_thread)
{
    tether_node_t *node = invoke_node();
    invoke_t iv = {.module = "m", .function = "later"};
    args_new(&iv.args, 0);
    cr_assert_eq(ei_x_encode_empty_list(&iv.args), 0);
    run_batch(node, &iv, 1, true); /* runs until done stops the loop */
    cr_assert_eq(pthread_join(worker, NULL), 0);
    cr_assert_eq(iv.rc, 0);
    cr_assert(iv.returned_first, "done ran after invoke returned");
    cr_assert_eq(iv.out.calls, 1);
    cr_assert(iv.out.on_loop, "and on the loop thread");
    cr_assert_str_eq(iv.out.text, "{return, late}");
    tether_node_free(node);
}

Test(api, invoke_rejects_bad_names_and_arguments_without_calling_back)
{
    static const char atom[] = {(char)131, 'd', 0, 1, 'x'};
    static const char improper[] = {(char)131, 'l', 0, 0, 0, 1, 'a', 1, 'a', 2};
    static const char trunc[] = {(char)131, 'l', 0, 0, 0, 2, 'a', 1};
    static const char nil[] = {(char)131, 'j'};
    char longname[TETHER_NAME_MAX + 4];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const struct {
        const char *m, *f, *args;
        size_t len;
    } cases[] = {
        {"", "f", nil, sizeof nil},
        {NULL, "f", nil, sizeof nil},
        {"m", "", nil, sizeof nil},
        {"m", NULL, nil, sizeof nil},
        {longname, "f", nil, sizeof nil},
        {"m", longname, nil, sizeof nil},
        {"m", "sum", atom, sizeof atom},
        {"m", "sum", improper, sizeof improper},
        {"m", "sum", trunc, sizeof trunc},
        {"m", "sum", nil, 1},
        {"m", "sum", nil + 1, 1},
        {"m", "sum", NULL, 0},
    };
    tether_node_t *node = invoke_node();
    outcome_t out = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(tether__call_invoke(node, cases[i].m, cases[i].f,
                                         cases[i].args, cases[i].len,
                                         invoke_done, &out),
                     TETHER_EINVAL, "case %zu", i);
    cr_assert_eq(
        tether__call_invoke(node, "m", "sum", nil, sizeof nil, NULL, &out),
        TETHER_EINVAL);
    cr_assert_eq(tether__call_invoke(NULL, "m", "sum", nil, sizeof nil,
                                     invoke_done, &out),
                 TETHER_EINVAL);
    cr_assert_eq(out.calls, 0, "done is never called on a refusal");
    tether_node_free(node);
}
