/*
 * cnode/optfile.h: OTP's ssl_dist_optfile, read by the C-node.
 *
 * The file is Erlang source text holding one term and a full stop, as
 * `erl -ssl_dist_optfile FILE` reads it (ssl_dist_sup:consult/1):
 *
 *   [{server, [{certfile, "/etc/ssl/node.pem"},
 *              {keyfile, "/etc/ssl/node.key"},
 *              {cacertfile, "/etc/ssl/ca.pem"},
 *              {verify, verify_peer},
 *              {fail_if_no_peer_cert, true}]},
 *    {client, [...the same keys...]}].
 *
 * The parser takes the subset people write there: lists, tuples, atoms
 * (bare or quoted), strings (with Erlang's escapes, adjacent strings
 * joined), binaries of one string (<<"...">>), integers, `fun M:F/A`
 * and % comments. Anything else (variables, maps, floats, function
 * calls, operators, improper lists) is refused with the line it is on.
 * Input is bounded: TETHER_OPTFILE_MAX bytes, TETHER_OPTFILE_DEPTH levels
 * of nesting, TETHER_OPTFILE_NODES terms.
 *
 * The options understood (server and client alike unless said):
 *   certfile, keyfile, cacertfile, password   strings
 *   verify                 verify_peer | verify_none (default, as OTP 25)
 *   fail_if_no_peer_cert   boolean (server)
 *   depth                  integer 0..100 (default 10, as OTP)
 *   versions               list of 'tlsv1.2' | 'tlsv1.3' (default
 *                          ['tlsv1.2'], as inet_tls_dist)
 *   ciphers                an OpenSSL cipher string, or a list of them
 *   server_name_indication disable | a host name (client): the name the
 *                          server's certificate is checked against
 *                          instead of the dialed node's host part
 *   verify_fun             {fun inet_tls_dist:verify_client/3, _}
 *                          (server): accepted; it checks a client's host
 *                          names against net_kernel:allow/1's list,
 *                          which a C-node does not have, so, as OTP
 *                          with an empty list, it lets every client in
 *   secure_renegotiate, reuse_sessions   booleans, accepted and ignored
 *   hibernate_after        integer, accepted and ignored
 * Any other option is refused with its name.
 */
#ifndef TETHER_CNODE_OPTFILE_H
#define TETHER_CNODE_OPTFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "tether/error.h"

#define TETHER_OPTFILE_MAX   ((size_t)64 << 10)
#define TETHER_OPTFILE_DEPTH 32
#define TETHER_OPTFILE_NODES 4096
/* Longest path, password, cipher string or host name kept. */
#define TETHER_OPTFILE_STR_MAX 4096
/* A one-line error message fits in this. */
#define TETHER_OPTFILE_ERR_MAX 320

/* TLS protocol versions (the values of OpenSSL's TLS1_x_VERSION). */
#define TETHER_TLS_V12 0x0303
#define TETHER_TLS_V13 0x0304

typedef enum {
    TETHER_SNI_NODE_HOST = 0, /* the host part of the dialed node's name */
    TETHER_SNI_DISABLE,       /* no host name check */
    TETHER_SNI_NAME,          /* the name in sni_name */
} tether__sni_t;

/* One side's options (a missing option keeps its zero / default). */
typedef struct tether__tls_side {
    char *certfile, *keyfile, *cacertfile, *password; /* NULL: not given */
    char *ciphers;    /* OpenSSL's TLS 1.2 cipher list (NULL: default) */
    char *ciphers13;  /* TLS 1.3 suites (NULL: default) */
    bool verify_peer; /* {verify, verify_peer} */
    bool fail_if_no_peer_cert;
    int depth;                    /* default 10 */
    int min_version, max_version; /* TETHER_TLS_V1x; default both 1.2 */
    tether__sni_t sni;
    char *sni_name;
} tether__tls_side_t;

typedef struct tether__tls_opts {
    tether__tls_side_t server, client;
} tether__tls_opts_t;

/*
 * Parses text[0..len) (the file's contents) into opts. Returns 0, or
 * TETHER_EINVAL with a one-line reason ("line N: ...") in err (capacity
 * errlen, always NUL-terminated), or TETHER_ENOMEM. On failure nothing is
 * left to free; on success free with tether__tls_opts_free().
 */
TETHER_MUST_CHECK int tether__optfile_parse(const char *text, size_t len,
                                            tether__tls_opts_t *opts, char *err,
                                            size_t errlen);

/* Reads and parses the file at path (the reason names it). */
TETHER_MUST_CHECK int tether__optfile_read(const char *path,
                                           tether__tls_opts_t *opts, char *err,
                                           size_t errlen);

void tether__tls_opts_free(tether__tls_opts_t *opts);

#endif /* TETHER_CNODE_OPTFILE_H */
