/*
 * dist/epmd.c: epmd request encoders and reply decoders (see epmd.h).
 */
#include <string.h>

#include "dist/epmd.h"

#define NAMES_LINE_MAX 4096

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

int tether__epmd_encode_alive2(uint8_t *out, size_t cap, size_t *out_len,
                               uint16_t port, uint8_t node_type,
                               const char *name, size_t name_len,
                               const uint8_t *extra, size_t extra_len)
{
    size_t body, n;

    if (!out || !out_len || !name || name_len == 0 ||
        name_len > TETHER_EPMD_NAME_MAX || extra_len > TETHER_EPMD_EXTRA_MAX ||
        (extra_len > 0 && !extra) ||
        (node_type != TETHER_EPMD_NODE_NORMAL &&
         node_type != TETHER_EPMD_NODE_HIDDEN))
        return TETHER_EINVAL;
    /* tag, port, type, proto, hi, lo, nlen, name, elen, extra */
    body = 1 + 2 + 1 + 1 + 2 + 2 + 2 + name_len + 2 + extra_len;
    if (cap < 2 + body)
        return TETHER_ETOOBIG;
    n = 0;
    put16(out + n, (uint16_t)body);
    n += 2;
    out[n++] = TETHER_EPMD_ALIVE2_REQ;
    put16(out + n, port);
    n += 2;
    out[n++] = node_type;
    out[n++] = TETHER_EPMD_PROTO_TCP4;
    put16(out + n, TETHER_EPMD_VERSION_HI);
    n += 2;
    put16(out + n, TETHER_EPMD_VERSION_LO);
    n += 2;
    put16(out + n, (uint16_t)name_len);
    n += 2;
    memcpy(out + n, name, name_len);
    n += name_len;
    put16(out + n, (uint16_t)extra_len);
    n += 2;
    if (extra_len)
        memcpy(out + n, extra, extra_len);
    n += extra_len;
    *out_len = n;
    return 0;
}

int tether__epmd_decode_alive2_resp(const uint8_t *buf, size_t len,
                                    tether_epmd_alive_t *out, size_t *consumed)
{
    if (!out || !consumed || (!buf && len))
        return TETHER_EINVAL;
    if (len < 1)
        return TETHER_EAGAIN;
    memset(out, 0, sizeof(*out));
    if (buf[0] == TETHER_EPMD_ALIVE2_X_RESP) {
        if (len < 6)
            return TETHER_EAGAIN;
        out->result = buf[1];
        out->creation = get32(buf + 2);
        out->extended = 1;
        *consumed = 6;
        return 0;
    }
    if (buf[0] == TETHER_EPMD_ALIVE2_RESP) {
        if (len < 4)
            return TETHER_EAGAIN;
        out->result = buf[1];
        out->creation = get16(buf + 2);
        *consumed = 4;
        return 0;
    }
    return TETHER_EPROTO;
}

int tether__epmd_encode_port_please2(uint8_t *out, size_t cap, size_t *out_len,
                                     const char *name, size_t name_len)
{
    if (!out || !out_len || !name || name_len == 0 ||
        name_len > TETHER_EPMD_NAME_MAX)
        return TETHER_EINVAL;
    if (cap < 3 + name_len)
        return TETHER_ETOOBIG;
    put16(out, (uint16_t)(1 + name_len));
    out[2] = TETHER_EPMD_PORT_PLEASE2_REQ;
    memcpy(out + 3, name, name_len);
    *out_len = 3 + name_len;
    return 0;
}

