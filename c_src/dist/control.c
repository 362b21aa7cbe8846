/*
 * dist/control.c: control message decoding and encoding (see control.h).
 *
 * Every term is first validated by tether__etf_skip(), which checks each
 * length against the end of the buffer; only then does ei decode inside
 * it, because ei's decoders trust their input to be well formed.
 */
#include <limits.h>
#include <string.h>

#include "dist/control.h"
#include "dist/flags.h"
#include "dist/frame.h"

/* External term format tags. */
#define ETF_NEW_FLOAT       70
#define ETF_BIT_BINARY      77
#define ETF_NEW_PID         88
#define ETF_NEW_PORT        89
#define ETF_NEWER_REF       90
#define ETF_SMALL_INT       97
#define ETF_INT             98
#define ETF_FLOAT           99
#define ETF_ATOM            100
#define ETF_REF             101
#define ETF_PORT            102
#define ETF_PID             103
#define ETF_SMALL_TUPLE     104
#define ETF_LARGE_TUPLE     105
#define ETF_NIL             106
#define ETF_STRING          107
#define ETF_LIST            108
#define ETF_BINARY          109
#define ETF_SMALL_BIG       110
#define ETF_LARGE_BIG       111
#define ETF_NEW_FUN         112
#define ETF_EXPORT          113
#define ETF_NEW_REF         114
#define ETF_SMALL_ATOM      115
#define ETF_MAP             116
#define ETF_FUN             117
#define ETF_ATOM_UTF8       118
#define ETF_SMALL_ATOM_UTF8 119
#define ETF_V4_PORT         120

#define LATIN1_ATOM_MAX 255                  /* characters = bytes */
#define NEW_FUN_FIXED   (4 + 1 + 16 + 4 + 4) /* Size Arity Uniq Index NumFree */

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Skips an atom (any of the four atom tags) at buf[*o]. */
static int skip_atom(const uint8_t *buf, size_t len, size_t *o)
{
    size_t n, hdr;
    uint8_t tag;

    if (*o >= len)
        return TETHER_EPROTO;
    tag = buf[*o];
    switch (tag) {
    case ETF_ATOM:
    case ETF_ATOM_UTF8:
        hdr = 3;
        if (len - *o < hdr)
            return TETHER_EPROTO;
        n = get16(buf + *o + 1);
        break;
    case ETF_SMALL_ATOM:
    case ETF_SMALL_ATOM_UTF8:
        hdr = 2;
        if (len - *o < hdr)
            return TETHER_EPROTO;
        n = buf[*o + 1];
        break;
    default:
        return TETHER_EPROTO;
    }
    if (n > ((tag == ETF_ATOM || tag == ETF_SMALL_ATOM)
                 ? LATIN1_ATOM_MAX
                 : TETHER_ETF_MAX_ATOM_BYTES))
        return TETHER_EPROTO;
    if (len - *o - hdr < n)
        return TETHER_EPROTO;
    *o += hdr + n;
    return 0;
}

/* Checks that k more bytes are available at o. */
#define NEED(k)                                                                \
    do {                                                                       \
        if ((uint64_t)(len - o) < (uint64_t)(k))                               \
            return TETHER_EPROTO;                                              \
    } while (0)

/* Checks that k more bytes are available at o and steps over them. */
#define SKIP(k)                                                                \
    do {                                                                       \
        NEED(k);                                                               \
        o += (k);                                                              \
    } while (0)

/* The bytes of a pid, a port or an old reference after its node (an
 * atom): the tags id_tail() is asked for are those of that shape. */
static size_t id_tail(uint8_t tag)
{
    switch (tag) {
    case ETF_NEW_PID: /* ID, Serial, Creation: 4 + 4 + 4 */
    case ETF_V4_PORT: /* ID 8, Creation 4 */
        return 12;
    case ETF_PID: /* ID, Serial 4 + 4, Creation 1 */
        return 9;
    case ETF_NEW_PORT: /* ID, Creation: 4 + 4 */
        return 8;
    default: /* ETF_PORT and ETF_REF: ID 4, Creation 1 */
        return 5;
    }
}

