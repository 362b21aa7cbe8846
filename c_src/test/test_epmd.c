/* Criterion suite for dist/epmd.c: epmd requests and replies. */
#include <criterion/criterion.h>
#include <string.h>

#include "dist/epmd.h"

Test(epmd, alive2_request_is_byte_exact)
{
    uint8_t out[TETHER_EPMD_REQ_MAX];
    size_t n = 0;
    /* Length 18, tag, port, hidden, tcp, 6, 5, name length, name, no extra */
    static const uint8_t want[] = {0, 18, 120, 0x12, 0x34, 72,  0,   0,   6, 0,
                                   5, 0,  5,   'c',  'n',  'o', 'd', 'e', 0, 0};

    cr_assert_eq(tether__epmd_encode_alive2(out, sizeof(out), &n, 0x1234,
                                            TETHER_EPMD_NODE_HIDDEN, "cnode", 5,
                                            NULL, 0),
                 0);
    cr_assert_eq(n, sizeof(want));
    cr_assert_arr_eq(out, want, sizeof(want));
}

Test(epmd, alive2_request_carries_extra_and_normal_type)
{
    uint8_t out[64];
    size_t n = 0;
    const uint8_t extra[] = {1, 2, 3};

    cr_assert_eq(tether__epmd_encode_alive2(out, sizeof(out), &n, 4370,
                                            TETHER_EPMD_NODE_NORMAL, "a", 1,
                                            extra, 3),
                 0);
    cr_assert_eq(n, 2 + 13 + 1 + 3);
    cr_assert_eq(out[5], 77);
    cr_assert_eq(out[13], 'a');
    cr_assert_eq(out[14], 0);
    cr_assert_eq(out[15], 3);
    cr_assert_arr_eq(out + 16, extra, 3);
}

