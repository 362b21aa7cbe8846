%% @doc Messaging with delivery guarantees, issue 19, between this driver
%% node and a peer, both running the tether application. Run by
%% bench/run.
%%
%%   forward_ack_ratio          messages per second of
%%                              tether_peer_service:forward_message/4 with
%%                              `ack => true' / of plain erlang:send/2,
%%                              between the same two nodes, the receiver
%%                              answering once per 100 messages and the
%%                              sender waiting for that answer (median of
%%                              alternating rounds); forward_ack_per_s and
%%                              erlang_send_per_s the rates.
%%   forward_channel_hol_ratio  round trip of a small message on the
%%                              default channel (forward_message there,
%%                              plain reply back) while channel `bulk'
%%                              carries 8 MiB messages back to back /
%%                              the same round trip with `bulk' idle
%%                              (medians; both paced alike, 5 ms between
%%                              pings, so both wake the schedulers
%%                              alike); forward_small_rtt_us and
%%                              forward_small_rtt_loaded_us the times.
%%   erlang_send_hol_ratio      the same ratio for a plain erlang:send/2
%%                              round trip to the same echo process, in
%%                              the same run: what the 8 MiB load costs
%%                              any message on this machine (the floor
%%                              of the ratio above).
%%
%% Output: `name: value' lines.
-module(tether_messaging_bench).

-export([main/1]).
%% Run on the peer.
-export([counter/2, echo/0, sink/0]).

-define(BATCH, 100).
-define(BATCHES, 20).
-define(ROUNDS, 7).
-define(PINGS, 60).
-define(BIG, 8 * 1024 * 1024).
-define(ENV, [{heartbeat_ms, 200}, {ttl_ms, 2000},
              {channels, #{bulk => #{parallelism => 1}}}]).

%% @doc Entry point: main([]). Prints the results and stops the node.
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    tether_bench_lib:with_cluster("tether_msg_bench", ?ENV,
                                  fun([P | _]) -> ack_bench(P), hol_bench(P) end).

%%% forward_ack_ratio

ack_bench(Peer) ->
    Counter = spawn(Peer, ?MODULE, counter, [self(), 0]),
    Msg = {msg, <<"a small payload of some sixty-four bytes, as messages go..">>},
    Ack = fun() -> rate(fun() ->
                                ok = tether_peer_service:forward_message(
                                       Peer, Counter, Msg, #{ack => true})
                        end) end,
    Plain = fun() -> rate(fun() -> Counter ! Msg end) end,
    {A, P} = tether_bench_lib:alternate(?ROUNDS, Ack, Plain),
    Counter ! stop,
    io:format("forward_ack_per_s: ~w~n", [round(A)]),
    io:format("erlang_send_per_s: ~w~n", [round(P)]),
    io:format("forward_ack_ratio: ~.2f~n", [A / P]).

%% Messages per second: ?BATCHES batches of ?BATCH sends, each batch
%% waiting for the receiver's answer.
rate(Send) ->
    T0 = erlang:monotonic_time(microsecond),
    lists:foreach(fun(_) ->
                          [Send() || _ <- lists:seq(1, ?BATCH)],
                          receive batch -> ok after 30000 -> error(no_answer) end
                  end, lists:seq(1, ?BATCHES)),
    Us = erlang:monotonic_time(microsecond) - T0,
    ?BATCH * ?BATCHES * 1000000 / max(1, Us).

%% @private Answers `batch' to Parent every ?BATCH messages.
-spec counter(pid(), non_neg_integer()) -> ok.
counter(Parent, N) ->
    receive
        stop -> ok;
        _ when N + 1 =:= ?BATCH -> Parent ! batch, counter(Parent, 0);
        _ -> counter(Parent, N + 1)
    end.

%%% forward_channel_hol_ratio

hol_bench(Peer) ->
    Echo = spawn(Peer, ?MODULE, echo, []),
    Sink = spawn(Peer, ?MODULE, sink, []),
    _ = [ping(Peer, Echo) || _ <- lists:seq(1, 10)],
    Idle = paced(fun() -> ping(Peer, Echo) end),
    IdlePlain = paced(fun() -> plain(Echo) end),
    Self = self(),
    Loader = spawn_link(fun() -> load(Peer, Sink, Self) end),
    %% Let the first large message get under way.
    receive loading -> ok end,
    timer:sleep(50),
    Loaded = paced(fun() -> ping(Peer, Echo) end),
    LoadedPlain = paced(fun() -> plain(Echo) end),
    unlink(Loader),
    exit(Loader, kill),
    Echo ! stop,
    Sink ! stop,
    io:format("forward_small_rtt_us: ~w~n", [Idle]),
    io:format("forward_small_rtt_loaded_us: ~w~n", [Loaded]),
    io:format("forward_channel_hol_ratio: ~.2f~n", [Loaded / max(1, Idle)]),
    io:format("erlang_send_rtt_us: ~w~n", [IdlePlain]),
    io:format("erlang_send_rtt_loaded_us: ~w~n", [LoadedPlain]),
    io:format("erlang_send_hol_ratio: ~.2f~n", [LoadedPlain / max(1, IdlePlain)]).

%% The median of ?PINGS round trips, each after a 5 ms pause.
paced(Ping) ->
    tether_bench_lib:median([begin timer:sleep(5), Ping() end
                             || _ <- lists:seq(1, ?PINGS)]).

%% A round trip of a plain erlang:send/2 to the echo process.
plain(Echo) ->
    T0 = erlang:monotonic_time(microsecond),
    Echo ! {ping, self()},
    receive pong -> ok after 30000 -> error(no_pong) end,
    erlang:monotonic_time(microsecond) - T0.

ping(Peer, Echo) ->
    T0 = erlang:monotonic_time(microsecond),
    ok = tether_peer_service:forward_message(Peer, Echo, {ping, self()}, #{}),
    receive pong -> ok after 30000 -> error(no_pong) end,
    erlang:monotonic_time(microsecond) - T0.

%% 8 MiB messages on `bulk', the next sent once the sink had the last.
load(Peer, Sink, Parent) ->
    Big = binary:copy(<<"x">>, ?BIG),
    Parent ! loading,
    load_loop(Peer, Sink, Big).

load_loop(Peer, Sink, Big) ->
    ok = tether_peer_service:forward_message(Peer, Sink, {big, self(), Big},
                                             #{channel => bulk}),
    receive got -> ok after 60000 -> error(no_sink) end,
    load_loop(Peer, Sink, Big).

%% @private Answers `pong' to each ping.
-spec echo() -> ok.
echo() ->
    receive
        {ping, From} -> From ! pong, echo();
        stop -> ok
    end.

%% @private Answers `got' to each large message.
-spec sink() -> ok.
sink() ->
    receive
        {big, From, _} -> From ! got, sink();
        stop -> ok
    end.
