%% @doc C functions called from stock OTP exactly like Erlang functions
%% (issue 4, items 1 and 6).
%%
%% Every case starts a C-node with the test plugin rpctest.so (and
%% kv.so) and a BEAM peer running the Erlang twin test/rpctest.erl, makes
%% the same rpc, erpc or rex call on each with tether_cnode_rpc_lib:both/2 and
%% asserts the two answers are the same and are what OTP documents.
%% Stack traces are compared by class, reason and first frame.
%%
%% rpctest (both sides): echo(X) -> X; add(A, B) for integers, else error
%% badarith; throw(X); error(X); exit(X); sleep(Ms) -> ok; node() -> own
%% name; call_erlang(Node, M, F, A) -> {ok, R} | {error, Why};
%% send_name(Node, Name, Msg) -> ok.
%%
%% TETHER_RPC_TARGET=beam runs the suite BEAM against BEAM (a second peer
%% stands in for the C-node), which checks the suite itself.
-module(tether_cnode_rpc_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([echo_terms/1, add/1, add_bignums/1, add_badarith/1,
         throw/1, error/1, exit/1, undef_function/1, undef_arity/1,
         undef_module/1, arity_limits/1, sleep_returns/1, rpc_call_timeout/1,
         erpc_call_timeout/1, concurrent_calls/1,
         rpc_cast/1, erpc_cast/1, cast_kv_put/1, cast_error_is_silent/1,
         rpc_multicall/1, rpc_multicall_timeout/1, erpc_multicall/1,
         erpc_multicall_exceptions/1, erpc_multicall_timeout/1,
         send_request_receive_response/1, send_request_exceptions/1,
         receive_response_timeout/1,
         block_call/1, block_call_exceptions/1, rex_call_request/1,
         own_node_name/1, call_erlang_node/1, call_erlang_error/1,
         send_name_to_peer/1,
         first_contact_from_peer/1, caller_process_killed/1,
         caller_node_goes_away/1, calls_from_many_peers/1]).

-compile({no_auto_import, [throw/1, error/1, exit/1]}).

-define(RPC, tether_cnode_rpc_lib).
-define(LIB, tether_test_lib).
%% Generous: a shared 2-vCPU VM.
-define(T, 30000).
-define(WAIT, 10000).
%% A call that must time out sleeps this long, with this timeout.
-define(LONG_SLEEP, 4000).
-define(SHORT_TIMEOUT, 500).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [{group, call}, {group, cast}, {group, multicall}, {group, async},
     {group, rex}, {group, c_to_beam}, {group, robustness}].

groups() ->
    [{call, [], [echo_terms, add, add_bignums, add_badarith, throw, error, exit,
                 undef_function, undef_arity, undef_module, arity_limits, sleep_returns,
                 rpc_call_timeout, erpc_call_timeout, concurrent_calls]},
     {cast, [], [rpc_cast, erpc_cast, cast_kv_put, cast_error_is_silent]},
     {multicall, [], [rpc_multicall, rpc_multicall_timeout, erpc_multicall,
                      erpc_multicall_exceptions, erpc_multicall_timeout]},
     {async, [], [send_request_receive_response, send_request_exceptions,
                  receive_response_timeout]},
     {rex, [], [block_call, block_call_exceptions, rex_call_request]},
     {c_to_beam, [], [own_node_name, call_erlang_node, call_erlang_error,
                      send_name_to_peer]},
     {robustness, [], [first_contact_from_peer, caller_process_killed,
                       caller_node_goes_away, calls_from_many_peers]}].

init_per_suite(Config) ->
    ?RPC:check_env(Config, [?LIB:cnode_exe(), ?LIB:kv_plugin(), ?LIB:rpctest_plugin()]).

end_per_suite(_Config) ->
    ok.

init_per_testcase(Case, Config) ->
    ?RPC:init_targets(Case, cnode, Config).

end_per_testcase(_Case, Config) ->
    ?RPC:end_targets(Config).

%%--------------------------------------------------------------------
%% call: rpc:call/4,5 and erpc:call/4,5
%%--------------------------------------------------------------------

%% The four call functions, each as fun(Node, M, F, A).
callers() ->
    [{rpc_call_4, fun(N, M, F, A) -> rpc:call(N, M, F, A) end},
     {rpc_call_5, fun(N, M, F, A) -> rpc:call(N, M, F, A, ?T) end},
     {erpc_call_4, fun(N, M, F, A) -> erpc:call(N, M, F, A) end},
     {erpc_call_5, fun(N, M, F, A) -> erpc:call(N, M, F, A, ?T) end}].

%% Calls M:F(A) with each caller on both nodes; returns
%% [{CallerLabel, Outcome}] (the outcome both gave).
call_all(Config, M, F, A) ->
    [{Label, ?RPC:both(Config, fun(N) -> Call(N, M, F, A) end, {Label, M, F, A})}
     || {Label, Call} <- callers()].

%% rpctest:echo/1 returns every kind of term exactly, through all four
%% call functions. All mismatches are reported together.
echo_terms(Config) ->
    Bad = [{Label, Caller, Report}
           || {Label, Term} <- ?RPC:echo_terms(),
              {Caller, Call} <- callers(),
              Report <- echo_mismatch(Config, Call, Term)],
    case Bad of
        [] -> ok;
        _ -> ct:fail({echo_mismatches, ?RPC:brief(Bad)})
    end.

echo_mismatch(Config, Call, Term) ->
    case ?RPC:compare(Config, fun(N) -> Call(N, rpctest, echo, [Term]) end, echo) of
        {same, {value, Got}} ->
            case ?RPC:exact(Got, Term) of
                true -> [];
                false -> [{both_wrong, Got}]
            end;
        {same, Other} ->
            [{both_wrong, Other}];
        {differ, Report} ->
            [Report]
    end.

add(Config) ->
    Expect = [{L, {value, 5}} || {L, _} <- callers()],
    ?assertEqual(Expect, call_all(Config, rpctest, add, [2, 3])),
    ?assertEqual([{L, {value, -7}} || {L, _} <- callers()],
                 call_all(Config, rpctest, add, [-10, 3])).

%% Integers outside 64 bits add like on the BEAM.
add_bignums(Config) ->
    Cases = [{1 bsl 64, 1}, {(1 bsl 63) - 1, 1}, {-(1 bsl 63), -1},
             {1 bsl 200, -(1 bsl 200)}, {-(1 bsl 100), 3}],
    [?assertEqual([{L, {value, A + B}} || {L, _} <- callers()],
                  call_all(Config, rpctest, add, [A, B]))
     || {A, B} <- Cases].

%% add(1, a): error badarith; rpc gives {badrpc, {'EXIT', {badarith,
%% Stack}}}, erpc raises error {exception, badarith, Stack}; the first
%% frame is rpctest:add/2.
add_badarith(Config) ->
    [{rpc_call_4, R4}, {rpc_call_5, R5}, {erpc_call_4, E4}, {erpc_call_5, E5}] =
        call_all(Config, rpctest, add, [1, a]),
    Top = {'$top_frame', {rpctest, add, 2}},
    ?assertEqual({value, {badrpc, {'EXIT', {badarith, Top}}}}, R4),
    ?assertEqual(R4, R5),
    ?assertEqual({error, {exception, badarith, Top}}, E4),
    ?assertEqual(E4, E5),
    %% Floats are not integers: badarith too.
    ?assertEqual({error, {exception, badarith, Top}},
                 ?RPC:both(Config, fun(N) -> erpc:call(N, rpctest, add, [1.0, 2], ?T) end)).

%% throw(X): rpc returns X; erpc throws X.
throw(Config) ->
    X = {thrown, [1, 2.5, <<"t">>], #{k => 'ü'}},
    ?assertEqual([{rpc_call_4, {value, X}}, {rpc_call_5, {value, X}},
                  {erpc_call_4, {throw, X}}, {erpc_call_5, {throw, X}}],
                 call_all(Config, rpctest, throw, [X])),
    %% A thrown {'EXIT', _} is a badrpc for rpc.
    Y = {'EXIT', fake},
    ?assertEqual([{rpc_call_4, {value, {badrpc, Y}}}, {rpc_call_5, {value, {badrpc, Y}}},
                  {erpc_call_4, {throw, Y}}, {erpc_call_5, {throw, Y}}],
                 call_all(Config, rpctest, throw, [Y])).

%% error(X): rpc gives {badrpc, {'EXIT', {X, Stack}}}; erpc raises error
%% {exception, X, Stack}; the first frame is rpctest:error/1.
error(Config) ->
    X = {some_error, <<"why">>, 42},
    Top = {'$top_frame', {rpctest, error, 1}},
    ?assertEqual([{rpc_call_4, {value, {badrpc, {'EXIT', {X, Top}}}}},
                  {rpc_call_5, {value, {badrpc, {'EXIT', {X, Top}}}}},
                  {erpc_call_4, {error, {exception, X, Top}}},
                  {erpc_call_5, {error, {exception, X, Top}}}],
                 call_all(Config, rpctest, error, [X])).

%% exit(X): rpc gives {badrpc, {'EXIT', X}}; erpc exits {exception, X}.
exit(Config) ->
    X = {gone, 'ünïcödé'},
    ?assertEqual([{rpc_call_4, {value, {badrpc, {'EXIT', X}}}},
                  {rpc_call_5, {value, {badrpc, {'EXIT', X}}}},
                  {erpc_call_4, {exit, {exception, X}}},
                  {erpc_call_5, {exit, {exception, X}}}],
                 call_all(Config, rpctest, exit, [X])),
    %% exit(normal) is an exception like any other.
    ?assertEqual([{rpc_call_4, {value, {badrpc, {'EXIT', normal}}}},
                  {rpc_call_5, {value, {badrpc, {'EXIT', normal}}}},
                  {erpc_call_4, {exit, {exception, normal}}},
                  {erpc_call_5, {exit, {exception, normal}}}],
                 call_all(Config, rpctest, exit, [normal])).

undef_expect(M, F, A) ->
    Top = {'$top_frame', {M, F, A}},
    [{rpc_call_4, {value, {badrpc, {'EXIT', {undef, Top}}}}},
     {rpc_call_5, {value, {badrpc, {'EXIT', {undef, Top}}}}},
     {erpc_call_4, {error, {exception, undef, Top}}},
     {erpc_call_5, {error, {exception, undef, Top}}}].

%% An unknown function is undef with the call as first frame.
undef_function(Config) ->
    ?assertEqual(undef_expect(rpctest, nosuch, [1, x]),
                 call_all(Config, rpctest, nosuch, [1, x])).

%% A known function with another arity is undef too.
undef_arity(Config) ->
    ?assertEqual(undef_expect(rpctest, echo, [1, 2]),
                 call_all(Config, rpctest, echo, [1, 2])),
    ?assertEqual(undef_expect(rpctest, echo, []),
                 call_all(Config, rpctest, echo, [])).

%% An unknown module is undef.
undef_module(Config) ->
    ?assertEqual(undef_expect(tether_no_such_module, f, [a]),
                 call_all(Config, tether_no_such_module, f, [a])).

%% 255 arguments (the most a function can take) and 256: undef with the
%% arguments, as on the BEAM (OTP 25 apply/3 says undef for 256 too).
arity_limits(Config) ->
    [?assertEqual(undef_expect(rpctest, echo, Args), call_all(Config, rpctest, echo, Args))
     || Args <- [lists:seq(1, 255), lists:seq(1, 256)]],
    ?assertEqual({value, ok},
                 ?RPC:both(Config, fun(N) -> erpc:call(N, rpctest, echo, [ok], ?T) end)).

%% sleep/1 runs on a worker thread and returns ok when it is done.
sleep_returns(Config) ->
    ?assertEqual([{L, {value, ok}} || {L, _} <- callers()],
                 call_all(Config, rpctest, sleep, [200])).

%% rpc:call/5 past its timeout: {badrpc, timeout}; no stray message
%% arrives afterwards and the node keeps answering.
rpc_call_timeout(Config) ->
    ?assertEqual({value, {badrpc, timeout}},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, sleep, [?LONG_SLEEP],
                                                    ?SHORT_TIMEOUT)
                                   end)),
    after_timeout(Config).

