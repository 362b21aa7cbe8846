%% @doc The C-node against hostile bytes on its distribution port.
%%
%% Raw gen_tcp clients connect to the port epmd gives for the C-node and
%% send garbage, truncated and oversized handshake messages, stall half
%% way, and (after a real handshake written here: send_name 'N',
%% challenge, MD5 digest of cookie ++ challenge, challenge_ack) send bad
%% post-handshake frames. After each, the C-node must still be running and
%% still serve a normal node (this one: ping, echo) and a fresh raw client.
-module(tether_cnode_badinput_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_testcase/2,
         end_per_testcase/2]).
-export([raw_handshake_and_echo/1, garbage/1, zero_length_packet/1,
         oversized_handshake_length/1, truncated_send_name/1,
         send_name_bad_name_length/1, send_name_bad_names/1,
         half_handshake/1, many_half_handshakes/1, stalled_handshakes_dropped/1,
         wrong_digest/1,
         truncated_challenge_reply/1, frame_2gib_length/1,
         malformed_control/1, unknown_control/1, truncated_term/1,
         unknown_frame_type/1, deeply_nested_term/1, garbage_frames/1]).

-define(LIB, tether_test_lib).
-define(WAIT, 10000).
-define(HOST, "127.0.0.1").

%% Distribution flags (kernel/include/dist.hrl).
-define(DFLAG_EXTENDED_REFERENCES, 16#04).
-define(DFLAG_DIST_MONITOR, 16#08).
-define(DFLAG_FUN_TAGS, 16#10).
-define(DFLAG_NEW_FUN_TAGS, 16#80).
-define(DFLAG_EXTENDED_PIDS_PORTS, 16#100).
-define(DFLAG_EXPORT_PTR_TAG, 16#200).
-define(DFLAG_BIT_BINARIES, 16#400).
-define(DFLAG_NEW_FLOATS, 16#800).
-define(DFLAG_UTF8_ATOMS, 16#10000).
-define(DFLAG_MAP_TAG, 16#20000).
-define(DFLAG_BIG_CREATION, 16#40000).
-define(DFLAG_HANDSHAKE_23, 16#01000000).
-define(DFLAG_UNLINK_ID, 16#02000000).
-define(DFLAG_MANDATORY_25_DIGEST, 16#04000000).
-define(DFLAG_V4_NC, (16#04 bsl 32)).
%% What a hidden OTP 25 node without atom cache or fragments offers.
-define(RAW_FLAGS, (?DFLAG_EXTENDED_REFERENCES bor ?DFLAG_DIST_MONITOR bor
                    ?DFLAG_FUN_TAGS bor ?DFLAG_NEW_FUN_TAGS bor
                    ?DFLAG_EXTENDED_PIDS_PORTS bor ?DFLAG_EXPORT_PTR_TAG bor
                    ?DFLAG_BIT_BINARIES bor ?DFLAG_NEW_FLOATS bor
                    ?DFLAG_UTF8_ATOMS bor ?DFLAG_MAP_TAG bor
                    ?DFLAG_BIG_CREATION bor ?DFLAG_HANDSHAKE_23 bor
                    ?DFLAG_UNLINK_ID bor ?DFLAG_MANDATORY_25_DIGEST bor
                    ?DFLAG_V4_NC)).
%% Control message tags.
-define(DOP_SEND, 2).
-define(DOP_REG_SEND, 6).
-define(DOP_SEND_SENDER, 22).

suite() ->
    [{timetrap, {minutes, 2}}, {ct_hooks, [tether_case_hook]}].

all() ->
    [raw_handshake_and_echo, {group, handshake_stage}, {group, after_handshake}].

groups() ->
    [{handshake_stage, [], [garbage, zero_length_packet, oversized_handshake_length,
                            truncated_send_name, send_name_bad_name_length,
                            send_name_bad_names, half_handshake,
                            many_half_handshakes, stalled_handshakes_dropped,
                            wrong_digest,
                            truncated_challenge_reply]},
     {after_handshake, [], [frame_2gib_length, malformed_control, unknown_control,
                            truncated_term, unknown_frame_type,
                            deeply_nested_term, garbage_frames]}].

init_per_testcase(Case, Config) ->
    Config1 = ?LIB:init_kept_cnode(Case, Config, #{}),
    C = ?config(cnode, Config1),
    {port, Port, _Version} = erl_epmd:port_please(maps:get(name, C), ?HOST),
    [{port, Port} | Config1].

end_per_testcase(_Case, Config) ->
    ?LIB:end_kept_cnode(Config, false).

%%--------------------------------------------------------------------
%% The fixture itself
%%--------------------------------------------------------------------

%% The raw client completes a handshake and gets an echo back over it
%% (the fixture the post-handshake cases rely on).
raw_handshake_and_echo(Config) ->
    Raw = handshake(Config),
    ?assertEqual(ok, raw_echo(Raw, {raw, [1, 2, 3], <<"x">>})),
    ?assertEqual(ok, raw_echo(Raw, second)),
    gen_tcp:close(sock(Raw)),
    still_serving(Config).

%%--------------------------------------------------------------------
%% Handshake stage (2-byte length prefix)
%%--------------------------------------------------------------------

%% A complete handshake message of random bytes (not starting with a
%% known tag), then more random bytes.
garbage(Config) ->
    S = raw_connect(Config, raw),
    Len = 4000,
    ok = gen_tcp:send(S, [<<Len:16, $X>>, rand_bytes(Len - 1), rand_bytes(4096)]),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

zero_length_packet(Config) ->
    S = raw_connect(Config, raw),
    ok = gen_tcp:send(S, <<0:16>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

%% A 65535-byte handshake message announced, 10 bytes sent, then silence:
%% the node keeps serving others meanwhile; then the client closes.
oversized_handshake_length(Config) ->
    S = raw_connect(Config, raw),
    ok = gen_tcp:send(S, [<<65535:16, $N>>, rand_bytes(9)]),
    still_serving(Config),
    gen_tcp:close(S),
    still_serving(Config).

truncated_send_name(Config) ->
    S = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(S, <<$N, ?RAW_FLAGS:64, 1:16>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

%% The name length field says more than the message holds.
send_name_bad_name_length(Config) ->
    S = raw_connect(Config, {packet, 2}),
    Name = <<"liar@127.0.0.1">>,
    ok = gen_tcp:send(S, <<$N, ?RAW_FLAGS:64, 1:32, 60000:16, Name/binary>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

%% Names stock OTP refuses (dist_util:is_name_ok/2 and the 255-character
%% atom limit): empty, no '@', empty name part, empty host, 3000 bytes.
%% A name that is not UTF-8 (stock OTP takes it as Latin-1) may be taken
%% or refused, but must not hurt the node.
send_name_bad_names(Config) ->
    Refused = [<<>>, <<"nohost">>, <<"@127.0.0.1">>, <<"name@">>,
               <<(binary:copy(<<"a">>, 3000))/binary, "@127.0.0.1">>],
    lists:foreach(
      fun(Name) ->
              ?assertEqual({refused, Name}, {send_name_outcome(Config, Name), Name})
      end, Refused),
    Latin1 = <<255, 254, "@127.0.0.1">>,
    ct:log("non-UTF-8 name: ~p", [send_name_outcome(Config, Latin1)]),
    still_serving(Config).

send_name_outcome(Config, Name) ->
    S = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(S, send_name(Name)),
    %% A status other than ok, or a close, are both refusals.
    Res = case gen_tcp:recv(S, 0, ?WAIT) of
              {ok, <<$s, "ok">>} -> accepted;
              {ok, <<$s, _/binary>>} -> refused;
              {error, closed} -> refused;
              Other -> {unexpected, Other}
          end,
    gen_tcp:close(S),
    Res.

%% A valid send_name, then silence: the event loop is not blocked (this
%% node pings and echoes meanwhile), then the client closes.
half_handshake(Config) ->
    S = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(S, send_name(raw_name())),
    {ok, <<$s, "ok">>} = gen_tcp:recv(S, 0, ?WAIT),
    {ok, <<$N, _/binary>>} = gen_tcp:recv(S, 0, ?WAIT),
    still_serving(Config),
    gen_tcp:close(S),
    still_serving(Config).

%% 50 stalled connections at once (some before the name, some after):
%% others are still served.
many_half_handshakes(Config) ->
    Socks = [begin
                 S = raw_connect(Config, {packet, 2}),
                 case I rem 2 of
                     0 -> ok = gen_tcp:send(S, send_name(raw_name()));
                     1 -> ok
                 end,
                 S
             end || I <- lists:seq(1, 50)],
    still_serving(Config),
    lists:foreach(fun gen_tcp:close/1, Socks),
    still_serving(Config).

%% Connections stalled before or inside the handshake are dropped by the
%% node after a while (stock OTP: net_setuptime, 7 s), so they cannot pile
%% up. Generous: 60 s.
stalled_handshakes_dropped(Config) ->
    Silent = raw_connect(Config, {packet, 2}),
    Named = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(Named, send_name(raw_name())),
    {ok, <<$s, "ok">>} = gen_tcp:recv(Named, 0, ?WAIT),
    {ok, <<$N, _/binary>>} = gen_tcp:recv(Named, 0, ?WAIT),
    ?assertEqual(closed, wait_closed(Silent, 60000)),
    ?assertEqual(closed, wait_closed(Named, 60000)),
    failures_logged(Config, 2),
    still_serving(Config).

%% A challenge reply with a wrong digest: refused (closed, no ack).
wrong_digest(Config) ->
    S = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(S, send_name(raw_name())),
    {ok, <<$s, "ok">>} = gen_tcp:recv(S, 0, ?WAIT),
    {ok, <<$N, _:64, _Challenge:32, _/binary>>} = gen_tcp:recv(S, 0, ?WAIT),
    ok = gen_tcp:send(S, <<$r, 12345:32, (rand_bytes(16))/binary>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

%% A challenge reply cut short (digest of 5 bytes): refused.
truncated_challenge_reply(Config) ->
    S = raw_connect(Config, {packet, 2}),
    ok = gen_tcp:send(S, send_name(raw_name())),
    {ok, <<$s, "ok">>} = gen_tcp:recv(S, 0, ?WAIT),
    {ok, <<$N, _/binary>>} = gen_tcp:recv(S, 0, ?WAIT),
    ok = gen_tcp:send(S, <<$r, 12345:32, 1, 2, 3, 4, 5>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    failures_logged(Config, 1),
    still_serving(Config).

%%--------------------------------------------------------------------
%% After a real handshake (4-byte length prefix)
%%--------------------------------------------------------------------

%% A frame announcing 2 GiB: beyond any cap, the connection is dropped
%% (not waited on) and the node goes on.
frame_2gib_length(Config) ->
    Raw = handshake(Config),
    S = sock(Raw),
    ok = inet:setopts(S, [{packet, raw}]),
    ok = gen_tcp:send(S, [<<16#80000000:32, $p>>, rand_bytes(1000)]),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    still_serving(Config).

%% Control tuples of the wrong shape: dropped or connection closed, never
%% fatal; if the connection stays, it still works.
malformed_control(Config) ->
    Bad = [{?DOP_REG_SEND}, {?DOP_REG_SEND, not_a_pid, '', echo},
           {?DOP_SEND, ''}, {?DOP_REG_SEND, raw_pid(), '', <<"not an atom">>},
           {}, [?DOP_SEND, '', raw_pid()], not_a_tuple, {-1, a}],
    lists:foreach(
      fun(Ctrl) ->
              Raw = handshake(Config),
              ok = send_frame(Raw, [<<$p>>, term_to_binary(Ctrl), term_to_binary(x)]),
              survives_or_closes(Raw, Ctrl),
              still_serving(Config)
      end, Bad).

%% An unknown control message is ignored, and the same connection keeps
%% working (DESIGN: counted and ignored, never fatal).
unknown_control(Config) ->
    Raw = handshake(Config),
    ok = send_frame(Raw, [<<$p>>, term_to_binary({99, raw_pid(), some, <<"thing">>})]),
    ok = send_frame(Raw, [<<$p>>, term_to_binary({99, a}), term_to_binary(payload)]),
    ?assertEqual(ok, raw_echo(Raw, after_unknown_control)),
    still_serving(Config).

%% A REG_SEND whose message term is cut in the middle.
truncated_term(Config) ->
    Cases = [{ctrl, 0.5}, {msg, 0.5}, {msg, 0.1}, {msg, 0.99}],
    lists:foreach(
      fun({Where, Frac}) ->
              Raw = handshake(Config),
              Ctrl = term_to_binary({?DOP_REG_SEND, pid(Raw), '', echo}),
              Msg = term_to_binary({echo, pid(Raw), {lists:seq(1, 200), <<"bin">>, 1.5}}),
              Frame = case Where of
                          ctrl -> [<<$p>>, cut(Ctrl, Frac)];
                          msg -> [<<$p>>, Ctrl, cut(Msg, Frac)]
                      end,
              ok = send_frame(Raw, Frame),
              survives_or_closes(Raw, {Where, Frac}),
              still_serving(Config)
      end, Cases).

%% Frames whose first byte is no known frame type.
unknown_frame_type(Config) ->
    lists:foreach(
      fun(Type) ->
              Raw = handshake(Config),
              ok = send_frame(Raw, [<<Type>>, term_to_binary({?DOP_REG_SEND, pid(Raw), '', echo}),
                                    term_to_binary(x)]),
              survives_or_closes(Raw, Type),
              still_serving(Config)
      end, [$x, 0, 131, 255]).

%% A message nested a million tuples deep (2 MB): decoding must not blow
%% the C stack. Echoed back, dropped or connection closed: all fine as
%% long as the node lives.
deeply_nested_term(Config) ->
    Raw = handshake(Config),
    Depth = 1000000,
    Deep = [binary:copy(<<104, 1>>, Depth), <<106>>],
    %% {echo, OurPid, Deep}, written by hand so this VM never builds it.
    PidExt = binary:part(term_to_binary(pid(Raw)), 1, byte_size(term_to_binary(pid(Raw))) - 1),
    Msg = [<<131, 104, 3, 119, 4, "echo">>, PidExt, Deep],
    Ctrl = term_to_binary({?DOP_REG_SEND, pid(Raw), '', echo}),
    ok = send_frame(Raw, [<<$p>>, Ctrl, Msg]),
    _ = wait_closed(sock(Raw), 2000),
    still_serving(Config).

%% Random frames after the handshake.
garbage_frames(Config) ->
    Raw = handshake(Config),
    _ = [send_frame(Raw, rand_bytes(rand:uniform(2000))) || _ <- lists:seq(1, 50)],
    _ = wait_closed(sock(Raw), 2000),
    still_serving(Config).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

%% This node and a fresh raw client both get served.
still_serving(Config) ->
    CNode = ?config(cnode_node, Config),
    C = ?config(cnode, Config),
    ?assert(?LIB:os_pid_alive(?LIB:cnode_os_pid(C))),
    ?assertEqual(pong, net_adm:ping(CNode)),
    ?assertEqual(ok, ?LIB:echo(CNode, {still_serving, erlang:unique_integer()})),
    Raw = handshake(Config),
    ?assertEqual(ok, raw_echo(Raw, fresh_client)),
    gen_tcp:close(sock(Raw)).

%% The C-node logs one stderr line per failed handshake (checked before
%% still_serving/1, whose own handshakes succeed).
failures_logged(Config, N) ->
    C = ?config(cnode, Config),
    Failed = fun() ->
                     [L || L <- ?LIB:cnode_stderr(C),
                           re:run(L, "handshake.*fail", [caseless]) =/= nomatch]
             end,
    _ = ?LIB:wait_until(fun() -> length(Failed()) >= N end, ?WAIT),
    ?assertEqual(N, length(Failed())).

%% After a bad frame: either the connection is closed or it still echoes.
survives_or_closes(Raw, What) ->
    Res = case raw_echo(Raw, still_working) of
              ok -> still_works;
              {error, closed} -> closed;
              {error, timeout} -> ct:fail({neither_closed_nor_working, What});
              Other -> ct:fail({unexpected, What, Other})
          end,
    ct:log("~p: connection ~p", [What, Res]),
    gen_tcp:close(sock(Raw)).

raw_connect(Config, Packet) ->
    Opt = case Packet of raw -> {packet, raw}; P -> P end,
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                              [binary, Opt, {active, false}, {nodelay, true}], ?WAIT),
    S.

raw_name() ->
    list_to_binary(?LIB:unique_name(raw) ++ "@" ++ ?HOST).

send_name(Name) ->
    <<$N, ?RAW_FLAGS:64, 16#1234567:32, (byte_size(Name)):16, Name/binary>>.

%% Completes a handshake as a hidden node named raw_...@127.0.0.1; returns
%% the socket (now in 4-byte framing) and a pid on that fake node.
handshake(Config) ->
    Cookie = ?LIB:cookie(),
    S = raw_connect(Config, {packet, 2}),
    Name = raw_name(),
    Creation = 16#1234567,
    ok = gen_tcp:send(S, send_name(Name)),
    {ok, <<$s, "ok">>} = gen_tcp:recv(S, 0, ?WAIT),
    {ok, <<$N, _Flags:64, Challenge:32, _Creation:32, NL:16, _Peer:NL/binary>>} =
        gen_tcp:recv(S, 0, ?WAIT),
    Mine = rand:uniform(16#ffffffff),
    ok = gen_tcp:send(S, <<$r, Mine:32, (digest(Cookie, Challenge))/binary>>),
    Expected = digest(Cookie, Mine),
    {ok, <<$a, Expected:16/binary>>} = gen_tcp:recv(S, 0, ?WAIT),
    ok = inet:setopts(S, [{packet, 4}]),
    Pid = make_pid(Name, 1, Creation),
    #{sock => S, pid => Pid}.

digest(Cookie, Challenge) ->
    erlang:md5([Cookie, integer_to_list(Challenge)]).

%% A pid on the fake node (NEW_PID_EXT), made without connecting to it.
make_pid(NodeName, Id, Creation) ->
    binary_to_term(<<131, 88, 118, (byte_size(NodeName)):16, NodeName/binary,
                     Id:32, 0:32, Creation:32>>).

raw_pid() ->
    make_pid(<<"nobody@127.0.0.1">>, 7, 1).

sock(#{sock := S}) -> S.
pid(#{pid := P}) -> P.

send_frame(#{sock := S}, IoData) ->
    gen_tcp:send(S, IoData).

%% REG_SEND {echo, OurPid, Term} to the C-node's echo; waits for a SEND
%% (or SEND_SENDER) to our pid carrying Term.
raw_echo(#{pid := Pid} = Raw, Term) ->
    Ctrl = {?DOP_REG_SEND, Pid, '', echo},
    case send_frame(Raw, [<<$p>>, term_to_binary(Ctrl),
                          term_to_binary({echo, Pid, Term})]) of
        ok -> raw_wait_msg(Raw, Term, erlang:monotonic_time(millisecond) + ?WAIT);
        {error, Reason} -> {error, Reason}
    end.

raw_wait_msg(#{sock := S, pid := Pid} = Raw, Term, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:recv(S, 0, Left) of
        {ok, <<>>} ->
            %% A tick: answer it, as a node would.
            _ = gen_tcp:send(S, <<>>),
            raw_wait_msg(Raw, Term, Deadline);
        {ok, <<$p, Rest/binary>>} ->
            {Ctrl, Used} = binary_to_term(Rest, [used]),
            Msg = binary_to_term(binary:part(Rest, Used, byte_size(Rest) - Used)),
            case {Ctrl, Msg} of
                {{?DOP_SEND, _, Pid}, Term} -> ok;
                {{?DOP_SEND_SENDER, _, Pid}, Term} -> ok;
                _ ->
                    ct:log("raw client got ~p ~p", [Ctrl, Msg]),
                    raw_wait_msg(Raw, Term, Deadline)
            end;
        {ok, Other} ->
            ct:log("raw client got frame ~p", [Other]),
            raw_wait_msg(Raw, Term, Deadline);
        {error, Reason} ->
            {error, Reason}
    end.

%% closed if the peer closes within Timeout (data received meanwhile is
%% dropped), open otherwise.
wait_closed(S, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_closed1(S, Deadline).

wait_closed1(S, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:recv(S, 0, Left) of
        {ok, _} -> wait_closed1(S, Deadline);
        {error, timeout} -> gen_tcp:close(S), open;
        {error, _} -> gen_tcp:close(S), closed
    end.

cut(Bin, Frac) ->
    binary:part(Bin, 0, max(1, trunc(byte_size(Bin) * Frac))).

rand_bytes(N) ->
    crypto:strong_rand_bytes(N).
