/*
 * Criterion suite for cnode/api.c without a network: registration rules
 * for functions and services, argument checks of the sending and calling
 * functions, the worker pool's absence before start, and the log hook.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cnode/api.h"
#include "tether/tether.h"

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
