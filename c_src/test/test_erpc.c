/*
 * Criterion suite for cnode/erpc.c: the exit reasons of erpc's protocol
 * and rpc's replies for every outcome class, the undef and default
 * stacks, and reading an erpc exit reason back the way erpc:call does.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cnode/api.h"
#include "tether/term.h"

/* Prints x (131-prefixed) into out. */
static void show(const ei_x_buff *x, char *out, size_t cap)
{
    cr_assert_eq(tether_term_format(x->buff, (size_t)x->index, out, cap), 0);
}

static void atom_term(ei_x_buff *x, const char *a)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_atom(x, a), 0);
}

Test(erpc, erpc_outcomes)
{
    ei_x_buff ref, v, st, out;
    char s[256];
    cr_assert_eq(ei_x_new(&ref), 0);
    cr_assert_eq(ei_x_encode_atom(&ref, "r"), 0); /* any term works */
    atom_term(&v, "val");
    cr_assert_eq(ei_x_new(&st), 0);
    cr_assert_eq(tether__erpc_encode_stack(&st, "m", "f", 2, NULL, 0), 0);
    static const struct {
        tether_class_t cls;
        const char *want;
    } cases[] = {
        {TETHER_RETURN, "{r, return, val}"},
        {TETHER_THROW, "{r, throw, val}"},
        {TETHER_EXIT, "{r, exit, val}"},
        {TETHER_ERROR, "{r, error, val, [{m, f, 2, []}]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(ei_x_new_with_version(&out), 0);
        cr_assert_eq(tether__erpc_encode_outcome(
                         &out, TETHER_MODE_ERPC, ref.buff, (size_t)ref.index,
                         cases[i].cls, v.buff, (size_t)v.index, st.buff,
                         (size_t)st.index),
                     0);
        show(&out, s, sizeof s);
        cr_assert_str_eq(s, cases[i].want);
        ei_x_free(&out);
    }
    ei_x_free(&ref);
    ei_x_free(&v);
    ei_x_free(&st);
}

Test(erpc, rex_outcomes)
{
    ei_x_buff v, st, out;
    char s[256];
    atom_term(&v, "val");
    cr_assert_eq(ei_x_new(&st), 0);
    cr_assert_eq(tether__erpc_encode_stack(&st, "m", "f", 0, NULL, 0), 0);
    static const struct {
        tether_class_t cls;
        const char *want;
    } cases[] = {
        {TETHER_RETURN, "val"},
        {TETHER_THROW, "val"},
        {TETHER_EXIT, "{badrpc, {'EXIT', val}}"},
        {TETHER_ERROR, "{badrpc, {'EXIT', {val, [{m, f, 0, []}]}}}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(ei_x_new_with_version(&out), 0);
        cr_assert_eq(tether__erpc_encode_outcome(
                         &out, TETHER_MODE_REX, NULL, 0, cases[i].cls, v.buff,
                         (size_t)v.index, st.buff, (size_t)st.index),
                     0);
        show(&out, s, sizeof s);
        cr_assert_str_eq(s, cases[i].want);
        ei_x_free(&out);
    }
    ei_x_free(&v);
    ei_x_free(&st);
}

Test(erpc, undef_stack_carries_the_arguments)
{
    ei_x_buff args, st;
    char s[128];
    cr_assert_eq(ei_x_new(&args), 0);
    cr_assert_eq(ei_x_encode_list_header(&args, 2), 0);
    cr_assert_eq(ei_x_encode_long(&args, 1), 0);
    cr_assert_eq(ei_x_encode_atom(&args, "x"), 0);
    cr_assert_eq(ei_x_encode_empty_list(&args), 0);
    cr_assert_eq(ei_x_new(&st), 0);
    cr_assert_eq(tether__erpc_encode_stack(&st, "nomod", "nofun", 2, args.buff,
                                           (size_t)args.index),
                 0);
    show(&st, s, sizeof s);
    cr_assert_str_eq(s, "[{nomod, nofun, [1, x], []}]");
    ei_x_free(&args);
    ei_x_free(&st);
}

Test(erpc, rejects_bad_terms)
{
    ei_x_buff out;
    static const char bad[] = {(char)131, 'l', 0, 0, 0, 9};
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    int before = out.index;
    cr_assert_eq(tether__erpc_encode_outcome(&out, TETHER_MODE_REX, NULL, 0,
                                             TETHER_RETURN, bad, sizeof bad,
                                             NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(out.index, before);
    /* ERROR needs a stack. */
    ei_x_buff v;
    atom_term(&v, "x");
    cr_assert_eq(tether__erpc_encode_outcome(&out, TETHER_MODE_REX, NULL, 0,
                                             TETHER_ERROR, v.buff,
                                             (size_t)v.index, NULL, 0),
                 TETHER_EINVAL);
    ei_x_free(&v);
    ei_x_free(&out);
}

/* Encodes {Res, Tag, V} or {Res, error, V, Stack} with Res = atom res. */
static void reason(ei_x_buff *x, const char *tag, bool with_stack)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(x, with_stack ? 4 : 3), 0);
    cr_assert_eq(ei_x_encode_atom(x, "res"), 0);
    cr_assert_eq(ei_x_encode_atom(x, tag), 0);
    cr_assert_eq(ei_x_encode_atom(x, "v"), 0);
    if (with_stack)
        cr_assert_eq(ei_x_encode_empty_list(x), 0);
}

Test(erpc, decodes_exit_reasons_like_erpc_call)
{
    ei_x_buff res, r, out;
    char s[128];
    cr_assert_eq(ei_x_new(&res), 0);
    cr_assert_eq(ei_x_encode_atom(&res, "res"), 0);
    static const struct {
        const char *tag;
        bool stack;
        int status;
        const char *want;
    } cases[] = {
        {"return", false, TETHER_RETURN, "v"},
        {"throw", false, TETHER_THROW, "v"},
        {"exit", false, TETHER_EXIT, "{exception, v}"},
        {"error", true, TETHER_ERROR, "{exception, v, []}"},
        {"error", false, TETHER_ERROR, "v"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reason(&r, cases[i].tag, cases[i].stack);
        cr_assert_eq(ei_x_new_with_version(&out), 0);
        cr_assert_eq(tether__erpc_decode_reason(r.buff, (size_t)r.index,
                                                res.buff, (size_t)res.index,
                                                &out),
                     cases[i].status);
        show(&out, s, sizeof s);
        cr_assert_str_eq(s, cases[i].want);
        ei_x_free(&out);
        ei_x_free(&r);
    }
    /* A Ref that is not ours, noconnection, a kill. */
    ei_x_buff other;
    cr_assert_eq(ei_x_new(&other), 0);
    cr_assert_eq(ei_x_encode_atom(&other, "other"), 0);
    reason(&r, "return", false);
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(tether__erpc_decode_reason(r.buff, (size_t)r.index, other.buff,
                                            (size_t)other.index, &out),
                 TETHER_EXIT);
    show(&out, s, sizeof s);
    cr_assert_str_eq(s, "{signal, {res, return, v}}");
    ei_x_free(&out);
    ei_x_free(&r);
    atom_term(&r, "noconnection");
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(tether__erpc_decode_reason(r.buff, (size_t)r.index, res.buff,
                                            (size_t)res.index, &out),
                 TETHER_ERROR);
    show(&out, s, sizeof s);
    cr_assert_str_eq(s, "{erpc, noconnection}");
    ei_x_free(&out);
    ei_x_free(&r);
    ei_x_free(&other);
    ei_x_free(&res);
}

Test(erpc, decode_rejects_truncated)
{
    ei_x_buff r, out;
    reason(&r, "return", false);
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(
        tether__erpc_decode_reason(r.buff, (size_t)r.index - 1, "x", 1, &out),
        TETHER_EINVAL);
    cr_assert_eq(out.index, 1);
    ei_x_free(&out);
    ei_x_free(&r);
}

/* ---- INNER: outcomes handed to a C callback ---------------------------- */

Test(erpc, inner_outcomes)
{
    ei_x_buff v, st, out;
    char s[256];
    atom_term(&v, "val");
    cr_assert_eq(ei_x_new(&st), 0);
    cr_assert_eq(tether__erpc_encode_stack(&st, "m", "f", 1, NULL, 0), 0);
    static const struct {
        tether_class_t cls;
        const char *want;
    } cases[] = {
        {TETHER_RETURN, "{return, val}"},
        {TETHER_THROW, "{throw, val}"},
        {TETHER_EXIT, "{exit, val}"},
        {TETHER_ERROR, "{error, val, [{m, f, 1, []}]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(ei_x_new_with_version(&out), 0);
        cr_assert_eq(tether__erpc_encode_outcome(
                         &out, TETHER_MODE_INNER, NULL, 0, cases[i].cls, v.buff,
                         (size_t)v.index, st.buff, (size_t)st.index),
                     0);
        cr_assert(tether_term_valid(out.buff, (size_t)out.index),
                  "one complete term");
        show(&out, s, sizeof s);
        cr_assert_str_eq(s, cases[i].want);
        ei_x_free(&out);
    }
    ei_x_free(&v);
    ei_x_free(&st);
}

Test(erpc, inner_ignores_ref_and_needs_no_stack_but_for_error)
{
    ei_x_buff ref, v, out;
    char s[256];
    cr_assert_eq(ei_x_new(&ref), 0);
    cr_assert_eq(ei_x_encode_atom(&ref, "r"), 0);
    cr_assert_eq(ei_x_new_with_version(&v), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&v, 2), 0);
    cr_assert_eq(ei_x_encode_long(&v, 1), 0);
    cr_assert_eq(ei_x_encode_binary(&v, "bin", 3), 0);
    /* A Ref, when given, is not part of the INNER shape. */
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(tether__erpc_encode_outcome(&out, TETHER_MODE_INNER, ref.buff,
                                             (size_t)ref.index, TETHER_RETURN,
                                             v.buff, (size_t)v.index, NULL, 0),
                 0);
    show(&out, s, sizeof s);
    cr_assert_str_eq(s, "{return, {1, #Bin<98,105,110>}}");
    ei_x_free(&out);
    /* THROW and EXIT take no stack, even a bad one. */
    static const char junk[] = {(char)131, 'l', 0, 0, 0, 9};
    static const tether_class_t plain[] = {TETHER_THROW, TETHER_EXIT};
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(ei_x_new_with_version(&out), 0);
        cr_assert_eq(tether__erpc_encode_outcome(
                         &out, TETHER_MODE_INNER, NULL, 0, plain[i], v.buff,
                         (size_t)v.index, junk, sizeof junk),
                     0);
        cr_assert(tether_term_valid(out.buff, (size_t)out.index));
        ei_x_free(&out);
    }
    ei_x_free(&ref);
    ei_x_free(&v);
}

Test(erpc, inner_appends_after_what_x_holds)
{
    ei_x_buff v, out;
    char s[256];
    atom_term(&v, "v");
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&out, 2), 0);
    cr_assert_eq(ei_x_encode_atom(&out, "reply"), 0);
    cr_assert_eq(tether__erpc_encode_outcome(&out, TETHER_MODE_INNER, NULL, 0,
                                             TETHER_THROW, v.buff,
                                             (size_t)v.index, NULL, 0),
                 0);
    show(&out, s, sizeof s);
    cr_assert_str_eq(s, "{reply, {throw, v}}");
    ei_x_free(&out);
    ei_x_free(&v);
}