%% erpc:call/5 past its timeout: error {erpc, timeout}.
erpc_call_timeout(Config) ->
    ?assertEqual({error, {erpc, timeout}},
                 ?RPC:both(Config, fun(N) ->
                                           erpc:call(N, rpctest, sleep, [?LONG_SLEEP],
                                                     ?SHORT_TIMEOUT)
                                   end)),
    after_timeout(Config).

%% Both sleeps have finished by now; nothing came back for the abandoned
%% calls, and both nodes still answer.
after_timeout(Config) ->
    timer:sleep(?LONG_SLEEP),
    ?assertEqual({value, back}, ?RPC:both(Config, fun(N) -> erpc:call(N, rpctest, echo, [back], ?T) end)),
    ?assertEqual([], ?LIB:flush()).

%% 50 callers at once, each with its own term: each gets its own answer.
concurrent_calls(Config) ->
    Fun = fun(N) ->
                  Parent = self(),
                  Ws = [spawn_monitor(fun() ->
                                              Parent ! {self(), I, rpc:call(N, rpctest, echo,
                                                                            [{I, N}], ?T)}
                                      end) || I <- lists:seq(1, 50)],
                  [receive
                       {W, I, R} -> erlang:demonitor(M, [flush]), {I, R};
                       {'DOWN', M, process, W, Why} -> {crashed, Why}
                   end || {{W, M}, I} <- lists:zip(Ws, lists:seq(1, 50))]
          end,
    ?assertEqual({value, [{I, {I, '$node'}} || I <- lists:seq(1, 50)]},
                 ?RPC:both(Config, Fun)).

