# The background reaper on one database: expired rows vanish with no call
# made, live rows stay, a pass with nothing to do logs nothing, the launcher
# comes back after pg_terminate_backend and after a crash, and a reload
# changes the naptime.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_basic');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');

sub expired_count
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'");
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'");
}

# The launcher runs, connected to no database.
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack launcher' AND datname IS NULL
		    AND application_name LIKE '%regstack%'"),
	'launcher runs, connected to no database');

# Expired rows vanish within a naptime or so; live tokens stay.
my $live = $node->safe_psql('postgres',
	"SELECT regstack.issue_token('pre_auth', subject => 'live')");
insert_expired($node, 'postgres', 5000, 'a');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'expired rows vanish with no call made');
is( $node->safe_psql('postgres',
		"SELECT subject FROM regstack.consume_token('$live', 'pre_auth')"),
	'live', 'a live token survives the reaper');

my $offset = $node->wait_for_log(
	qr/LOG:  regstack reaper deleted 5000 expired tokens and 0 stale rate-limit events in database "postgres"/);
ok(1, 'a pass that deleted rows logs one line');

is( $node->safe_psql('postgres',
		"SELECT datname, pid IS NULL OR pid > 0, passes > 0, total_deleted >= 5000,
		        coalesce(last_pass_end >= last_pass_start, pid IS NOT NULL),
		        last_error IS NULL
		   FROM regstack.reaper_status"),
	'postgres|t|t|t|t|t', 'reaper_status reports the database');

# Passes with nothing to delete say nothing.
my $passes = $node->safe_psql('postgres',
	"SELECT passes FROM regstack.reaper_status WHERE datname = 'postgres'");
$offset = -s $node->logfile;
ok( $node->poll_query_until('postgres',
		"SELECT passes >= $passes + 2 FROM regstack.reaper_status WHERE datname = 'postgres'"),
	'passes go on');
# (log_statement = all in these tests: look for anything but statements)
ok(!$node->log_contains(qr/(LOG|WARNING|ERROR|FATAL):  (?!statement: )/, $offset),
	'passes with nothing to do log nothing')
  or diag(slurp_file($node->logfile, $offset));

# pg_terminate_backend: the launcher comes back (exit code 1, restarted).
my $pid = launcher_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack launcher' AND pid <> $pid"),
	'launcher restarted after pg_terminate_backend');
insert_expired($node, 'postgres', 1000, 'b');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'reaping goes on after pg_terminate_backend');

# A crash (SIGKILL of the launcher) restarts the cluster, and the launcher.
$pid = launcher_pid();
kill 'KILL', $pid;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack launcher' AND pid <> $pid"),
	'launcher restarted after a crash');
insert_expired($node, 'postgres', 1000, 'c');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'reaping goes on after a crash');
my $after_crash = -s $node->logfile;

# A reload changes the naptime.  Restart with a naptime of an hour: the
# first round runs at start, then nothing would happen for an hour...
# (1.0's name of the setting, left in postgresql.conf, is refused with a
# warning at start and changes nothing.)
$node->append_conf('postgresql.conf', "regstack.reaper_naptime = 3600\nregstack.naptime = 1");
my $before_restart = -s $node->logfile;
$node->restart;
ok($node->log_contains(qr/WARNING:  invalid configuration parameter name "regstack.naptime", removing it/,
		$before_restart),
	"1.0's regstack.naptime is refused with a warning");
ok( $node->poll_query_until('postgres',
		"SELECT passes >= 1 FROM regstack.reaper_status WHERE datname = 'postgres'"),
	'first round after restart');
insert_expired($node, 'postgres', 1000, 'd');
# ...until the naptime becomes one second: the rows go without a restart.
$node->safe_psql('postgres', 'ALTER SYSTEM SET regstack.reaper_naptime = 1');
$node->reload;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'a reload shortens the naptime');

# regstack.reaper_enabled = off stops the launcher from starting workers;
# on again, reaping resumes.
$node->safe_psql('postgres', 'ALTER SYSTEM SET regstack.reaper_enabled = off');
$node->reload;
ok( $node->poll_query_until('postgres', 'SHOW regstack.reaper_enabled', 'off'),
	'reaper disabled');
$node->safe_psql('postgres', 'ALTER SYSTEM SET regstack.reaper_enabled = on');
$node->reload;
insert_expired($node, 'postgres', 1000, 'e');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'reaping resumes when enabled again');

ok(!$node->log_contains(
		qr/terminated by signal|PANIC|TRAP|ERROR|WARNING:  (?!invalid configuration parameter name "regstack\.naptime")/,
		$after_crash),
	'since the crash test: no crash, no error (but the old setting\'s warning)')
  or diag(slurp_file($node->logfile, $after_crash));

$node->stop;
done_testing();
