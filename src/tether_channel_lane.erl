%% @doc One lane of {@link tether_channel}: for one peer, channel and
%% lane index, the sending half (sequence numbers, the window of
%% unacknowledged frames, retransmission with bounded exponential
%% backoff, give-ups) and the receiving half (duplicate filter by epoch
%% and sequence, in-order delivery, reassembly of parts, cumulative
%% acks). See {@link tether_channel} for the guarantees.
%%
%% == Frames ==
%% ```
%% {m, ServerRef, Payload, Ack}   a whole message (Ack: boolean())
%% {p, Bin}                       a part of a large message
%% {l, Bin}                       its last part; the parts joined are
%%                                term_to_binary({ServerRef, Payload, Ack})
%% skip                           a message given up (or its parts): the
%%                                receiver discards what it holds of it
%% '''
%% Sealed batch: `{data, Channel, Index, Epoch, Base, [{Seq, Frame}]}'
%% (Base: the lowest sequence number the sender still holds); ack:
%% `{ack, Channel, Index, Epoch, UpTo, FailedSeqs}' (FailedSeqs: messages
%% sent with `ack' whose process the receiver did not find). Both travel
%% as `{tether_channel, Batch | Ack}' sealed under the session; round a
%% cut path (`transitive') as `{tether_channel, {relayed, Batch | Ack}}'
%% signed by the origin (see {@link tether_channel}).
-module(tether_channel_lane).
-behaviour(gen_server).

