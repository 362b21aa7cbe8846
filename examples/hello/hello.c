/*
 * hello.c: the smallest program built against libtether.a from outside
 * the tree, with pkg-config (see the Makefile beside it and README.md,
 * "Building a C program against libtether.a"). It is a whole C-node, with
 * tether_cnode's flags, that offers one C function to Erlang:
 *
 *   $ ./hello --name hello@127.0.0.1 --cookie secret
 *   1> rpc:call('hello@127.0.0.1', hello, greet, [<<"world">>]).
 *   <<"hello, world">>
 */
#include <stdio.h>
#include <string.h>

#include "tether/tether.h"

/* hello:greet(Name) -> <<"hello, ", Name/binary>>, for a binary Name. */
static void greet(tether_call_t *call, const char *args, int index, int argc,
                  void *ctx)
{
    (void)argc;
    (void)ctx;
    char out[256] = "hello, ";
    const size_t pre = strlen(out);
    int type, size;
    long len = 0;
    if (ei_get_type(args, &index, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        (size_t)size > sizeof out - pre ||
        ei_decode_binary(args, &index, out + pre, &len) < 0) {
        tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    ei_x_buff reply;
    if (ei_x_new_with_version(&reply) < 0) {
        tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    if (ei_x_encode_binary(&reply, out, (int)pre + (int)len) < 0)
        tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
    else
        tether_call_return(call, reply.buff, (size_t)reply.index);
    ei_x_free(&reply);
}

static int init(tether_node_t *node)
{
    return tether_function_register(node, "hello", "greet", 1, greet, NULL);
}

int main(int argc, char **argv)
{
    static const tether_cli_t cli = {
        .prog = "hello",
        .init = init,
        .about = "Offers hello:greet/1 to Erlang (examples/hello).\n",
    };
    return tether_cli_main(argc, argv, &cli);
}
