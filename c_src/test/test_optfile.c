/*
 * Criterion suite for cnode/optfile.c: OTP's ssl_dist_optfile as the
 * C-node reads it. Files people write (and OTP's documentation shows)
 * parse to the options they mean; everything outside the supported
 * subset is refused with its line; every truncation of a good file and
 * hostile sizes are refused without harm.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/optfile.h"

static const char good[] =
    "%% The file of the OTP documentation, with comments.\n"
    "[{server,\n"
    "  [{certfile, \"/etc/ssl/server.pem\"},\n"
    "   {keyfile, \"/etc/ssl/server.key\"},\n"
    "   {cacertfile, \"/etc/ssl/ca.pem\"},\n"
    "   {verify, verify_peer},\n"
    "   {fail_if_no_peer_cert, true},\n"
    "   {depth, 3},\n"
    "   {secure_renegotiate, true}]},\n"
    " {client,\n"
    "  [{certfile, \"/etc/ssl/client.pem\"},\n"
    "   {keyfile, <<\"/etc/ssl/client.key\">>},\n"
    "   {cacertfile, \"/etc/ssl/\" \"ca.pem\"},  % adjacent strings join\n"
    "   {verify, verify_peer},\n"
    "   {versions, ['tlsv1.2', 'tlsv1.3']},\n"
    "   {password, \"p\\x41ss\\n\"}]}].\n";

static int parse(const char *text, tether__tls_opts_t *o, char *err)
{
    return tether__optfile_parse(text, strlen(text), o, err,
                                 TETHER_OPTFILE_ERR_MAX);
}

Test(optfile, reads_the_options_people_write)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    cr_assert_eq(parse(good, &o, err), 0, "%s", err);
    cr_assert_str_eq(o.server.certfile, "/etc/ssl/server.pem");
    cr_assert_str_eq(o.server.keyfile, "/etc/ssl/server.key");
    cr_assert_str_eq(o.server.cacertfile, "/etc/ssl/ca.pem");
    cr_assert(o.server.verify_peer);
    cr_assert(o.server.fail_if_no_peer_cert);
    cr_assert_eq(o.server.depth, 3);
    cr_assert_eq(o.server.min_version, TETHER_TLS_V12);
    cr_assert_eq(o.server.max_version, TETHER_TLS_V12);
    cr_assert_str_eq(o.client.keyfile, "/etc/ssl/client.key");
    cr_assert_str_eq(o.client.cacertfile, "/etc/ssl/ca.pem");
    cr_assert(o.client.verify_peer);
    cr_assert_not(o.client.fail_if_no_peer_cert);
    cr_assert_eq(o.client.depth, 10);
    cr_assert_eq(o.client.min_version, TETHER_TLS_V12);
    cr_assert_eq(o.client.max_version, TETHER_TLS_V13);
    cr_assert_str_eq(o.client.password, "pAss\n");
    cr_assert_eq(o.client.sni, TETHER_SNI_NODE_HOST);
    tether__tls_opts_free(&o);
}

Test(optfile, defaults_follow_otp)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    cr_assert_eq(parse("[].", &o, err), 0, "%s", err);
    cr_assert_null(o.server.certfile);
    cr_assert_not(o.server.verify_peer, "verify_none, as OTP 25");
    cr_assert_eq(o.server.depth, 10);
    cr_assert_eq(o.client.min_version, TETHER_TLS_V12);
    cr_assert_eq(o.client.max_version, TETHER_TLS_V12);
    tether__tls_opts_free(&o);
}

Test(optfile, later_entries_and_options_replace_earlier_ones)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    const char *t =
        "[{client, [{certfile, \"a\"}]},\n"
        " {client, [{certfile, \"b\"}, {certfile, \"c\"},\n"
        "           {verify, verify_peer}, {verify, verify_none}]}].";
    cr_assert_eq(parse(t, &o, err), 0, "%s", err);
    cr_assert_str_eq(o.client.certfile, "c");
    cr_assert_not(o.client.verify_peer);
    tether__tls_opts_free(&o);
}

Test(optfile, ciphers_sni_and_verify_client)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    const char *t =
        "[{server, [{verify_fun, {fun inet_tls_dist:verify_client/3, []}},\n"
        "           {ciphers, [\"ECDHE-ECDSA-AES128-GCM-SHA256\",\n"
        "                      \"TLS_AES_128_GCM_SHA256\",\n"
        "                      \"ECDHE-RSA-AES128-GCM-SHA256\"]}]},\n"
        " {client, [{server_name_indication, \"node.example.com\"},\n"
        "           {ciphers, \"ECDHE-ECDSA-AES256-GCM-SHA384\"},\n"
        "           {hibernate_after, 16#10_00}, {reuse_sessions, false}]}].";
    cr_assert_eq(parse(t, &o, err), 0, "%s", err);
    cr_assert_str_eq(
        o.server.ciphers,
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    cr_assert_str_eq(o.server.ciphers13, "TLS_AES_128_GCM_SHA256");
    cr_assert_eq(o.client.sni, TETHER_SNI_NAME);
    cr_assert_str_eq(o.client.sni_name, "node.example.com");
    cr_assert_str_eq(o.client.ciphers, "ECDHE-ECDSA-AES256-GCM-SHA384");
    tether__tls_opts_free(&o);
    cr_assert_eq(
        parse("[{client, [{server_name_indication, disable}]}].", &o, err), 0);
    cr_assert_eq(o.client.sni, TETHER_SNI_DISABLE);
    tether__tls_opts_free(&o);
}

/* A refused file and a piece of the reason it must give (arrays, not
 * pointers: Criterion runs each parameter in a fresh process). */
