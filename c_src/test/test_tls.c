/*
 * Criterion suite for cnode/tls.c: OTP's host name check on certificates
 * built in memory, and whole TLS handshakes between a server and a
 * client of ours in memory (the runtime's byte pump without sockets),
 * with certificates and a CA written to a temporary directory: verified
 * chains, untrusted and missing client certificates, host mismatches,
 * plain bytes and garbage records.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cnode/tls.h"

/* ---- certificates ------------------------------------------------------ */

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    cr_assert_not_null(k);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    cr_assert_not_null(e, "extension %s", value);
    X509_add_ext(cert, e, -1);
    X509_EXTENSION_free(e);
}

/*
 * A certificate for key with common name cn and subjectAltName san (NULL:
 * none), signed by issuer/ikey (NULL: self-signed, a CA).
 */
static X509 *new_cert(EVP_PKEY *key, const char *cn, const char *san,
                      X509 *issuer, EVP_PKEY *ikey)
{
    static long serial = 1;
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : c;
    if (issuer == NULL) {
        add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c, iss, NID_basic_constraints, "CA:FALSE");
        add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (san)
        add_ext(c, iss, NID_subject_alt_name, san);
    cr_assert(X509_sign(c, ikey ? ikey : key, EVP_sha256()) > 0);
    return c;
}

static void write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* ---- the host name check ------------------------------------------------ */

Test(tls, host_check_as_otp)
{
    EVP_PKEY *k = new_key();
    X509 *ca = new_cert(k, "ca", NULL, NULL, NULL);
    X509 *dns =
        new_cert(k, "ignored.example", "DNS:node.example.com,DNS:vm", ca, k);
    cr_assert(tether__tls_check_host(dns, "node.example.com"));
    cr_assert(tether__tls_check_host(dns, "NODE.Example.COM"), "ASCII case");
    cr_assert(tether__tls_check_host(dns, "vm"));
    cr_assert_not(tether__tls_check_host(dns, "ignored.example"),
                  "the common name only counts without subjectAltName");
    cr_assert_not(tether__tls_check_host(dns, "other.example.com"));
    cr_assert_not(tether__tls_check_host(dns, "node.example.co"));
    /* An IP node host against IP entries: OTP's dns_id check fails. */
    X509 *ip = new_cert(k, "127.0.0.1", "IP:127.0.0.1,IP:::1", ca, k);
    cr_assert_not(tether__tls_check_host(ip, "127.0.0.1"));
    cr_assert_not(tether__tls_check_host(ip, "::1"));
    X509 *ipdns = new_cert(k, "x", "DNS:127.0.0.1", ca, k);
    cr_assert(tether__tls_check_host(ipdns, "127.0.0.1"));
    /* No wildcard in dNSName entries (OTP's default match). */
    X509 *wild = new_cert(k, "x", "DNS:*.example.com", ca, k);
    cr_assert_not(tether__tls_check_host(wild, "a.example.com"));
    cr_assert(tether__tls_check_host(wild, "*.example.com"));
    /* Without subjectAltName: the common name, with a wildcard in its
     * first label, never for an address. */
    X509 *cn = new_cert(k, "*.example.com", NULL, ca, k);
    cr_assert(tether__tls_check_host(cn, "a.example.com"));
    cr_assert(tether__tls_check_host(cn, "A.EXAMPLE.com"));
    cr_assert_not(tether__tls_check_host(cn, "a.b.example.com"));
    cr_assert_not(tether__tls_check_host(cn, "example.com"));
    X509 *cn2 = new_cert(k, "f*o.example.com", NULL, ca, k);
    cr_assert(tether__tls_check_host(cn2, "fooo.example.com"));
    cr_assert(tether__tls_check_host(cn2, "fo.example.com"));
    cr_assert_not(tether__tls_check_host(cn2, "bar.example.com"));
    X509 *cnip = new_cert(k, "127.0.0.1", NULL, ca, k);
    cr_assert_not(tether__tls_check_host(cnip, "127.0.0.1"));
    X509 *plain = new_cert(k, "vm", NULL, ca, k);
    cr_assert(tether__tls_check_host(plain, "vm"));
    cr_assert_not(tether__tls_check_host(plain, ""));
    cr_assert_not(tether__tls_check_host(NULL, "vm"));
    X509 *all[] = {ca, dns, ip, ipdns, wild, cn, cn2, cnip, plain};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        X509_free(all[i]);
    EVP_PKEY_free(k);
}