int tether__etf_skip(const uint8_t *buf, size_t len, size_t *off)
{
    size_t o;
    uint64_t pending = 1; /* terms still to skip */
    uint64_t n;

    if (!buf || !off || *off > len)
        return TETHER_EPROTO;
    o = *off;
    while (pending) {
        uint8_t tag;
        NEED(1);
        tag = buf[o++];
        pending--;
        switch (tag) {
        case ETF_SMALL_INT:
            SKIP(1);
            break;
        case ETF_INT:
            SKIP(4);
            break;
        case ETF_NEW_FLOAT:
            SKIP(8);
            break;
        case ETF_FLOAT:
            SKIP(31);
            break;
        case ETF_ATOM:
        case ETF_ATOM_UTF8:
        case ETF_SMALL_ATOM:
        case ETF_SMALL_ATOM_UTF8:
            o--;
            if (skip_atom(buf, len, &o))
                return TETHER_EPROTO;
            break;
        case ETF_NEW_PID:
        case ETF_V4_PORT:
        case ETF_PID:
        case ETF_NEW_PORT:
        case ETF_PORT:
        case ETF_REF:
            if (skip_atom(buf, len, &o))
                return TETHER_EPROTO;
            SKIP(id_tail(tag));
            break;
        case ETF_NEW_REF:
        case ETF_NEWER_REF:
            NEED(2);
            n = get16(buf + o);
            o += 2;
            if (skip_atom(buf, len, &o))
                return TETHER_EPROTO;
            SKIP((tag == ETF_NEW_REF ? 1 : 4) + 4 * n);
            break;
        case ETF_SMALL_TUPLE:
            NEED(1);
            pending += buf[o];
            o += 1;
            break;
        case ETF_LARGE_TUPLE:
            NEED(4);
            pending += get32(buf + o);
            o += 4;
            break;
        case ETF_NIL:
            break;
        case ETF_STRING:
            NEED(2);
            n = get16(buf + o);
            o += 2;
            SKIP(n);
            break;
        case ETF_LIST:
            NEED(4);
            pending += (uint64_t)get32(buf + o) + 1; /* elements + tail */
            o += 4;
            break;
        case ETF_BINARY:
            NEED(4);
            n = get32(buf + o);
            o += 4;
            SKIP(n);
            break;
        case ETF_BIT_BINARY:
            NEED(5);
            n = get32(buf + o);
            if (buf[o + 4] > 8 || (n == 0 && buf[o + 4] != 0) ||
                (n > 0 && buf[o + 4] == 0))
                return TETHER_EPROTO;
            o += 5;
            SKIP(n);
            break;
        case ETF_SMALL_BIG: /* Length 1, Sign 1, digits */
            NEED(2);
            n = buf[o];
            o += 2;
            SKIP(n);
            break;
        case ETF_LARGE_BIG: /* Length 4, Sign 1, digits */
            NEED(5);
            n = get32(buf + o);
            o += 5;
            SKIP(n);
            break;
        case ETF_MAP:
            NEED(4);
            pending += 2 * (uint64_t)get32(buf + o);
            o += 4;
            break;
        case ETF_EXPORT:
            pending += 3; /* Module, Function, Arity */
            break;
        case ETF_NEW_FUN:
            NEED(NEW_FUN_FIXED);
            n = get32(buf + o);
            /* Size counts itself and everything after the tag. */
            if (n < NEW_FUN_FIXED || (uint64_t)(len - o) < n)
                return TETHER_EPROTO;
            /* Module, OldIndex, OldUniq, Pid, then NumFree free vars. */
            pending += 4 + (uint64_t)get32(buf + o + 25);
            o += NEW_FUN_FIXED;
            break;
        case ETF_FUN:
            NEED(4);
            /* Pid, Module, Index, Uniq, then NumFree free vars. */
            pending += 4 + (uint64_t)get32(buf + o);
            o += 4;
            break;
        default:
            return TETHER_EPROTO; /* incl. ATOM_CACHE_REF, LOCAL_EXT, 80 */
        }
        /* Each pending term needs at least one byte. */
        if (pending > (uint64_t)(len - o))
            return TETHER_EPROTO;
    }
    *off = o;
    return 0;
}

#undef SKIP
#undef NEED

/* Decoding helpers: buf is validated; idx is an ei index into it. */

static int dec_atom(const char *buf, int *idx, char *out)
{
    uint8_t tag = (uint8_t)buf[*idx];

    if (tag != ETF_ATOM && tag != ETF_ATOM_UTF8 && tag != ETF_SMALL_ATOM &&
        tag != ETF_SMALL_ATOM_UTF8)
        return TETHER_EPROTO;
    if (ei_decode_atom_as(buf, idx, out, MAXATOMLEN_UTF8, ERLANG_UTF8, NULL,
                          NULL) < 0)
        return TETHER_EPROTO;
    return 0;
}

static int dec_pid(const char *buf, int *idx, erlang_pid *out)
{
    uint8_t tag = (uint8_t)buf[*idx];

    if (tag != ETF_NEW_PID && tag != ETF_PID)
        return TETHER_EPROTO;
    if (ei_decode_pid(buf, idx, out) < 0)
        return TETHER_EPROTO;
    return 0;
}

static int dec_proc(const char *buf, int *idx, tether_ctl_proc_t *out)
{
    uint8_t tag = (uint8_t)buf[*idx];

    if (tag == ETF_NEW_PID || tag == ETF_PID) {
        out->is_name = 0;
        return dec_pid(buf, idx, &out->pid);
    }
    out->is_name = 1;
    return dec_atom(buf, idx, out->name);
}