typedef struct {
    char text[96];
    char reason[48];
} bad_t;

static bad_t bad_files[] = {
    {"", "line 1: unexpected end of file"},
    {"[]", "expected '.'"},
    {"[]. []. ", "more than one term"},
    {"{server, []}.", "expected a list"},
    {"[{server, []}, {other, []}].", "{server, [...]} or {client, [...]}"},
    {"[{server, [{certfile, Path}]}].", "variables are not supported"},
    {"[{server, [{depth, 1.5}]}].", "floats are not supported"},
    {"[{server, #{certfile => \"x\"}}].", "maps and records"},
    {"[{server, [{certfile, filename:join(\"a\", \"b\")}]}].",
     "function calls are not supported"},
    {"[{server, [{certfile, \"x\"} | []]}].", "[Head | Tail]"},
    {"[{server, [{certfile, \"x\"}]}", "unterminated list"},
    {"[{server, [{certfile, \"x}]}].", "unterminated string"},
    {"[{server, [{certfile, x}]}].", "wants a string"},
    {"[{server, [{verify, maybe}]}].", "verify_peer or verify_none"},
    {"[{server, [{fail_if_no_peer_cert, yes}]}].", "true or false"},
    {"[{client, [{fail_if_no_peer_cert, true}]}].", "not supported"},
    {"[{server, [{crl_check, true}]}].", "option 'crl_check' is not supported"},
    {"[{server, [{depth, 1000}]}].", "0..100"},
    {"[{server, [{versions, ['tlsv1.1']}]}].", "'tlsv1.2' and 'tlsv1.3'"},
    {"[{server, [{verify_fun, {fun my:check/3, []}}]}].",
     "inet_tls_dist:verify_client/3"},
    {"[{server, [{certfile, <<1, 2>>}]}].", "binaries of one string"},
    {"[{server, [certfile]}].", "expected {Option, Value}"},
    {"[{server, [{certfile, \"a\" ]}].", "expected ',' or '}'"},
    {"\n\n[{server, [{depth, 99999999999999999999999}]}].",
     "line 3: integer too large"},
    {"[{server, [\x01]}].", "unexpected byte 0x01"},
    {"[{server, [{certfile, \"\\x{1F600}\"}]}].", "\\x"},
};

ParameterizedTestParameters(optfile, refuses_with_a_reason)
{
    return cr_make_param_array(bad_t, bad_files,
                               sizeof bad_files / sizeof bad_files[0]);
}

