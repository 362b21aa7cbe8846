%% @doc The top supervisor of tether. Its children start in order:
%% {@link tether_server} (registered as `tether'), which owns the cluster
%% engine, then {@link tether_service_server}, which registers this
%% node's service instances in that engine, then {@link
%% tether_rpc_server}, which runs the calls a defer partition held, then
%% the messaging of {@link tether_peer_service}: `tether_channel_sup'
%% (the lanes), {@link tether_channel} (their dispatcher), {@link
%% tether_causal} (causal labels) and {@link
%% tether_peer_service} (callbacks, specs, injected partitions). The
%% strategy is rest_for_one: a restart of the server (a fresh engine)
%% restarts the children after it too.
-module(tether_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

%% @doc Starts the supervisor, registered as `tether_sup'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% @private
-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Flags = #{strategy => rest_for_one, intensity => 5, period => 10},
    Server = #{id => tether_server,
               start => {tether_server, start_link, []},
               restart => permanent,
               shutdown => 5000,
               type => worker,
               modules => [tether_server]},
    Services = #{id => tether_service_server,
                 start => {tether_service_server, start_link, []},
                 restart => permanent,
                 shutdown => 5000,
                 type => worker,
                 modules => [tether_service_server]},
    Rpc = #{id => tether_rpc_server,
            start => {tether_rpc_server, start_link, []},
            restart => permanent,
            shutdown => 5000,
            type => worker,
            modules => [tether_rpc_server]},
    Lanes = #{id => tether_channel_sup,
              start => {tether_channel_sup, start_link, []},
              restart => permanent,
              shutdown => infinity,
              type => supervisor,
              modules => [tether_channel_sup]},
    Channel = #{id => tether_channel,
                start => {tether_channel, start_link, []},
                restart => permanent,
                shutdown => 5000,
                type => worker,
                modules => [tether_channel]},
    Causal = #{id => tether_causal,
               start => {tether_causal, start_link, []},
               restart => permanent,
               shutdown => 5000,
               type => worker,
               modules => [tether_causal]},
    Peer = #{id => tether_peer_service,
             start => {tether_peer_service, start_link, []},
             restart => permanent,
             shutdown => 5000,
             type => worker,
             modules => [tether_peer_service]},
    {ok, {Flags, [Server, Services, Rpc, Lanes, Channel, Causal, Peer]}}.
