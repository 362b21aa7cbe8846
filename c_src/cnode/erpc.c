/*
 * cnode/erpc.c: the pure half of the erpc and rex protocols (see
 * cnode/api.h): outcome encoders and the reader of erpc exit reasons.
 * No node, no threads: bytes in, bytes out.
 */
#include <string.h>

#include "cnode/api.h"
#include "tether/term.h"

/* Appends a 131-prefixed term without its version byte. */
static int put_term(ei_x_buff *x, const char *t, size_t len)
{
    if (t == NULL || len < 2 || (unsigned char)t[0] != 131)
        return -1;
    return ei_x_append_buf(x, t + 1, (int)(len - 1));
}

int tether__erpc_encode_outcome(ei_x_buff *x, tether_reply_mode_t mode,
                                const char *ref, size_t ref_len,
                                tether_class_t cls, const char *value,
                                size_t value_len, const char *stack,
                                size_t stack_len)
{
    if (x == NULL || !tether_term_valid(value, value_len) ||
        (cls == TETHER_ERROR && !tether_term_valid(stack, stack_len)))
        return TETHER_EINVAL;
    int saved = x->index, rc = 0;
    if (mode == TETHER_MODE_ERPC) {
        static const char *const tags[] = {"return", "throw", "error", "exit"};
        if (ref == NULL || ref_len == 0 || (unsigned)cls > TETHER_EXIT)
            return TETHER_EINVAL;
        rc |= ei_x_encode_tuple_header(x, cls == TETHER_ERROR ? 4 : 3);
        rc |= ei_x_append_buf(x, ref, (int)ref_len);
        rc |= ei_x_encode_atom(x, tags[cls]);
        rc |= put_term(x, value, value_len);
        if (cls == TETHER_ERROR)
            rc |= put_term(x, stack, stack_len);
    } else if (mode == TETHER_MODE_INNER) {
        static const char *const tags[] = {"return", "throw", "error", "exit"};
        if ((unsigned)cls > TETHER_EXIT)
            return TETHER_EINVAL;
        rc |= ei_x_encode_tuple_header(x, cls == TETHER_ERROR ? 3 : 2);
        rc |= ei_x_encode_atom(x, tags[cls]);
        rc |= put_term(x, value, value_len);
        if (cls == TETHER_ERROR)
            rc |= put_term(x, stack, stack_len);
    } else if (mode == TETHER_MODE_REX || mode == TETHER_MODE_CAST) {
        switch (cls) {
        case TETHER_RETURN:
        case TETHER_THROW:
            rc |= put_term(x, value, value_len);
            break;
        case TETHER_EXIT:
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "badrpc");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "EXIT");
            rc |= put_term(x, value, value_len);
            break;
        case TETHER_ERROR:
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "badrpc");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "EXIT");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= put_term(x, value, value_len);
            rc |= put_term(x, stack, stack_len);
            break;
        default:
            rc = -1;
        }
    } else {
        rc = -1;
    }
    if (rc != 0) {
        x->index = saved;
        return TETHER_EINVAL;
    }
    return 0;
}

int tether__erpc_encode_stack(ei_x_buff *x, const char *module,
                              const char *function, int arity, const char *args,
                              size_t args_len)
{
    if (x == NULL || module == NULL || function == NULL)
        return TETHER_EINVAL;
    int saved = x->index, rc = 0;
    rc |= ei_x_encode_version(x);
    rc |= ei_x_encode_list_header(x, 1);
    rc |= ei_x_encode_tuple_header(x, 4);
    rc |= ei_x_encode_atom(x, module);
    rc |= ei_x_encode_atom(x, function);
    if (args)
        rc |= ei_x_append_buf(x, args, (int)args_len);
    else
        rc |= ei_x_encode_long(x, arity);
    rc |= ei_x_encode_empty_list(x);
    rc |= ei_x_encode_empty_list(x);
    if (rc != 0) {
        x->index = saved;
        return TETHER_ENOMEM;
    }
    return 0;
}

/* True if the term at b[idx] is the atom `a`. */
static bool atom_at(const char *b, int idx, const char *a)
{
    char s[MAXATOMLEN_UTF8];
    return ei_decode_atom(b, &idx, s) == 0 && strcmp(s, a) == 0;
}

int tether__erpc_decode_reason(const char *reason, size_t len, const char *res,
                               size_t res_len, ei_x_buff *x)
{
    if (x == NULL || !tether_term_valid(reason, len))
        return TETHER_EINVAL;
    int saved = x->index, rc = 0, arity, idx = 1, status = -1;
    int type, size;
    const char *b = reason;
    if (x->index == 0)
        rc |= ei_x_encode_version(x);
    if (ei_get_type(b, &idx, &type, &size) == 0 &&
        (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT) &&
        ei_decode_tuple_header(b, &idx, &arity) == 0 &&
        (arity == 3 || arity == 4)) {
        int r0 = idx;
        if (ei_skip_term(b, &idx) == 0 && (size_t)(idx - r0) == res_len &&
            memcmp(b + r0, res, res_len) == 0) {
            int tag = idx;
            char t[MAXATOMLEN_UTF8];
            if (ei_decode_atom(b, &idx, t) == 0) {
                int v0 = idx;
                if (ei_skip_term(b, &idx) == 0) {
                    int v1 = idx;
                    if (arity == 3 && strcmp(t, "return") == 0) {
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_RETURN;
                    } else if (arity == 3 && strcmp(t, "throw") == 0) {
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_THROW;
                    } else if (arity == 3 && strcmp(t, "exit") == 0) {
                        rc |= ei_x_encode_tuple_header(x, 2);
                        rc |= ei_x_encode_atom(x, "exception");
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_EXIT;
                    } else if (arity == 4 && strcmp(t, "error") == 0) {
                        int s0 = idx;
                        if (ei_skip_term(b, &idx) == 0) {
                            rc |= ei_x_encode_tuple_header(x, 3);
                            rc |= ei_x_encode_atom(x, "exception");
                            rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                            rc |= ei_x_append_buf(x, b + s0, idx - s0);
                            status = TETHER_ERROR;
                        }
                    } else if (arity == 3 && strcmp(t, "error") == 0) {
                        /* {Ref, error, {erpc, _} = ErpcErr} */
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_ERROR;
                    }
                }
            }
            (void)tag;
        }
    }
    if (status < 0) {
        if (atom_at(b, 1, "noconnection")) {
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "erpc");
            rc |= ei_x_encode_atom(x, "noconnection");
            status = TETHER_ERROR;
        } else {
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "signal");
            rc |= ei_x_append_buf(x, b + 1, (int)len - 1);
            status = TETHER_EXIT;
        }
    }
    if (rc != 0) {
        x->index = saved;
        return TETHER_ENOMEM;
    }
    return status;
}
