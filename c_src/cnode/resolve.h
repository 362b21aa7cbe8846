/*
 * cnode/resolve.h: host names and addresses as `inet' takes them.
 *
 *   literals      numeric IPv4 / IPv6 addresses to socket addresses, and
 *                 "ADDR:PORT" / "[ADDR6]:PORT" (never blocks)
 *   look-ups      getaddrinfo on the node's resolver threads, the answer
 *                 posted back to the loop: the loop never waits for DNS
 *   own names     the host part erl -sname and erl -name give a node
 *
 * Look-ups run on a pool of RESOLVER threads of their own (cnode/workers.c's
 * pool, started at the first look-up), not on the node's worker pool: a
 * slow DNS server then never delays a service's jobs, and a busy service
 * never delays a connection.
 */
#ifndef TETHER_CNODE_RESOLVE_H
#define TETHER_CNODE_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tether/error.h"
#include "tether/node.h"

/* Longest host name we resolve (a DNS name is at most 253 characters). */
#define TETHER_HOST_MAX 256
/* "[" IPv6 "]:" port, NUL-terminated. */
#define TETHER_ADDR_STR_MAX 64

/* A socket address with its length. */
typedef struct tether_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} tether_addr_t;

/*
 * Parses host as a numeric address of `family` (AF_INET or AF_INET6; an
 * IPv4 literal is mapped under AF_INET6, as inet6 does) with `port`.
 * Never blocks. Returns 0 or TETHER_ENOTFOUND (not a literal).
 */
TETHER_MUST_CHECK int tether__addr_literal(const char *host, int family,
                                           uint16_t port, tether_addr_t *out);

/* Sets the port of a, whatever its family. */
void tether__addr_set_port(tether_addr_t *a, uint16_t port);

/* Writes "A.B.C.D:PORT" or "[V6]:PORT" into out (TETHER_ADDR_STR_MAX). */
void tether__addr_format(const struct sockaddr *sa, char *out, size_t cap);

/*
 * Splits "ADDR:PORT" or "[ADDR6]:PORT" into the address literal (written
 * without brackets into addr, capacity cap) and the port. Returns 0 or
 * TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether__hostport_parse(const char *s, char *addr,
                                             size_t cap, uint16_t *port);

/*
 * The answer to a look-up, on the loop thread: rc 0 and the address (its
 * port 0), or TETHER_ENOTFOUND and `why` (getaddrinfo's message).
 */
typedef void (*tether__resolved_fn)(tether_node_t *node, uint64_t id, int rc,
                                    const tether_addr_t *addr, const char *why);

/*
 * Resolves host (family AF_INET or AF_INET6) with getaddrinfo on the
 * node's resolver threads; fn(node, id, ...) runs on the loop thread once
 * it is done (the caller matches id against what it still waits for).
 * Loop thread. Returns 0, TETHER_ENOMEM or TETHER_EIO (no thread); then
 * fn is never called.
 */
TETHER_MUST_CHECK int tether__resolve_start(tether_node_t *node,
                                            const char *host, int family,
                                            uint64_t id,
                                            tether__resolved_fn fn);

/* Stops the resolver threads and frees look-ups whose answer never ran. */
void tether__resolve_fini(tether_node_t *node);

/*
 * The machine's short host name (gethostname up to the first dot): the
 * host part of `erl -sname NAME`. Returns 0 or TETHER_ENOTFOUND.
 */
TETHER_MUST_CHECK int tether__host_short(char *out, size_t cap);

/*
 * The value of the last `domain` line of the resolv.conf at path, as
 * OTP's inet_parse:resolv/2 reads it. Returns 0 or TETHER_ENOTFOUND.
 */
TETHER_MUST_CHECK int tether__resolv_domain(const char *path, char *out,
                                            size_t cap);

/*
 * The machine's fully qualified name as `erl -name NAME` takes it
 * (kernel's inet_config): the short host name, a dot and the domain,
 * which is the host name's own domain, replaced by the `domain` line of
 * etc_dir/resolv.conf when there is one, else found in the canonical
 * name getaddrinfo gives for the host name. May block on DNS: call it
 * before the node starts. Returns 0 or TETHER_ENOTFOUND (no domain: erl
 * refuses a long name then too).
 */
TETHER_MUST_CHECK int tether__host_fqdn(const char *etc_dir, char *out,
                                        size_t cap);

#endif /* TETHER_CNODE_RESOLVE_H */