static int dec_ref(const char *buf, int *idx, erlang_ref *out)
{
    const uint8_t *p = (const uint8_t *)buf + *idx;

    if (p[0] == ETF_NEW_REF || p[0] == ETF_NEWER_REF) {
        uint16_t words = get16(p + 1);
        if (words == 0 || words > TETHER_ETF_MAX_REF_WORDS)
            return TETHER_EPROTO;
    } else if (p[0] != ETF_REF) {
        return TETHER_EPROTO;
    }
    if (ei_decode_ref(buf, idx, out) < 0)
        return TETHER_EPROTO;
    return 0;
}

static int dec_long(const char *buf, int *idx, long *out)
{
    if (ei_decode_long(buf, idx, out) < 0)
        return TETHER_EPROTO;
    return 0;
}

static int dec_u64(const char *buf, int *idx, uint64_t *out)
{
    EI_ULONGLONG v;

    if (ei_decode_ulonglong(buf, idx, &v) < 0)
        return TETHER_EPROTO;
    *out = (uint64_t)v;
    return 0;
}

/* Records the (already validated) term at *idx as a slice and skips it. */
static int dec_slice(const uint8_t *buf, size_t len, int *idx,
                     tether_etf_slice_t *out)
{
    size_t o = (size_t)*idx;

    if (tether__etf_skip(buf, len, &o))
        return TETHER_EPROTO;
    out->off = (size_t)*idx;
    out->len = o - (size_t)*idx;
    *idx = (int)o;
    return 0;
}

static int skip(const uint8_t *buf, size_t len, int *idx)
{
    tether_etf_slice_t s;
    return dec_slice(buf, len, idx, &s);
}

/* Whether an op is followed by a message (or payload reason) term. */
static int op_has_payload(int op)
{
    switch (op) {
    case TETHER_DOP_SEND:
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_SEND_TT:
    case TETHER_DOP_REG_SEND_TT:
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_SEND_SENDER_TT:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        return 1;
    default:
        return 0;
    }
}

/* The arity of each known op's control tuple; 0 for unknown ops. */
static int op_arity(int op)
{
    switch (op) {
    case TETHER_DOP_NODE_LINK:
        return 1;
    case TETHER_DOP_LINK:
    case TETHER_DOP_UNLINK:
    case TETHER_DOP_GROUP_LEADER:
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_SEND:
        return 3;
    case TETHER_DOP_EXIT:
    case TETHER_DOP_EXIT2:
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_SEND_TT:
    case TETHER_DOP_MONITOR_P:
    case TETHER_DOP_DEMONITOR_P:
    case TETHER_DOP_SEND_SENDER_TT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
    case TETHER_DOP_ALIAS_SEND_TT:
    case TETHER_DOP_UNLINK_ID:
    case TETHER_DOP_UNLINK_ID_ACK:
        return 4;
    case TETHER_DOP_EXIT_TT:
    case TETHER_DOP_REG_SEND_TT:
    case TETHER_DOP_EXIT2_TT:
    case TETHER_DOP_MONITOR_P_EXIT:
    case TETHER_DOP_SPAWN_REPLY:
        return 5;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REPLY_TT:
        return 6;
    case TETHER_DOP_SPAWN_REQUEST_TT:
        return 7;
    default:
        return 0;
    }
}

const char *tether__ctl_op_name(int op)
{
    switch (op) {
    case TETHER_DOP_LINK:
        return "LINK";
    case TETHER_DOP_SEND:
        return "SEND";
    case TETHER_DOP_EXIT:
        return "EXIT";
    case TETHER_DOP_UNLINK:
        return "UNLINK";
    case TETHER_DOP_NODE_LINK:
        return "NODE_LINK";
    case TETHER_DOP_REG_SEND:
        return "REG_SEND";
    case TETHER_DOP_GROUP_LEADER:
        return "GROUP_LEADER";
    case TETHER_DOP_EXIT2:
        return "EXIT2";
    case TETHER_DOP_SEND_TT:
        return "SEND_TT";
    case TETHER_DOP_EXIT_TT:
        return "EXIT_TT";
    case TETHER_DOP_REG_SEND_TT:
        return "REG_SEND_TT";
    case TETHER_DOP_EXIT2_TT:
        return "EXIT2_TT";
    case TETHER_DOP_MONITOR_P:
        return "MONITOR_P";
    case TETHER_DOP_DEMONITOR_P:
        return "DEMONITOR_P";
    case TETHER_DOP_MONITOR_P_EXIT:
        return "MONITOR_P_EXIT";
    case TETHER_DOP_SEND_SENDER:
        return "SEND_SENDER";
    case TETHER_DOP_SEND_SENDER_TT:
        return "SEND_SENDER_TT";
    case TETHER_DOP_PAYLOAD_EXIT:
        return "PAYLOAD_EXIT";
    case TETHER_DOP_PAYLOAD_EXIT_TT:
        return "PAYLOAD_EXIT_TT";
    case TETHER_DOP_PAYLOAD_EXIT2:
        return "PAYLOAD_EXIT2";
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
        return "PAYLOAD_EXIT2_TT";
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        return "PAYLOAD_MONITOR_P_EXIT";
    case TETHER_DOP_SPAWN_REQUEST:
        return "SPAWN_REQUEST";
    case TETHER_DOP_SPAWN_REQUEST_TT:
        return "SPAWN_REQUEST_TT";
    case TETHER_DOP_SPAWN_REPLY:
        return "SPAWN_REPLY";
    case TETHER_DOP_SPAWN_REPLY_TT:
        return "SPAWN_REPLY_TT";
    case TETHER_DOP_ALIAS_SEND:
        return "ALIAS_SEND";
    case TETHER_DOP_ALIAS_SEND_TT:
        return "ALIAS_SEND_TT";
    case TETHER_DOP_UNLINK_ID:
        return "UNLINK_ID";
    case TETHER_DOP_UNLINK_ID_ACK:
        return "UNLINK_ID_ACK";
    default:
        return "UNKNOWN";
    }
}

