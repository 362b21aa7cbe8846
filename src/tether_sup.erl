%% @doc The top supervisor of tether: today one child, {@link tether_server}
%% (registered as `tether'), which owns the cluster engine. Later modules
%% (the registry first) start here after it, so a restart of the server
%% restarts them too (rest_for_one).
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
    {ok, {Flags, [Server]}}.