%%--------------------------------------------------------------------
%% cast: rpc:cast/4 and erpc:cast/4
%%--------------------------------------------------------------------

%% rpc:cast/4 returns true; send_name/3 on the node sends the message
%% back to a process registered here.
rpc_cast(Config) ->
    cast_send_name(Config, fun(N, M, F, A) -> rpc:cast(N, M, F, A) end, true).

%% erpc:cast/4 returns ok; the same effect.
erpc_cast(Config) ->
    cast_send_name(Config, fun(N, M, F, A) -> erpc:cast(N, M, F, A) end, ok).

cast_send_name(Config, Cast, Returns) ->
    Name = list_to_atom(?LIB:unique_name(rpc_cast_sink)),
    Sink = ?RPC:start_registered_collector(Name),
    try
        ?assertEqual({value, Returns},
                     ?RPC:both(Config, fun(N) ->
                                               Cast(N, rpctest, send_name,
                                                    [node(), Name, {cast_from, N}])
                                       end)),
        Expect = [{cast_from, ?config(target, Config)}, {cast_from, ?config(twin, Config)}],
        ?assertEqual(ok, ?RPC:wait_for(Sink, Expect, ?WAIT)),
        ?assertEqual(lists:sort(Expect), lists:sort(?LIB:collected(Sink)))
    after
        exit(Sink, kill)
    end.