/* ---- handshakes in memory ----------------------------------------------- */

static char dir[] = "/tmp/tether_tls_XXXXXX";
static char ca_pem[64], node_pem[64], rogue_pem[64], other_pem[64];

/* A CA, a node certificate it signed (for vm, node.example, 127.0.0.1), a
 * certificate for other.example it signed, one signed by another CA. */
static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
    snprintf(node_pem, sizeof node_pem, "%s/node.pem", dir);
    snprintf(rogue_pem, sizeof rogue_pem, "%s/rogue.pem", dir);
    snprintf(other_pem, sizeof other_pem, "%s/other.pem", dir);
    EVP_PKEY *cak = new_key(), *nk = new_key(), *rk = new_key();
    X509 *ca = new_cert(cak, "tether test CA", NULL, NULL, NULL);
    X509 *rca = new_cert(rk, "rogue CA", NULL, NULL, NULL);
    X509 *node =
        new_cert(nk, "node", "DNS:vm,DNS:node.example,DNS:127.0.0.1", ca, cak);
    X509 *other = new_cert(nk, "other", "DNS:other.example", ca, cak);
    X509 *rogue = new_cert(nk, "node", "DNS:vm,DNS:node.example", rca, rk);
    write_pem(ca_pem, ca, NULL);
    write_pem(node_pem, node, nk);
    write_pem(other_pem, other, nk);
    write_pem(rogue_pem, rogue, nk);
    X509 *all[] = {ca, rca, node, other, rogue};
    for (size_t i = 0; i < 5; i++)
        X509_free(all[i]);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(nk);
    EVP_PKEY_free(rk);
}

static void teardown(void)
{
    const char *files[] = {ca_pem, node_pem, rogue_pem, other_pem};
    for (size_t i = 0; i < 4; i++)
        unlink(files[i]);
    rmdir(dir);
}

/* Options as an ssl_dist_optfile would give them. */
static tether__tls_side_t side(const char *cert, bool verify)
{
    tether__tls_side_t s = {.certfile = (char *)cert,
                            .cacertfile = ca_pem,
                            .verify_peer = verify,
                            .fail_if_no_peer_cert = verify,
                            .depth = 10,
                            .min_version = TETHER_TLS_V12,
                            .max_version = TETHER_TLS_V12};
    return s;
}

static tether__tls_ctx_t *ctx_of(tether__tls_side_t server,
                                 tether__tls_side_t client)
{
    tether__tls_opts_t o = {.server = server, .client = client};
    tether__tls_ctx_t *ctx = NULL;
    char err[256];
    cr_assert_eq(tether__tls_ctx_new(&o, &ctx, err, sizeof err), 0, "%s", err);
    return ctx;
}

/* Moves a's pending output into b's input; returns the bytes moved. */
static size_t move(tether__tls_t *a, tether__tls_t *b)
{
    size_t n, cap;
    const uint8_t *p = tether__tls_output(a, &n);
    if (n == 0)
        return 0;
    uint8_t *dst = tether__tls_in_space(b, n, &cap);
    cr_assert_not_null(dst);
    memcpy(dst, p, n);
    tether__tls_in_commit(b, n);
    tether__tls_consume_output(a, n);
    return n;
}

typedef struct {
    int server, client;
    char sreason[TETHER_TLS_REASON_MAX], creason[TETHER_TLS_REASON_MAX];
} outcome_t;

/* Runs both sides' handshakes until neither moves. */
static outcome_t shake(tether__tls_t *s, tether__tls_t *c)
{
    outcome_t o = {.server = TETHER_EAGAIN, .client = TETHER_EAGAIN};
    for (int round = 0; round < 20; round++) {
        if (o.client == TETHER_EAGAIN)
            o.client = tether__tls_handshake(c);
        move(c, s);
        if (o.server == TETHER_EAGAIN)
            o.server = tether__tls_handshake(s);
        if (move(s, c) == 0 && o.client != TETHER_EAGAIN &&
            o.server != TETHER_EAGAIN)
            break;
    }
    return o;
}

