%% @doc Helpers for the suites that call a C-node from stock OTP (issue
%% 4: tether_cnode_rpc_SUITE, tether_cnode_gen_service_SUITE): a C-node
%% with plugins next to a BEAM peer that runs the Erlang twins (rpctest,
%% kv), and both/2, which makes the same call on each and insists on the
%% same answer.
%%
%% The node under test (the `target') is a C-node started with
%% `--load priv/plugins/kv.so --load c_src/build/plugins/rpctest.so', or
%% the standalone priv/examples/kv_node. With TETHER_RPC_TARGET=beam in
%% the environment the target is a second BEAM peer running the twins:
%% the suites then check themselves (BEAM against BEAM) without the C
%% side.
%%
%% Answers are compared after two rewrites: the target's own node name
%% becomes '$node' (so `noproc' reasons naming {kv, Node} compare), and a
%% stack trace becomes {'$top_frame', {M, F, ArgsOrArity}} (a C function
%% has no file or line to report; the class, the reason and the first
%% frame must still be those of the BEAM). Terms are equal when they are
%% =:= and their external formats are equal too (so 0.0 and -0.0, equal
%% in OTP 25, still differ here).
-module(tether_cnode_rpc_lib).

-include_lib("common_test/include/ct.hrl").

%% Targets and twins.
-export([mode/0, check_env/2, init_targets/3, end_targets/1,
         start_twin_peer/1]).
%% Comparing answers.
-export([both/2, both/3, compare/3, outcome/2, shape/1, replace_node/2,
         exact/2, brief/1, echo_terms/0]).
%% Small helpers.
-export([start_registered_collector/1, wait_for/3, pending_call/2]).

-define(LIB, tether_test_lib).
-define(READY_TIMEOUT, 30000).
-define(MIB, (1024 * 1024)).

%%--------------------------------------------------------------------
%% Targets and twins
%%--------------------------------------------------------------------

%% @doc cnode (the default) or beam (TETHER_RPC_TARGET=beam: the suites
%% run BEAM against BEAM).
-spec mode() -> cnode | beam.
mode() ->
    case os:getenv("TETHER_RPC_TARGET") of
        "beam" -> beam;
        _ -> cnode
    end.

%% @doc For init_per_suite: Config when the suite can run (a distributed
%% node, the runner's private epmd, and in cnode mode the files it
%% needs), else {fail, Why}: a missing set-up fails, it never skips.
-spec check_env(list(), [file:filename()]) -> list() | {fail, string()}.
check_env(Config, Files) ->
    Missing = case mode() of
                  beam -> [];
                  cnode -> [F || F <- Files, not filelib:is_regular(F)]
              end,
    case {tether_test_lib:require_env(Config), Missing} of
        {{fail, _} = Fail, _} ->
            Fail;
        {Config1, []} ->
            Config1;
        {_, [_ | _]} ->
            {fail, lists:flatten(["not built (make -C c_src): " |
                                  lists:join(", ", Missing)])}
    end.

%% @doc Starts the target (Kind: cnode, a C-node with both plugins, or
%% kv_node, the standalone program; a BEAM peer in beam mode) and a BEAM
%% twin peer, both connected to this node and kept in a keeper. Returns
%% Config with keeper, target, twin (node names) and target_handle.
-spec init_targets(atom(), cnode | kv_node, list()) -> list().
init_targets(Case, Kind, Config) ->
    Keeper = ?LIB:start_keeper(),
    Target = try start_target(mode(), Kind, Case, Keeper, Config)
             catch
                 Class:Reason:Stack ->
                     _ = ?LIB:release_all(Keeper),
                     erlang:raise(Class, Reason, Stack)
             end,
    try
        Twin = ?LIB:keep(Keeper, {peer, start_twin_peer(?LIB:unique_name(twin))}),
        [{keeper, Keeper}, {target, target_node(Target)}, {target_handle, Target},
         {twin, ?LIB:peer_node(Twin)} | Config]
    catch
        Class2:Reason2:Stack2 ->
            _ = ?LIB:release_case(Keeper, target_cnodes(Target), true),
            erlang:raise(Class2, Reason2, Stack2)
    end.

%% @doc Logs the target's output and stops everything init_targets/3
%% (or the case, in the keeper) started. Returns ok, or {fail, Why} when
%% a C-node died during the case (a crash the case did not ask for).
-spec end_targets(list()) -> ok | {fail, term()}.
end_targets(Config) ->
    case ?config(keeper, Config) of
        undefined ->
            ok;
        Keeper ->
            ?LIB:release_case(Keeper, target_cnodes(?config(target_handle, Config)),
                              false)
    end.

target_cnodes({cnode, C}) -> [C];
target_cnodes(_) -> [].

start_target(beam, _Kind, _Case, Keeper, _Config) ->
    {peer, ?LIB:keep(Keeper, {peer, start_twin_peer(?LIB:unique_name(target))})};
start_target(cnode, Kind, Case, Keeper, Config) ->
    Opts = #{name => ?LIB:unique_name(Case), log_dir => ?config(priv_dir, Config)},
    KindOpts = case Kind of
                   cnode ->
                       #{extra_args => ["--load", ?LIB:kv_plugin(),
                                        "--load", ?LIB:rpctest_plugin()]};
                   kv_node ->
                       #{exe => ?LIB:kv_node_exe(), prog => "kv_node"}
               end,
    C = ?LIB:start_kept_cnode(Keeper, maps:merge(Opts, KindOpts)),
    pong = net_adm:ping(?LIB:cnode_node(C)),
    {cnode, C}.

target_node({peer, P}) -> ?LIB:peer_node(P);
target_node({cnode, C}) -> ?LIB:cnode_node(C).

%% @doc Starts a BEAM peer with the twins (rpctest, kv) on its code path
%% and their services (kv, rpctest) running, and connects this node to
%% it.
-spec start_twin_peer(string()) -> ?LIB:peer().
start_twin_peer(Name) ->
    P = ?LIB:start_peer(Name),
    try
        {ok, _} = ?LIB:peer_call(P, kv, start, []),
        {ok, _} = ?LIB:peer_call(P, rpctest, start_service, []),
        pong = net_adm:ping(?LIB:peer_node(P)),
        P
    catch
        Class:Reason:Stack ->
            ?LIB:stop_peer(P),
            erlang:raise(Class, Reason, Stack)
    end.

%%--------------------------------------------------------------------
%% Comparing answers
%%--------------------------------------------------------------------

%% @doc Runs Fun(Target) and Fun(Twin) (from this node) and fails the
%% case unless both give the same outcome ({value, V} or {Class,
%% Reason}, rewritten as the module doc says). Returns that outcome.
-spec both(list(), fun((node()) -> term())) -> term().
both(Config, Fun) ->
    both(Config, Fun, undefined).

-spec both(list(), fun((node()) -> term()), term()) -> term().
both(Config, Fun, Label) ->
    case compare(Config, Fun, Label) of
        {same, Outcome} ->
            Outcome;
        {differ, Report} ->
            ct:log("answers differ:~n~p", [brief(Report)]),
            ct:fail({answers_differ, brief(Report)})
    end.

%% @doc Like both/3 but returns {same, Outcome} or {differ, Report}.
-spec compare(list(), fun((node()) -> term()), term()) ->
          {same, term()} | {differ, map()}.
compare(Config, Fun, Label) ->
    Target = ?config(target, Config),
    Twin = ?config(twin, Config),
    T = outcome(Fun, Target),
    B = outcome(Fun, Twin),
    case exact(T, B) of
        true -> {same, T};
        false -> {differ, #{label => Label, target => T, beam => B}}
    end.

%% @doc {value, V} or {Class, Reason} for Fun(Node), rewritten.
-spec outcome(fun((node()) -> term()), node()) -> term().
outcome(Fun, Node) ->
    try Fun(Node) of
        V -> {value, shape(replace_node(V, Node))}
    catch
        Class:Reason -> {Class, shape(replace_node(Reason, Node))}
    end.

%% @doc Replaces every stack trace in Term by its first frame
%% {'$top_frame', {M, F, ArgsOrArity}}.
-spec shape(term()) -> term().
shape(Term) ->
    case is_stack(Term) of
        true ->
            [{M, F, A, _} | _] = Term,
            {'$top_frame', {M, F, A}};
        false ->
            walk(Term, fun shape/1)
    end.

is_stack([_ | _] = L) ->
    try lists:all(fun is_frame/1, L)
    catch error:_ -> false      % an improper list
    end;
is_stack(_) ->
    false.

is_frame({M, F, A, Loc}) ->
    is_atom(M) andalso is_atom(F) andalso (is_list(A) orelse is_integer(A))
        andalso is_list(Loc);
is_frame(_) ->
    false.

%% @doc Replaces the atom Node by '$node' everywhere in Term.
-spec replace_node(term(), node()) -> term().
replace_node(Node, Node) ->
    '$node';
replace_node(Term, Node) ->
    walk(Term, fun(T) -> replace_node(T, Node) end).

%% Applies F to the direct parts of a list, tuple or map.
walk([H | T], F) ->
    [F(H) | walk_tail(T, F)];
walk(T, F) when is_tuple(T) ->
    list_to_tuple([F(E) || E <- tuple_to_list(T)]);
walk(M, F) when is_map(M) ->
    maps:from_list([{F(K), F(V)} || {K, V} <- maps:to_list(M)]);
walk(T, _F) ->
    T.

walk_tail([H | T], F) -> [F(H) | walk_tail(T, F)];
walk_tail([], _F) -> [];
walk_tail(Improper, F) -> F(Improper).

%% @doc Term with every binary longer than 64 bytes replaced by
%% {'$binary', Size, First16Bytes, Md5}, for failure reports that stay
%% readable (and two different big binaries still look different).
-spec brief(term()) -> term().
brief(B) when is_binary(B), byte_size(B) > 64 ->
    {'$binary', byte_size(B), binary:part(B, 0, 16), erlang:md5(B)};
brief(T) ->
    walk(T, fun brief/1).

%% @doc Exactly equal: =:= and the same external format.
-spec exact(term(), term()) -> boolean().
exact(A, B) ->
    A =:= B andalso term_to_binary(A) =:= term_to_binary(B).

%% @doc Terms of many kinds: {Label, Term}.
-spec echo_terms() -> [{atom(), term()}].
echo_terms() ->
    LongAtom = list_to_atom(lists:duplicate(255, $ä)),
    Big = [{big_2_64, 1 bsl 64}, {big_neg_2_64, -(1 bsl 64)},
           {big_2_200, 1 bsl 200}, {big_neg_2_1000, -(1 bsl 1000) + 7},
           {big_large_ext, (1 bsl 2100) + 12345}],
    [{atom, a}, {empty_atom, ''}, {bool, true}, {latin1_atom, 'héllo'},
     {unicode_atom, '日本語'}, {emoji_atom, '🐳whale'}, {long_utf8_atom, LongAtom},
     {zero, 0}, {small, 255}, {neg_one, -1}, {int_256, 256},
     {int_2_27, 1 bsl 27}, {int_neg_2_27, -(1 bsl 27)}, {int_2_31, 1 bsl 31},
     {int_neg_2_31_minus_1, -(1 bsl 31) - 1}, {int_2_59, 1 bsl 59}, {int_2_63, 1 bsl 63}
     | Big] ++
    [{float_zero, 0.0}, {float_neg_zero, -0.0}, {float, 1.5}, {float_tiny, -2.25e-300},
     {float_huge, 1.7976931348623157e308}, {float_denormal, 5.0e-324},
     {float_pi, math:pi()},
     {empty_binary, <<>>}, {binary, <<"bin">>}, {binary_bytes, <<0, 255, 10, 13>>},
     {binary_1mib, binary:copy(<<"0123456789abcdef">>, ?MIB div 16)},
     {bitstring, <<1:3>>}, {bitstring_tail, <<"ab", 5:4>>},
     {nil, []}, {string, "string"}, {unicode_string, "日本語"},
     {nested_list, [1, [2, [3, [4, [5]]]]]}, {improper_list, [a, b | c]},
     {long_list, lists:seq(1, 10000)},
     {deep_list, lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 200))},
     {empty_tuple, {}}, {tuple, {a, 1, "x"}},
     {large_tuple, list_to_tuple(lists:seq(1, 300))},
     {empty_map, #{}}, {map, #{a => 1, <<"b">> => [2], {c} => #{d => 3.0}}},
     {big_map, maps:from_list([{I, integer_to_binary(I)} || I <- lists:seq(1, 100)])},
     {map_map_keys, #{#{k => 1} => #{}, [1, 2] => {}}},
     {pid, self()}, {ref, make_ref()}, {port, hd(erlang:ports())},
     {export_fun, fun lists:reverse/1}, {local_fun, fun(X) -> {X, Big} end},
     {mixed, {[#{k => [1.5, <<"x">>, self()]}], make_ref(), 'ü', 1 bsl 70}}].

%%--------------------------------------------------------------------
%% Small helpers
%%--------------------------------------------------------------------

%% @doc Run on a peer: starts a process there that sends an
%% erpc:send_request/4 for rpctest:sleep(Ms) to Node, waits until Node
%% has seen it (an erpc:call on the same connection returns after it),
%% and then waits forever. Returns that process's pid.
-spec pending_call(node(), non_neg_integer()) -> pid().
pending_call(Node, Ms) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        Req = erpc:send_request(Node, rpctest, sleep, [Ms]),
                        seen = erpc:call(Node, rpctest, echo, [seen]),
                        Parent ! {pending, self()},
                        receive never -> Req end
                end),
    receive {pending, Pid} -> Pid
    after ?READY_TIMEOUT -> error(pending_call_timeout)
    end.

%% @doc Starts a tether_test_lib collector on this node registered as
%% Name; returns its pid.
-spec start_registered_collector(atom()) -> pid().
start_registered_collector(Name) ->
    Pid = ?LIB:start_collector(),
    true = register(Name, Pid),
    Pid.

%% @doc Waits until Collector holds every message in Msgs; ok or
%% {missing, Msgs, Collected}.
-spec wait_for(pid(), [term()], timeout()) -> ok | {missing, [term()], [term()]}.
wait_for(Collector, Msgs, Timeout) ->
    Have = fun() -> Msgs -- ?LIB:collected(Collector) =:= [] end,
    case ?LIB:wait_until(Have, Timeout) of
        ok -> ok;
        timeout -> {missing, Msgs -- ?LIB:collected(Collector), ?LIB:collected(Collector)}
    end.
