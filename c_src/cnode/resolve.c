/*
 * cnode/resolve.c: host names and addresses (see resolve.h).
 *
 * A look-up is a job on the node's resolver pool: getaddrinfo runs on a
 * resolver thread, which then posts the job to the loop; there the job
 * leaves the node's list of look-ups under way and its callback runs. A
 * job whose post never ran (the node stopped first) is still on that
 * list and is freed by tether__resolve_fini() once the threads are gone.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "cnode/resolve.h"

#define RESOLVER_THREADS 2
#define RESOLV_LINE_MAX  1024

struct tether__resolve_job {
    struct tether__resolve_job *next, *prev; /* the node's list (loop) */
    tether_node_t *node;
    tether__resolved_fn fn;
    uint64_t id;
    int family;
    int rc;  /* getaddrinfo's answer */
    int err; /* errno, for EAI_SYSTEM */
    tether_addr_t addr;
    char host[];
};

typedef struct tether__resolve_job job_t;

/* ---- literals ------------------------------------------------------- */

void tether__addr_set_port(tether_addr_t *a, uint16_t port)
{
    if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
}

/* The first answer of getaddrinfo(host, family, flags) into out. */
static int lookup(const char *host, int family, int flags, tether_addr_t *out,
                  int *err)
{
    struct addrinfo hints = {
        .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = flags};
    struct addrinfo *res = NULL;
    if (family == AF_INET6)
        hints.ai_flags |= AI_V4MAPPED;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == EAI_SYSTEM && err)
        *err = errno;
    if (rc != 0)
        return rc;
    if (res->ai_addrlen > sizeof out->ss) {
        freeaddrinfo(res);
        return EAI_FAMILY;
    }
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int tether__addr_literal(const char *host, int family, uint16_t port,
                         tether_addr_t *out)
{
    if (host == NULL || *host == '\0' ||
        lookup(host, family, AI_NUMERICHOST, out, NULL) != 0)
        return TETHER_ENOTFOUND;
    tether__addr_set_port(out, port);
    return 0;
}

void tether__addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    }
}

