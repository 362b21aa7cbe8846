%% @doc The tether API facade.
%%
%% Every public function of tether lives in this module. So far it only
%% reports the version of the C core; cluster primitives arrive in later
%% releases (see README).
-module(tether).

-export([version/0]).

%% @doc The version of tether's C core as a string, for example `"0.1.0"'.
%% It is read from the loaded NIF library, so it also proves the library
%% loaded.
-spec version() -> string().
version() ->
    binary_to_list(tether_nif:version()).
