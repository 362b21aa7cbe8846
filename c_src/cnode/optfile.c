/*
 * cnode/optfile.c: OTP's ssl_dist_optfile (see optfile.h).
 *
 * Two passes. The parser turns the text into a tree of terms held in one
 * array (children linked by index) and one text arena, both sized from
 * the input, so a file can never make it allocate more than a few times
 * its own size. The reader then walks the tree for the server and client
 * option lists. Every error stops at the first problem, with its line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnode/optfile.h"

#define NONE UINT32_MAX

typedef enum {
    T_ATOM = 1,
    T_STRING,
    T_INT,
    T_LIST,
    T_TUPLE,
    T_FUN, /* s = "Module:Function", i = arity */
} kind_t;

typedef struct onode {
    kind_t kind;
    int line;
    uint32_t first, next, n; /* children (list, tuple) */
    const char *s;           /* atom, string, fun (NUL-terminated) */
    size_t slen;
    long long i;
} onode_t;

typedef struct parser {
    const char *p, *end;
    int line;
    onode_t *nodes;
    uint32_t nn, ncap;
    char *arena;
    size_t alen, acap;
    char *err;
    size_t errlen;
    bool failed;
} parser_t;

static int fail(parser_t *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error as "line N: ..."; returns -1. */
static int fail(parser_t *ps, int line, const char *fmt, ...)
{
    if (ps->failed)
        return -1;
    ps->failed = true;
    char msg[TETHER_OPTFILE_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "line %d: %s", line, msg);
    return -1;
}

/* ---- lexing helpers --------------------------------------------------- */

static void skip_blank(parser_t *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '\n') {
            ps->line++;
            ps->p++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' ||
                   c == '\v') {
            ps->p++;
        } else if (c == '%') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else {
            break;
        }
    }
}

