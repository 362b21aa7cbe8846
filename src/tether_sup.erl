%% @doc The supervisors of tether: the top one, `tether_sup', and
%% `tether_channel_sup', the lanes of the messaging.
%%
%% The children of `tether_sup' start in order: {@link tether_server}
%% (registered as `tether'), which owns the cluster engine, then {@link
%% tether_service_server}, which registers this node's service instances
%% in that engine, then {@link tether_rpc_server}, which runs the calls a
%% defer partition held, then the messaging of {@link
%% tether_peer_service}: `tether_channel_sup' (the lanes), {@link
%% tether_channel} (their dispatcher), {@link tether_causal} (causal
%% labels) and {@link tether_peer_service} (callbacks, specs, injected
%% partitions). The strategy is rest_for_one: a restart of the server (a
%% fresh engine) restarts the children after it too.
%%
%% `tether_channel_sup' holds one {@link tether_channel_lane} per peer,
%% channel and lane index, started on demand by `tether_channel',
%% temporary: a lane that dies is started afresh, with a new epoch, by
%% the next message that needs it.
-module(tether_sup).
-behaviour(supervisor).

-export([start_link/0, start_link/1, init/1]).

-type name() :: tether_sup | tether_channel_sup.

%% @doc Starts the top supervisor, registered as `tether_sup'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    start_link(tether_sup).

%% @doc Starts the supervisor Name (`tether_sup' or
%% `tether_channel_sup'), registered under that name.
-spec start_link(name()) -> {ok, pid()} | ignore | {error, term()}.
start_link(Name) ->
    supervisor:start_link({local, Name}, ?MODULE, Name).

%% @private
-spec init(name()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(tether_sup) ->
    Flags = #{strategy => rest_for_one, intensity => 5, period => 10},
    Lanes = #{id => tether_channel_sup,
              start => {?MODULE, start_link, [tether_channel_sup]},
              type => supervisor},
    {ok, {Flags, [child(tether_server), child(tether_service_server),
                  child(tether_rpc_server), Lanes, child(tether_channel),
                  child(tether_causal), child(tether_peer_service)]}};
init(tether_channel_sup) ->
    Flags = #{strategy => simple_one_for_one, intensity => 100, period => 10},
    Lane = (child(tether_channel_lane))#{restart => temporary,
                                         shutdown => 1000},
    {ok, {Flags, [Lane]}}.

%% A permanent worker started by Module:start_link(), with the
%% supervisor's defaults for the rest (5000 ms to shut down).
child(Module) ->
    #{id => Module, start => {Module, start_link, []}}.