static void pair(tether__tls_ctx_t *ctx, const char *host, tether__tls_t **s,
                 tether__tls_t **c)
{
    cr_assert_eq(tether__tls_new(ctx, true, NULL, s), 0);
    cr_assert_eq(tether__tls_new(ctx, false, host, c), 0);
}

TestSuite(tls_pair, .init = setup, .fini = teardown);

Test(tls_pair, verified_both_ways_then_data_flows)
{
    tether__tls_ctx_t *ctx = ctx_of(side(node_pem, true), side(node_pem, true));
    tether__tls_t *s, *c;
    pair(ctx, "vm", &s, &c);
    outcome_t o = shake(s, c);
    cr_assert_eq(o.client, 0, "client: %s", tether__tls_reason(c));
    cr_assert_eq(o.server, 0, "server: %s", tether__tls_reason(s));
    /* 100 KiB one way (several records), a reply the other. */
    size_t big = 100 << 10;
    uint8_t *msg = malloc(big), *got = malloc(big);
    for (size_t i = 0; i < big; i++)
        msg[i] = (uint8_t)(i * 7);
    cr_assert_eq(tether__tls_write(c, msg, big), 0);
    move(c, s);
    size_t have = 0;
    for (;;) {
        long n = tether__tls_read(s, got + have, big - have);
        if (n == TETHER_EAGAIN)
            break;
        cr_assert_gt(n, 0, "%s", tether__tls_reason(s));
        have += (size_t)n;
    }
    cr_assert_eq(have, big);
    cr_assert_eq(memcmp(msg, got, big), 0);
    cr_assert_eq(tether__tls_write(s, (const uint8_t *)"pong", 4), 0);
    move(s, c);
    uint8_t r[8];
    cr_assert_eq(tether__tls_read(c, r, sizeof r), 4);
    cr_assert_eq(memcmp(r, "pong", 4), 0);
    cr_assert_eq(tether__tls_read(c, r, sizeof r), TETHER_EAGAIN);
    /* Garbage where records belong: refused with a reason. */
    size_t cap;
    uint8_t *in = tether__tls_in_space(s, 64, &cap);
    memset(in, 0x17, 5); /* an application_data header ... */
    in[3] = 0;
    in[4] = 40; /* ... of 40 bytes of junk */
    memset(in + 5, 0xab, 40);
    tether__tls_in_commit(s, 45);
    cr_assert_eq(tether__tls_read(s, got, big), TETHER_EPROTO);
    cr_assert_neq(tether__tls_reason(s)[0], '\0');
    free(msg);
    free(got);
    tether__tls_free(s);
    tether__tls_free(c);
    tether__tls_ctx_free(ctx);
}

/*
 * One handshake between a server and a client (dialing a node on host)
 * of the context the two sides make; everything is freed after.
 */
static outcome_t handshake(tether__tls_side_t server, tether__tls_side_t client,
                           const char *host)
{
    tether__tls_ctx_t *ctx = ctx_of(server, client);
    tether__tls_t *s, *c;
    pair(ctx, host, &s, &c);
    outcome_t o = shake(s, c);
    snprintf(o.sreason, sizeof o.sreason, "%s", tether__tls_reason(s));
    snprintf(o.creason, sizeof o.creason, "%s", tether__tls_reason(c));
    tether__tls_free(s);
    tether__tls_free(c);
    tether__tls_ctx_free(ctx);
    return o;
}

Test(tls_pair, client_refuses_a_server_named_otherwise)
{
    outcome_t o = handshake(side(other_pem, true), side(node_pem, true), "vm");
    cr_assert_eq(o.client, TETHER_EAUTH);
    cr_assert(strstr(o.creason, "hostname") != NULL, "%s", o.creason);
    cr_assert_neq(o.server, 0);
}