Test(epmd, alive2_request_rejects_bad_arguments)
{
    uint8_t out[TETHER_EPMD_REQ_MAX];
    char big[TETHER_EPMD_NAME_MAX + 2];
    size_t n;

    memset(big, 'x', sizeof(big));
    cr_assert_eq(
        tether__epmd_encode_alive2(out, sizeof(out), &n, 1, 77, "", 0, NULL, 0),
        TETHER_EINVAL);
    cr_assert_eq(tether__epmd_encode_alive2(out, sizeof(out), &n, 1, 77, big,
                                            sizeof(big), NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(tether__epmd_encode_alive2(out, sizeof(out), &n, 1, 99, "a", 1,
                                            NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether__epmd_encode_alive2(out, 10, &n, 1, 77, "abc", 3, NULL, 0),
        TETHER_ETOOBIG);
}

Test(epmd, alive2_x_resp_decodes_32_bit_creation)
{
    const uint8_t r[] = {118, 0, 0x87, 0x65, 0x43, 0x21, 0xff};
    tether_epmd_alive_t a;
    size_t used = 0;

    cr_assert_eq(tether__epmd_decode_alive2_resp(r, sizeof(r), &a, &used), 0);
    cr_assert_eq(used, 6);
    cr_assert_eq(a.result, 0);
    cr_assert_eq(a.creation, 0x87654321u);
    cr_assert_eq(a.extended, 1);
}

Test(epmd, alive2_resp_decodes_16_bit_creation_and_errors)
{
    const uint8_t ok[] = {121, 0, 0x00, 0x03};
    const uint8_t err[] = {121, 1, 0, 0};
    tether_epmd_alive_t a;
    size_t used = 0;

    cr_assert_eq(tether__epmd_decode_alive2_resp(ok, sizeof(ok), &a, &used), 0);
    cr_assert_eq(used, 4);
    cr_assert_eq(a.creation, 3);
    cr_assert_eq(a.extended, 0);
    cr_assert_eq(tether__epmd_decode_alive2_resp(err, sizeof(err), &a, &used),
                 0);
    cr_assert_eq(a.result, 1);
}

Test(epmd, alive2_resp_truncated_at_every_length_is_eagain)
{
    const uint8_t x[] = {118, 0, 0, 0, 0, 9};
    const uint8_t o[] = {121, 0, 0, 9};
    tether_epmd_alive_t a;
    size_t used;

    for (size_t i = 0; i < sizeof(x); i++)
        cr_assert_eq(tether__epmd_decode_alive2_resp(x, i, &a, &used),
                     TETHER_EAGAIN, "len %zu", i);
    for (size_t i = 0; i < sizeof(o); i++)
        cr_assert_eq(tether__epmd_decode_alive2_resp(o, i, &a, &used),
                     TETHER_EAGAIN, "len %zu", i);
}

Test(epmd, alive2_resp_garbage_is_eproto)
{
    tether_epmd_alive_t a;
    size_t used;

    for (int tag = 0; tag < 256; tag++) {
        uint8_t b[8] = {(uint8_t)tag};
        if (tag == 118 || tag == 121)
            continue;
        cr_assert_eq(tether__epmd_decode_alive2_resp(b, sizeof(b), &a, &used),
                     TETHER_EPROTO);
    }
}

Test(epmd, port_please2_request_is_byte_exact)
{
    uint8_t out[32];
    size_t n = 0;
    const uint8_t want[] = {0, 4, 122, 'f', 'o', 'o'};

    cr_assert_eq(
        tether__epmd_encode_port_please2(out, sizeof(out), &n, "foo", 3), 0);
    cr_assert_eq(n, sizeof(want));
    cr_assert_arr_eq(out, want, sizeof(want));
    cr_assert_eq(tether__epmd_encode_port_please2(out, 4, &n, "foo", 3),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether__epmd_encode_port_please2(out, 32, &n, "", 0),
                 TETHER_EINVAL);
}

static const uint8_t port2_ok[] = {119, 0,   0x9c, 0x40, 77,  0,   0,
                                   6,   0,   5,    0,    4,   'b', 'e',
                                   'a', 'm', 0,    2,    'x', 'y'};

Test(epmd, port2_resp_decodes_all_fields)
{
    tether_epmd_port_t p;
    size_t used = 0;

    cr_assert_eq(
        tether__epmd_decode_port2_resp(port2_ok, sizeof(port2_ok), &p, &used),
        0);
    cr_assert_eq(used, sizeof(port2_ok));
    cr_assert_eq(p.result, 0);
    cr_assert_eq(p.port, 40000);
    cr_assert_eq(p.node_type, 77);
    cr_assert_eq(p.protocol, 0);
    cr_assert_eq(p.highest_version, 6);
    cr_assert_eq(p.lowest_version, 5);
    cr_assert_str_eq(p.name, "beam");
    cr_assert_eq(p.name_len, 4);
    cr_assert_eq(p.extra_len, 2);
}

Test(epmd, port2_resp_not_found_is_two_bytes)
{
    const uint8_t r[] = {119, 1};
    tether_epmd_port_t p;
    size_t used = 0;

    cr_assert_eq(tether__epmd_decode_port2_resp(r, sizeof(r), &p, &used), 0);
    cr_assert_eq(used, 2);
    cr_assert_eq(p.result, 1);
    cr_assert_eq(p.port, 0);
}

Test(epmd, port2_resp_truncated_at_every_length_is_eagain)
{
    tether_epmd_port_t p;
    size_t used;

    for (size_t i = 0; i < sizeof(port2_ok); i++)
        cr_assert_eq(tether__epmd_decode_port2_resp(port2_ok, i, &p, &used),
                     TETHER_EAGAIN, "len %zu", i);
}

Test(epmd, port2_resp_rejects_oversized_and_empty_lengths)
{
    uint8_t r[sizeof(port2_ok)];
    tether_epmd_port_t p;
    size_t used;

    memcpy(r, port2_ok, sizeof(r));
    r[10] = 0xff; /* name length 0xff04 */
    cr_assert_eq(tether__epmd_decode_port2_resp(r, sizeof(r), &p, &used),
                 TETHER_EPROTO);
    memcpy(r, port2_ok, sizeof(r));
    r[10] = 0;
    r[11] = 0; /* empty name */
    cr_assert_eq(tether__epmd_decode_port2_resp(r, sizeof(r), &p, &used),
                 TETHER_EPROTO);
    memcpy(r, port2_ok, sizeof(r));
    r[16] = 0xff; /* extra length 0xff02 */
    cr_assert_eq(tether__epmd_decode_port2_resp(r, sizeof(r), &p, &used),
                 TETHER_EPROTO);
    r[0] = 42;
    cr_assert_eq(tether__epmd_decode_port2_resp(r, sizeof(r), &p, &used),
                 TETHER_EPROTO);
}

Test(epmd, names_request_is_byte_exact)
{
    uint8_t out[3];
    size_t n;
    const uint8_t want[] = {0, 1, 110};

    cr_assert_eq(tether__epmd_encode_names(out, sizeof(out), &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_arr_eq(out, want, 3);
    cr_assert_eq(tether__epmd_encode_names(out, 2, &n), TETHER_ETOOBIG);
}

Test(epmd, names_answer_is_parsed)
{
    const char text[] = "name foo at port 40001\n"
                        "garbage line\n"
                        "name a b at port 7\n"
                        "name bar at port 99999\n"
                        "name baz at port 123";
    uint8_t buf[4 + sizeof(text)];
    tether_epmd_name_t names[8];
    uint32_t port = 0;
    size_t count = 0;

    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0x11;
    buf[3] = 0x11;
    memcpy(buf + 4, text, sizeof(text) - 1);
    cr_assert_eq(tether__epmd_parse_names(buf, 4 + sizeof(text) - 1, &port,
                                          names, 8, &count),
                 0);
    cr_assert_eq(port, 4369);
    cr_assert_eq(count, 3);
    cr_assert_str_eq(names[0].name, "foo");
    cr_assert_eq(names[0].port, 40001);
    cr_assert_str_eq(names[1].name, "a b");
    cr_assert_eq(names[1].port, 7);
    cr_assert_str_eq(names[2].name, "baz");
    cr_assert_eq(names[2].port, 123);
    /* Counting goes on past the array. */
    cr_assert_eq(tether__epmd_parse_names(buf, 4 + sizeof(text) - 1, NULL,
                                          names, 1, &count),
                 0);
    cr_assert_eq(count, 3);
    cr_assert_eq(tether__epmd_parse_names(buf, 3, NULL, names, 1, &count),
                 TETHER_EAGAIN);
}

Test(epmd, names_answer_rejects_overlong_line)
{
    static uint8_t buf[4 + 5000];
    size_t count;

    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(
        tether__epmd_parse_names(buf, sizeof(buf), NULL, NULL, 0, &count),
        TETHER_EPROTO);
}
