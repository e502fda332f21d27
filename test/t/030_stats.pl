# regstack.stats beyond one preloaded instance:
#
#  1. Without preloading: the views and stats_reset() raise 55000 with a
#     clear message and hint (not zeros), and every counted call works.
#  2. Counters are per database; past regstack.stats_max_entries names,
#     counts go to one overflow row per kind (datid and name NULL).
#  3. A clean restart keeps every counter and the reset time (the file
#     pg_stat/regstack_stats.stat exists only while the server is down); a
#     smaller stats_max_entries at restart moves the names beyond it into
#     the overflow rows, keeping the totals; an immediate stop keeps them
#     too (as pg_stat_statements'); a crash starts from zero.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The SQLSTATE, message and hint of the error $sql raises in $db.
sub error_of
{
	my ($node, $db, $sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	return "no error" if $ret == 0;
	my ($state_message) = $stderr =~ /ERROR:  (.*)/;
	my ($hint) = $stderr =~ /HINT:  (.*)/;
	return $state_message . ($hint ? " / $hint" : '');
}

# 1. Without preloading.
my $plain = PostgreSQL::Test::Cluster->new('stats_no_preload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION regstack');
my $hint = "Add regstack to shared_preload_libraries in postgresql.conf and restart the server.";
is(error_of($plain, 'postgres', 'SELECT * FROM regstack.stats'),
	"55000: regstack.stats needs shared_preload_libraries = 'regstack' / $hint",
	'without preloading, reading regstack.stats is an error, not zeros');
is(error_of($plain, 'postgres', 'SELECT * FROM regstack.reaper_lag'),
	"55000: regstack.reaper_lag needs shared_preload_libraries = 'regstack' / $hint",
	'... and regstack.reaper_lag');
is(error_of($plain, 'postgres', 'SELECT regstack.stats_reset()'),
	"55000: regstack.stats_reset() needs shared_preload_libraries = 'regstack' / $hint",
	'... and stats_reset()');
is($plain->safe_psql('postgres', q{
	SELECT count(*) FROM regstack.consume_token(regstack.issue_token('pre_auth', subject => 'a'), 'pre_auth');
	SELECT count(*) FROM regstack.consume_token(repeat('A', 48), 'pre_auth');
	SELECT count(*) FROM regstack.peek_token(regstack.issue_token('password_reset', subject => 'a'), 'password_reset');
	SELECT regstack.revoke_tokens('a');
	SELECT allowed FROM regstack.rate_limit_check('k', 'e', 1, '1 hour');
	SELECT allowed FROM regstack.rate_limit_check('k', 'e', 1, '1 hour');
	SELECT regstack.rate_limit_record('k', 'e');
	SELECT regstack.rate_limit_reset('k');
	SELECT tokens_deleted FROM regstack.purge_expired();
}), "1\n0\n1\n1\nt\nf\n\n2\n0", 'every counted call works without preloading');
$plain->stop;

# 2. Per database, and the overflow rows.
my $node = PostgreSQL::Test::Cluster->new('stats');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_enabled = off
regstack.stats_max_entries = 4
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION regstack');

my $rows = q{
	SELECT string_agg(format('%s %s %s: %s', coalesce(datname, '-'), kind, coalesce(name, '(other)'),
	                         concat_ws(' ', issued, allowed, recorded)), E'\n'
	                  ORDER BY datname NULLS LAST, kind, name NULLS LAST)
	  FROM regstack.stats};

# Four names take the four slots: two in postgres, one in other, one more
# in postgres; then two more names overflow, one of each kind.
$node->safe_psql('postgres', q{
	SELECT regstack.issue_token('pre_auth', subject => 'a');
	SELECT regstack.issue_token('pre_auth', subject => 'b');
	SELECT regstack.issue_token('oidc_exchange', subject => 'a');});
$node->safe_psql('other', q{SELECT regstack.issue_token('pre_auth', subject => 'a')});
$node->safe_psql('postgres', q{SELECT regstack.rate_limit_record('k', 'login_attempt')});
$node->safe_psql('postgres', q{
	SELECT regstack.issue_token('download', payload => '{}');
	SELECT regstack.issue_token('download', payload => '{}');});
$node->safe_psql('other', q{
	SELECT allowed FROM regstack.rate_limit_check('k', '2fa_attempt');
	SELECT regstack.issue_token('oidc_exchange', subject => 'a');});
my $expected = join("\n",
	'other token_type pre_auth: 1',
	'postgres event_type login_attempt: 0 1',
	'postgres token_type oidc_exchange: 1',
	'postgres token_type pre_auth: 2',
	'- event_type (other): 1 1',
	'- token_type (other): 3');
is($node->safe_psql('postgres', $rows), $expected,
	'a row per database and name while slots last, then one overflow row per kind');
is($node->safe_psql('other', $rows), $expected, 'every database shows the whole cluster');
is($node->safe_psql('postgres',
		'SELECT count(*) FROM regstack.stats WHERE datid IS NULL AND datname IS NULL AND name IS NULL'),
	'2', 'overflow rows have no database and no name');

# 3. Restarts.
my $reset_at = $node->safe_psql('postgres', 'SELECT DISTINCT stats_reset FROM regstack.stats');
my $file = $node->data_dir . '/pg_stat/regstack_stats.stat';
$node->stop;
ok(-f $file, 'a clean shutdown writes pg_stat/regstack_stats.stat');
$node->start;
ok(!-f $file, 'the file is read and deleted at start');
is($node->safe_psql('postgres', $rows), $expected, 'a clean restart keeps every counter');
is($node->safe_psql('postgres', 'SELECT DISTINCT stats_reset FROM regstack.stats'),
	$reset_at, '... and the time of the last reset');
$node->safe_psql('postgres', q{SELECT regstack.issue_token('pre_auth', subject => 'c')});
like($node->safe_psql('postgres', $rows), qr/^postgres token_type pre_auth: 3$/m,
	'and counting goes on from there');

# Fewer slots after a restart: the names beyond go to the overflow rows.
$node->stop;
$node->append_conf('postgresql.conf', 'regstack.stats_max_entries = 1');
$node->start;
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE name IS NOT NULL), count(*) FILTER (WHERE name IS NULL),
	       sum(issued), sum(allowed), sum(recorded)
	  FROM regstack.stats}),
	'1|2|8|1|2', 'with one slot: one named row, two overflow rows, the same totals');

# An immediate stop is a shutdown too: as pg_stat_statements does, the
# postmaster writes the table once every other process has exited.
my $before = $node->safe_psql('postgres', $rows);
$node->stop('immediate');
ok(-f $file, 'an immediate stop writes the file too');
$node->start;
is($node->safe_psql('postgres', $rows), $before, '... and the counters survive it');

# A crash (SIGKILL of a process: shared memory is made anew) starts from
# zero, with the crash as the reset time.
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'");
kill 'KILL', $launcher;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack launcher' AND pid <> $launcher"),
	'the cluster restarted after a crash');
is($node->safe_psql('postgres', 'SELECT count(*) FROM regstack.stats'), '0',
	'after a crash the counters start from zero');
$node->safe_psql('postgres', q{SELECT regstack.issue_token('pre_auth', subject => 'd')});
is($node->safe_psql('postgres', qq{
	SELECT issued, stats_reset > '$reset_at' FROM regstack.stats WHERE name = 'pre_auth'}),
	'1|t', 'and their reset time is the restart after the crash');
$node->stop;
done_testing();
