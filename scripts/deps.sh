#!/usr/bin/env bash
# Installs whichever Debian packages tether needs are missing, with apt-get
# (through sudo when not root). Does nothing when all are present.
#
#   scripts/deps.sh           build, test and demo dependencies
#   scripts/deps.sh --fuzz    also what `make fuzz` needs (clang, libFuzzer)
set -euo pipefail

packages=(gcc make pkg-config erlang-dev erlang-nox erlang-common-test
          erlang-dialyzer erlang-edoc erlang-proper erlang-proper-dev rebar3
          elixir libsodium-dev libcriterion-dev libssl-dev openssl clang-format
          valgrind)

case "${1:-}" in
    "") ;;
    --fuzz) packages+=(clang libfuzzer-14-dev) ;;
    -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}"
