# regstack.stats under real concurrency: N calls from M sessions count
# exactly N, including the first calls of every name, which race to
# insert its entry (the counters start from a reset).
#
#  1. 16 sessions x 50 transactions, each: issue, peek, consume, replay
#     the consume (a miss), a recording check on the session's own key and
#     a record on a shared key.
#  2. 32 sessions x 20 checks on one key, max 10 per hour: exactly 10
#     allowed (and recorded) and 630 denied.
#
# The sessions run as an application role that has only EXECUTE on the
# functions, as in production.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('stats_sessions');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_enabled = off
max_connections = 60
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA regstack TO app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO app;
});

my $counters = q{
	SELECT string_agg(format('%s %s', name,
	           concat_ws(' ', issued, peeked, consumed, consume_not_found, consume_misses,
	                     allowed, denied, recorded)), E'\n' ORDER BY kind, name)
	  FROM regstack.stats WHERE datname = 'postgres'};

# 1. 16 sessions x 50 transactions.
$node->safe_psql('postgres', 'SELECT regstack.stats_reset()');
$node->pgbench(
	'--no-vacuum --client=16 --jobs=4 --transactions=50 --protocol=prepared --username=app',
	0,
	[qr{processed: 800/800}],
	[qr{^$}],
	'16 sessions issue, peek, consume, replay and check',
	{
		'031_tokens.sql' => q{
SELECT regstack.issue_token('pre_auth', subject => 'user' || :client_id) AS tok \gset
SELECT subject AS peeked FROM regstack.peek_token(:tok, 'pre_auth') \gset
SELECT subject AS got FROM regstack.consume_token(:tok, 'pre_auth') \gset
SELECT count(*) AS replayed FROM regstack.consume_token(:tok, 'pre_auth') \gset
SELECT allowed FROM regstack.rate_limit_check('user' || :client_id, 'tap_far', 1000000, '1 hour');
SELECT regstack.rate_limit_record('shared', 'tap_record');
}
	});
is($node->safe_psql('postgres', $counters), join("\n",
		'tap_far 800 0 800',
		'tap_record 0 0 800',
		'pre_auth 800 800 800 800 800'),
	'800 calls of each kind from 16 sessions count exactly 800');

# 2. 32 sessions x 20 checks on one key.
$node->safe_psql('postgres', 'SELECT regstack.stats_reset()');
$node->pgbench(
	'--no-vacuum --client=32 --jobs=4 --transactions=20 --username=app',
	0,
	[qr{processed: 640/640}],
	[qr{^$}],
	'32 sessions check one key',
	{
		'031_one_key.sql' => q{
SELECT allowed FROM regstack.rate_limit_check('hot', 'tap_hot', 10, '1 hour');
}
	});
is($node->safe_psql('postgres', $counters), 'tap_hot 10 630 10',
	'of 640 checks on one key, 10 allowed and recorded, 630 denied');

$node->stop;
done_testing();
