%% EUnit tests of tether_datalog: framing, torn and corrupted records,
%% group commit, compaction, directory creation.
-module(tether_datalog_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

tmp_dir() ->
    Dir = filename:join(["/tmp", "tether_datalog_tests",
                         integer_to_list(erlang:unique_integer([positive]))]),
    _ = file:del_dir_r(Dir),
    Dir.

all(Path) ->
    {ok, Recs, Info} = tether_datalog:load(Path, fun(R, A) -> [R | A] end, []),
    {lists:reverse(Recs), Info}.

append_then_load_test() ->
    Path = filename:join([tmp_dir(), "a", "b", "x.log"]),
    {ok, L} = tether_datalog:open(Path, #{}),
    ok = tether_datalog:append(L, <<"one">>),
    ok = tether_datalog:append(L, [<<"tw">>, "o"]),
    ok = tether_datalog:append(L, <<>>),
    ok = tether_datalog:close(L),
    ?assertMatch({[<<"one">>, <<"two">>, <<>>],
                  #{records := 3, corrupt := 0, torn_at := none}}, all(Path)),
    %% The directories it made are private to the user.
    {ok, #file_info{mode = Mode}} = file:read_file_info(filename:dirname(Path)),
    ?assertEqual(8#700, Mode band 8#777).

absent_file_is_empty_test() ->
    ?assertMatch({[], #{records := 0, torn_at := none}},
                 all(filename:join(tmp_dir(), "none.log"))).

torn_tail_is_skipped_test() ->
    Dir = tmp_dir(),
    ok = tether_datalog:ensure_dir(Dir),
    Path = filename:join(Dir, "t.log"),
    Good = iolist_to_binary([tether_datalog:frame(<<"a">>),
                             tether_datalog:frame(<<"bb">>)]),
    Torn = iolist_to_binary(tether_datalog:frame(<<"ccccccc">>)),
    %% Every cut of the last record (a header cut short, a body cut short).
    [begin
         ok = file:write_file(Path, [Good, binary:part(Torn, 0, N)]),
         ?assertEqual({[<<"a">>, <<"bb">>],
                       #{records => 2, corrupt => 0,
                         torn_at => byte_size(Good)}}, all(Path))
     end || N <- lists:seq(1, byte_size(Torn) - 1)].

corrupted_record_is_skipped_test() ->
    Dir = tmp_dir(),
    ok = tether_datalog:ensure_dir(Dir),
    Path = filename:join(Dir, "c.log"),
    [A, B, C] = [iolist_to_binary(tether_datalog:frame(R))
                 || R <- [<<"first">>, <<"second">>, <<"third">>]],
    <<H:8/binary, X, Rest/binary>> = B,
    Bad = <<H/binary, (X bxor 16#ff), Rest/binary>>,
    ok = file:write_file(Path, [A, Bad, C]),
    %% The bad record is skipped; the ones after it are kept.
    ?assertEqual({[<<"first">>, <<"third">>],
                  #{records => 2, corrupt => 1, torn_at => none}}, all(Path)),
    %% A length no record has ends the read, counted as corrupt.
    ok = file:write_file(Path, [A, <<16#ffffffff:32, 0:32>>, C]),
    ?assertEqual({[<<"first">>],
                  #{records => 1, corrupt => 1, torn_at => byte_size(A)}},
                 all(Path)),
    {ok, Aside} = tether_datalog:keep_corrupt(Path),
    ?assertEqual(file:read_file(Path), file:read_file(Aside)).

concurrent_appends_share_syncs_test() ->
    Path = filename:join(tmp_dir(), "g.log"),
    {ok, L} = tether_datalog:open(Path, #{sync => true}),
    Self = self(),
    N = 200,
    Pids = [spawn_link(fun() ->
                               Self ! {self(), tether_datalog:append(
                                                 L, integer_to_binary(I))}
                       end) || I <- lists:seq(1, N)],
    [receive {P, R} -> ?assertEqual(ok, R) end || P <- Pids],
    #{records := N, groups := G} = tether_datalog:stats(L),
    ?assert(G < N),
    ok = tether_datalog:close(L),
    {Recs, #{records := N}} = all(Path),
    ?assertEqual(lists:seq(1, N), lists:sort([binary_to_integer(R) || R <- Recs])).

compact_keeps_later_appends_test() ->
    Path = filename:join(tmp_dir(), "k.log"),
    {ok, L} = tether_datalog:open(Path, #{sync => false}),
    [ok = tether_datalog:append(L, <<I>>) || I <- lists:seq(1, 10)],
    ok = tether_datalog:append_async(L, <<11>>),
    ok = tether_datalog:compact(L, fun() -> [<<"snapshot">>] end),
    ok = tether_datalog:append(L, <<"after">>),
    ok = tether_datalog:close(L),
    ?assertMatch({[<<"snapshot">>, <<"after">>], _}, all(Path)),
    ?assertEqual({error, enoent}, file:read_file_info(Path ++ ".tmp")).

closed_log_answers_an_error_test() ->
    {ok, L} = tether_datalog:open(filename:join(tmp_dir(), "z.log"), #{}),
    ok = tether_datalog:close(L),
    ?assertEqual({error, closed}, tether_datalog:append(L, <<"x">>)).

unwritable_dir_is_an_error_test() ->
    process_flag(trap_exit, true),
    Dir = tmp_dir(),
    ok = tether_datalog:ensure_dir(Dir),
    File = filename:join(Dir, "file"),
    ok = file:write_file(File, <<>>),
    %% A directory path through a plain file cannot be made.
    ?assertMatch({error, _},
                 tether_datalog:open(filename:join([File, "d", "x.log"]), #{})),
    ?assertMatch({error, {bad_option, _}},
                 tether_datalog:open(filename:join(Dir, "y.log"),
                                     #{sync => maybe})).

compact_fun_is_asked_test() ->
    Path = filename:join(tmp_dir(), "auto.log"),
    Self = self(),
    Fun = fun(N) -> Self ! {asked, N}, {ok, [<<"kept">>]} end,
    {ok, L} = tether_datalog:open(Path, #{sync => false, compact => Fun,
                                          compact_every => 5}),
    [ok = tether_datalog:append(L, <<I>>) || I <- lists:seq(1, 7)],
    ok = tether_datalog:close(L),
    ?assertEqual(5, receive {asked, N} -> N after 1000 -> none end),
    %% The 5 records were replaced by the one kept; 2 came after.
    ?assertMatch({[<<"kept">>, <<6>>, <<7>>], _}, all(Path)),
    ?assertMatch({error, {bad_option, _}},
                 tether_datalog:open(Path, #{compact => nope})).

load_into_feeds_and_keeps_a_damaged_log_test() ->
    Dir = tmp_dir(),
    ok = tether_datalog:ensure_dir(Dir),
    Path = filename:join(Dir, "i.log"),
    Bad = iolist_to_binary(tether_datalog:frame(<<"refused">>)),
    ok = file:write_file(Path, [tether_datalog:frame(<<"a">>), Bad,
                                tether_datalog:frame(<<"b">>), <<0, 0>>]),
    Self = self(),
    Feed = fun(<<"refused">>) -> {error, bad_record};
              (R) -> Self ! {fed, R}, ok
           end,
    ok = tether_datalog:load_into(Path, Feed, "test"),
    ?assertEqual([<<"a">>, <<"b">>], fed()),
    %% A refused record: the file was copied aside before any compaction.
    ?assertEqual(file:read_file(Path), file:read_file(Path ++ ".corrupt")).

fed() ->
    receive {fed, R} -> [R | fed()] after 0 -> [] end.