%% A cast kv:put/2 is seen by a later kv:get/1.
cast_kv_put(Config) ->
    Value = #{cast => [1.5, <<"v">>, 1 bsl 80]},
    Fun = fun(N) ->
                  ok = erpc:cast(N, kv, put, [cast_key, Value]),
                  true = rpc:cast(N, kv, put, [{rpc, cast_key}, Value]),
                  Seen = fun() ->
                                 {rpc:call(N, kv, get, [cast_key], ?T),
                                  rpc:call(N, kv, get, [{rpc, cast_key}], ?T)}
                                     =:= {{ok, Value}, {ok, Value}}
                         end,
                  ?LIB:wait_until(Seen, ?WAIT)
          end,
    ?assertEqual({value, ok}, ?RPC:both(Config, Fun)).

%% A cast that raises does not reach the caller, and the node goes on.
cast_error_is_silent(Config) ->
    Fun = fun(N) ->
                  R = {erpc:cast(N, rpctest, error, [boom]),
                       rpc:cast(N, rpctest, throw, [boom]),
                       erpc:cast(N, rpctest, nosuch, []),
                       erpc:cast(N, no_such_module_here, f, [])},
                  {R, erpc:call(N, rpctest, echo, [after_casts], ?T)}
          end,
    ?assertEqual({value, {{ok, true, ok, ok}, after_casts}}, ?RPC:both(Config, Fun)),
    timer:sleep(500),
    ?assertEqual([], ?LIB:flush()).

%%--------------------------------------------------------------------
%% multicall: rpc:multicall/4,5 and erpc:multicall/4,5 over the C-node,
%% the BEAM peer and a node that does not exist
%%--------------------------------------------------------------------

down_node() ->
    list_to_atom(?LIB:unique_name(tether_down) ++ "@127.0.0.1").

nodes3(Config) ->
    [?config(target, Config), ?config(twin, Config), down_node()].

