/*
 * cnode/tls.h: TLS distribution (OTP's inet_tls_dist) for the C-node,
 * over OpenSSL.
 *
 * A context holds the server and the client side as the ssl_dist_optfile
 * configures them (cnode/optfile.h). A connection's TLS is sans-IO: the
 * runtime receives ciphertext into tether__tls_in_space() and commits it,
 * drives the handshake and reads plaintext, writes plaintext and sends
 * what tether__tls_output() holds. OpenSSL sees a BIO of ours that reads
 * from that input buffer and appends to that output buffer, so it never
 * touches the socket: SSL_read answering WANT_READ means "wait for the
 * socket to be readable" (epoll), and output waits in the buffer until
 * the socket takes it (EPOLLOUT). The distribution handshake and framing
 * run unchanged over the plaintext.
 *
 * Verification mirrors OTP's ssl: with {verify, verify_peer} the peer's
 * chain must lead to a certificate of the cacertfile (at most `depth`
 * intermediates, 10 by default), and a server with {fail_if_no_peer_cert,
 * true} refuses a client without one. A client with verify_peer also
 * checks the server's certificate against the host part of the node name
 * it dials, as inet_tls_dist's {server_name_indication, Host} makes OTP
 * do: see tether__tls_check_host().
 */
#ifndef TETHER_CNODE_TLS_H
#define TETHER_CNODE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "cnode/optfile.h"
#include "tether/error.h"

/* Longest one-line reason kept for a failure. */
#define TETHER_TLS_REASON_MAX 256

typedef struct tether__tls_ctx tether__tls_ctx_t;
typedef struct tether__tls tether__tls_t;

/*
 * Builds the server and client contexts from opts (certificates and keys
 * are read here). Returns 0, or TETHER_EINVAL with a one-line reason in
 * err (capacity errlen), or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__tls_ctx_new(const tether__tls_opts_t *opts,
                                          tether__tls_ctx_t **ctx, char *err,
                                          size_t errlen);
void tether__tls_ctx_free(tether__tls_ctx_t *ctx);

/*
 * A connection's TLS: the server side (an accepted socket), or the client
 * side dialing a node whose host part is host (checked against the
 * server's certificate when the client verifies its peer). Returns 0,
 * TETHER_ENOMEM or TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether__tls_new(tether__tls_ctx_t *ctx, bool server,
                                      const char *host, tether__tls_t **t);
void tether__tls_free(tether__tls_t *t);

/*
 * Room for at least `want` bytes of ciphertext at the end of the input;
 * *cap is how much fits. NULL without memory. Commit what was written.
 */
uint8_t *tether__tls_in_space(tether__tls_t *t, size_t want, size_t *cap);
void tether__tls_in_commit(tether__tls_t *t, size_t n);

/*
 * Runs the handshake as far as the input allows. Returns 0 (done),
 * TETHER_EAGAIN (waiting for input), TETHER_EAUTH (a certificate was
 * refused) or TETHER_EPROTO (not TLS, or a TLS alert); the reason is in
 * tether__tls_reason().
 */
TETHER_MUST_CHECK int tether__tls_handshake(tether__tls_t *t);

/*
 * Decrypts into buf (capacity cap). Returns the number of bytes (> 0),
 * TETHER_EAGAIN (nothing more until more input), TETHER_ECLOSED (the
 * peer closed TLS) or TETHER_EPROTO (bad records: see the reason).
 */
TETHER_MUST_CHECK long tether__tls_read(tether__tls_t *t, uint8_t *buf,
                                        size_t cap);

/* Encrypts all of p[0..n) into the output. 0, EPROTO or ENOMEM. */
TETHER_MUST_CHECK int tether__tls_write(tether__tls_t *t, const uint8_t *p,
                                        size_t n);

/* Ciphertext waiting to be sent, and how much of it the socket took. */
const uint8_t *tether__tls_output(const tether__tls_t *t, size_t *n);
void tether__tls_consume_output(tether__tls_t *t, size_t n);

/* The last failure, one line ("" if none). */
const char *tether__tls_reason(const tether__tls_t *t);

/*
 * OTP's host name check (public_key:pkix_verify_hostname/2 with
 * [{dns_id, Host}], as ssl runs it for the server name indication): when
 * the certificate has subjectAltName entries, host must equal one of its
 * dNSName entries (ignoring ASCII case; no wildcards, and an IP address
 * entry never matches); without any, host must not be an IP literal and
 * must match a subject common name, whose first label may hold one '*'.
 */
bool tether__tls_check_host(X509 *cert, const char *host);

#endif /* TETHER_CNODE_TLS_H */