int tether__hostport_parse(const char *s, char *addr, size_t cap,
                           uint16_t *port)
{
    const char *a = s, *end, *colon;
    if (s == NULL)
        return TETHER_EINVAL;
    if (*s == '[') {
        a = s + 1;
        end = strchr(a, ']');
        if (end == NULL || end[1] != ':')
            return TETHER_EINVAL;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return TETHER_EINVAL; /* IPv6 needs its brackets */
        end = colon;
    }
    size_t alen = (size_t)(end - a);
    const char *p = colon + 1;
    if (alen == 0 || alen >= cap || *p == '\0' || strlen(p) > 5)
        return TETHER_EINVAL;
    unsigned long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return TETHER_EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return TETHER_EINVAL;
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* ---- look-ups off the loop ----------------------------------------- */

/* Loop thread: the job is answered; it leaves the list and is freed. */
static void resolve_done(tether_node_t *node, void *arg)
{
    job_t *j = arg;
    if (j->prev)
        j->prev->next = j->next;
    else
        node->resolving = j->next;
    if (j->next)
        j->next->prev = j->prev;
    if (j->rc == 0) {
        j->fn(node, j->id, 0, &j->addr, NULL);
    } else {
        const char *why =
            j->rc == EAI_SYSTEM ? strerror(j->err) : gai_strerror(j->rc);
        j->fn(node, j->id, TETHER_ENOTFOUND, NULL, why);
    }
    free(j);
}

/* Resolver thread: may block on DNS for as long as the resolver says. */
static void resolve_work(void *arg)
{
    job_t *j = arg;
    j->rc = lookup(j->host, j->family, 0, &j->addr, &j->err);
    /* On failure the job stays listed: tether__resolve_fini frees it,
     * and the connection waiting for it times out. */
    if (tether_node_post(j->node, resolve_done, j) < 0)
        return;
}

int tether__resolve_start(tether_node_t *node, const char *host, int family,
                          uint64_t id, tether__resolved_fn fn)
{
    size_t hl = strlen(host);
    if (hl >= TETHER_HOST_MAX)
        return TETHER_EINVAL;
    if (node->resolver == NULL) {
        int rc = tether_pool_new(RESOLVER_THREADS, NULL, NULL, &node->resolver);
        if (rc < 0)
            return rc;
    }
    job_t *j = calloc(1, sizeof *j + hl + 1);
    if (j == NULL)
        return TETHER_ENOMEM;
    j->node = node;
    j->fn = fn;
    j->id = id;
    j->family = family;
    memcpy(j->host, host, hl + 1);
    j->next = node->resolving;
    if (j->next)
        j->next->prev = j;
    node->resolving = j;
    int rc = tether_pool_submit(node->resolver, resolve_work, NULL, j);
    if (rc < 0) {
        node->resolving = j->next;
        if (j->next)
            j->next->prev = NULL;
        free(j);
    }
    return rc;
}

void tether__resolve_fini(tether_node_t *node)
{
    tether_pool_free(node->resolver);
    node->resolver = NULL;
    while (node->resolving) {
        job_t *j = node->resolving;
        node->resolving = j->next;
        free(j);
    }
}

/* ---- this machine's names ------------------------------------------ */

int tether__host_short(char *out, size_t cap)
{
    char h[TETHER_HOST_MAX];
    if (gethostname(h, sizeof h) < 0)
        return TETHER_ENOTFOUND;
    h[sizeof h - 1] = '\0';
    size_t n = strcspn(h, ".");
    if (n == 0 || n >= cap)
        return TETHER_ENOTFOUND;
    memcpy(out, h, n);
    out[n] = '\0';
    return 0;
}

int tether__resolv_domain(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return TETHER_ENOTFOUND;
    char line[RESOLV_LINE_MAX];
    int rc = TETHER_ENOTFOUND;
    while (fgets(line, sizeof line, f)) {
        /* Tokens up to a '#', split on blanks; "domain" and exactly one
         * argument (inet_parse skips any other shape). */
        line[strcspn(line, "#")] = '\0';
        char *save = NULL;
        char *t0 = strtok_r(line, " \t\r\n", &save);
        char *t1 = t0 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        char *t2 = t1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        if (t0 && t1 && !t2 && strcmp(t0, "domain") == 0 && strlen(t1) < cap) {
            snprintf(out, cap, "%s", t1);
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

int tether__host_fqdn(const char *etc_dir, char *out, size_t cap)
{
    char h[TETHER_HOST_MAX], dom[TETHER_HOST_MAX] = "";
    if (gethostname(h, sizeof h) < 0)
        return TETHER_ENOTFOUND;
    h[sizeof h - 1] = '\0';
    char *dot = strchr(h, '.');
    if (dot) {
        *dot = '\0';
        snprintf(dom, sizeof dom, "%s", dot + 1);
    }
    char path[TETHER_HOST_MAX + 32];
    snprintf(path, sizeof path, "%s/resolv.conf", etc_dir ? etc_dir : "/etc");
    if (tether__resolv_domain(path, dom, sizeof dom) < 0) {
        /* no `domain' line: the host name's own domain stays */
    }
    if (dom[0] == '\0' && h[0] != '\0') {
        /* As inet_config does on Linux: the canonical name's domain. */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_CANONNAME};
        struct addrinfo *res = NULL;
        if (getaddrinfo(h, NULL, &hints, &res) == 0) {
            const char *canon = res->ai_canonname;
            const char *cd = canon ? strchr(canon, '.') : NULL;
            if (cd && cd[1] != '\0' && (size_t)(cd - canon) < sizeof h) {
                memcpy(h, canon, (size_t)(cd - canon));
                h[cd - canon] = '\0';
                snprintf(dom, sizeof dom, "%s", cd + 1);
            }
            freeaddrinfo(res);
        }
    }
    if (h[0] == '\0' || dom[0] == '\0' || strlen(h) + 1 + strlen(dom) >= cap)
        return TETHER_ENOTFOUND;
    snprintf(out, cap, "%s.%s", h, dom);
    return 0;
}
