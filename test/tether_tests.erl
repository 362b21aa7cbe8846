%% EUnit tests of the tether facade that need no other node.
-module(tether_tests).

-include_lib("eunit/include/eunit.hrl").

version_is_the_application_vsn_test() ->
    _ = application:load(tether),
    {ok, Vsn} = application:get_key(tether, vsn),
    ?assertEqual(Vsn, tether:version()).

nif_version_is_a_binary_test() ->
    ?assert(is_binary(tether_nif:version())).