rpc_multicall(Config) ->
    [C, B, D] = Ns = nodes3(Config),
    T = {many, [1.5, <<"b">>, #{a => 'ü'}], 1 bsl 90, self()},
    ?assertEqual({[T, T], [D]}, rpc:multicall(Ns, rpctest, echo, [T])),
    ?assertEqual({[T, T], [D]}, rpc:multicall(Ns, rpctest, echo, [T], ?T)),
    ?assertEqual({[7, 7], [D]}, rpc:multicall(Ns, rpctest, add, [3, 4], ?T)),
    %% Each node's own name, in node order.
    ?assertEqual({[C, B], [D]}, rpc:multicall(Ns, rpctest, node, [])),
    %% Exceptions become the same values as from rpc:call.
    {[EC, EB], [D]} = rpc:multicall(Ns, rpctest, error, [oops]),
    ?assertEqual({badrpc, {'EXIT', {oops, {'$top_frame', {rpctest, error, 1}}}}},
                 ?RPC:shape(EC)),
    ?assertEqual(?RPC:shape(EB), ?RPC:shape(EC)),
    ?assertEqual({[{badrpc, {'EXIT', gone}}, {badrpc, {'EXIT', gone}}], [D]},
                 rpc:multicall(Ns, rpctest, exit, [gone])),
    ?assertEqual({[thrown, thrown], [D]}, rpc:multicall(Ns, rpctest, throw, [thrown])),
    {[UC, UB], [D]} = rpc:multicall(Ns, rpctest, nosuch, []),
    ?assertEqual({badrpc, {'EXIT', {undef, {'$top_frame', {rpctest, nosuch, []}}}}},
                 ?RPC:shape(UC)),
    ?assertEqual(?RPC:shape(UB), ?RPC:shape(UC)).

%% rpc:multicall/5 past its timeout: the slow nodes are bad nodes.
rpc_multicall_timeout(Config) ->
    [C, B, D] = Ns = nodes3(Config),
    {[], Bad} = rpc:multicall(Ns, rpctest, sleep, [?LONG_SLEEP], ?SHORT_TIMEOUT),
    ?assertEqual(lists:sort([C, B, D]), lists:sort(Bad)),
    timer:sleep(?LONG_SLEEP),
    ?assertEqual({[ok, ok], [D]}, rpc:multicall(Ns, rpctest, sleep, [10], ?T)),
    ?assertEqual([], ?LIB:flush()).

erpc_multicall(Config) ->
    [C, B, _D] = Ns = nodes3(Config),
    T = {many, [1.5, <<"b">>, #{a => 'ü'}], self(), make_ref()},
    ?assertEqual([{ok, T}, {ok, T}, {error, {erpc, noconnection}}],
                 erpc:multicall(Ns, rpctest, echo, [T])),
    ?assertEqual([{ok, T}, {ok, T}, {error, {erpc, noconnection}}],
                 erpc:multicall(Ns, rpctest, echo, [T], ?T)),
    ?assertEqual([{ok, C}, {ok, B}, {error, {erpc, noconnection}}],
                 erpc:multicall(Ns, rpctest, node, [], ?T)).

%% Exceptions in erpc:multicall results: {throw, X}, {exit, {exception,
%% X}}, {error, {exception, X, Stack}}.
erpc_multicall_exceptions(Config) ->
    Ns = lists:sublist(nodes3(Config), 2),
    ?assertEqual([{throw, t}, {throw, t}], erpc:multicall(Ns, rpctest, throw, [t])),
    ?assertEqual([{exit, {exception, e}}, {exit, {exception, e}}],
                 erpc:multicall(Ns, rpctest, exit, [e], ?T)),
    Top = {'$top_frame', {rpctest, error, 1}},
    ?assertEqual([{error, {exception, r, Top}}, {error, {exception, r, Top}}],
                 ?RPC:shape(erpc:multicall(Ns, rpctest, error, [r]))),
    Undef = {'$top_frame', {rpctest, echo, [a, b]}},
    ?assertEqual([{error, {exception, undef, Undef}}, {error, {exception, undef, Undef}}],
                 ?RPC:shape(erpc:multicall(Ns, rpctest, echo, [a, b], ?T))),
    [{error, {exception, badarith, TC}}, {error, {exception, badarith, TB}}] =
        ?RPC:shape(erpc:multicall(Ns, rpctest, add, [1, a], ?T)),
    ?assertEqual(TB, TC).

%% erpc:multicall/5 past its timeout: {error, {erpc, timeout}} per slow
%% node, noconnection for the down one.
erpc_multicall_timeout(Config) ->
    Ns = nodes3(Config),
    ?assertEqual([{error, {erpc, timeout}}, {error, {erpc, timeout}},
                  {error, {erpc, noconnection}}],
                 erpc:multicall(Ns, rpctest, sleep, [?LONG_SLEEP], ?SHORT_TIMEOUT)),
    timer:sleep(?LONG_SLEEP),
    ?assertEqual([], ?LIB:flush()).

%%--------------------------------------------------------------------
%% async: erpc:send_request/4 and erpc:receive_response/2
%%--------------------------------------------------------------------

send_request_receive_response(Config) ->
    T = {req, 'ü', [1 bsl 70, 2.5], #{<<"k">> => self()}},
    ?assertEqual({value, T},
                 ?RPC:both(Config, fun(N) ->
                                           Req = erpc:send_request(N, rpctest, echo, [T]),
                                           erpc:receive_response(Req, ?T)
                                   end)),
    %% Several outstanding requests, answered in any order, each to its
    %% own request id.
    Many = fun(N) ->
                   Reqs = [{I, erpc:send_request(N, rpctest, add, [I, 1])}
                           || I <- lists:seq(1, 20)],
                   [{I, erpc:receive_response(R, ?T)} || {I, R} <- lists:reverse(Reqs)]
           end,
    ?assertEqual({value, [{I, I + 1} || I <- lists:seq(20, 1, -1)]},
                 ?RPC:both(Config, Many)).

send_request_exceptions(Config) ->
    Recv = fun(F, A) ->
                   fun(N) -> erpc:receive_response(erpc:send_request(N, rpctest, F, A), ?T) end
           end,
    ?assertEqual({throw, t}, ?RPC:both(Config, Recv(throw, [t]))),
    ?assertEqual({exit, {exception, x}}, ?RPC:both(Config, Recv(exit, [x]))),
    ?assertEqual({error, {exception, e, {'$top_frame', {rpctest, error, 1}}}},
                 ?RPC:both(Config, Recv(error, [e]))),
    ?assertEqual({error, {exception, undef, {'$top_frame', {rpctest, nosuch, [1]}}}},
                 ?RPC:both(Config, Recv(nosuch, [1]))).

%% receive_response/2 past its timeout: error {erpc, timeout}.
receive_response_timeout(Config) ->
    ?assertEqual({error, {erpc, timeout}},
                 ?RPC:both(Config, fun(N) ->
                                           Req = erpc:send_request(N, rpctest, sleep,
                                                                   [?LONG_SLEEP]),
                                           erpc:receive_response(Req, ?SHORT_TIMEOUT)
                                   end)),
    after_timeout(Config).

%%--------------------------------------------------------------------
%% rex: rpc:block_call/4 and the {call, M, F, A, GroupLeader} request
%%--------------------------------------------------------------------

block_call(Config) ->
    T = {blocked, [1.5, <<"b">>], #{k => 'ü'}, 1 bsl 100},
    ?assertEqual({value, T},
                 ?RPC:both(Config, fun(N) -> rpc:block_call(N, rpctest, echo, [T]) end)),
    ?assertEqual({value, 9},
                 ?RPC:both(Config, fun(N) -> rpc:block_call(N, rpctest, add, [4, 5], ?T) end)).

%% Same values as rpc:call for exceptions.
block_call_exceptions(Config) ->
    Call = fun(F, A) -> fun(N) -> rpc:block_call(N, rpctest, F, A) end end,
    ?assertEqual({value, t}, ?RPC:both(Config, Call(throw, [t]))),
    ?assertEqual({value, {badrpc, {'EXIT', x}}}, ?RPC:both(Config, Call(exit, [x]))),
    ?assertEqual({value, {badrpc, {'EXIT', {e, {'$top_frame', {rpctest, error, 1}}}}}},
                 ?RPC:both(Config, Call(error, [e]))),
    ?assertEqual({value, {badrpc, {'EXIT', {undef, {'$top_frame', {rpctest, nosuch, []}}}}}},
                 ?RPC:both(Config, Call(nosuch, []))).

%% The older rex request, as OTP before 23 sent it for rpc:call/4:
%% gen_server:call({rex, Node}, {call, M, F, A, GroupLeader}).
rex_call_request(Config) ->
    Rex = fun(M, F, A) ->
                  fun(N) -> gen_server:call({rex, N}, {call, M, F, A, group_leader()}, ?T) end
          end,
    T = {old_style, self(), [1 bsl 70]},
    ?assertEqual({value, T}, ?RPC:both(Config, Rex(rpctest, echo, [T]))),
    ?assertEqual({value, t}, ?RPC:both(Config, Rex(rpctest, throw, [t]))),
    ?assertEqual({value, {badrpc, {'EXIT', x}}}, ?RPC:both(Config, Rex(rpctest, exit, [x]))),
    ?assertEqual({value, {badrpc, {'EXIT', {e, {'$top_frame', {rpctest, error, 1}}}}}},
                 ?RPC:both(Config, Rex(rpctest, error, [e]))),
    ?assertEqual({value, {badrpc, {'EXIT', {undef, {'$top_frame', {rpctest, nosuch, []}}}}}},
                 ?RPC:both(Config, Rex(rpctest, nosuch, []))).

%%--------------------------------------------------------------------
%% c_to_beam (item 6): the node calls and sends to BEAM nodes itself
%%--------------------------------------------------------------------

%% rpctest:node() is the node's own name.
own_node_name(Config) ->
    ?assertEqual({value, '$node'},
                 ?RPC:both(Config, fun(N) -> rpc:call(N, rpctest, node, []) end)),
    ?assertEqual(?config(target, Config),
                 rpc:call(?config(target, Config), rpctest, node, [])).

%% call_erlang(Other, erlang, node, []) from the node (spawn_request
%% outwards) returns {ok, Other}, for a BEAM node it has not met yet and
%% for this node.
call_erlang_node(Config) ->
    Other = other_peer(Config),
    ?assertEqual({value, {ok, Other}},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, call_erlang,
                                                    [Other, erlang, node, []], ?T)
                                   end)),
    Me = node(),
    ?assertEqual({value, {ok, Me}},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, call_erlang,
                                                    [Me, erlang, node, []], ?T)
                                   end)),
    %% Arguments and results of many kinds go out and come back.
    T = {[1.5, -0.0, 1 bsl 100], #{'ü' => <<"v">>}, make_ref(), self()},
    ?assertEqual({value, {ok, T}},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, call_erlang,
                                                    [Other, rpctest, echo, [T]], ?T)
                                   end)),
    ?assertEqual({value, {ok, [T, a]}},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, call_erlang,
                                                    [Other, lists, reverse, [[a, T]]], ?T)
                                   end)).

