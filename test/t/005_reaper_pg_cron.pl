# Without preloading regstack: every function works, the reaper does not
# exist (reaper_status is empty), and purge_expired() scheduled with pg_cron
# deletes expired rows, as the README shows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reaper_pg_cron');

my $pkglibdir = $node->config_data('--pkglibdir');
plan skip_all => "pg_cron is not installed in $pkglibdir (Debian package postgresql-15-cron)"
  unless -f "$pkglibdir/pg_cron.so";

$node->init;
# pg_cron 1.4 runs jobs in background workers here (TAP nodes listen on a
# Unix socket only, so its default libpq connection to localhost fails).
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');

is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'regstack%'"),
	'0', 'no reaper without preloading');
is($node->safe_psql('postgres', 'SELECT count(*) FROM regstack.reaper_status'),
	'0', 'reaper_status is empty without preloading');

# The functions work without preloading.
my $token = $node->safe_psql('postgres',
	"SELECT regstack.issue_token('pre_auth', subject => 'alice')");
is( $node->safe_psql('postgres',
		"SELECT subject FROM regstack.consume_token('$token', 'pre_auth')"),
	'alice', 'issue and consume work without preloading');

# The README's schedule: every minute (pg_cron 1.4's finest grain).
$node->safe_psql('postgres', q{
	SELECT cron.schedule('regstack-purge', '* * * * *',
	                     'SELECT regstack.purge_expired()')});
$node->safe_psql('postgres', q{
	INSERT INTO regstack.auth_ephemeral_tokens
	    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
	SELECT 0, sha256(convert_to('p' || i, 'UTF8')), 'pre_auth', 'expired',
	       now() - interval '10 minutes', now() - interval '1 minute'
	  FROM generate_series(1, 1000) AS i});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'purge_expired() scheduled with pg_cron deletes expired rows');
is( $node->safe_psql('postgres',
		"SELECT status FROM cron.job_run_details ORDER BY runid DESC LIMIT 1"),
	'succeeded', 'the pg_cron job succeeded');

$node->stop;
done_testing();
