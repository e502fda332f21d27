# Rate-limit calls end when cancelled at every wait, and leave no lock
# behind; a backend whose client went away while it waited ends; and a
# storm of statement timeouts on one key, without preloading and through
# PgBouncer in transaction mode, leaves nothing held.  (1.0 leaked its
# session-level decision lock in such a storm: a cancel that arrived as
# the lock was granted left it held by an idle session, and every later
# call on the key blocked.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use File::Spec;

# No preloading: regstack is loaded by the first call of each backend.
my $node = PostgreSQL::Test::Cluster->new('rate_limit_cancels');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_connections = 80
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'regstack is not preloaded');

# Locks a session holds besides its relation and virtual-xid locks.
my $held_locks = q{SELECT count(*) FROM pg_locks
	WHERE pid = pg_backend_pid() AND locktype NOT IN ('relation', 'virtualxid')};

# Wait until the backend of session $pid waits on a lock.
sub wait_blocked
{
	my ($pid) = @_;
	return $node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid");
}

# Every wait of a call, each ended by a cancel: the holder's transaction
# (or new key) is set up by $hold; the waiter's call is $call.
my @waits = (
	[ 'the key lock of a key without a state row',
	  q{SELECT allowed FROM regstack.rate_limit_check('w_new', 't', 5, '1 hour', record => false)},
	  q{SELECT allowed FROM regstack.rate_limit_check('w_new', 't', 5, '1 hour')} ],
	[ 'the state row, by a recording call\'s update',
	  q{SELECT regstack.rate_limit_record('w_row', 't')},
	  q{SELECT allowed FROM regstack.rate_limit_check('w_row', 't', 5, '1 hour')} ],
	[ 'the state row, by a check with record => false',
	  q{SELECT regstack.rate_limit_record('w_lock', 't')},
	  q{SELECT allowed FROM regstack.rate_limit_check('w_lock', 't', 5, '1 hour', record => false)} ],
	[ 'the state row, by rate_limit_record',
	  q{SELECT regstack.rate_limit_record('w_rec', 't')},
	  q{SELECT regstack.rate_limit_record('w_rec', 't')} ],
	[ 'the state row, by rate_limit_reset',
	  q{SELECT regstack.rate_limit_record('w_reset', 't')},
	  q{SELECT regstack.rate_limit_reset('w_reset')} ],
);
foreach my $wait (@waits)
{
	my ($what, $hold, $call) = @$wait;
	# keys with history, except the new one
	$node->safe_psql('postgres', "SELECT regstack.rate_limit_record('w_row', 't'),
		regstack.rate_limit_record('w_lock', 't'), regstack.rate_limit_record('w_rec', 't'),
		regstack.rate_limit_record('w_reset', 't')");
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe($hold);
	my $waiter = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $waiter->query_safe('SELECT pg_backend_pid()');
	$waiter->query_until(qr/calling/, "\\echo calling\n$call;\n");
	ok(wait_blocked($pid), "a call waits for $what");
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	my ($out, $ret) = $waiter->query('SELECT 1');
	like($waiter->{stderr}, qr/canceling statement due to user request/,
		"a cancel ends the wait for $what");
	$waiter->{stderr} = '';
	is($waiter->query_safe($held_locks), '0', "and the cancelled call holds no lock");
	$holder->query_safe('COMMIT');
	$holder->quit;
	$waiter->query_safe("SET statement_timeout = '60s'");
	$waiter->query_safe($call);
	is($waiter->{stderr}, '', "the same session's next call ($what) completes");
	$waiter->quit;
}
$node->safe_psql('postgres', "SELECT regstack.rate_limit_reset(k) FROM unnest(ARRAY['w_new', 'w_row', 'w_lock', 'w_rec', 'w_reset']) AS k");

# A backend whose client went away while it waited: with
# client_connection_check_interval it ends during the wait; without, as
# soon as the wait ends.
foreach my $check (1, 0)
{
	$node->safe_psql('postgres', $check ?
		"ALTER SYSTEM SET client_connection_check_interval = '100ms'" :
		'ALTER SYSTEM RESET client_connection_check_interval');
	$node->reload;
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe(q{SELECT regstack.rate_limit_record('gone', 't')});
	my $waiter = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $waiter->query_safe('SELECT pg_backend_pid()');
	$waiter->query_until(qr/calling/,
		"\\echo calling\nSELECT allowed FROM regstack.rate_limit_check('gone', 't', 5, '1 hour');\n");
	ok(wait_blocked($pid), 'a call waits for the holder');
	$waiter->{run}->kill_kill;
	if ($check)
	{
		ok( $node->poll_query_until('postgres',
				"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
			'with client_connection_check_interval, the backend of a client that went away ends while it waits');
	}
	$holder->query_safe('COMMIT');
	$holder->quit;
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
		'the backend of a client that went away ends');
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET client_connection_check_interval');
$node->reload;

# A storm of statement timeouts on one key, directly and through PgBouncer
# in transaction mode: afterwards no regstack lock is held anywhere, and a
# call on the key completes at once.
my $fuzz = File::Spec->catfile($FindBin::Bin, 'rate_limit_fuzz.py');
my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
my ($stdout, $stderr);
my $ran = IPC::Run::run([ 'python3', $fuzz, $dsn, '--storm', '--sessions', '50', '--seconds', '5' ],
	'>', \$stdout, '2>', \$stderr);
ok($ran, 'a storm of 50 sessions with 30 ms statement timeouts on one key, directly')
  or diag("$stdout\n$stderr");
note($stdout);

my $bouncer_dir = PostgreSQL::Test::Utils::tempdir;
my $bouncer_port = PostgreSQL::Test::Cluster::get_free_port();
PostgreSQL::Test::Utils::append_to_file("$bouncer_dir/users.txt", qq{"postgres" ""\n});
PostgreSQL::Test::Utils::append_to_file("$bouncer_dir/pgbouncer.ini", qq{
[databases]
postgres = host=@{[ $node->host ]} port=@{[ $node->port ]} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $bouncer_dir/users.txt
pool_mode = transaction
max_client_conn = 100
default_pool_size = 10
logfile = $bouncer_dir/pgbouncer.log
pidfile = $bouncer_dir/pgbouncer.pid
});
my $pgbouncer = (grep { -x $_ } ('/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'))[0];
ok(defined $pgbouncer, 'pgbouncer is installed') or BAIL_OUT('no pgbouncer');
system($pgbouncer, '-d', "$bouncer_dir/pgbouncer.ini") == 0 or BAIL_OUT('pgbouncer did not start');
$ran = IPC::Run::run([ 'python3', $fuzz, "host=127.0.0.1 port=$bouncer_port dbname=postgres user=postgres",
		'--storm', '--sessions', '50', '--seconds', '5' ],
	'>', \$stdout, '2>', \$stderr);
ok($ran, 'the same storm through PgBouncer in transaction mode') or diag("$stdout\n$stderr");
note($stdout);
kill 'TERM', PostgreSQL::Test::Utils::slurp_file("$bouncer_dir/pgbouncer.pid") =~ s/\s+//r;

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (21076, 21077)"),
	'0', 'no regstack lock is held by any session');
is($node->safe_psql('postgres', q{SET statement_timeout = '5s';
	SELECT allowed FROM regstack.rate_limit_check('storm', 'login_ip', 1000000, '1 hour')}),
	't', 'a call on the stormed key completes at once');

$node->stop;
done_testing();
