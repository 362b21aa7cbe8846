#!/usr/bin/env escript
%%! -pa _build/default/lib/tether/ebin
%% scripts/ring_golden.escript OUT: writes the ring's golden vectors,
%% term_to_binary([{Term, ShardOf64, ShardOf1024}]), computed by this
%% release's NIF (tether_nif:ring_shard/2). Run once when the encoding is
%% defined; a later release that changes placement fails the tests that
%% read the file (c_src/test/test_ring.c, test/tether_ring_tests.erl).
main([Out]) ->
    Terms = terms(),
    Vectors = [{T, tether_nif:ring_shard(T, 64), tether_nif:ring_shard(T, 1024)}
               || T <- Terms],
    ok = file:write_file(Out, term_to_binary(Vectors)),
    io:format("~p vectors in ~s~n", [length(Vectors), Out]);
main(_) ->
    io:format("usage: ring_golden.escript OUT~n"),
    halt(2).

terms() ->
    Node = 'n@h',
    Pid = binary_to_term(<<131, 88, 100, 0, 3, "n@h", 0, 0, 0, 7, 0, 0, 0, 0,
                           0, 0, 0, 3>>),
    Ref = binary_to_term(<<131, 90, 0, 3, 100, 0, 3, "n@h", 0, 0, 0, 3,
                           0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3>>),
    Port = binary_to_term(<<131, 89, 100, 0, 3, "n@h", 0, 0, 0, 5,
                            0, 0, 0, 3>>),
    [abc, '', 'été', list_to_atom([1024, 1025, 98]), Node,
     list_to_atom(lists:duplicate(255, $x)),
     0, 1, 255, 256, -1, 2147483647, -2147483648, 2147483648,
     -2147483649, 1 bsl 64, -(1 bsl 100), 10000000000000000000000000000000000000000,
     0.0, -1.5, 3.14159, 1.0e300,
     <<>>, <<"key">>, <<"0123456789abcdef">>, binary:copy(<<"ab">>, 500),
     <<1:3>>, <<255, 7:5>>,
     [], [1, 2, 3], "string", [a | b], lists:seq(1, 300), [[[[]]]],
     {}, {a, 1}, list_to_tuple(lists:seq(1, 300)),
     #{}, #{a => 1, b => 2}, #{b => 2, a => 1},
     maps:from_list([{I, I * I} || I <- lists:seq(1, 40)] ++
                        [{<<"k">>, v}, {k, [v]}, {{t}, #{}}]),
     Pid, Ref, Port, fun lists:map/2,
     {user, 42, <<"session">>}, [{a, 1}, {b, <<2>>}],
     {nested, #{list => [1, {2, <<3>>}], map => #{x => y}}}].
