/*
 * test/plugins/maptest.c: a C service on a C-node that hosts the
 * replicated map `mt`, subscribes to it and iterates it (test support,
 * built to c_src/build/plugins/maptest.so; tether_map_SUITE drives it).
 *
 *   events()      -> [{put, Key, Value} | {remove, Key}], every event the
 *                    subscription delivered, oldest first
 *   to_list()     -> [{Key, Value}] by tether_cluster_map_foreach
 *   unsubscribe() -> ok; no events after it
 */
#include <stdlib.h>
#include <string.h>

#include "tether/tether.h"

#define EVENTS_MAX 4096

/* `mt' as a 131-prefixed atom. */
static const char map_name[] = {(char)131, (char)119, 2, 'm', 't'};

/* Each event's ETF (without 131), in arrival order. */
static struct {
    char *etf;
    size_t len;
} events[EVENTS_MAX];
static size_t nevents;

/* Appends the term etf (131-prefixed) to x without its version byte. */
static int append_term(ei_x_buff *x, const char *etf, size_t len)
{
    return ei_x_append_buf(x, etf + 1, (int)len - 1);
}

static void on_event(void *ctx, const char *name, size_t nlen, const char *key,
                     size_t klen, const char *val, size_t vlen)
{
    ei_x_buff x;

    (void)ctx;
    (void)name;
    (void)nlen;
    if (nevents == EVENTS_MAX || ei_x_new(&x) < 0)
        return;
    if (val != NULL
            ? ei_x_encode_tuple_header(&x, 3) == 0 &&
                  ei_x_encode_atom(&x, "put") == 0 &&
                  append_term(&x, key, klen) == 0 &&
                  append_term(&x, val, vlen) == 0
            : ei_x_encode_tuple_header(&x, 2) == 0 &&
                  ei_x_encode_atom(&x, "remove") == 0 &&
                  append_term(&x, key, klen) == 0) {
        events[nevents].etf = x.buff; /* kept: freed never (test support) */
        events[nevents++].len = (size_t)x.index;
        return;
    }
    ei_x_free(&x);
}

/* Ends a list in x and returns it, or raises system_limit; frees x. */
static void return_list(tether_call_t *call, ei_x_buff *x, int ok)
{
    if (ok && ei_x_encode_empty_list(x) == 0)
        (void)tether_call_return(call, x->buff, (size_t)x->index);
    else
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    ei_x_free(x);
}

static void fn_events(tether_call_t *call, const char *args, int idx,
                      int argc, void *ctx)
{
    ei_x_buff x;
    int ok;

    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    ok = ei_x_new_with_version(&x) == 0 &&
         ei_x_encode_list_header(&x, (long)nevents) == 0;
    for (size_t i = 0; ok && i < nevents; i++)
        ok = ei_x_append_buf(&x, events[i].etf, (int)events[i].len) == 0;
    return_list(call, &x, ok);
}

typedef struct pairs {
    ei_x_buff *x;
    int ok;
} pairs_t;

static void pair(void *ctx, const char *key, size_t klen, const char *val,
                 size_t vlen)
{
    pairs_t *p = ctx;

    p->ok = p->ok && ei_x_encode_list_header(p->x, 1) == 0 &&
            ei_x_encode_tuple_header(p->x, 2) == 0 &&
            append_term(p->x, key, klen) == 0 &&
            append_term(p->x, val, vlen) == 0;
}

static void fn_to_list(tether_call_t *call, const char *args, int idx,
                       int argc, void *ctx)
{
    ei_x_buff x;
    pairs_t p = {&x, 1};
    int rc;

    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    p.ok = ei_x_new_with_version(&x) == 0;
    rc = tether_cluster_map_foreach(tether_call_node(call), map_name,
                                    sizeof map_name, pair, &p);
    if (rc < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "no_such_map");
        ei_x_free(&x);
        return;
    }
    return_list(call, &x, p.ok);
}

static void fn_unsubscribe(tether_call_t *call, const char *args, int idx,
                           int argc, void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    (void)tether_cluster_map_unsubscribe(tether_call_node(call), map_name,
                                         sizeof map_name, on_event, NULL);
    (void)tether_call_return_atom(call, "ok");
}

int tether_plugin_init(tether_node_t *node)
{
    int rc = tether_cluster_map_host(node, map_name, sizeof map_name);

    if (rc == 0)
        rc = tether_cluster_map_subscribe(node, map_name, sizeof map_name,
                                          on_event, NULL);
    if (rc == 0)
        rc = tether_function_register(node, "maptest", "events", 0, fn_events,
                                      NULL);
    if (rc == 0)
        rc = tether_function_register(node, "maptest", "to_list", 0,
                                      fn_to_list, NULL);
    if (rc == 0)
        rc = tether_function_register(node, "maptest", "unsubscribe", 0,
                                      fn_unsubscribe, NULL);
    return rc;
}
