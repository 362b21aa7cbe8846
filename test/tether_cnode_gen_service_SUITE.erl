%% @doc The kv example and C services from stock OTP (issue 4, items 2
%% and 5) and the plugin and name errors of tether_cnode (item 4).
%%
%% The kv store is reached three ways, which must share one store:
%% module functions through rpc (kv:put(K, V) -> ok, kv:get(K) -> {ok, V} |
%% not_found, kv:delete(K) -> ok, kv:keys() -> [K]), gen_server:call/3
%% to the registered service kv ({put, K, V}, {get, K}, {delete, K},
%% keys) and gen_server:cast/2 ({put, K, V}). Each case runs against the
%% C-node with priv/plugins/kv.so (or the standalone priv/examples/kv_node)
%% and against a BEAM peer running test/kv.erl, with
%% tether_cnode_rpc_lib:both/2: the answers must be the same.
%%
%% The kv service's {crash, R} and the test plugin's service rpctest
%% (replies at once or later from a worker thread, crashes on request)
%% are compared with their twins (test/kv.erl, test/rpctest.erl) the same
%% way. The erl session in examples/README.md is replayed, as written,
%% against the plugin and the standalone program.
%%
%% TETHER_RPC_TARGET=beam runs the suite BEAM against BEAM (the plugin
%% error cases are then skipped).
-module(tether_cnode_gen_service_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_group/2, end_per_group/2,
         init_per_testcase/2, end_per_testcase/2]).
-export([module_values/1, module_keys_delete/1, distinct_keys/1, equal_keys/1,
         negative_zero_key/1, large_binaries/1,
         service_values/1, service_keys_delete/1, service_cast/1,
         module_and_service_share_store/1, concurrent_callers/1, noproc/1,
         kv_bad_request/1, kv_crash/1, kv_crash_normal/1, kv_crash_shutdown/1,
         many_keys/1, service_caller_killed/1,
         service_crash/1, service_echo/1, service_reply_later/1,
         service_call_timeout/1, service_cast_send/1, service_bad_request/1,
         kv_node_values/1, kv_node_keys_delete/1, kv_node_service/1,
         kv_node_large_binaries/1, readme_session_plugin/1, readme_session_kv_node/1,
         missing_plugin/1, plugin_not_a_library/1, name_taken_by_beam/1,
         name_taken_by_cnode/1]).

-define(RPC, tether_cnode_rpc_lib).
-define(LIB, tether_test_lib).
%% Generous: a shared 2-vCPU VM.
-define(T, 60000).
-define(WAIT, 10000).
-define(MIB, (1024 * 1024)).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [{group, kv_module}, {group, kv_service}, {group, rpctest_service},
     {group, kv_node}, {group, readme}, {group, plugin_errors}].

groups() ->
    [{kv_module, [], [module_values, module_keys_delete, distinct_keys, equal_keys,
                      negative_zero_key, large_binaries]},
     {kv_service, [], [service_values, service_keys_delete, service_cast,
                       module_and_service_share_store, concurrent_callers, noproc,
                       kv_bad_request, kv_crash, kv_crash_normal, kv_crash_shutdown,
                       many_keys]},
     {rpctest_service, [], [service_echo, service_reply_later, service_call_timeout,
                            service_cast_send, service_bad_request, service_caller_killed,
                            service_crash]},
     {kv_node, [], [kv_node_values, kv_node_keys_delete, kv_node_service,
                    kv_node_large_binaries]},
     {readme, [], [readme_session_plugin, readme_session_kv_node]},
     {plugin_errors, [], [missing_plugin, plugin_not_a_library, name_taken_by_beam,
                          name_taken_by_cnode]}].

init_per_suite(Config) ->
    ?RPC:check_env(Config, [?LIB:cnode_exe(), ?LIB:kv_plugin(), ?LIB:rpctest_plugin()]).

end_per_suite(_Config) ->
    ok.

init_per_group(readme, Config) ->
    case filelib:is_regular(readme()) of
        true -> init_per_group(kv_node, Config);
        false -> {fail, "no " ++ readme()}
    end;
init_per_group(kv_node, Config) ->
    ?RPC:check_env(Config, [?LIB:kv_node_exe()]);
init_per_group(plugin_errors, Config) ->
    case ?RPC:mode() of
        beam -> {skip, "plugin errors need the C-node (TETHER_RPC_TARGET=beam)"};
        cnode -> Config
    end;