/* Decodes the control tuple's elements after the op, per op. */
static int dec_fields(const uint8_t *ubuf, size_t len, int *idx,
                      tether_ctl_t *c)
{
    const char *buf = (const char *)ubuf;
    int rc = 0, arity;

    switch (c->op) {
    case TETHER_DOP_NODE_LINK:
        return 0;
    case TETHER_DOP_LINK:
    case TETHER_DOP_UNLINK:
    case TETHER_DOP_GROUP_LEADER:
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_SEND_SENDER_TT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT2_TT:
    case TETHER_DOP_EXIT:
    case TETHER_DOP_EXIT2:
    case TETHER_DOP_EXIT_TT:
    case TETHER_DOP_EXIT2_TT:
        /* {Op, FromPid, ToPid [, Token] [, Reason]} */
        if ((rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = dec_pid(buf, idx, &c->to.pid)))
            return rc;
        if (c->op == TETHER_DOP_SEND_SENDER_TT ||
            c->op == TETHER_DOP_PAYLOAD_EXIT_TT ||
            c->op == TETHER_DOP_PAYLOAD_EXIT2_TT ||
            c->op == TETHER_DOP_EXIT_TT || c->op == TETHER_DOP_EXIT2_TT)
            if ((rc = dec_slice(ubuf, len, idx, &c->token)))
                return rc;
        if (c->op == TETHER_DOP_EXIT || c->op == TETHER_DOP_EXIT2 ||
            c->op == TETHER_DOP_EXIT_TT || c->op == TETHER_DOP_EXIT2_TT)
            rc = dec_slice(ubuf, len, idx, &c->reason);
        return rc;
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
        /* {Op, Unused, ToPid [, Token]} */
        if ((rc = skip(ubuf, len, idx)) || (rc = dec_pid(buf, idx, &c->to.pid)))
            return rc;
        if (c->op == TETHER_DOP_SEND_TT)
            rc = dec_slice(ubuf, len, idx, &c->token);
        return rc;
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
        /* {Op, FromPid, Unused, ToName [, Token]} */
        if ((rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = skip(ubuf, len, idx)) ||
            (rc = dec_atom(buf, idx, c->to.name)))
            return rc;
        c->to.is_name = 1;
        if (c->op == TETHER_DOP_REG_SEND_TT)
            rc = dec_slice(ubuf, len, idx, &c->token);
        return rc;
    case TETHER_DOP_MONITOR_P:
    case TETHER_DOP_DEMONITOR_P:
        /* {Op, FromPid, ToProc, Ref} */
        if ((rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = dec_proc(buf, idx, &c->to)) ||
            (rc = dec_ref(buf, idx, &c->ref)))
            return rc;
        c->has_ref = 1;
        return 0;
    case TETHER_DOP_MONITOR_P_EXIT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        /* {Op, FromProc, ToPid, Ref [, Reason]} */
        if ((rc = dec_proc(buf, idx, &c->from)) ||
            (rc = dec_pid(buf, idx, &c->to.pid)) ||
            (rc = dec_ref(buf, idx, &c->ref)))
            return rc;
        c->has_ref = 1;
        if (c->op == TETHER_DOP_MONITOR_P_EXIT)
            rc = dec_slice(ubuf, len, idx, &c->reason);
        return rc;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        /* {Op, ReqId, From, GroupLeader, {M, F, A}, OptList [, Token]} */
        if ((rc = dec_ref(buf, idx, &c->ref)) ||
            (rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = dec_pid(buf, idx, &c->group_leader)))
            return rc;
        c->has_ref = 1;
        if (ei_decode_tuple_header(buf, idx, &arity) < 0 || arity != 3)
            return TETHER_EPROTO;
        if ((rc = dec_atom(buf, idx, c->module)) ||
            (rc = dec_atom(buf, idx, c->function)) ||
            (rc = dec_long(buf, idx, &c->arity)))
            return rc;
        if (c->arity < 0 || c->arity > 255)
            return TETHER_EPROTO;
        if ((rc = dec_slice(ubuf, len, idx, &c->spawn_opts)))
            return rc;
        if (c->op == TETHER_DOP_SPAWN_REQUEST_TT)
            rc = dec_slice(ubuf, len, idx, &c->token);
        return rc;
    case TETHER_DOP_SPAWN_REPLY:
    case TETHER_DOP_SPAWN_REPLY_TT:
        /* {Op, ReqId, To, Flags, Result [, Token]} */
        if ((rc = dec_ref(buf, idx, &c->ref)) ||
            (rc = dec_pid(buf, idx, &c->to.pid)) ||
            (rc = dec_long(buf, idx, &c->spawn_flags)))
            return rc;
        c->has_ref = 1;
        {
            uint8_t tag = ubuf[*idx];
            int ridx = *idx;
            if ((rc = dec_slice(ubuf, len, idx, &c->result)))
                return rc;
            if (tag == ETF_NEW_PID || tag == ETF_PID) {
                if ((rc = dec_pid(buf, &ridx, &c->result_pid)))
                    return rc;
                c->result_is_pid = 1;
            }
        }
        if (c->op == TETHER_DOP_SPAWN_REPLY_TT)
            rc = dec_slice(ubuf, len, idx, &c->token);
        return rc;
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        /* {Op, FromPid, Alias [, Token]} */
        if ((rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = dec_ref(buf, idx, &c->ref)))
            return rc;
        c->has_ref = 1;
        if (c->op == TETHER_DOP_ALIAS_SEND_TT)
            rc = dec_slice(ubuf, len, idx, &c->token);
        return rc;
    case TETHER_DOP_UNLINK_ID:
    case TETHER_DOP_UNLINK_ID_ACK:
        /* {Op, Id, FromPid, ToPid} */
        if ((rc = dec_u64(buf, idx, &c->unlink_id)) ||
            (rc = dec_pid(buf, idx, &c->from.pid)) ||
            (rc = dec_pid(buf, idx, &c->to.pid)))
            return rc;
        return 0;
    default:
        return TETHER_EUNSUPP;
    }
}