%% A failing remote call gives {error, Reason} with Reason as erpc:call
%% raises it: {exception, R, Stack} for an error, {exception, R} for an
%% exit, the value for a throw, {erpc, noconnection} for a node that does
%% not exist.
call_erlang_error(Config) ->
    Other = other_peer(Config),
    Down = down_node(),
    Call = fun(Args) ->
                   fun(N) -> rpc:call(N, rpctest, call_erlang, Args, ?T) end
           end,
    ?assertEqual({value, {error, {exception, boom, {'$top_frame', {rpctest, error, 1}}}}},
                 ?RPC:both(Config, Call([Other, rpctest, error, [boom]]))),
    ?assertEqual({value, {error, {exception, undef,
                                  {'$top_frame', {tether_no_such_module, f, []}}}}},
                 ?RPC:both(Config, Call([Other, tether_no_such_module, f, []]))),
    ?assertEqual({value, {error, {exception, gone}}},
                 ?RPC:both(Config, Call([Other, rpctest, exit, [gone]]))),
    ?assertEqual({value, {error, thrown}},
                 ?RPC:both(Config, Call([Other, rpctest, throw, [thrown]]))),
    ?assertEqual({value, {error, {erpc, noconnection}}},
                 ?RPC:both(Config, Call([Down, erlang, node, []]))).