init_per_group(_Group, Config) ->
    Config.

end_per_group(_Group, _Config) ->
    ok.

init_per_testcase(Case, Config) ->
    case {group_of(Case), Case} of
        {plugin_errors, _} -> [{keeper, ?LIB:start_keeper()} | Config];
        {kv_node, _} -> ?RPC:init_targets(Case, kv_node, Config);
        {readme, readme_session_kv_node} -> ?RPC:init_targets(Case, kv_node, Config);
        _ -> ?RPC:init_targets(Case, cnode, Config)
    end.

end_per_testcase(_Case, Config) ->
    ?RPC:end_targets(Config).

group_of(Case) ->
    hd([G || {G, _, Cases} <- groups(), lists:member(Case, Cases)]).

%%--------------------------------------------------------------------
%% Ways in: each as fun(Node, Request) with the module's requests.
%%--------------------------------------------------------------------

%% kv module functions through erpc.
mod(N, {put, K, V}) -> erpc:call(N, kv, put, [K, V], ?T);
mod(N, {get, K}) -> erpc:call(N, kv, get, [K], ?T);
mod(N, {delete, K}) -> erpc:call(N, kv, delete, [K], ?T);
mod(N, keys) -> erpc:call(N, kv, keys, [], ?T).

%% The registered service through gen_server:call/3.
srv(N, Request) ->
    gen_server:call({kv, N}, Request, ?T).

sorted_keys(Way, N) ->
    canonical_sort(Way(N, keys)).

%% Sorted by term order, and terms that compare equal (1 and 1.0) by
%% their external format: one order for any order the store keeps.
canonical_sort(Terms) ->
    [T || {_, _, T} <- lists:sort([{T, term_to_binary(T), T} || T <- Terms])].

%% Terms for keys and values (no -0.0: equal to 0.0, see
%% negative_zero_key/1).
kv_terms() ->
    [{L, T} || {L, T} <- ?RPC:echo_terms(), L =/= float_neg_zero].

%%--------------------------------------------------------------------
%% kv_module
%%--------------------------------------------------------------------

%% Every kind of term as key and as value, stored exactly: get/1 returns
%% the value put/2 stored, keys/0 the keys.
module_values(Config) ->
    values_case(Config, fun mod/2).

values_case(Config, Way) ->
    Terms = kv_terms(),
    Fun = fun(N) ->
                  Puts = [Way(N, {put, T, {value_of, L, T}}) || {L, T} <- Terms],
                  Gets = [{L, Way(N, {get, T})} || {L, T} <- Terms],
                  {Puts, Gets, sorted_keys(Way, N)}
          end,
    {value, {Puts, Gets, Keys}} = ?RPC:both(Config, Fun),
    ?assertEqual([ok || _ <- Terms], Puts),
    Wrong = [{L, Got} || {{L, T}, {L, Got}} <- lists:zip(Terms, Gets),
                         not ?RPC:exact(Got, {ok, {value_of, L, T}})],
    ?assertEqual([], ?RPC:brief(Wrong)),
    ?assert(?RPC:exact(canonical_sort([T || {_, T} <- Terms]), Keys)).

%% keys/0, delete/1, overwriting, and not_found.
module_keys_delete(Config) ->
    keys_delete_case(Config, fun mod/2).

keys_delete_case(Config, Way) ->
    Fun = fun(N) ->
                  [Way(N, keys),
                   Way(N, {get, a}),
                   [Way(N, {put, K, {v, K}}) || K <- [a, b, c]],
                   sorted_keys(Way, N),
                   Way(N, {delete, b}),
                   Way(N, {get, b}),
                   Way(N, {get, a}),
                   sorted_keys(Way, N),
                   Way(N, {delete, b}),
                   Way(N, {delete, never_there}),
                   Way(N, {put, a, new}),
                   Way(N, {get, a}),
                   sorted_keys(Way, N)]
          end,
    ?assertEqual({value, [[], not_found, [ok, ok, ok], [a, b, c], ok, not_found,
                          {ok, {v, a}}, [a, c], ok, ok, ok, {ok, new}, [a, c]]},
                 ?RPC:both(Config, Fun)).