/* Empties a pid, a reference and a process: scalars zeroed, names made
 * empty strings. */
static void pid_reset(erlang_pid *p)
{
    p->node[0] = '\0';
    p->num = p->serial = p->creation = 0;
}

static void ref_reset(erlang_ref *r)
{
    r->node[0] = '\0';
    r->len = 0;
    memset(r->n, 0, sizeof r->n);
    r->creation = 0;
}

static void proc_reset(tether_ctl_proc_t *p)
{
    p->is_name = 0;
    pid_reset(&p->pid);
    p->name[0] = '\0';
}

/*
 * Resets every field of `c` to its zero meaning. The struct holds seven
 * 1 KiB name buffers; emptying their first byte instead of a memset of
 * all 9 KiB matters on the path every incoming message takes.
 */
static void ctl_reset(tether_ctl_t *c)
{
    static const tether_etf_slice_t none = {0, 0};
    c->op = 0;
    proc_reset(&c->from);
    proc_reset(&c->to);
    c->has_ref = 0;
    ref_reset(&c->ref);
    c->unlink_id = 0;
    c->reason = c->message = c->token = c->spawn_opts = c->result = none;
    pid_reset(&c->group_leader);
    c->module[0] = c->function[0] = '\0';
    c->arity = 0;
    c->spawn_flags = 0;
    c->result_is_pid = 0;
    pid_reset(&c->result_pid);
}