%% send_name(Other, Name, Msg) from the node reaches the process
%% registered as Name on the BEAM peer Other.
send_name_to_peer(Config) ->
    OtherPeer = other_peer_handle(Config),
    Other = ?LIB:peer_node(OtherPeer),
    Name = list_to_atom(?LIB:unique_name(peer_sink)),
    Sink = ?LIB:peer_call(OtherPeer, ?LIB, start_collector, []),
    true = ?LIB:peer_call(OtherPeer, erlang, register, [Name, Sink]),
    Big = binary:copy(<<"x">>, 100000),
    ?assertEqual({value, ok},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, send_name,
                                                    [Other, Name, {sent_by, N, Big}], ?T)
                                   end)),
    Expect = [{sent_by, ?config(target, Config), Big}, {sent_by, ?config(twin, Config), Big}],
    ?assertEqual(ok, ?LIB:peer_call(OtherPeer, ?RPC, wait_for, [Sink, Expect, ?WAIT])),
    %% A name nobody holds: the message is dropped, the call still
    %% returns ok, as erlang:send/2 does.
    ?assertEqual({value, ok},
                 ?RPC:both(Config, fun(N) ->
                                           rpc:call(N, rpctest, send_name,
                                                    [Other, tether_nobody_here, x], ?T)
                                   end)).

other_peer(Config) ->
    ?LIB:peer_node(other_peer_handle(Config)).