Test(erpc, inner_rejects_bad_input_and_leaves_x_alone)
{
    ei_x_buff v, st, out;
    static const char trunc[] = {(char)131, 'l', 0, 0, 0, 9};
    static const char nover[] = {'d', 0, 1, 'x'}; /* no version byte */
    static const char trailing[] = {(char)131, 'j', 'j'};
    atom_term(&v, "x");
    cr_assert_eq(ei_x_new(&st), 0);
    cr_assert_eq(tether__erpc_encode_stack(&st, "m", "f", 0, NULL, 0), 0);
    cr_assert_eq(ei_x_new_with_version(&out), 0);
    cr_assert_eq(ei_x_encode_atom(&out, "kept"), 0);
    int before = out.index;
    const struct {
        tether_class_t cls;
        const char *value;
        size_t vlen;
        const char *stack;
        size_t slen;
    } bad[] = {
        {TETHER_RETURN, trunc, sizeof trunc, NULL, 0},
        {TETHER_RETURN, nover, sizeof nover, NULL, 0},
        {TETHER_RETURN, trailing, sizeof trailing, NULL, 0},
        {TETHER_RETURN, v.buff, (size_t)v.index - 1, NULL, 0},
        {TETHER_RETURN, NULL, 0, NULL, 0},
        {TETHER_THROW, v.buff, 0, NULL, 0},
        {TETHER_ERROR, v.buff, (size_t)v.index, NULL, 0},
        {TETHER_ERROR, v.buff, (size_t)v.index, trunc, sizeof trunc},
        {TETHER_ERROR, v.buff, (size_t)v.index, st.buff, (size_t)st.index - 1},
        {(tether_class_t)4, v.buff, (size_t)v.index, st.buff, (size_t)st.index},
        {(tether_class_t)-1, v.buff, (size_t)v.index, st.buff,
         (size_t)st.index},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(tether__erpc_encode_outcome(
                         &out, TETHER_MODE_INNER, NULL, 0, bad[i].cls,
                         bad[i].value, bad[i].vlen, bad[i].stack, bad[i].slen),
                     TETHER_EINVAL, "case %zu", i);
        cr_assert_eq(out.index, before, "case %zu wrote nothing", i);
    }
    cr_assert_eq(tether__erpc_encode_outcome(NULL, TETHER_MODE_INNER, NULL, 0,
                                             TETHER_RETURN, v.buff,
                                             (size_t)v.index, NULL, 0),
                 TETHER_EINVAL);
    /* An unknown mode is refused the same way. */
    cr_assert_eq(tether__erpc_encode_outcome(
                     &out, (tether_reply_mode_t)(TETHER_MODE_INNER + 1), NULL,
                     0, TETHER_RETURN, v.buff, (size_t)v.index, NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(out.index, before);
    ei_x_free(&v);
    ei_x_free(&st);
    ei_x_free(&out);
}