int tether__ctl_decode(const uint8_t *buf, size_t len, int versioned,
                       tether_ctl_t *out)
{
    size_t off = 0, ctl_start, ctl_end, msg_start = 0, msg_end = 0;
    int idx, arity, rc;
    long op;

    if (!out)
        return TETHER_EINVAL;
    ctl_reset(out);
    if (!buf || len == 0 || len > INT_MAX)
        return TETHER_EPROTO;
    if (versioned) {
        if (buf[0] != TETHER_DIST_VERSION_MAGIC)
            return TETHER_EPROTO;
        off = 1;
    }
    ctl_start = off;
    if (tether__etf_skip(buf, len, &off))
        return TETHER_EPROTO;
    ctl_end = off;
    if (off < len) {
        if (versioned) {
            if (buf[off] != TETHER_DIST_VERSION_MAGIC)
                return TETHER_EPROTO;
            off++;
        }
        msg_start = off;
        if (tether__etf_skip(buf, len, &off))
            return TETHER_EPROTO;
        msg_end = off;
        if (off != len)
            return TETHER_EPROTO;
    }

    idx = (int)ctl_start;
    if (ei_decode_tuple_header((const char *)buf, &idx, &arity) < 0 ||
        arity < 1)
        return TETHER_EPROTO;
    if (ei_decode_long((const char *)buf, &idx, &op) < 0)
        return TETHER_EPROTO;
    if (op < INT_MIN || op > INT_MAX)
        return TETHER_EUNSUPP;
    out->op = (int)op;
    if (op_arity(out->op) == 0)
        return TETHER_EUNSUPP;
    if (arity != op_arity(out->op))
        return TETHER_EPROTO;
    rc = dec_fields(buf, ctl_end, &idx, out);
    if (rc)
        return rc;
    if ((size_t)idx != ctl_end)
        return TETHER_EPROTO;
    if (op_has_payload(out->op) != (msg_end > msg_start))
        return TETHER_EPROTO;
    if (msg_end > msg_start) {
        tether_etf_slice_t s = {msg_start, msg_end - msg_start};
        switch (out->op) {
        case TETHER_DOP_PAYLOAD_EXIT:
        case TETHER_DOP_PAYLOAD_EXIT_TT:
        case TETHER_DOP_PAYLOAD_EXIT2:
        case TETHER_DOP_PAYLOAD_EXIT2_TT:
        case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
            out->reason = s;
            break;
        default:
            out->message = s;
        }
    }
    return 0;
}

/*
 * Encoding. Each encoder builds the control tuple into a scratch buffer
 * and hands it to tether__frame_encode() with the payload term.
 */

static int enc_begin(ei_x_buff *ctl, int arity, int op)
{
    if (ei_x_new(ctl) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_tuple_header(ctl, arity) < 0 ||
        ei_x_encode_long(ctl, op) < 0) {
        ei_x_free(ctl);
        return TETHER_ENOMEM;
    }
    return 0;
}

/* Finishes: frames the control tuple and the payload into x. */
static int enc_end(ei_x_buff *x, uint64_t dflags, ei_x_buff *ctl, int failed,
                   const uint8_t *payload, size_t payload_len)
{
    int rc =
        failed ? TETHER_ENOMEM
               : tether__frame_encode(x, dflags, (const uint8_t *)ctl->buff,
                                      (size_t)ctl->index, payload, payload_len);
    ei_x_free(ctl);
    return rc;
}

static int enc_proc(ei_x_buff *ctl, const tether_ctl_proc_t *p)
{
    if (p->is_name)
        return ei_x_encode_atom_as(ctl, p->name, ERLANG_UTF8, ERLANG_UTF8);
    return ei_x_encode_pid(ctl, &p->pid);
}

/* A non-empty term argument (an optional 131 alone does not count). */
static int term_ok(const uint8_t *t, size_t n)
{
    return t && n > 0 && !(n == 1 && t[0] == TETHER_DIST_VERSION_MAGIC);
}

int tether__ctl_encode_send(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to,
                            const uint8_t *msg, size_t msg_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !to || !term_ok(msg, msg_len))
        return TETHER_EINVAL;
    if ((dflags & TETHER_DFLAG_SEND_SENDER) && from) {
        if ((rc = enc_begin(&c, 3, TETHER_DOP_SEND_SENDER)))
            return rc;
        bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0;
    } else {
        if ((rc = enc_begin(&c, 3, TETHER_DOP_SEND)))
            return rc;
        bad = ei_x_encode_atom(&c, "") < 0 || ei_x_encode_pid(&c, to) < 0;
    }
    return enc_end(x, dflags, &c, bad, msg, msg_len);
}

int tether__ctl_encode_reg_send(ei_x_buff *x, uint64_t dflags,
                                const erlang_pid *from, const char *to_name,
                                const uint8_t *msg, size_t msg_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !to_name || !*to_name || !term_ok(msg, msg_len))
        return TETHER_EINVAL;
    if ((rc = enc_begin(&c, 4, TETHER_DOP_REG_SEND)))
        return rc;
    bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_atom(&c, "") < 0 ||
          ei_x_encode_atom_as(&c, to_name, ERLANG_UTF8, ERLANG_UTF8) < 0;
    return enc_end(x, dflags, &c, bad, msg, msg_len);
}

int tether__ctl_encode_alias_send(ei_x_buff *x, uint64_t dflags,
                                  const erlang_pid *from,
                                  const erlang_ref *alias, const uint8_t *msg,
                                  size_t msg_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !alias || !term_ok(msg, msg_len) ||
        !(dflags & TETHER_DFLAG_ALIAS))
        return TETHER_EINVAL;
    if ((rc = enc_begin(&c, 3, TETHER_DOP_ALIAS_SEND)))
        return rc;
    bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_ref(&c, alias) < 0;
    return enc_end(x, dflags, &c, bad, msg, msg_len);
}