%% Terms that differ (=/=) are different keys, even when == says equal.
distinct_keys(Config) ->
    Keys = [1, 1.0, a, <<"a">>, "a", [a], {1}, [1], 1 bsl 64, float(1 bsl 64),
            #{a => 1}, #{a => 1.0}, {a, b}, {b, a}, <<1:7>>, <<1:8>>],
    Fun = fun(N) ->
                  Puts = [mod(N, {put, K, {v, K}}) || K <- Keys],
                  Gets = [mod(N, {get, K}) || K <- Keys],
                  {Puts, Gets, length(mod(N, keys))}
          end,
    ?assertEqual({value, {[ok || _ <- Keys], [{ok, {v, K}} || K <- Keys], length(Keys)}},
                 ?RPC:both(Config, Fun)).

%% Equal keys written differently find the same entry: atoms decoded from
%% the Latin-1 ATOM_EXT, integers from INTEGER_EXT and a one-byte bignum,
%% maps built in other orders, and keys sent by another node (its own
%% connection and atom cache) through the other ways in.
equal_keys(Config) ->
    K = ?config(keeper, Config),
    Helper = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(helper))}),
    Big = maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
    BigOtherOrder = lists:foldl(fun(I, M) -> M#{I => I * I} end, #{},
                                lists:seq(40, 1, -1)),
    Pairs = [{a, binary_to_term(<<131, 100, 0, 1, $a>>)},
             {'ünï', binary_to_term(<<131, 100, 0, 3, 16#fc, $n, 16#ef>>)},
             {5, binary_to_term(<<131, 98, 0, 0, 0, 5>>)},
             {5000, binary_to_term(<<131, 110, 2, 0, 16#88, 16#13>>)},
             {'日本', binary_to_atom(<<"日本"/utf8>>)},
             {#{a => 1, b => 2}, maps:from_list([{b, 2}, {a, 1}])},
             {Big, BigOtherOrder},
             {{a, [1, "x"]}, list_to_tuple([a, [1, [$x]]])},
             {self(), list_to_pid(pid_to_list(self()))}],
    [?assert(A =:= B) || {A, B} <- Pairs],
    Fun = fun(N) ->
                  Puts = [mod(N, {put, A, {stored, A}}) || {A, _} <- Pairs],
                  Here = [mod(N, {get, B}) || {_, B} <- Pairs],
                  ViaCall = [?LIB:peer_call(Helper, gen_server, call, [{kv, N}, {get, B}, ?T])
                             || {_, B} <- Pairs],
                  ViaRpc = [?LIB:peer_call(Helper, erpc, call, [N, kv, get, [B], ?T])
                            || {_, B} <- Pairs],
                  %% Written again the other way, from the other node:
                  %% still one entry per key.
                  Again = [?LIB:peer_call(Helper, gen_server, call,
                                          [{kv, N}, {put, B, {again, B}}, ?T])
                           || {_, B} <- Pairs],
                  {Puts, Here, ViaCall, ViaRpc, Again, length(mod(N, keys)),
                   [mod(N, {get, A}) || {A, _} <- Pairs]}
          end,
    Stored = [{ok, {stored, A}} || {A, _} <- Pairs],
    ?assertEqual({value, {[ok || _ <- Pairs], Stored, Stored, Stored, [ok || _ <- Pairs],
                          length(Pairs), [{ok, {again, A}} || {A, _} <- Pairs]}},
                 ?RPC:both(Config, Fun)).

%% 0.0 and -0.0 are equal terms in OTP 25 (0.0 =:= -0.0) though their
%% external formats differ: the same key.
negative_zero_key(Config) ->
    ?assert(0.0 =:= -0.0),
    Fun = fun(N) ->
                  [mod(N, {put, 0.0, zero}),
                   mod(N, {get, -0.0}),
                   mod(N, {put, -0.0, neg}),
                   mod(N, {get, 0.0}),
                   length(mod(N, keys)),
                   mod(N, {put, {-0.0}, tuple}),
                   mod(N, {get, {0.0}}),
                   mod(N, {delete, -0.0}),
                   mod(N, {get, 0.0}),
                   length(mod(N, keys))]
          end,
    ?assertEqual({value, [ok, {ok, zero}, ok, {ok, neg}, 1, ok, {ok, tuple}, ok,
                          not_found, 1]},
                 ?RPC:both(Config, Fun)).

%% Values (and a key) of 4 MiB, through the module, the service and a
%% cast, come back byte for byte.
large_binaries(Config) ->
    large_binaries_case(Config).

large_binaries_case(Config) ->
    B1 = big_binary(1),
    B2 = big_binary(2),
    B3 = big_binary(3),
    Fun = fun(N) ->
                  ok = mod(N, {put, one, B1}),
                  ok = srv(N, {put, two, {B2, #{b => B1}}}),
                  ok = gen_server:cast({kv, N}, {put, three, [B3]}),
                  ok = mod(N, {put, B3, key_of_4mib}),
                  ok = ?LIB:wait_until(fun() -> srv(N, {get, three}) =/= not_found end, ?WAIT),
                  [mod(N, {get, one}) =:= {ok, B1},
                   srv(N, {get, one}) =:= {ok, B1},
                   mod(N, {get, two}) =:= {ok, {B2, #{b => B1}}},
                   mod(N, {get, three}) =:= {ok, [B3]},
                   srv(N, {get, B3}) =:= {ok, key_of_4mib},
                   lists:sort(mod(N, keys)) =:= lists:sort([one, two, three, B3])]
          end,
    ?assertEqual({value, [true, true, true, true, true, true]}, ?RPC:both(Config, Fun)).

%% 4 MiB, different in every copy (so no run of equal bytes hides a
%% dropped or repeated fragment).
big_binary(Seed) ->
    S = rand:seed_s(exsss, {Seed, 17, 4711}),
    {Bin, _} = rand:bytes_s(4 * ?MIB, S),
    Bin.

%%--------------------------------------------------------------------
%% kv_service
%%--------------------------------------------------------------------

%% gen_server:call/3 with {put, K, V}, {get, K} and keys: every kind of
%% term as key and value.
service_values(Config) ->
    values_case(Config, fun srv/2).

%% gen_server:call/3 with keys, {delete, K}, overwriting, not_found.
service_keys_delete(Config) ->
    keys_delete_case(Config, fun srv/2).

%% gen_server:cast/2 with {put, K, V} returns ok at once; the value
%% shows up for get.
service_cast(Config) ->
    Terms = kv_terms(),
    Fun = fun(N) ->
                  Casts = [gen_server:cast({kv, N}, {put, {cast, L}, T}) || {L, T} <- Terms],
                  {L0, _} = lists:last(Terms),
                  ok = ?LIB:wait_until(fun() -> srv(N, {get, {cast, L0}}) =/= not_found end,
                                       ?WAIT),
                  {Casts, [{L, srv(N, {get, {cast, L}})} || {L, _} <- Terms]}
          end,
    {value, {Casts, Gets}} = ?RPC:both(Config, Fun),
    ?assertEqual([ok || _ <- Terms], Casts),
    Wrong = [{L, Got} || {{L, T}, {L, Got}} <- lists:zip(Terms, Gets),
                         not ?RPC:exact(Got, {ok, T})],
    ?assertEqual([], ?RPC:brief(Wrong)).

%% One store behind all three ways in.
module_and_service_share_store(Config) ->
    Fun = fun(N) ->
                  ok = mod(N, {put, m, 1}),
                  ok = srv(N, {put, s, 2}),
                  ok = gen_server:cast({kv, N}, {put, c, 3}),
                  ok = ?LIB:wait_until(fun() -> mod(N, {get, c}) =:= {ok, 3} end, ?WAIT),
                  R1 = [srv(N, {get, m}), mod(N, {get, s}), srv(N, {get, c}),
                        lists:sort(srv(N, keys)), lists:sort(mod(N, keys))],
                  ok = mod(N, {delete, s}),
                  ok = srv(N, {delete, m}),
                  R1 ++ [srv(N, {get, s}), mod(N, {get, m}), srv(N, keys)]
          end,
    ?assertEqual({value, [{ok, 1}, {ok, 2}, {ok, 3}, [c, m, s], [c, m, s],
                          not_found, not_found, [c]]},
                 ?RPC:both(Config, Fun)).

%% 100 callers at once, each putting and getting its own key.
concurrent_callers(Config) ->
    N0 = 100,
    Fun = fun(N) ->
                  Parent = self(),
                  Ws = [spawn_monitor(
                          fun() ->
                                  Put = srv(N, {put, {k, I}, {v, I}}),
                                  Get = srv(N, {get, {k, I}}),
                                  Parent ! {self(), {I, Put, Get}}
                          end) || I <- lists:seq(1, N0)],
                  Rs = [receive
                            {W, R} -> erlang:demonitor(M, [flush]), R;
                            {'DOWN', M, process, W, Why} -> {crashed, Why}
                        end || {W, M} <- Ws],
                  {Rs, length(srv(N, keys))}
          end,
    ?assertEqual({value, {[{I, ok, {ok, {v, I}}} || I <- lists:seq(1, N0)], N0}},
                 ?RPC:both(Config, Fun)).

%% A name nobody holds: gen_server:call exits with noproc; a cast to it
%% is ok and nothing happens.
noproc(Config) ->
    ?assertEqual({exit, {noproc, {gen_server, call, [{nosuch, '$node'}, x, 1000]}}},
                 ?RPC:both(Config, fun(N) -> gen_server:call({nosuch, N}, x, 1000) end)),
    ?assertEqual({value, {ok, pong}},
                 ?RPC:both(Config, fun(N) ->
                                           {gen_server:cast({nosuch, N}, x),
                                            srv(N, keys) =:= [] andalso pong}
                                   end)),
    ?assertEqual([], ?LIB:flush()).

%% A request the kv service does not know: {error, bad_request}.
kv_bad_request(Config) ->
    ?assertEqual({value, [{error, bad_request}, {error, bad_request}, {error, bad_request}]},
                 ?RPC:both(Config, fun(N) ->
                                           [srv(N, what), srv(N, {get, a, b}),
                                            srv(N, {what, x})]
                                   end)).

%% {crash, R}: the kv service exits with R and the caller with {R,
%% {gen_server, call, ...}}; the name is gone (noproc), and the module
%% functions keep the store.
kv_crash(Config) ->
    crash_case(Config, {kv_crashed, <<"why">>, 1.5}).

%% The same with the reason normal: the caller exits too.
kv_crash_normal(Config) ->
    crash_case(Config, normal).

%% The same with the reason shutdown (the reason a node stopping uses):
%% for the caller a crash like any other, and the store stays.
kv_crash_shutdown(Config) ->
    crash_case(Config, shutdown).

crash_case(Config, R) ->
    Fun = fun(N) ->
                  ok = srv(N, {put, before_crash, [R]}),
                  Crash = try srv(N, {crash, R}) of
                              Ok -> {returned, Ok}
                          catch
                              exit:Why -> {exit, Why}
                          end,
                  After = try srv(N, keys) of
                              Ok2 -> {returned, Ok2}
                          catch
                              exit:Why2 -> {exit, Why2}
                          end,
                  {Crash, After, mod(N, {get, before_crash}), mod(N, {put, after_crash, 1}),
                   lists:sort(mod(N, keys))}
          end,
    ?assertEqual({value, {{exit, {R, {gen_server, call, [{kv, '$node'}, {crash, R}, ?T]}}},
                          {exit, {noproc, {gen_server, call, [{kv, '$node'}, keys, ?T]}}},
                          {ok, [R]}, ok, [after_crash, before_crash]}},
                 ?RPC:both(Config, Fun)),
    ?assertEqual([], ?LIB:flush()).

%% 5000 keys (the store grows): all there, all found.
many_keys(Config) ->
    Keys = [{key, I, integer_to_binary(I)} || I <- lists:seq(1, 5000)],
    Fun = fun(N) ->
                  %% Casts from one process arrive in order, before the
                  %% call that follows them.
                  [ok = gen_server:cast({kv, N}, {put, K, element(2, K)}) || K <- Keys],
                  Got = canonical_sort(srv(N, keys)),
                  {Got =:= canonical_sort(Keys),
                   [mod(N, {get, K}) || K <- lists:sublist(Keys, 1, 50)],
                   [srv(N, {delete, K}) || K <- lists:sublist(Keys, 1, 4000)],
                   length(mod(N, keys))}
          end,
    ?assertEqual({value, {true, [{ok, I} || I <- lists:seq(1, 50)],
                          [ok || _ <- lists:seq(1, 4000)], 1000}},
                 ?RPC:both(Config, Fun)).

%%--------------------------------------------------------------------
%% rpctest_service: the test plugin's service `rpctest' (see
%% test/rpctest.erl) against its twin
%%--------------------------------------------------------------------

rt(N, Request) ->
    gen_server:call({rpctest, N}, Request, ?T).

%% {echo, X} is answered at once with X, for terms of every kind.
service_echo(Config) ->
    Terms = kv_terms(),
    {value, Got} = ?RPC:both(Config, fun(N) -> [rt(N, {echo, T}) || {_, T} <- Terms] end),
    Wrong = [{L, G} || {{L, T}, G} <- lists:zip(Terms, Got), not ?RPC:exact(G, T)],
    ?assertEqual([], ?RPC:brief(Wrong)).

%% {sleep, Ms} is answered later, from a worker thread on the C-node; 20
%% callers at once all get their reply, and the service answers other
%% calls in the meantime.
service_reply_later(Config) ->
    Fun = fun(N) ->
                  Parent = self(),
                  Ws = [spawn_monitor(fun() -> Parent ! {self(), rt(N, {sleep, 300})} end)
                        || _ <- lists:seq(1, 20)],
                  Echo = rt(N, {echo, meanwhile}),
                  Rs = [receive
                            {W, R} -> erlang:demonitor(M, [flush]), R;
                            {'DOWN', M, process, W, Why} -> {crashed, Why}
                        end || {W, M} <- Ws],
                  {Echo, Rs}
          end,
    ?assertEqual({value, {meanwhile, [ok || _ <- lists:seq(1, 20)]}},
                 ?RPC:both(Config, Fun)).

%% gen_server:call/3 past its timeout exits {timeout, ...}; the late
%% reply (to the call's alias) is dropped, so nothing arrives later.
service_call_timeout(Config) ->
    ?assertEqual({exit, {timeout, {gen_server, call,
                                   [{rpctest, '$node'}, {sleep, 3000}, 500]}}},
                 ?RPC:both(Config, fun(N) ->
                                           gen_server:call({rpctest, N}, {sleep, 3000}, 500)
                                   end)),
    timer:sleep(3500),
    ?assertEqual({value, after_timeout},
                 ?RPC:both(Config, fun(N) -> rt(N, {echo, after_timeout}) end)),
    ?assertEqual([], ?LIB:flush()).

%% gen_server:cast/2 {send, Pid, Msg}: the service sends Msg to Pid.
service_cast_send(Config) ->
    Self = self(),
    ?assertEqual({value, ok},
                 ?RPC:both(Config, fun(N) ->
                                           gen_server:cast({rpctest, N},
                                                           {send, Self, {from_service, N}})
                                   end)),
    [receive {from_service, N} -> ok
     after ?WAIT -> ct:fail({no_message_from_service, N})
     end || N <- [?config(target, Config), ?config(twin, Config)]].

%% A caller killed while its reply is pending on a worker: the late
%% reply goes nowhere and the service goes on.
service_caller_killed(Config) ->
    Fun = fun(N) ->
                  Self = self(),
                  Caller = spawn(fun() -> Self ! {calling, self()}, rt(N, {sleep, 1000}) end),
                  receive {calling, Caller} -> ok end,
                  %% A pause so the call is most likely with the service
                  %% when the caller dies; if not, the case still holds.
                  timer:sleep(200),
                  MRef = erlang:monitor(process, Caller),
                  exit(Caller, kill),
                  receive {'DOWN', MRef, process, Caller, _} -> ok end,
                  timer:sleep(1500),
                  rt(N, {echo, still_here})
          end,
    ?assertEqual({value, still_here}, ?RPC:both(Config, Fun)),
    ?assertEqual([], ?LIB:flush()).

%% A request the service does not know is answered bad_request.
service_bad_request(Config) ->
    ?assertEqual({value, [bad_request, bad_request, bad_request]},
                 ?RPC:both(Config, fun(N) ->
                                           [rt(N, what), rt(N, {what, x}),
                                            rt(N, {sleep, not_a_number})]
                                   end)).

%% A service that crashes exits the caller with the crash reason: {crash,
%% R} makes rpctest stop with R; gen_server:call exits {R, {gen_server,
%% call, ...}}. The name is free afterwards: noproc.
service_crash(Config) ->
    R = {crashed, <<"why">>, 42, 'ü'},
    ?assertEqual({exit, {R, {gen_server, call, [{rpctest, '$node'}, {crash, R}, ?T]}}},
                 ?RPC:both(Config, fun(N) -> rt(N, {crash, R}) end)),
    ?assertEqual({exit, {noproc, {gen_server, call, [{rpctest, '$node'}, {echo, x}, ?T]}}},
                 ?RPC:both(Config, fun(N) -> rt(N, {echo, x}) end)),
    %% The node itself goes on: kv and rpc still answer.
    ?assertEqual({value, {[], x}},
                 ?RPC:both(Config, fun(N) ->
                                           {srv(N, keys), erpc:call(N, rpctest, echo, [x], ?T)}
                                   end)),
    ?assertEqual([], ?LIB:flush()).

%%--------------------------------------------------------------------
%% kv_node: the standalone program answers like the plugin
%%--------------------------------------------------------------------

kv_node_values(Config) ->
    values_case(Config, fun mod/2).

kv_node_keys_delete(Config) ->
    keys_delete_case(Config, fun mod/2).

kv_node_service(Config) ->
    Fun = fun(N) ->
                  ok = gen_server:cast({kv, N}, {put, cast_key, 1 bsl 80}),
                  ok = ?LIB:wait_until(fun() -> srv(N, {get, cast_key}) =/= not_found end,
                                       ?WAIT),
                  ok = srv(N, {put, call_key, #{'ü' => [1.5, <<"v">>]}}),
                  [srv(N, {get, cast_key}), mod(N, {get, call_key}),
                   lists:sort(srv(N, keys)), srv(N, {delete, cast_key}),
                   srv(N, {get, cast_key})]
          end,
    ?assertEqual({value, [{ok, 1 bsl 80}, {ok, #{'ü' => [1.5, <<"v">>]}},
                          [call_key, cast_key], ok, not_found]},
                 ?RPC:both(Config, Fun)),
    ?assertEqual({exit, {noproc, {gen_server, call, [{nosuch, '$node'}, x, 1000]}}},
                 ?RPC:both(Config, fun(N) -> gen_server:call({nosuch, N}, x, 1000) end)).

kv_node_large_binaries(Config) ->
    large_binaries_case(Config).

%%--------------------------------------------------------------------
%% readme: the erl session in examples/README.md works as written
%%--------------------------------------------------------------------

readme() ->
    filename:join([?LIB:priv_dir(), "..", "examples", "README.md"]).

%% Against the C-node with kv.so.
readme_session_plugin(Config) ->
    readme_session(Config).

%% Against the standalone kv_node.
readme_session_kv_node(Config) ->
    readme_session(Config).

%% Every `(me@127.0.0.1)N> Expr.' line of the README is evaluated in
%% order (with the README's node name replaced by the target's), and its
%% value must be the term the README prints below it. Printed values the
%% shell cut short (`...') only have to be the start of the value.
readme_session(Config) ->
    Node = ?config(target, Config),
    {ok, Text} = file:read_file(readme()),
    Steps = readme_steps(binary:split(Text, <<"\n">>, [global])),
    ct:log("~b steps from ~s", [length(Steps), readme()]),
    ?assert(length(Steps) >= 10),
    Subst = fun(S) -> string:replace(S, "'kv@127.0.0.1'", io_lib:format("~p", [Node]), all) end,
    lists:foldl(fun({Expr, Out}, Bindings) ->
                        readme_step(unicode:characters_to_list(Subst(Expr)),
                                    unicode:characters_to_list(Subst(Out)), Bindings)
                end, erl_eval:new_bindings(), Steps),
    ok.

readme_step(Expr, Out, Bindings) ->
    {ok, Toks, _} = erl_scan:string(Expr),
    {ok, Exprs} = erl_parse:parse_exprs(Toks),
    {value, Value, Bindings1} = erl_eval:exprs(Exprs, Bindings),
    Printed = lists:flatten(io_lib:format("~0p", [Value], [{chars_limit, 4096}])),
    case string:find(Out, "...") of
        nomatch ->
            {ok, OutToks, _} = erl_scan:string(Out ++ "."),
            {ok, Expected} = erl_parse:parse_term(OutToks),
            case Value =:= Expected of
                true -> ok;
                false -> ct:fail({readme_step, Expr, {expected, Out}, {got, Printed}})
            end;
        _ ->
            %% <<"xxx"...>>: the bytes shown, without the closing quote.
            Prefix = string:trim(string:trim(hd(string:split(Out, "..."))), trailing, "\""),
            case lists:prefix(Prefix, Printed) of
                true -> ok;
                false -> ct:fail({readme_step, Expr, {expected, Out}, {got, Printed}})
            end
    end,
    Bindings1.

%% [{Expr, Output}] from the lines of the README: a prompt line holds one
%% expression; the lines after it, up to the next prompt or the end of
%% the code block, are what the shell printed.
readme_steps(Lines) ->
    readme_steps(Lines, none, []).

readme_steps([], Cur, Acc) ->
    lists:reverse(push_step(Cur, Acc));
readme_steps([Line | Rest], Cur, Acc) ->
    case re:run(Line, <<"^\\(me@127\\.0\\.0\\.1\\)[0-9]+> (.*)$">>,
                [{capture, all_but_first, binary}, unicode]) of
        {match, [Expr]} ->
            readme_steps(Rest, {Expr, []}, push_step(Cur, Acc));
        nomatch ->
            case {Cur, Line} of
                {none, _} -> readme_steps(Rest, none, Acc);
                {_, <<"```", _/binary>>} -> readme_steps(Rest, none, push_step(Cur, Acc));
                {{Expr, Out}, _} -> readme_steps(Rest, {Expr, [Line | Out]}, Acc)
            end
    end.

push_step(none, Acc) ->
    Acc;
push_step({Expr, Out}, Acc) ->
    [{Expr, iolist_to_binary(lists:join(" ", lists:reverse(Out)))} | Acc].

%%--------------------------------------------------------------------
%% plugin_errors: one clear line and a non-zero exit
%%--------------------------------------------------------------------

missing_plugin(Config) ->
    Path = "/nonexistent/tether_no_such_plugin.so",
    fails_clearly(Config, #{extra_args => ["--load", Path]}, Path).

%% A file that is not a shared library.
plugin_not_a_library(Config) ->
    Path = filename:join(?config(priv_dir, Config), "not_a_library.so"),
    ok = file:write_file(Path, <<"this is not an ELF file\n">>),
    fails_clearly(Config, #{extra_args => ["--load", Path]}, Path).

%% The name is held by a BEAM node.
name_taken_by_beam(Config) ->
    Name = ?LIB:unique_name(taken),
    _ = ?LIB:keep(?config(keeper, Config), {peer, ?LIB:start_peer(Name)}),
    ?assert(lists:member(Name, ?LIB:epmd_names())),
    fails_clearly(Config, #{name => Name, extra_args => plugin_args()}, Name).

%% The name is held by another C-node.
name_taken_by_cnode(Config) ->
    Name = ?LIB:unique_name(taken),
    {ok, C} = ?LIB:start_cnode(#{name => Name, log_dir => ?config(priv_dir, Config),
                                 extra_args => plugin_args()}),
    _ = ?LIB:keep(?config(keeper, Config), {cnode, C}),
    fails_clearly(Config, #{name => Name, extra_args => plugin_args()}, Name),
    %% The first one is untouched.
    ?assertEqual(ok, ?LIB:echo(?LIB:cnode_node(C), still_here)).

plugin_args() ->
    ["--load", ?LIB:kv_plugin(), "--load", ?LIB:rpctest_plugin()].

%% Starting a C-node with Opts fails: a non-zero exit status and exactly
%% one line of output (stdout and stderr together) naming Mention.
fails_clearly(Config, Opts0, Mention) ->
    Opts = maps:merge(#{log_dir => ?config(priv_dir, Config),
                        name => ?LIB:unique_name(should_fail)}, Opts0),
    case ?LIB:start_cnode(Opts) of
        {ok, C} ->
            _ = ?LIB:keep(?config(keeper, Config), {cnode, C}),
            ct:fail({started_anyway, Opts});
        {error, {{exited, Status}, Out, Err}} ->
            Lines = Out ++ Err,
            ct:log("exit status ~p, output:~n~s", [Status, [[L, $\n] || L <- Lines]]),
            ?assertNotEqual(0, Status),
            ?assertMatch([_], Lines),
            [Line] = Lines,
            ?assertNotEqual(nomatch, binary:match(Line, unicode:characters_to_binary(Mention)));
        {error, Other} ->
            ct:fail({did_not_exit, Other})
    end.
