# tether_ct from ExUnit: the kit is an Erlang module of the tether
# dependency, called as :tether_ct. The test process need not be
# distributed: the kit controls its nodes over their standard I/O.
defmodule TetherMixCheck.TetherCtTest do
  use ExUnit.Case

  @moduletag timeout: 180_000

  test "a cluster started with :tether_ct is partitioned and healed" do
    cluster =
      :tether_ct.start_cluster([], %{beam: 2, cnodes: 1, heartbeat_ms: 200, ttl_ms: 1000})

    on_exit(fn -> :tether_ct.stop_cluster(cluster) end)

    [a, b] = :tether_ct.beam_nodes(cluster)
    [c] = :tether_ct.cnodes(cluster)
    assert :tether_ct.nodes(cluster) == [a, b, c]

    :ok = :tether_ct.partition(cluster, [a], [b, c], :drop)

    :ok =
      :tether_ct.wait_until(
        fn -> :tether_ct.call(cluster, a, :tether, :members, []) == [a] end,
        10_000
      )

    :ok = :tether_ct.heal(cluster)
    :ok = :tether_ct.assert_members_agree(cluster)
    assert :tether_ct.call(cluster, a, :tether, :members, []) == Enum.sort([a, b, c])
  end
end