/* {Op, From, To} control messages without payload. */
static int enc_pid_pair(ei_x_buff *x, uint64_t dflags, int op,
                        const erlang_pid *from, const erlang_pid *to)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !to)
        return TETHER_EINVAL;
    if ((rc = enc_begin(&c, 3, op)))
        return rc;
    bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0;
    return enc_end(x, dflags, &c, bad, NULL, 0);
}

int tether__ctl_encode_link(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to)
{
    return enc_pid_pair(x, dflags, TETHER_DOP_LINK, from, to);
}

static int enc_unlink(ei_x_buff *x, uint64_t dflags, int op, uint64_t id,
                      const erlang_pid *from, const erlang_pid *to)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !to)
        return TETHER_EINVAL;
    if ((rc = enc_begin(&c, 4, op)))
        return rc;
    bad = ei_x_encode_ulonglong(&c, (EI_ULONGLONG)id) < 0 ||
          ei_x_encode_pid(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0;
    return enc_end(x, dflags, &c, bad, NULL, 0);
}

int tether__ctl_encode_unlink_id(ei_x_buff *x, uint64_t dflags, uint64_t id,
                                 const erlang_pid *from, const erlang_pid *to)
{
    if (!(dflags & TETHER_DFLAG_UNLINK_ID))
        return enc_pid_pair(x, dflags, TETHER_DOP_UNLINK, from, to);
    return enc_unlink(x, dflags, TETHER_DOP_UNLINK_ID, id, from, to);
}

int tether__ctl_encode_unlink_id_ack(ei_x_buff *x, uint64_t dflags, uint64_t id,
                                     const erlang_pid *from,
                                     const erlang_pid *to)
{
    if (!(dflags & TETHER_DFLAG_UNLINK_ID))
        return TETHER_EINVAL;
    return enc_unlink(x, dflags, TETHER_DOP_UNLINK_ID_ACK, id, from, to);
}

/* EXIT / EXIT2 and their PAYLOAD_ forms. */
static int enc_exit(ei_x_buff *x, uint64_t dflags, int op, int payload_op,
                    const erlang_pid *from, const erlang_pid *to,
                    const uint8_t *reason, size_t reason_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !to || !term_ok(reason, reason_len))
        return TETHER_EINVAL;
    if (dflags & TETHER_DFLAG_EXIT_PAYLOAD) {
        if ((rc = enc_begin(&c, 3, payload_op)))
            return rc;
        bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0;
        return enc_end(x, dflags, &c, bad, reason, reason_len);
    }
    if ((rc = enc_begin(&c, 4, op)))
        return rc;
    bad = ei_x_encode_pid(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0;
    if (!bad) {
        if (reason[0] == TETHER_DIST_VERSION_MAGIC) {
            reason++;
            reason_len--;
        }
        bad = ei_x_append_buf(&c, (const char *)reason, (int)reason_len) < 0;
    }
    return enc_end(x, dflags, &c, bad, NULL, 0);
}

int tether__ctl_encode_exit(ei_x_buff *x, uint64_t dflags,
                            const erlang_pid *from, const erlang_pid *to,
                            const uint8_t *reason, size_t reason_len)
{
    if (reason_len > INT_MAX)
        return TETHER_ETOOBIG;
    return enc_exit(x, dflags, TETHER_DOP_EXIT, TETHER_DOP_PAYLOAD_EXIT, from,
                    to, reason, reason_len);
}

int tether__ctl_encode_exit2(ei_x_buff *x, uint64_t dflags,
                             const erlang_pid *from, const erlang_pid *to,
                             const uint8_t *reason, size_t reason_len)
{
    if (reason_len > INT_MAX)
        return TETHER_ETOOBIG;
    return enc_exit(x, dflags, TETHER_DOP_EXIT2, TETHER_DOP_PAYLOAD_EXIT2, from,
                    to, reason, reason_len);
}

static int enc_monitor(ei_x_buff *x, uint64_t dflags, int op,
                       const erlang_pid *from, const tether_ctl_proc_t *to,
                       const erlang_ref *ref)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !from || !to || !ref || (to->is_name && !to->name[0]))
        return TETHER_EINVAL;
    if ((rc = enc_begin(&c, 4, op)))
        return rc;
    bad = ei_x_encode_pid(&c, from) < 0 || enc_proc(&c, to) < 0 ||
          ei_x_encode_ref(&c, ref) < 0;
    return enc_end(x, dflags, &c, bad, NULL, 0);
}

int tether__ctl_encode_monitor_p(ei_x_buff *x, uint64_t dflags,
                                 const erlang_pid *from,
                                 const tether_ctl_proc_t *to,
                                 const erlang_ref *ref)
{
    return enc_monitor(x, dflags, TETHER_DOP_MONITOR_P, from, to, ref);
}

int tether__ctl_encode_demonitor_p(ei_x_buff *x, uint64_t dflags,
                                   const erlang_pid *from,
                                   const tether_ctl_proc_t *to,
                                   const erlang_ref *ref)
{
    return enc_monitor(x, dflags, TETHER_DOP_DEMONITOR_P, from, to, ref);
}

