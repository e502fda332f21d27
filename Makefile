# regstack: PGXS build and tests.
#
#   make                  build (make WERROR=1: warnings are errors, as the
#                         test scripts and CI build it)
#   make install          install into the PostgreSQL found by pg_config
#   make installcheck     pg_regress, isolation and TAP suites, each against
#                         a temporary instance with regstack preloaded
#                         (run as a user PostgreSQL accepts, not root)
#   make bench            the benchmark (test/bench/run.sh; BENCH_MODE=smoke
#                         for the few-second CI version, PGVERSION=17 or 18
#                         for another PostgreSQL), see the README
#   make bench-citus      the same calls on a Citus worker that owns the
#                         rows and through the coordinator, against a
#                         single server (test/bench/citus.sh)
#   make dist             the PGXN distribution regstack-<version>.zip of
#                         the commit HEAD (version from META.json)

EXTENSION = regstack
MODULE_big = regstack
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The install script of the current version is built from sql/install/;
# released versions' scripts and the upgrade scripts are kept as files.
DATA_built = sql/regstack--1.1.sql
DATA = sql/regstack--1.0.sql sql/regstack--1.0--1.1.sql
PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare
# Warnings are errors when asked (CI, test/lib/common.sh), not by default:
# a packager's newer compiler must not fail the build over a new warning.
ifeq ($(WERROR),1)
PG_CFLAGS += -Werror
endif

# pg_regress: every sql/*.sql except the built install script.
REGRESS = $(filter-out regstack--%,$(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql))))
TEMP_CONF_FILE = $(abspath test/regstack.conf)
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=$(TEMP_CONF_FILE) \
	--load-extension=regstack

# Isolation specs: test/isolation/specs/*.spec, expected in test/isolation/expected.
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --temp-instance=tmp_check_iso \
	--temp-config=$(TEMP_CONF_FILE) --load-extension=regstack

# TAP tests: test/t/*.pl (PostgreSQL::Test::Cluster), when there are any.
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
ifneq ($(PROVE_TESTS),)
TAP_TESTS = 1
endif

EXTRA_CLEAN = sql/regstack--1.1.sql output_iso tmp_check_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on the headers.
$(OBJS): $(wildcard src/*.h)

# src/digests.c calls OpenSSL's libcrypto when PostgreSQL is built with it.
ifeq ($(with_ssl),openssl)
SHLIB_LINK += -lcrypto
endif

sql/regstack--1.1.sql: $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@

# The benchmark: builds its own private copy, starts throwaway servers.
.PHONY: bench bench-citus
bench:
	bash test/bench/run.sh

# regstack on Citus: the owner worker and the coordinator against a
# single server, in one run (test/bench/citus.sh).
bench-citus:
	bash test/bench/citus.sh

# The PGXN distribution: the committed tree of HEAD under regstack-<version>/,
# plus the built install script, which META.json names as the extension's
# file.  The version is META.json's top-level "version" (the only "version"
# at two spaces' indent).
DIST = regstack-$(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' META.json)
.PHONY: dist
dist: sql/regstack--1.1.sql
	@git diff --quiet HEAD -- sql/install || \
		{ echo "sql/install/ has uncommitted changes: commit them first" >&2; exit 1; }
	git archive --format zip --prefix=$(DIST)/sql/ --add-file=sql/regstack--1.1.sql \
		--prefix=$(DIST)/ -o $(DIST).zip HEAD
