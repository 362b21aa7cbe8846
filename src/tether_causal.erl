%% @doc Causal delivery of the messages sent with `causal_label' (see
%% {@link tether_peer_service:forward_message/3}): per label, the
%% Schiper-Eggli-Sandoz algorithm, which orders point-to-point messages
%% (not only broadcasts) by vector clocks.
%%
%% Per label this node keeps a vector clock `T' (`#{Node => Count}') and
%% `V', the latest timestamp it knows of a message sent to each node
%% (`#{Dest => T}'). A send to Q ticks our entry of T and carries `{T, V}'
%% (V as it was before this send); then V's entry for Q becomes T. A
%% message that arrives carrying an entry for this node in its V is held
%% until our T has reached that entry (every message it depends on has
%% been delivered here); on delivery V takes the message's entries
%% (componentwise max, this node's own left out) and T the maximum of
%% both clocks, then ticks. So a reply never overtakes its cause at a
%% third node, whatever the lanes and the network do. The ordering holds
%% between the messages of one label; an `ack' is given when the message
%% reaches this process (before it may be held for causality). Clocks
%% live in memory: a restart of tether on a node starts its labels
%% afresh.
-module(tether_causal).
-behaviour(gen_server).

-export([start_link/0, stamp/2, received/6, held/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-define(SERVER, ?MODULE).

-type clock() :: #{node() => non_neg_integer()}.

-record(msg, {label :: term(), from :: node(), t :: clock(),
              v :: #{node() => clock()}, ref :: tether_channel:server_ref(),
              payload :: term()}).

-record(st, {t = #{} :: #{term() => clock()},
             v = #{} :: #{term() => #{node() => clock()}},
             held = [] :: [#msg{}]}).

%% @doc Starts the process registered as `tether_causal'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% @doc Stamps a send under Label to Dest: `{T, V}' for the message.
-spec stamp(term(), node()) -> {clock(), #{node() => clock()}}.
stamp(Label, Dest) ->
    gen_server:call(?SERVER, {stamp, Label, Dest}).

%% @doc A message stamped by From under Label reached this node: it is
%% delivered to Ref when its causes have been.
-spec received(term(), node(), clock(), #{node() => clock()},
               tether_channel:server_ref(), term()) -> ok.
received(Label, From, T, V, Ref, Payload) when is_map(T), is_map(V) ->
    gen_server:cast(?SERVER, #msg{label = Label, from = From, t = T, v = V,
                                  ref = Ref, payload = Payload});
received(_Label, _From, _T, _V, _Ref, _Payload) ->
    tether_channel:count(malformed),
    ok.

%% @doc How many messages wait for their causes here.
-spec held() -> non_neg_integer().
held() ->
    gen_server:call(?SERVER, held).

%% @private
-spec init([]) -> {ok, #st{}}.
init([]) ->
    {ok, #st{}}.

%% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}}.
handle_call({stamp, Label, Dest}, _From, S = #st{t = Ts, v = Vs}) ->
    T = tick(maps:get(Label, Ts, #{})),
    V = maps:get(Label, Vs, #{}),
    {reply, {T, V}, S#st{t = Ts#{Label => T}, v = Vs#{Label => V#{Dest => T}}}};
handle_call(held, _From, S) ->
    {reply, length(S#st.held), S};
handle_call(_Req, _From, S) ->
    {reply, {error, unknown_call}, S}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(M = #msg{}, S = #st{held = Held}) ->
    {noreply, deliver(S#st{held = Held ++ [M]})};
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info(_Msg, S) ->
    {noreply, S}.

%% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, _S) ->
    ok.

%% Delivers every held message whose causes were delivered, until none is.
deliver(S = #st{held = Held}) ->
    case lists:splitwith(fun(M) -> not ready(M, S) end, Held) of
        {_, []} ->
            S;
        {Before, [M | After]} ->
            _ = tether_channel:deliver(M#msg.ref, M#msg.payload),
            deliver(merge(M, S#st{held = Before ++ After}))
    end.

ready(#msg{label = L, v = V}, #st{t = Ts}) ->
    case maps:find(node(), V) of
        error -> true;
        {ok, Need} -> leq(Need, maps:get(L, Ts, #{}))
    end.

merge(#msg{label = L, t = T, v = V}, S = #st{t = Ts, v = Vs}) ->
    Mine = maps:get(L, Vs, #{}),
    Merged = maps:fold(fun(D, _, Acc) when D =:= node() -> Acc;
                          (D, C, Acc) -> Acc#{D => max_clock(C, maps:get(D, Acc, #{}))}
                       end, Mine, V),
    S#st{t = Ts#{L => tick(max_clock(T, maps:get(L, Ts, #{})))},
         v = Vs#{L => Merged}}.

tick(T) ->
    maps:update_with(node(), fun(C) -> C + 1 end, 1, T).

leq(A, B) ->
    maps:fold(fun(K, C, Acc) -> Acc andalso C =< maps:get(K, B, 0) end, true, A).

max_clock(A, B) ->
    maps:fold(fun(K, C, Acc) -> Acc#{K => max(C, maps:get(K, Acc, 0))} end, B, A).