ParameterizedTest(bad_t *b, optfile, refuses_with_a_reason)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    cr_assert_eq(parse(b->text, &o, err), TETHER_EINVAL, "accepted: %s",
                 b->text);
    cr_assert(strstr(err, b->reason) != NULL, "reason '%s' for %s", err,
              b->text);
    cr_assert(strncmp(err, "line ", 5) == 0, "no line in '%s'", err);
}

Test(optfile, every_truncation_of_a_good_file_is_refused)
{
    size_t n = strlen(good);
    for (size_t k = 0; k < n; k++) {
        char *t = malloc(k ? k : 1); /* exactly k bytes: ASan sees overreads */
        memcpy(t, good, k);
        tether__tls_opts_t o;
        char err[TETHER_OPTFILE_ERR_MAX];
        int rc = tether__optfile_parse(t, k, &o, err, sizeof err);
        /* Only the whole term before its final newline also parses. */
        if (rc == 0) {
            cr_assert_eq(k, n - 1, "prefix of %zu bytes accepted", k);
            tether__tls_opts_free(&o);
        } else {
            cr_assert_eq(rc, TETHER_EINVAL);
            cr_assert_neq(err[0], '\0');
        }
        free(t);
    }
}

Test(optfile, bounds_on_size_depth_and_terms)
{
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    size_t big = TETHER_OPTFILE_MAX + 1;
    char *t = malloc(big);
    memset(t, ' ', big);
    cr_assert_eq(tether__optfile_parse(t, big, &o, err, sizeof err),
                 TETHER_EINVAL);
    cr_assert(strstr(err, "larger than") != NULL, "%s", err);
    /* Nesting deeper than the cap. */
    size_t depth = TETHER_OPTFILE_DEPTH + 5, k = 0;
    for (size_t i = 0; i < depth; i++)
        t[k++] = '[';
    for (size_t i = 0; i < depth; i++)
        t[k++] = ']';
    t[k++] = '.';
    cr_assert_eq(tether__optfile_parse(t, k, &o, err, sizeof err),
                 TETHER_EINVAL);
    cr_assert(strstr(err, "nested deeper") != NULL, "%s", err);
    /* More terms than the cap. */
    k = 0;
    t[k++] = '[';
    for (size_t i = 0; i < TETHER_OPTFILE_NODES + 10; i++) {
        t[k++] = '1';
        t[k++] = ',';
    }
    t[k++] = '1';
    t[k++] = ']';
    t[k++] = '.';
    cr_assert_eq(tether__optfile_parse(t, k, &o, err, sizeof err),
                 TETHER_EINVAL);
    cr_assert(strstr(err, "terms") != NULL, "%s", err);
    free(t);
    /* A tiny error buffer still gets a NUL-terminated message. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    cr_assert_eq(tether__optfile_parse("[", 1, &o, tiny, sizeof tiny),
                 TETHER_EINVAL);
    cr_assert_not_null(memchr(tiny, '\0', sizeof tiny));
}

Test(optfile, reads_a_file_and_names_it_in_errors)
{
    char path[] = "/tmp/tether_optfile_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    close(fd);
    tether__tls_opts_t o;
    char err[TETHER_OPTFILE_ERR_MAX];
    cr_assert_eq(tether__optfile_read(path, &o, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(o.server.certfile, "/etc/ssl/server.pem");
    tether__tls_opts_free(&o);
    FILE *f = fopen(path, "w");
    fputs("[{server, [{certfile, 42}]}].", f);
    fclose(f);
    cr_assert_eq(tether__optfile_read(path, &o, err, sizeof err),
                 TETHER_EINVAL);
    cr_assert(strstr(err, path) != NULL && strstr(err, "line 1") != NULL, "%s",
              err);
    unlink(path);
    cr_assert_eq(tether__optfile_read(path, &o, err, sizeof err),
                 TETHER_EINVAL);
    cr_assert(strstr(err, "cannot read") != NULL, "%s", err);
}
