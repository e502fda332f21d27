# The reaper in several databases: every database with the extension is
# reaped, one created later is picked up, regstack.reaper_databases restricts the
# list, and DROP DATABASE and DROP EXTENSION succeed while a worker is in
# the middle of a pass there.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_databases');
$node->init(allows_streaming => 1);    # max_wal_senders > 0: the gate needs synchronous replication
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
});
$node->start;
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'regstack launcher'")
  or die 'no launcher';
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'");

sub expired_count
{
	my ($db) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'");
}

sub wait_reaped
{
	my ($db, $what) = @_;
	ok( $node->poll_query_until($db,
			"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
		$what);
}

sub passes
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(max(passes), 0) FROM regstack.reaper_status WHERE datname = '$db'");
}

# Wait until database $db has had $n more passes than now.
sub wait_passes
{
	my ($db, $n) = @_;
	my $from = passes($db);
	$node->poll_query_until('postgres',
		"SELECT passes >= $from + $n FROM regstack.reaper_status WHERE datname = '$db'")
	  or die "no passes in $db";
}

$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
for my $db (qw(db1 db2))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION regstack');
}

# Two databases, both reaped.
insert_expired($node, 'db1', 1000);
insert_expired($node, 'db2', 1000);
wait_reaped('db1', 'db1 reaped');
wait_reaped('db2', 'db2 reaped');

# A database created later, with the extension created later still.
$node->safe_psql('postgres', 'CREATE DATABASE db3');
wait_passes('db1', 1);
$node->safe_psql('db3', 'CREATE EXTENSION regstack');
insert_expired($node, 'db3', 1000);
wait_reaped('db3', 'a database where the extension is created later is picked up');

is( $node->safe_psql('db3',
		"SELECT string_agg(datname, ',' ORDER BY datname) FROM regstack.reaper_status"),
	'db1,db2,db3,postgres', 'reaper_status lists every database, from any of them');

# regstack.reaper_databases restricts the reaper to the databases listed.
$node->safe_psql('postgres', "ALTER SYSTEM SET regstack.reaper_databases = 'db1, postgres'");
$node->reload;
wait_passes('db1', 2);			# the launcher has the new list by now
insert_expired($node, 'db2', 100);
wait_passes('db1', 2);			# two whole rounds: db2 would have been visited
is(expired_count('db2'), '100', 'a database left out of regstack.reaper_databases is not reaped');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET regstack.reaper_databases');
$node->reload;
wait_reaped('db2', 'reaped again once listed');

# The gate (RegstackTAP.pm) holds a reaper batch at its commit, so that a
# worker is provably in the middle of a pass; small batches over many rows
# make the rest of the pass last far longer than the 5 s DROP DATABASE
# waits for other sessions.  The test's sessions commit without waiting.
$ENV{PGOPTIONS} = '-c synchronous_commit=local';

sub worker_gated
{
	my ($db) = @_;
	ok(wait_worker_gated($node, $db), "a reaper worker is in the middle of a batch in $db");
}

$node->safe_psql('postgres', "ALTER SYSTEM SET regstack.reaper_batch_size = 10");
$node->reload;
$node->poll_query_until('postgres', 'SHOW regstack.reaper_batch_size', '10')
  or die 'batch_size not reloaded';

# DROP DATABASE while the worker is there.
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', 'CREATE EXTENSION regstack');
insert_expired($node, 'dropme', 200000);
gate_close($node);
worker_gated('dropme');
# DROP DATABASE starts (it waits for sessions to leave); the gate then
# opens, the batch ends, and the worker must leave before DROP DATABASE's
# 5 s are up although its pass is far from done.
my $dropper = $node->background_psql('postgres', on_error_stop => 0);
$dropper->query_until(qr/dropping/, "\\echo dropping\nDROP DATABASE dropme;\n");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE query LIKE 'DROP DATABASE dropme%' AND state = 'active'")
  or die 'DROP DATABASE is not waiting';
gate_open($node);
my ($out, $failed) = $dropper->query('SELECT 1');
is($dropper->{stderr}, '', 'DROP DATABASE succeeds while the worker is in a pass');
$dropper->quit;
is( $node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'dropme'"),
	'0', 'the database is gone');

# DROP EXTENSION while the worker is there.
$node->safe_psql('postgres', 'CREATE DATABASE dropext');
$node->safe_psql('dropext', 'CREATE EXTENSION regstack');
insert_expired($node, 'dropext', 200000);
gate_close($node);
worker_gated('dropext');
$dropper = $node->background_psql('dropext', on_error_stop => 0);
$dropper->query_until(qr/dropping/, "\\echo dropping\nDROP EXTENSION regstack;\n");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE query LIKE 'DROP EXTENSION regstack%' AND state = 'active'")
  or die 'DROP EXTENSION is not waiting';
gate_open($node);
($out, $failed) = $dropper->query('SELECT 1');
is($dropper->{stderr}, '', 'DROP EXTENSION succeeds while the worker is in a pass');
$dropper->quit;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.reaper_status WHERE datname = 'dropext'"),
	'the database leaves reaper_status once the extension is gone');

# The extension comes back: so does reaping, with no crash loop before.
$node->safe_psql('postgres', "ALTER SYSTEM RESET regstack.reaper_batch_size");
$node->reload;
$node->safe_psql('dropext', 'CREATE EXTENSION regstack');
insert_expired($node, 'dropext', 1000);
wait_reaped('dropext', 'reaping resumes after CREATE EXTENSION again');

ok(!$node->log_contains(qr/terminated by signal|PANIC|TRAP|exited with exit code [^01]/),
	'no worker crashed')
  or diag(slurp_file($node->logfile));
is( $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'"),
	$launcher, 'the launcher never exited');

$node->stop;
done_testing();
