# tether: the front door. The real C build is c_src/Makefile; rebar3 drives
# it through a pre-compile hook (rebar.config).
#
#   make            build everything (rebar3 compile)
#   make demo       install what is missing, build, show what works
#   make test       install what is missing, run every test suite
#   make deps       install missing Debian packages
#   make check      layering of c_src, rebar3 xref, dialyzer and edoc
#   make fmt        clang-format every C file
#   make bench      benchmarks, printed as ratios against stock OTP
#   make sim        the cluster simulator over SEEDS seeds (default 1000)
#   make fuzz       libFuzzer targets, FUZZ_SECONDS each (default 30)
#   make clean

SEEDS        ?= 1000
FUZZ_SECONDS ?= 30

.PHONY: all deps demo test check fmt bench sim fuzz clean help
all: deps
	rebar3 compile

help:
	@sed -n '4,14s/^# \{0,1\}//p' Makefile

deps:
	@scripts/deps.sh

demo: deps
	@scripts/demo.sh

test: deps
	@scripts/test.sh

check: all
	$(MAKE) -C c_src check-layers
	rebar3 xref
	rebar3 dialyzer
	rebar3 edoc

fmt:
	clang-format -i $$(find c_src fuzz examples bench -name '*.[ch]' -not -path '*/build/*')

bench: all
	@bench/run

sim: deps
	$(MAKE) -C c_src sim SEEDS=$(SEEDS)

fuzz:
	@scripts/deps.sh --fuzz
	$(MAKE) -C fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

clean:
	rebar3 clean
	$(MAKE) -C c_src clean
	$(MAKE) -C fuzz clean
	rm -rf _build test/mix_project/_build test/mix_project/deps
