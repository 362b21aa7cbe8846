%% @doc The supervisor of the lanes of {@link tether_channel} (one
%% {@link tether_channel_lane} per peer, channel and lane index, started
%% on demand by `tether_channel', temporary: a lane that dies is started
%% afresh, with a new epoch, by the next message that needs it).
-module(tether_channel_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

%% @doc Starts the supervisor, registered as `tether_channel_sup'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% @private
-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Flags = #{strategy => simple_one_for_one, intensity => 100, period => 10},
    Lane = #{id => tether_channel_lane,
             start => {tether_channel_lane, start_link, []},
             restart => temporary,
             shutdown => 1000,
             type => worker,
             modules => [tether_channel_lane]},
    {ok, {Flags, [Lane]}}.