int tether__epmd_decode_port2_resp(const uint8_t *buf, size_t len,
                                   tether_epmd_port_t *out, size_t *consumed)
{
    size_t n, nlen, elen;

    if (!out || !consumed || (!buf && len))
        return TETHER_EINVAL;
    if (len < 1)
        return TETHER_EAGAIN;
    if (buf[0] != TETHER_EPMD_PORT2_RESP)
        return TETHER_EPROTO;
    if (len < 2)
        return TETHER_EAGAIN;
    memset(out, 0, sizeof(*out));
    if (buf[1] != 0) {
        out->result = buf[1];
        *consumed = 2;
        return 0;
    }
    /* tag, result, port, type, proto, hi, lo, nlen */
    if (len < 12)
        return TETHER_EAGAIN;
    nlen = get16(buf + 10);
    if (nlen == 0 || nlen > TETHER_EPMD_NAME_MAX)
        return TETHER_EPROTO;
    n = 12 + nlen;
    if (len < n + 2)
        return TETHER_EAGAIN;
    elen = get16(buf + n);
    if (elen > TETHER_EPMD_EXTRA_MAX)
        return TETHER_EPROTO;
    n += 2 + elen;
    if (len < n)
        return TETHER_EAGAIN;
    out->port = get16(buf + 2);
    out->node_type = buf[4];
    out->protocol = buf[5];
    out->highest_version = get16(buf + 6);
    out->lowest_version = get16(buf + 8);
    memcpy(out->name, buf + 12, nlen);
    out->name[nlen] = '\0';
    out->name_len = nlen;
    out->extra_len = elen;
    *consumed = n;
    return 0;
}

int tether__epmd_encode_names(uint8_t *out, size_t cap, size_t *out_len)
{
    if (!out || !out_len)
        return TETHER_EINVAL;
    if (cap < 3)
        return TETHER_ETOOBIG;
    put16(out, 1);
    out[2] = TETHER_EPMD_NAMES_REQ;
    *out_len = 3;
    return 0;
}

/*
 * Parses one line "name <name> at port <port>" (without '\n') into e.
 * Returns 1 when it matches, 0 otherwise.
 */
static int parse_names_line(const uint8_t *p, size_t n, tether_epmd_name_t *e)
{
    static const char pre[] = "name ";
    static const char mid[] = " at port ";
    size_t pre_len = sizeof(pre) - 1, mid_len = sizeof(mid) - 1;
    size_t i, name_end = 0, digits;
    unsigned long port = 0;
    int found = 0;

    if (n < pre_len + 1 + mid_len + 1 || memcmp(p, pre, pre_len) != 0)
        return 0;
    /* The last " at port " on the line ends the name. */
    for (i = n - mid_len; i >= pre_len + 1; i--) {
        if (memcmp(p + i, mid, mid_len) == 0) {
            name_end = i;
            found = 1;
            break;
        }
    }
    if (!found)
        return 0;
    if (name_end - pre_len > TETHER_EPMD_NAME_MAX)
        return 0;
    digits = n - (name_end + mid_len);
    if (digits == 0 || digits > 5)
        return 0;
    for (i = name_end + mid_len; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    if (port > 65535)
        return 0;
    memcpy(e->name, p + pre_len, name_end - pre_len);
    e->name[name_end - pre_len] = '\0';
    e->port = (uint16_t)port;
    return 1;
}

int tether__epmd_parse_names(const uint8_t *buf, size_t len,
                             uint32_t *epmd_port, tether_epmd_name_t *names,
                             size_t max_names, size_t *count)
{
    size_t off = 4, total = 0;

    if (!count || (!buf && len) || (max_names && !names))
        return TETHER_EINVAL;
    if (len < 4)
        return TETHER_EAGAIN;
    if (epmd_port)
        *epmd_port = get32(buf);
    while (off < len) {
        const uint8_t *nl = memchr(buf + off, '\n', len - off);
        size_t line_len = nl ? (size_t)(nl - (buf + off)) : len - off;
        tether_epmd_name_t e;

        if (line_len > NAMES_LINE_MAX)
            return TETHER_EPROTO;
        if (parse_names_line(buf + off, line_len, &e)) {
            if (total < max_names)
                names[total] = e;
            total++;
        }
        off += line_len + (nl ? 1 : 0);
    }
    *count = total;
    return 0;
}