-export([start_link/1, push/5, info/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-define(DRAIN_MAX, 1024).
-define(RX_AHEAD_MAX, 1000000).
-define(FAILED_MAX, 256).

%% A frame held by the sender: sequence number, frame, size in bytes,
%% who to tell if it is given up, and when (monotonic ms; `undefined'
%% until the first transmission of a message without ack), and whether
%% it may go through other members when the direct path is cut.
-record(f, {seq :: pos_integer(),
            frame :: term(),
            bytes :: non_neg_integer(),
            report :: undefined | {pid(), term(), term(), integer()},
            expire :: integer() | undefined,
            relay = false :: boolean()}).

-record(st, {peer :: node(),
             chan :: term(),
             index :: non_neg_integer(),
             epoch :: integer(),
             next = 1 :: pos_integer(),
             pending = queue:new() :: queue:queue(#f{}),
             inflight = queue:new() :: queue:queue(#f{}),
             inflight_bytes = 0 :: non_neg_integer(),
             window :: pos_integer(),
             rto :: pos_integer(),
             rto_min :: pos_integer(),
             rto_max :: pos_integer(),
             hold_ms :: pos_integer(),
             timer :: reference() | undefined,
             rx_epoch :: integer() | undefined,
             rx_next = 1 :: pos_integer(),
             rx_buf = #{} :: #{pos_integer() => term()},
             rx_parts = [] :: [binary()],
             rx_failed = [] :: [pos_integer()],
             rx_relayed = false :: boolean(),
             busy = false :: boolean()}).

%%% API

%% @doc Starts the lane `{Peer, Channel, Index}' (by tether_channel_sup).
-spec start_link({node(), term(), non_neg_integer()}) ->
          {ok, pid()} | {error, term()}.
start_link(Key) ->
    gen_server:start_link(?MODULE, Key, []).

%% @doc Queues Payload for ServerRef on the lane (from the sending
%% process: a large payload is encoded and cut into parts here, not in
%% the lane). Report is `{Pid, ServerRef, Msg, Deadline}' for a message
%% with ack, else `undefined'; Relay says whether the message may go
%% through other members while the direct path to the peer is cut.
-spec push(pid(), tether_channel:server_ref(), term(),
           undefined | {pid(), term(), term(), integer()}, boolean()) -> ok.
push(Lane, Ref, Payload, Report, Relay) ->
    Ack = Report =/= undefined,
    Part = env(channel_part_bytes, 8192),
    Frames = case erlang:external_size(Payload) > Part of
                 false ->
                     [{{m, Ref, Payload, Ack}, erlang:external_size(Payload)}];
                 true ->
                     parts(term_to_binary({Ref, Payload, Ack}), Part)
             end,
    Lane ! {push, Frames, Report, Relay},
    ok.

%% @doc The lane's counts: frames pending, in flight, bytes in flight,
%% the current retransmission timeout.
-spec info(pid()) -> map().
info(Lane) ->
    gen_server:call(Lane, info).

%%% gen_server

%% @private
-spec init({node(), term(), non_neg_integer()}) -> {ok, #st{}}.
init({Peer, Chan, Index}) ->
    RtoMin = env(channel_rto_ms, 200),
    {ok, #st{peer = Peer, chan = Chan, index = Index,
             epoch = erlang:system_time(microsecond),
             window = env(channel_window_bytes, 8192),
             rto = RtoMin, rto_min = RtoMin,
             rto_max = max(RtoMin, env(channel_rto_max_ms, 5000)),
             hold_ms = env(channel_hold_ms, 1000)}}.

%% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}}.
handle_call(info, _From, S) ->
    {reply, #{pending => queue:len(S#st.pending),
              inflight => queue:len(S#st.inflight),
              inflight_bytes => S#st.inflight_bytes, rto => S#st.rto,
              rx_next => S#st.rx_next}, S};
handle_call(_Req, _From, S) ->
    {reply, {error, unknown_call}, S}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info(Msg, S) ->
    {noreply, S1} = info(Msg, S),
    {noreply, priority(S1)}.

%% A lane busy with a large message (parts in flight, or being received)
%% runs at low priority, so the small messages of the other lanes and
%% their replies pass first on a loaded machine.
priority(S = #st{busy = Busy}) ->
    Now = S#st.rx_parts =/= [] orelse has_parts(S#st.inflight)
        orelse has_parts(S#st.pending),
    case Now =:= Busy of
        true ->
            S;
        false ->
            _ = process_flag(priority, case Now of true -> low; false -> normal end),
            S#st{busy = Now}
    end.

has_parts(Q) ->
    case queue:peek_r(Q) of
        {value, #f{frame = {p, _}}} -> true;
        {value, #f{frame = {l, _}}} -> true;
        _ -> false
    end.

info({push, Frames, Report, Relay}, S) ->
    S1 = drain(queue(Frames, Report, Relay, S), ?DRAIN_MAX),
    {noreply, pump(S1)};
info({env, From, Bytes}, S = #st{peer = From}) ->
    case engine() of
        undefined ->
            {noreply, S};
        E ->
            case tether_rpc:open(E, From, Bytes) of
                {ok, {tether_channel, Inner}} ->
                    {noreply, inner(Inner, S#st{rx_relayed = false})};
                {ok, _} ->
                    tether_channel:count(malformed),
                    {noreply, S};
                deferred ->
                    {noreply, S};
                {error, Reason} ->
                    tether_channel:count(refused(Reason)),
                    {noreply, S}
            end
    end;
info({opened, From, Inner}, S = #st{peer = From}) ->
    {noreply, inner(Inner, S)};
info({relayed, From, Inner}, S = #st{peer = From}) ->
    %% Came round a cut path: the acks go back the same way.
    {noreply, inner(Inner, S#st{rx_relayed = true})};
info(peer_up, S) ->
    {noreply, retransmit(S#st{rto = S#st.rto_min})};
info({timeout, TRef, rto}, S = #st{timer = TRef}) ->
    S1 = retransmit(S#st{timer = undefined}),
    {noreply, S1#st{rto = min(2 * S#st.rto, S#st.rto_max)}};
info(_Msg, S) ->
    {noreply, S}.

%% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, _S) ->
    ok.

%%% Sending half

parts(Bin, Part) when byte_size(Bin) =< Part ->
    [{{l, Bin}, byte_size(Bin)}];
parts(Bin, Part) ->
    <<Head:Part/binary, Rest/binary>> = Bin,
    [{{p, Head}, Part} | parts(Rest, Part)].

%% Takes more pushes that are already waiting, so that they travel in
%% one sealed batch.
drain(S, 0) ->
    S;
drain(S, N) ->
    receive
        {push, Frames, Report, Relay} ->
            drain(queue(Frames, Report, Relay, S), N - 1)
    after 0 ->
        S
    end.

queue([], _Report, _Relay, S) ->
    S;
queue([{Frame, Bytes}], Report, Relay, S = #st{next = Seq, pending = P}) ->
    F = #f{seq = Seq, frame = Frame, bytes = Bytes, report = Report,
           expire = expire_of(Report), relay = Relay},
    S#st{next = Seq + 1, pending = queue:in(F, P)};
queue([{Frame, Bytes} | Rest], Report, Relay,
      S = #st{next = Seq, pending = P}) ->
    F = #f{seq = Seq, frame = Frame, bytes = Bytes, report = undefined,
           expire = expire_of(Report), relay = Relay},
    queue(Rest, Report, Relay,
          S#st{next = Seq + 1, pending = queue:in(F, P)}).

expire_of(undefined) -> undefined;
expire_of({_, _, _, Deadline}) -> Deadline.

%% Moves pending frames into the window and sends them as one batch.
pump(S) ->
    case take(S, []) of
        {[], S1} -> S1;
        {Sent, S1} -> arm(transmit(Sent, S1))
    end.

take(S = #st{pending = P, inflight = I, inflight_bytes = B, window = W},
     Acc) ->
    case B < W orelse queue:is_empty(I) of
        false ->
            {lists:reverse(Acc), S};
        true ->
            case queue:out(P) of
                {empty, _} ->
                    {lists:reverse(Acc), S};
                {{value, F0}, P1} ->
                    F = first_send(F0, S),
                    take(S#st{pending = P1, inflight = queue:in(F, I),
                              inflight_bytes = B + F#f.bytes}, [F | Acc])
            end
    end.

first_send(F = #f{expire = undefined}, #st{hold_ms = Hold}) ->
    F#f{expire = now_ms() + Hold};
first_send(F, _S) ->
    F.

%% Seals and sends frames; what cannot be sent now (no session, a drop
%% partition) stays in flight for the retransmission. A batch holding a
%% frame sent with `transitive' goes through other members when the
%% direct path is cut (the whole batch: the lane stays in order).
transmit(Fs, S = #st{peer = Peer, chan = Chan, index = Index, epoch = Epoch,
                     inflight = I}) ->
    Base = case queue:peek(I) of
               {value, #f{seq = B}} -> B;
               empty -> S#st.next
           end,
    Batch = {data, Chan, Index, Epoch, Base, [{Seq, Fr} || #f{seq = Seq, frame = Fr} <- Fs]},
    send_sealed(Peer, Chan, Index, Batch,
                lists:any(fun(#f{relay = R}) -> R end, Fs)),
    S.

send_sealed(Peer, Chan, Index, Inner, Relay) ->
    case engine() of
        undefined ->
            ok;
        E ->
            case tether_rpc:seal(E, Peer, {tether_channel, Inner}) of
                {ok, Bytes} ->
                    _ = erlang:send({tether_channel, Peer},
                                    {tether_channel_env, node(), Chan, Index,
                                     Bytes}, [noconnect]),
                    ok;
                deferred ->
                    ok;
                {error, closed} when Relay ->
                    relay(Peer, Inner);
                {error, closed} ->
                    tether_channel:count(unsent),
                    ok;
                {error, Reason} ->
                    tether_channel:count(refused(Reason)),
                    ok
            end
    end.

%% Sends Inner to Peer through the other members (the engine signs it
%% with this node's identity key, see tether_nif:engine_relay/3), as
%% `{tether_channel, {relayed, Inner}}'.
relay(Peer, Inner) ->
    Etf = term_to_binary({tether_channel, {relayed, Inner}}),
    Relay = fun(E) -> tether_nif:engine_relay(E, atom_to_binary(Peer, utf8), Etf) end,
    try tether_server:engine_call(Relay) of
        ok -> tether_channel:count(relayed);
        {error, _} -> tether_channel:count(unsent)
    catch
        exit:_ -> tether_channel:count(unsent)
    end.

%% Gives up what expired, then sends everything in flight again.
retransmit(S0) ->
    S = expire(S0),
    case queue:to_list(S#st.inflight) of
        [] ->
            pump(S);
        Fs ->
            tether_channel:count(retransmissions),
            arm(transmit(Fs, S))
    end.

expire(S = #st{inflight = I, pending = P}) ->
    Now = now_ms(),
    Expire = fun(F) -> {true, expire(F, Now)} end,
    S#st{inflight = queue:filtermap(Expire, I),
         pending = queue:filtermap(Expire, P)}.

expire(F = #f{frame = skip}, _Now) ->
    F;
expire(F = #f{expire = At, report = Report}, Now)
  when is_integer(At), At =< Now ->
    ok = case Report of
             undefined -> tether_channel:count(dropped);
             _ -> undelivered(Report, timeout)
         end,
    F#f{frame = skip, report = undefined};
expire(F, _Now) ->
    F.

%% Tells the sender of a message with ack that it was given up.
undelivered({Pid, Ref, Msg, _}, Reason) ->
    tether_channel:count(undelivered),
    Pid ! {tether_undelivered, Ref, Msg, Reason},
    ok.

arm(S = #st{timer = undefined, inflight = I, rto = Rto}) ->
    case queue:is_empty(I) of
        true -> S;
        false -> S#st{timer = erlang:start_timer(Rto, self(), rto)}
    end;
arm(S) ->
    S.

rearm(S = #st{timer = undefined}) ->
    arm(S);
rearm(S = #st{timer = T}) ->
    _ = erlang:cancel_timer(T),
    arm(S#st{timer = undefined}).

acked(UpTo, Failed, S = #st{inflight = I, inflight_bytes = B}) ->
    case queue:peek(I) of
        {value, F = #f{seq = Seq}} when Seq =< UpTo ->
            ok = case {F#f.report, lists:member(Seq, Failed)} of
                     {undefined, _} -> ok;
                     {Report, true} -> undelivered(Report, noproc);
                     _ -> ok
                 end,
            acked(UpTo, Failed, S#st{inflight = queue:drop(I),
                                     inflight_bytes = B - F#f.bytes});
        _ ->
            S
    end.

%%% Receiving half

inner({data, Chan, Index, Epoch, Base, Frames},
      S = #st{chan = Chan, index = Index}) when is_integer(Epoch),
                                                is_integer(Base),
                                                is_list(Frames) ->
    case rx_epoch(Epoch, Base, S) of
        stale ->
            tether_channel:count(stale),
            S;
        S1 ->
            S2 = deliver(buffer(Frames, S1)),
            Failed = [Q || Q <- S2#st.rx_failed, Q >= Base],
            send_sealed(S#st.peer, Chan, Index,
                        {ack, Chan, Index, Epoch, S2#st.rx_next - 1, Failed},
                        S#st.rx_relayed),
            S2#st{rx_failed = Failed}
    end;
inner({ack, Chan, Index, Epoch, UpTo, Failed},
      S = #st{chan = Chan, index = Index, epoch = Epoch})
  when is_integer(UpTo), is_list(Failed) ->
    Before = queue:len(S#st.inflight),
    S1 = acked(UpTo, Failed, S),
    case queue:len(S1#st.inflight) < Before of
        true -> pump(rearm(S1#st{rto = S1#st.rto_min}));
        false -> S1
    end;
inner({ack, Chan, Index, _OldEpoch, _, _}, S = #st{chan = Chan, index = Index}) ->
    S;
inner(_, S) ->
    tether_channel:count(malformed),
    S.

rx_epoch(Epoch, Base, S = #st{rx_epoch = Rx}) when Rx =:= undefined;
                                                   Epoch > Rx ->
    S#st{rx_epoch = Epoch, rx_next = Base, rx_buf = #{}, rx_parts = [],
         rx_failed = []};
rx_epoch(Epoch, _Base, #st{rx_epoch = Rx}) when Epoch < Rx ->
    stale;
rx_epoch(_Epoch, Base, S = #st{rx_next = Next}) when Base > Next ->
    %% Never for a sender we acknowledged everything below Base to.
    S#st{rx_next = Base, rx_buf = maps:filter(fun(Q, _) -> Q >= Base end,
                                              S#st.rx_buf),
         rx_parts = []};
rx_epoch(_Epoch, _Base, S) ->
    S.

buffer([], S) ->
    S;
buffer([{Seq, Frame} | Rest], S = #st{rx_next = Next, rx_buf = Buf})
  when is_integer(Seq), Seq >= Next, Seq < Next + ?RX_AHEAD_MAX ->
    buffer(Rest, S#st{rx_buf = Buf#{Seq => Frame}});
buffer([{Seq, _} | Rest], S) when is_integer(Seq) ->
    tether_channel:count(duplicates),
    buffer(Rest, S);
buffer([_ | Rest], S) ->
    tether_channel:count(malformed),
    buffer(Rest, S).

deliver(S = #st{rx_next = Next, rx_buf = Buf}) ->
    case maps:take(Next, Buf) of
        {Frame, Buf1} ->
            deliver(frame(Next, Frame, S#st{rx_next = Next + 1, rx_buf = Buf1}));
        error ->
            S
    end.

frame(Seq, {m, Ref, Payload, Ack}, S) ->
    message(Seq, Ref, Payload, Ack, S);
frame(_Seq, {p, Bin}, S = #st{rx_parts = Parts}) when is_binary(Bin) ->
    S#st{rx_parts = [Bin | Parts]};
frame(Seq, {l, Bin}, S = #st{rx_parts = Parts}) when is_binary(Bin) ->
    Whole = iolist_to_binary(lists:reverse(Parts, [Bin])),
    try binary_to_term(Whole) of
        {Ref, Payload, Ack} -> message(Seq, Ref, Payload, Ack, S#st{rx_parts = []});
        _ -> tether_channel:count(malformed), S#st{rx_parts = []}
    catch
        error:badarg -> tether_channel:count(malformed), S#st{rx_parts = []}
    end;
frame(_Seq, skip, S) ->
    S#st{rx_parts = []};
frame(_Seq, _, S) ->
    tether_channel:count(malformed),
    S#st{rx_parts = []}.

message(Seq, Ref, Payload, Ack, S = #st{rx_failed = Failed}) ->
    case hand(Ref, Payload, S) of
        ok ->
            S;
        {error, noproc} ->
            tether_channel:count(noproc),
            case Ack of
                true -> S#st{rx_failed = lists:sublist([Seq | Failed], ?FAILED_MAX)};
                _ -> S
            end
    end.

%% A causal message goes to tether_causal, which holds it until its
%% causes were delivered; the others straight to their process.
hand(Ref, {'$tether_causal', Label, T, V, Payload}, #st{peer = Peer}) ->
    case tether_channel:resolve(Ref) of
        undefined -> {error, noproc};
        _ -> tether_causal:received(Label, Peer, T, V, Ref, Payload)
    end;
hand(Ref, Payload, _S) ->
    tether_channel:deliver(Ref, Payload).

%%% Helpers

refused(Reason) when is_atom(Reason) ->
    list_to_atom("refused_" ++ atom_to_list(Reason));
refused(_) ->
    refused.

engine() ->
    tether_server:engine().

now_ms() ->
    erlang:monotonic_time(millisecond).

env(Key, Default) ->
    case application:get_env(tether, Key) of
        {ok, V} when is_integer(V), V > 0 -> V;
        _ -> Default
    end.