static bool is_lower(int c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_name_char(int c)
{
    return is_lower(c) || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '@';
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* A new node of kind k on this line; NONE when the cap is reached. */
static uint32_t node_new(parser_t *ps, kind_t k)
{
    if (ps->nn >= ps->ncap) {
        fail(ps, ps->line, "more than %d terms", TETHER_OPTFILE_NODES);
        return NONE;
    }
    onode_t *n = &ps->nodes[ps->nn];
    memset(n, 0, sizeof *n);
    n->kind = k;
    n->line = ps->line;
    n->first = n->next = NONE;
    return ps->nn++;
}

/* Starts a string in the arena; the caller appends, then ends it. */
static char *arena_at(parser_t *ps)
{
    return ps->arena + ps->alen;
}

/* A new node of kind k whose text starts in the arena at *s. */
static uint32_t text_node(parser_t *ps, kind_t k, char **s)
{
    *s = arena_at(ps);
    return node_new(ps, k);
}

static void arena_put(parser_t *ps, char c)
{
    /* The arena holds at least the input's length plus one NUL per node:
     * no text of ours is longer than the source text it came from. */
    if (ps->alen + 1 < ps->acap)
        ps->arena[ps->alen++] = c;
}

static void arena_end(parser_t *ps, onode_t *n, const char *start)
{
    n->s = start;
    n->slen = (size_t)(ps->arena + ps->alen - start);
    arena_put(ps, '\0');
}

/* A digit of base (2..36) or -1. */
static int digit_value(int c, int base)
{
    int v = is_digit(c)              ? c - '0'
            : (c >= 'a' && c <= 'z') ? c - 'a' + 10
            : (c >= 'A' && c <= 'Z') ? c - 'A' + 10
                                     : 99;
    return v < base ? v : -1;
}

/*
 * One escape after a backslash inside a quoted atom or string (Erlang's
 * set: \b \d \e \f \n \r \s \t \v, octal \NNN, \xHH, \x{H...}, \^C and
 * any other character standing for itself). Returns the byte or -1.
 */
static int escape(parser_t *ps)
{
    if (ps->p >= ps->end)
        return fail(ps, ps->line, "unterminated escape");
    char c = *ps->p++;
    switch (c) {
    case 'b':
        return '\b';
    case 'd':
        return 0x7f;
    case 'e':
        return 0x1b;
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 's':
        return ' ';
    case 't':
        return '\t';
    case 'v':
        return '\v';
    case '^':
        if (ps->p >= ps->end)
            return fail(ps, ps->line, "unterminated escape");
        return *ps->p++ & 0x1f;
    case 'x': {
        bool braces = ps->p < ps->end && *ps->p == '{';
        long v = 0;
        int nd = 0;
        if (braces)
            ps->p++;
        while (ps->p < ps->end && digit_value(*ps->p, 16) >= 0 &&
               (braces || nd < 2)) {
            v = v * 16 + digit_value(*ps->p++, 16);
            if (++nd > 8)
                break;
        }
        if (braces && (ps->p >= ps->end || *ps->p++ != '}'))
            return fail(ps, ps->line, "bad \\x{...} escape");
        if (nd == 0 || v > 255)
            return fail(ps, ps->line,
                        "bad \\x escape (only characters up to 255)");
        return (int)v;
    }
    default:
        if (c >= '0' && c <= '7') {
            int v = c - '0';
            for (int k = 0;
                 k < 2 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7';
                 k++)
                v = v * 8 + (*ps->p++ - '0');
            return v > 255 ? fail(ps, ps->line, "bad octal escape") : v;
        }
        if (c == '\n')
            ps->line++;
        return (unsigned char)c;
    }
}

/* The body of a quoted atom or string up to the closing quote q. */
static int quoted(parser_t *ps, char q)
{
    int start = ps->line;
    while (ps->p < ps->end && *ps->p != q) {
        char c = *ps->p++;
        if (c == '\\') {
            int e = escape(ps);
            if (e < 0)
                return -1;
            c = (char)e;
        } else if (c == '\n') {
            ps->line++;
        }
        arena_put(ps, c);
    }
    if (ps->p >= ps->end)
        return fail(ps, start, "unterminated %s",
                    q == '"' ? "string" : "quoted atom");
    ps->p++;
    return 0;
}

/* ---- terms -------------------------------------------------------------- */

static uint32_t term(parser_t *ps, int depth);

/* A bare atom (the name is at ps->p). */
static uint32_t bare_atom(parser_t *ps)
{
    char *s;
    uint32_t id = text_node(ps, T_ATOM, &s);
    if (id == NONE)
        return NONE;
    while (ps->p < ps->end && is_name_char(*ps->p))
        arena_put(ps, *ps->p++);
    arena_end(ps, &ps->nodes[id], s);
    return id;
}

/*
 * A quoted atom ('...'), or one or more adjacent strings ("...", joined as
 * the Erlang parser joins them); the opening quote is at ps->p.
 */
static uint32_t quoted_text(parser_t *ps, kind_t k, char q)
{
    char *s;
    uint32_t id = text_node(ps, k, &s);
    if (id == NONE)
        return NONE;
    do {
        ps->p++;
        if (quoted(ps, q) < 0)
            return NONE;
        if (k == T_STRING)
            skip_blank(ps);
    } while (k == T_STRING && ps->p < ps->end && *ps->p == q);
    arena_end(ps, &ps->nodes[id], s);
    if (k == T_ATOM && ps->nodes[id].slen > 255) {
        fail(ps, ps->nodes[id].line, "atom longer than 255 characters");
        return NONE;
    }
    return id;
}

/* <<"...">> or <<>>: a string. */
static uint32_t binary(parser_t *ps)
{
    int line = ps->line;
    ps->p += 2;
    skip_blank(ps);
    uint32_t id;
    if (ps->p < ps->end && *ps->p == '"') {
        id = quoted_text(ps, T_STRING, '"');
        if (id == NONE)
            return NONE;
    } else {
        id = node_new(ps, T_STRING);
        if (id == NONE)
            return NONE;
        arena_end(ps, &ps->nodes[id], arena_at(ps));
    }
    skip_blank(ps);
    if (ps->end - ps->p < 2 || ps->p[0] != '>' || ps->p[1] != '>') {
        fail(ps, line,
             "only binaries of one string (<<\"...\">>) are "
             "supported");
        return NONE;
    }
    ps->p += 2;
    return id;
}

/* An integer: digits, Base#digits, '_' between digits; '-' before. */
static uint32_t integer(parser_t *ps, bool neg)
{
    int line = ps->line;
    long long v = 0;
    int base = 10;
    bool any = false;
    for (;;) {
        while (ps->p < ps->end &&
               (digit_value(*ps->p, base) >= 0 ||
                (*ps->p == '_' && any && ps->p + 1 < ps->end &&
                 digit_value(ps->p[1], base) >= 0))) {
            if (*ps->p == '_') {
                ps->p++;
                continue;
            }
            int d = digit_value(*ps->p++, base);
            if (v > (INT64_MAX - d) / base) {
                fail(ps, line, "integer too large");
                return NONE;
            }
            v = v * base + d;
            any = true;
        }
        if (base == 10 && ps->p < ps->end && *ps->p == '#' && v >= 2 &&
            v <= 36) {
            base = (int)v;
            v = 0;
            any = false;
            ps->p++;
            continue;
        }
        break;
    }
    if (!any) {
        fail(ps, line, "bad integer");
        return NONE;
    }
    if (ps->p + 1 < ps->end && ps->p[0] == '.' && is_digit(ps->p[1])) {
        fail(ps, line, "floats are not supported");
        return NONE;
    }
    if (ps->p < ps->end && (is_name_char(*ps->p) || *ps->p == '#')) {
        fail(ps, line, "bad integer");
        return NONE;
    }
    uint32_t id = node_new(ps, T_INT);
    if (id != NONE)
        ps->nodes[id].i = neg ? -v : v;
    return id;
}

/* fun Module:Function/Arity (the word `fun' was read). */
static uint32_t fun(parser_t *ps)
{
    int line = ps->line;
    char *s;
    uint32_t id = text_node(ps, T_FUN, &s);
    if (id == NONE)
        return NONE;
    for (int part = 0; part < 2; part++) {
        skip_blank(ps);
        if (ps->p >= ps->end || !is_lower(*ps->p)) {
            fail(ps, line, "only `fun Module:Function/Arity' is supported");
            return NONE;
        }
        while (ps->p < ps->end && is_name_char(*ps->p))
            arena_put(ps, *ps->p++);
        skip_blank(ps);
        char want = part == 0 ? ':' : '/';
        if (ps->p >= ps->end || *ps->p != want) {
            fail(ps, line, "only `fun Module:Function/Arity' is supported");
            return NONE;
        }
        if (part == 0)
            arena_put(ps, ':');
        ps->p++;
    }
    arena_end(ps, &ps->nodes[id], s);
    skip_blank(ps);
    if (ps->p >= ps->end || !is_digit(*ps->p)) {
        fail(ps, line, "only `fun Module:Function/Arity' is supported");
        return NONE;
    }
    uint32_t a = integer(ps, false);
    if (a == NONE)
        return NONE;
    ps->nodes[id].i = ps->nodes[a].i;
    ps->nn--; /* the arity's own node */
    return id;
}

/* The elements of a list or tuple up to `close' (the opener was read). */
static uint32_t sequence(parser_t *ps, kind_t k, char close, int depth)
{
    int line = ps->line;
    uint32_t id = node_new(ps, k);
    if (id == NONE)
        return NONE;
    uint32_t last = NONE;
    ps->p++;
    skip_blank(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return id;
    }
    for (;;) {
        uint32_t c = term(ps, depth + 1);
        if (c == NONE)
            return NONE;
        if (last == NONE)
            ps->nodes[id].first = c;
        else
            ps->nodes[last].next = c;
        last = c;
        ps->nodes[id].n++;
        skip_blank(ps);
        if (ps->p >= ps->end) {
            fail(ps, line, "unterminated %s", k == T_LIST ? "list" : "tuple");
            return NONE;
        }
        if (*ps->p == close) {
            ps->p++;
            return id;
        }
        if (*ps->p == '|' && k == T_LIST) {
            fail(ps, ps->line, "[Head | Tail] lists are not supported");
            return NONE;
        }
        if (*ps->p != ',') {
            fail(ps, ps->line, "expected ',' or '%c', found '%c'", close,
                 *ps->p);
            return NONE;
        }
        ps->p++;
    }
}

static uint32_t term(parser_t *ps, int depth)
{
    skip_blank(ps);
    if (depth > TETHER_OPTFILE_DEPTH) {
        fail(ps, ps->line, "terms nested deeper than %d", TETHER_OPTFILE_DEPTH);
        return NONE;
    }
    if (ps->p >= ps->end) {
        fail(ps, ps->line, "unexpected end of file");
        return NONE;
    }
    char c = *ps->p;
    if (c == '[')
        return sequence(ps, T_LIST, ']', depth);
    if (c == '{')
        return sequence(ps, T_TUPLE, '}', depth);
    if (c == '"')
        return quoted_text(ps, T_STRING, '"');
    if (c == '\'')
        return quoted_text(ps, T_ATOM, '\'');
    if (c == '<' && ps->p + 1 < ps->end && ps->p[1] == '<')
        return binary(ps);
    if (is_digit(c))
        return integer(ps, false);
    if (c == '-' && ps->p + 1 < ps->end && is_digit(ps->p[1])) {
        ps->p++;
        return integer(ps, true);
    }
    if (is_lower(c)) {
        const char *w = ps->p;
        size_t wl = 0;
        while (w + wl < ps->end && is_name_char(w[wl]))
            wl++;
        if (wl == 3 && memcmp(w, "fun", 3) == 0) {
            ps->p += 3;
            return fun(ps);
        }
        if (wl > 255) {
            fail(ps, ps->line, "atom longer than 255 characters");
            return NONE;
        }
        const char *after = w + wl;
        while (after < ps->end && (*after == ' ' || *after == '\t'))
            after++;
        if (after < ps->end && (*after == '(' || *after == ':')) {
            fail(ps, ps->line, "function calls are not supported");
            return NONE;
        }
        return bare_atom(ps);
    }
    if ((c >= 'A' && c <= 'Z') || c == '_') {
        fail(ps, ps->line, "variables are not supported");
        return NONE;
    }
    if (c == '#') {
        fail(ps, ps->line, "maps and records are not supported");
        return NONE;
    }
    if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
        fail(ps, ps->line, "unexpected byte 0x%02x", (unsigned char)c);
    else
        fail(ps, ps->line, "unexpected '%c'", c);
    return NONE;
}

/* ---- options ------------------------------------------------------------ */

typedef struct reader {
    parser_t *ps;
    tether__tls_side_t *side;
    const char *side_name;
} reader_t;

static const onode_t *child(const parser_t *ps, const onode_t *n, uint32_t k)
{
    uint32_t c = n->first;
    while (k-- > 0 && c != NONE)
        c = ps->nodes[c].next;
    return c == NONE ? NULL : &ps->nodes[c];
}

static bool is_atom(const onode_t *n, const char *a)
{
    return n->kind == T_ATOM && strcmp(n->s, a) == 0;
}

/* A copy of a string value, or -1 with the error set. */
static int take_string(reader_t *r, const char *key, const onode_t *v,
                       char **out)
{
    if (v->kind != T_STRING)
        return fail(r->ps, v->line, "%s: {%s, ...} wants a string",
                    r->side_name, key);
    if (v->slen >= TETHER_OPTFILE_STR_MAX || memchr(v->s, '\0', v->slen))
        return fail(r->ps, v->line, "%s: %s is too long or holds a NUL",
                    r->side_name, key);
    char *s = strdup(v->s);
    if (s == NULL)
        return fail(r->ps, v->line, "out of memory");
    free(*out);
    *out = s;
    return 0;
}

static int take_bool(reader_t *r, const char *key, const onode_t *v, bool *out)
{
    if (is_atom(v, "true") || is_atom(v, "false")) {
        *out = is_atom(v, "true");
        return 0;
    }
    return fail(r->ps, v->line, "%s: {%s, ...} wants true or false",
                r->side_name, key);
}

static int version_of(const onode_t *v)
{
    if (is_atom(v, "tlsv1.2"))
        return TETHER_TLS_V12;
    if (is_atom(v, "tlsv1.3"))
        return TETHER_TLS_V13;
    return -1;
}

static int take_versions(reader_t *r, const onode_t *v)
{
    if (v->kind != T_LIST || v->n == 0)
        return fail(r->ps, v->line,
                    "%s: {versions, [...]} wants a list of 'tlsv1.2' or "
                    "'tlsv1.3'",
                    r->side_name);
    int lo = 0, hi = 0;
    for (uint32_t k = 0; k < v->n; k++) {
        int ver = version_of(child(r->ps, v, k));
        if (ver < 0)
            return fail(r->ps, v->line,
                        "%s: versions: only 'tlsv1.2' and 'tlsv1.3' are "
                        "supported",
                        r->side_name);
        lo = lo == 0 || ver < lo ? ver : lo;
        hi = ver > hi ? ver : hi;
    }
    r->side->min_version = lo;
    r->side->max_version = hi;
    return 0;
}

/* Appends name to *list with sep (ciphers: ':'), growing it. */
static int append_name(reader_t *r, char **list, const onode_t *n)
{
    size_t have = *list ? strlen(*list) : 0;
    if (have + n->slen + 2 >= TETHER_OPTFILE_STR_MAX)
        return fail(r->ps, n->line, "%s: ciphers: too long", r->side_name);
    char *p = realloc(*list, have + n->slen + 2);
    if (p == NULL)
        return fail(r->ps, n->line, "out of memory");
    if (have)
        p[have++] = ':';
    memcpy(p + have, n->s, n->slen + 1);
    *list = p;
    return 0;
}

/*
 * {ciphers, "A:B"} or {ciphers, ["A", "B"]}: OpenSSL names; TLS 1.3
 * suites (TLS_...) go to their own list.
 */
static int take_ciphers(reader_t *r, const onode_t *v)
{
    const onode_t *one[1] = {v};
    uint32_t n = v->kind == T_LIST ? v->n : 1;
    free(r->side->ciphers);
    free(r->side->ciphers13);
    r->side->ciphers = r->side->ciphers13 = NULL;
    for (uint32_t k = 0; k < n; k++) {
        const onode_t *c = v->kind == T_LIST ? child(r->ps, v, k) : one[0];
        if (c->kind != T_STRING || c->slen == 0)
            return fail(r->ps, v->line,
                        "%s: {ciphers, ...} wants an OpenSSL cipher string "
                        "or a list of cipher names",
                        r->side_name);
        bool v13 = strncmp(c->s, "TLS_", 4) == 0;
        if (append_name(r, v13 ? &r->side->ciphers13 : &r->side->ciphers, c) <
            0)
            return -1;
    }
    return 0;
}

static int take_sni(reader_t *r, const onode_t *v)
{
    if (is_atom(v, "disable")) {
        r->side->sni = TETHER_SNI_DISABLE;
        return 0;
    }
    if (v->kind != T_STRING || v->slen == 0)
        return fail(r->ps, v->line,
                    "%s: {server_name_indication, ...} wants disable or a "
                    "host name",
                    r->side_name);
    r->side->sni = TETHER_SNI_NAME;
    return take_string(r, "server_name_indication", v, &r->side->sni_name);
}

/* One {Key, Value} of a side's list. */
static int option(reader_t *r, const onode_t *o)
{
    if (o->kind != T_TUPLE || o->n != 2 || child(r->ps, o, 0)->kind != T_ATOM)
        return fail(r->ps, o->line, "%s: expected {Option, Value}",
                    r->side_name);
    const char *key = child(r->ps, o, 0)->s;
    const onode_t *v = child(r->ps, o, 1);
    tether__tls_side_t *s = r->side;
    bool server = strcmp(r->side_name, "server") == 0;
    if (strcmp(key, "certfile") == 0)
        return take_string(r, key, v, &s->certfile);
    if (strcmp(key, "keyfile") == 0)
        return take_string(r, key, v, &s->keyfile);
    if (strcmp(key, "cacertfile") == 0)
        return take_string(r, key, v, &s->cacertfile);
    if (strcmp(key, "password") == 0)
        return take_string(r, key, v, &s->password);
    if (strcmp(key, "verify") == 0) {
        if (!is_atom(v, "verify_peer") && !is_atom(v, "verify_none"))
            return fail(r->ps, v->line,
                        "%s: {verify, ...} wants verify_peer or verify_none",
                        r->side_name);
        s->verify_peer = is_atom(v, "verify_peer");
        return 0;
    }
    if (strcmp(key, "fail_if_no_peer_cert") == 0 && server)
        return take_bool(r, key, v, &s->fail_if_no_peer_cert);
    if (strcmp(key, "depth") == 0) {
        if (v->kind != T_INT || v->i < 0 || v->i > 100)
            return fail(r->ps, v->line, "%s: {depth, N} wants 0..100",
                        r->side_name);
        s->depth = (int)v->i;
        return 0;
    }
    if (strcmp(key, "versions") == 0)
        return take_versions(r, v);
    if (strcmp(key, "ciphers") == 0)
        return take_ciphers(r, v);
    if (strcmp(key, "server_name_indication") == 0 && !server)
        return take_sni(r, v);
    if (strcmp(key, "verify_fun") == 0 && server) {
        const onode_t *f =
            v->kind == T_TUPLE && v->n == 2 ? child(r->ps, v, 0) : NULL;
        if (f == NULL || f->kind != T_FUN ||
            strcmp(f->s, "inet_tls_dist:verify_client") != 0 || f->i != 3)
            return fail(r->ps, v->line,
                        "%s: the only verify_fun supported is "
                        "{fun inet_tls_dist:verify_client/3, _}",
                        r->side_name);
        return 0;
    }
    if (strcmp(key, "secure_renegotiate") == 0 ||
        strcmp(key, "reuse_sessions") == 0) {
        bool ignored;
        return take_bool(r, key, v, &ignored);
    }
    if (strcmp(key, "hibernate_after") == 0) {
        if (v->kind != T_INT || v->i < 0)
            return fail(r->ps, v->line,
                        "%s: {hibernate_after, N} wants an "
                        "integer",
                        r->side_name);
        return 0;
    }
    return fail(r->ps, o->line,
                "%s: option '%s' is not supported by the C-node", r->side_name,
                key);
}

static void side_defaults(tether__tls_side_t *s)
{
    memset(s, 0, sizeof *s);
    s->depth = 10;
    s->min_version = s->max_version = TETHER_TLS_V12;
}

static void side_free(tether__tls_side_t *s)
{
    free(s->certfile);
    free(s->keyfile);
    free(s->cacertfile);
    if (s->password)
        explicit_bzero(s->password, strlen(s->password));
    free(s->password);
    free(s->ciphers);
    free(s->ciphers13);
    free(s->sni_name);
    side_defaults(s);
}

void tether__tls_opts_free(tether__tls_opts_t *opts)
{
    side_free(&opts->server);
    side_free(&opts->client);
}

/* The root: a list of {server, Options} and {client, Options}. */
static int read_root(parser_t *ps, uint32_t root, tether__tls_opts_t *opts)
{
    const onode_t *l = &ps->nodes[root];
    if (l->kind != T_LIST)
        return fail(ps, l->line,
                    "expected a list: [{server, [...]}, {client, [...]}]");
    for (uint32_t k = 0; k < l->n; k++) {
        const onode_t *e = child(ps, l, k);
        const onode_t *key =
            e->kind == T_TUPLE && e->n == 2 ? child(ps, e, 0) : NULL;
        const onode_t *val = key ? child(ps, e, 1) : NULL;
        bool server = key && is_atom(key, "server");
        if (!key || (!server && !is_atom(key, "client")) || val->kind != T_LIST)
            return fail(ps, e->line,
                        "expected {server, [...]} or {client, [...]}");
        /* As an ets set of them: a second entry replaces the first. */
        reader_t r = {.ps = ps,
                      .side = server ? &opts->server : &opts->client,
                      .side_name = server ? "server" : "client"};
        side_free(r.side);
        for (uint32_t j = 0; j < val->n; j++)
            if (option(&r, child(ps, val, j)) < 0)
                return -1;
    }
    return 0;
}

int tether__optfile_parse(const char *text, size_t len,
                          tether__tls_opts_t *opts, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    side_defaults(&opts->server);
    side_defaults(&opts->client);
    if (len > TETHER_OPTFILE_MAX) {
        snprintf(err, errlen, "larger than %zu bytes", TETHER_OPTFILE_MAX);
        return TETHER_EINVAL;
    }
    parser_t ps = {
        .p = text, .end = text + len, .line = 1, .err = err, .errlen = errlen};
    size_t maxnodes = len / 2 + 2;
    if (maxnodes > TETHER_OPTFILE_NODES + 1)
        maxnodes = TETHER_OPTFILE_NODES + 1;
    ps.ncap = (uint32_t)maxnodes - 1;
    ps.nodes = calloc(maxnodes, sizeof *ps.nodes);
    ps.acap = len + maxnodes + 16;
    ps.arena = malloc(ps.acap);
    if (ps.nodes == NULL || ps.arena == NULL) {
        free(ps.nodes);
        free(ps.arena);
        snprintf(err, errlen, "out of memory");
        return TETHER_ENOMEM;
    }
    int rc = TETHER_EINVAL;
    uint32_t root = term(&ps, 0);
    if (root != NONE) {
        skip_blank(&ps);
        if (ps.p >= ps.end || *ps.p != '.')
            fail(&ps, ps.line, "expected '.' after the term");
        else if (ps.p++, skip_blank(&ps), ps.p < ps.end)
            fail(&ps, ps.line, "more than one term (only one is read)");
        else if (read_root(&ps, root, opts) == 0)
            rc = 0;
    }
    free(ps.nodes);
    free(ps.arena);
    if (rc < 0)
        tether__tls_opts_free(opts);
    return rc;
}

int tether__optfile_read(const char *path, tether__tls_opts_t *opts, char *err,
                         size_t errlen)
{
    char why[TETHER_OPTFILE_ERR_MAX];
    side_defaults(&opts->server);
    side_defaults(&opts->client);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return TETHER_EINVAL;
    }
    char *buf = malloc(TETHER_OPTFILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TETHER_OPTFILE_MAX + 1, f) : 0;
    bool bad = buf == NULL || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "cannot read '%s'", path);
        return buf ? TETHER_EINVAL : TETHER_ENOMEM;
    }
    int rc = tether__optfile_parse(buf, n, opts, why, sizeof why);
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "'%s': %s", path, why);
    return rc;
}
