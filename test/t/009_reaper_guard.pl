# The reaper and the table guard (src/tables.c): a table regstack must not
# write directly (here: a DBA's trigger) is skipped by every pass, with its
# reason logged once per pass as a WARNING and recorded in reaper_status;
# the other tables are still reaped; nothing crashes or loops; and once the
# change is undone the table is reaped again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_guard');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION regstack;
	CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql
	    AS $$ BEGIN RETURN NULL; END $$;
	CREATE TRIGGER audit AFTER DELETE ON regstack.auth_ephemeral_tokens
	    FOR EACH ROW EXECUTE FUNCTION public.audit();
});
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'");

# Stale rate-limit events (a policy's window is at most a day) and expired tokens.
sub insert_stale_events
{
	$node->safe_psql('postgres', q{
		INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at)
		SELECT 'stale', 'login_ip', i, now() - interval '2 days'
		  FROM generate_series(0, 99) AS i});
}
insert_expired($node, 'postgres', 100);
insert_stale_events();

my $offset = -s $node->logfile;
$offset = $node->wait_for_log(
	qr/WARNING:  table regstack\.auth_ephemeral_tokens has a trigger "audit" that regstack does not ship\n.*DETAIL:  regstack's functions write this table directly and do not fire triggers\.\n.*HINT:  Drop it: DROP TRIGGER audit ON regstack\.auth_ephemeral_tokens;\n.*CONTEXT:  regstack reaper deleting expired tokens in database "postgres"/,
	$offset);
ok(1, 'the refused table is logged as a WARNING with its hint and context');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_rate_limit_events WHERE key = 'stale'"),
	'the rate-limit tables are still reaped');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'100', 'the refused table is left alone');
like( $node->safe_psql('postgres', 'SELECT last_error FROM regstack.reaper_status'),
	qr/has a trigger "audit"/, 'reaper_status records why');

# Once per pass: over three more passes, three warnings, not a flood.
my $passes = $node->safe_psql('postgres', 'SELECT passes FROM regstack.reaper_status');
$node->poll_query_until('postgres', "SELECT passes >= $passes + 3 FROM regstack.reaper_status")
  or die 'no passes';
my $passes_after = $node->safe_psql('postgres', 'SELECT passes FROM regstack.reaper_status');
my $log = slurp_file($node->logfile, $offset);
my $warnings = () = $log =~ /WARNING:  table regstack\.auth_ephemeral_tokens has a trigger/g;
ok($warnings >= 2 && $warnings <= $passes_after - $passes + 1,
	"one warning per pass ($warnings warnings in " . ($passes_after - $passes) . ' passes)');

# Undone: the tokens go at the next pass.
$node->safe_psql('postgres', 'DROP TRIGGER audit ON regstack.auth_ephemeral_tokens');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'once the trigger is dropped, the expired tokens are reaped');

# The same for the rate-limit tables: tokens are still reaped.
$node->safe_psql('postgres', q{
	CREATE TRIGGER audit AFTER DELETE ON regstack.auth_rate_limit_events
	    FOR EACH ROW EXECUTE FUNCTION public.audit();});
insert_expired($node, 'postgres', 100);
insert_stale_events();
$offset = $node->wait_for_log(
	qr/WARNING:  table regstack\.auth_rate_limit_events has a trigger "audit" that regstack does not ship\n(?:.*\n){2}.*CONTEXT:  regstack reaper deleting stale rate-limit events in database "postgres"/,
	$offset);
ok(1, 'a refused rate-limit table is logged too');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'the tokens table is still reaped');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key = 'stale'"),
	'100', 'the refused events are left alone');
$node->safe_psql('postgres', 'DROP TRIGGER audit ON regstack.auth_rate_limit_events');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_rate_limit_events WHERE key = 'stale'"),
	'once the trigger is dropped, the stale events are reaped');

is( $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'"),
	$launcher, 'the launcher never exited');
ok(!$node->log_contains(qr/terminated by signal|PANIC|TRAP|exited with exit code [^01]/),
	'no process crashed');

$node->stop;
done_testing();