Test(tls_pair, no_host_check_when_the_client_does_not_verify)
{
    outcome_t o =
        handshake(side(other_pem, false), side(node_pem, false), "vm");
    cr_assert_eq(o.client, 0, "%s", o.creason);
    cr_assert_eq(o.server, 0, "%s", o.sreason);
    /* Nor with {server_name_indication, disable}; another name counts
     * instead of the node's host when given. */
    tether__tls_side_t cl = side(node_pem, true);
    cl.sni = TETHER_SNI_DISABLE;
    o = handshake(side(other_pem, true), cl, "vm");
    cr_assert_eq(o.client, 0, "%s", o.creason);
    cl.sni = TETHER_SNI_NAME;
    cl.sni_name = "other.example";
    o = handshake(side(other_pem, true), cl, "vm");
    cr_assert_eq(o.client, 0, "%s", o.creason);
    cl.sni_name = "vm";
    o = handshake(side(other_pem, true), cl, "other.example");
    cr_assert_eq(o.client, TETHER_EAUTH, "the name given wins");
}

Test(tls_pair, server_refuses_an_untrusted_client)
{
    outcome_t o = handshake(side(node_pem, true), side(rogue_pem, true), "vm");
    cr_assert_eq(o.server, TETHER_EAUTH, "%d %s", o.server, o.sreason);
    cr_assert_neq(o.client, 0);
}

Test(tls_pair, fail_if_no_peer_cert)
{
    outcome_t o = handshake(side(node_pem, true), side(NULL, true), "vm");
    cr_assert_lt(o.server, 0);
    cr_assert_neq(o.server, TETHER_EAGAIN);
    /* Without fail_if_no_peer_cert the server lets it in. */
    tether__tls_side_t sv = side(node_pem, true);
    sv.fail_if_no_peer_cert = false;
    o = handshake(sv, side(NULL, true), "vm");
    cr_assert_eq(o.server, 0, "%s", o.sreason);
    cr_assert_eq(o.client, 0, "%s", o.creason);
}

Test(tls_pair, plain_distribution_bytes_are_not_tls)
{
    tether__tls_ctx_t *ctx = ctx_of(side(node_pem, true), side(node_pem, true));
    tether__tls_t *s;
    cr_assert_eq(tether__tls_new(ctx, true, NULL, &s), 0);
    static const uint8_t send_name[] = {0, 21,  'N', 0,   0,   0,   0,  0,
                                        0, 0,   0,   0,   0,   0,   1,  0,
                                        6, 'a', '@', 'h', 'o', 's', 't'};
    size_t cap;
    uint8_t *in = tether__tls_in_space(s, sizeof send_name, &cap);
    memcpy(in, send_name, sizeof send_name);
    tether__tls_in_commit(s, sizeof send_name);
    cr_assert_eq(tether__tls_handshake(s), TETHER_EPROTO);
    cr_assert_neq(tether__tls_reason(s)[0], '\0');
    tether__tls_free(s);
    tether__tls_ctx_free(ctx);
}

Test(tls_pair, context_errors_name_the_side_and_file)
{
    tether__tls_opts_t o = {.server = side(NULL, false),
                            .client = side(NULL, false)};
    tether__tls_ctx_t *ctx = NULL;
    char err[256];
    cr_assert_eq(tether__tls_ctx_new(&o, &ctx, err, sizeof err), TETHER_EINVAL);
    cr_assert(strstr(err, "server: certfile") != NULL, "%s", err);
    o.server = side("/nonexistent/cert.pem", false);
    cr_assert_eq(tether__tls_ctx_new(&o, &ctx, err, sizeof err), TETHER_EINVAL);
    cr_assert(strstr(err, "/nonexistent/cert.pem") != NULL, "%s", err);
    o.server = side(node_pem, false);
    o.client = side(node_pem, false);
    o.client.ciphers = "NO-SUCH-CIPHER";
    cr_assert_eq(tether__tls_ctx_new(&o, &ctx, err, sizeof err), TETHER_EINVAL);
    cr_assert(strstr(err, "client: ciphers") != NULL, "%s", err);
    cr_assert_null(ctx);
}