%% A third node: a BEAM peer neither node has talked to (rpctest is on
%% its code path, as this directory is on every peer's).
other_peer_handle(Config) ->
    ?LIB:keep(?config(keeper, Config), {peer, ?LIB:start_peer(?LIB:unique_name(other))}).

%%--------------------------------------------------------------------
%% robustness
%%--------------------------------------------------------------------

%% The very first thing a fresh BEAM node does with the node is an
%% rpc:call (the connection is set up by it), or a gen_server:call.
first_contact_from_peer(Config) ->
    K = ?config(keeper, Config),
    T = {first, 'ü', 1 bsl 70},
    Fun = fun(N) ->
                  P1 = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(fresh))}),
                  P2 = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(fresh))}),
                  {?LIB:peer_call(P1, rpc, call, [N, rpctest, echo, [T]]),
                   ?LIB:peer_call(P2, gen_server, call, [{kv, N}, {put, first_key, T}, ?T]),
                   ?LIB:peer_call(P2, erpc, call, [N, kv, get, [first_key], ?T]),
                   lists:member(N, ?LIB:peer_call(P1, erlang, nodes, [connected]))}
          end,
    ?assertEqual({value, {T, ok, {ok, T}, true}}, ?RPC:both(Config, Fun)).

%% The caller of a slow call is killed before the answer: the answer goes
%% nowhere, and the node goes on (the C-node would fail the case in
%% end_per_testcase if it died).
caller_process_killed(Config) ->
    Fun = fun(N) ->
                  Self = self(),
                  Caller = spawn(fun() ->
                                         Req = erpc:send_request(N, rpctest, sleep, [1500]),
                                         seen = erpc:call(N, rpctest, echo, [seen], ?T),
                                         Self ! {sent, self()},
                                         erpc:receive_response(Req, ?T)
                                 end),
                  receive {sent, Caller} -> ok after ?T -> ct:fail(caller_did_not_start) end,
                  MRef = erlang:monitor(process, Caller),
                  exit(Caller, kill),
                  receive {'DOWN', MRef, process, Caller, killed} -> ok end,
                  timer:sleep(2000),
                  erpc:call(N, rpctest, echo, [still_here], ?T)
          end,
    ?assertEqual({value, still_here}, ?RPC:both(Config, Fun)),
    ?assertEqual([], ?LIB:flush()).

%% The calling node goes away while a call runs on a worker: the call
%% completes into a closed connection, and the node goes on serving.
caller_node_goes_away(Config) ->
    K = ?config(keeper, Config),
    Fun = fun(N) ->
                  P = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(leaver))}),
                  _ = ?LIB:peer_call(P, ?RPC, pending_call, [N, 1500]),
                  ok = ?LIB:stop_peer(P),
                  timer:sleep(2000),
                  {erpc:call(N, rpctest, echo, [still_here], ?T),
                   erpc:call(N, kv, keys, [], ?T)}
          end,
    ?assertEqual({value, {still_here, []}}, ?RPC:both(Config, Fun)).

%% Five BEAM nodes, each on its own connection, call the node at the
%% same time: erpc calls, gen_server calls into kv and casts, all
%% answered to the right caller.
calls_from_many_peers(Config) ->
    K = ?config(keeper, Config),
    Peers = [?LIB:keep(K, {peer, P}) || P <- ?LIB:start_peers("caller", 5)],
    Fun = fun(N) ->
                  Parent = self(),
                  Ws = [spawn_monitor(
                          fun() ->
                                  Me = ?LIB:peer_node(P),
                                  R = ?LIB:peer_call(P, erpc, multicall,
                                                     [[N], rpctest, echo, [{from, Me}], ?T]),
                                  Puts = [?LIB:peer_call(P, gen_server, call,
                                                         [{kv, N}, {put, {Me, I}, I}, ?T])
                                          || I <- lists:seq(1, 20)],
                                  Get = ?LIB:peer_call(P, erpc, call,
                                                       [N, kv, get, [{Me, 20}], ?T]),
                                  Parent ! {self(), {R =:= [{ok, {from, Me}}], Puts, Get}}
                          end) || P <- Peers],
                  Rs = [receive
                            {W, Res} -> erlang:demonitor(M, [flush]), Res;
                            {'DOWN', M, process, W, Why} -> {crashed, Why}
                        end || {W, M} <- Ws],
                  {Rs, length(erpc:call(N, kv, keys, [], ?T))}
          end,
    One = {true, [ok || _ <- lists:seq(1, 20)], {ok, 20}},
    ?assertEqual({value, {[One || _ <- Peers], 5 * 20}}, ?RPC:both(Config, Fun)).