int tether__ctl_encode_monitor_p_exit(ei_x_buff *x, uint64_t dflags,
                                      const tether_ctl_proc_t *from,
                                      const erlang_pid *to,
                                      const erlang_ref *ref,
                                      const uint8_t *reason, size_t reason_len)
{
    ei_x_buff c;
    int rc, bad, payload = (dflags & TETHER_DFLAG_EXIT_PAYLOAD) != 0;

    if (!x || !from || !to || !ref || !term_ok(reason, reason_len) ||
        (from->is_name && !from->name[0]))
        return TETHER_EINVAL;
    if (reason_len > INT_MAX)
        return TETHER_ETOOBIG;
    if ((rc = enc_begin(&c, payload ? 4 : 5,
                        payload ? TETHER_DOP_PAYLOAD_MONITOR_P_EXIT
                                : TETHER_DOP_MONITOR_P_EXIT)))
        return rc;
    bad = enc_proc(&c, from) < 0 || ei_x_encode_pid(&c, to) < 0 ||
          ei_x_encode_ref(&c, ref) < 0;
    if (payload)
        return enc_end(x, dflags, &c, bad, reason, reason_len);
    if (!bad) {
        if (reason[0] == TETHER_DIST_VERSION_MAGIC) {
            reason++;
            reason_len--;
        }
        bad = ei_x_append_buf(&c, (const char *)reason, (int)reason_len) < 0;
    }
    return enc_end(x, dflags, &c, bad, NULL, 0);
}

int tether__ctl_encode_spawn_request(
    ei_x_buff *x, uint64_t dflags, const erlang_ref *req_id,
    const erlang_pid *from, const erlang_pid *group_leader, const char *module,
    const char *function, long arity, const uint8_t *opts, size_t opts_len,
    const uint8_t *args, size_t args_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !req_id || !from || !group_leader || !module || !*module ||
        !function || !*function || arity < 0 || arity > 255 ||
        !term_ok(args, args_len) || (opts && !term_ok(opts, opts_len)) ||
        !(dflags & TETHER_DFLAG_SPAWN))
        return TETHER_EINVAL;
    if (opts_len > INT_MAX)
        return TETHER_ETOOBIG;
    if ((rc = enc_begin(&c, 6, TETHER_DOP_SPAWN_REQUEST)))
        return rc;
    bad = ei_x_encode_ref(&c, req_id) < 0 || ei_x_encode_pid(&c, from) < 0 ||
          ei_x_encode_pid(&c, group_leader) < 0 ||
          ei_x_encode_tuple_header(&c, 3) < 0 ||
          ei_x_encode_atom_as(&c, module, ERLANG_UTF8, ERLANG_UTF8) < 0 ||
          ei_x_encode_atom_as(&c, function, ERLANG_UTF8, ERLANG_UTF8) < 0 ||
          ei_x_encode_long(&c, arity) < 0;
    if (!bad) {
        if (opts) {
            if (opts[0] == TETHER_DIST_VERSION_MAGIC) {
                opts++;
                opts_len--;
            }
            bad = ei_x_append_buf(&c, (const char *)opts, (int)opts_len) < 0;
        } else {
            bad = ei_x_encode_empty_list(&c) < 0;
        }
    }
    return enc_end(x, dflags, &c, bad, args, args_len);
}

int tether__ctl_encode_spawn_reply(ei_x_buff *x, uint64_t dflags,
                                   const erlang_ref *req_id,
                                   const erlang_pid *to, long flags,
                                   const erlang_pid *result_pid,
                                   const uint8_t *error_reason,
                                   size_t error_reason_len)
{
    ei_x_buff c;
    int rc, bad;

    if (!x || !req_id || !to || !(dflags & TETHER_DFLAG_SPAWN) ||
        (!result_pid && !term_ok(error_reason, error_reason_len)))
        return TETHER_EINVAL;
    if (error_reason_len > INT_MAX)
        return TETHER_ETOOBIG;
    if ((rc = enc_begin(&c, 5, TETHER_DOP_SPAWN_REPLY)))
        return rc;
    bad = ei_x_encode_ref(&c, req_id) < 0 || ei_x_encode_pid(&c, to) < 0 ||
          ei_x_encode_long(&c, flags) < 0;
    if (!bad) {
        if (result_pid) {
            bad = ei_x_encode_pid(&c, result_pid) < 0;
        } else {
            if (error_reason[0] == TETHER_DIST_VERSION_MAGIC) {
                error_reason++;
                error_reason_len--;
            }
            bad = ei_x_append_buf(&c, (const char *)error_reason,
                                  (int)error_reason_len) < 0;
        }
    }
    return enc_end(x, dflags, &c, bad, NULL, 0);
}
