# What the reaper reports: regstack.stats counts the tokens it deletes as
# reaped, per token type (purge_expired()'s count as purged); and
# regstack.reaper_lag says how far it is behind without reading the
# tokens table: the start of its last full sweep, the expired tokens that
# sweep found locked and left, the bound on the oldest expired token
# left, and its speed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('stats_reaper');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
$node->safe_psql('postgres', 'SELECT regstack.stats_reset()');

# 3,000 expired pre_auth tokens and 500 expired download tokens.
insert_expired($node, 'postgres', 3000, 'a');
$node->safe_psql('postgres', q{
	INSERT INTO regstack.auth_ephemeral_tokens
	    (subject_tag, token_hash, token_type, payload, created_at, expires_at)
	SELECT 0, sha256(convert_to('dl' || i, 'UTF8')), 'download', '{}',
	       now() - interval '10 minutes', now() - interval '1 minute'
	  FROM generate_series(1, 500) AS i});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens'),
	'the reaper deletes every expired token');
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s reaped=%s purged=%s', name, reaped, purged), ', ' ORDER BY name)
	  FROM regstack.stats WHERE datname = 'postgres' AND kind = 'token_type'}),
	'download reaped=500 purged=0, pre_auth reaped=3000 purged=0',
	'stats count them as reaped, per token type');

# The lag after a full sweep that left nothing.
ok($node->poll_query_until('postgres', q{
	SELECT last_sweep_start IS NOT NULL AND last_pass_end >= last_sweep_start
	   AND tokens_skipped = 0 AND oldest_skipped_expiry IS NULL
	   AND max_token_lag = now() - last_sweep_start
	   AND recent_passes >= 1 AND reaped_per_second > 0
	  FROM regstack.reaper_lag WHERE datname = 'postgres'}),
	'reaper_lag: a full sweep, nothing left, a speed');
cmp_ok($node->safe_psql('postgres', q{
	SELECT extract(epoch FROM max_token_lag) FROM regstack.reaper_lag WHERE datname = 'postgres'}),
	'<', 30, 'max_token_lag is about a naptime');

# Turn the reaper on or off, and wait for its worker to be gone.
sub reaper_enabled
{
	my ($on) = @_;
	$node->safe_psql('postgres',
		$on ? 'ALTER SYSTEM RESET regstack.reaper_enabled'
		: 'ALTER SYSTEM SET regstack.reaper_enabled = off');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	return if $on;
	$node->poll_query_until('postgres', 'SELECT pid IS NULL FROM regstack.reaper_status')
	  or die 'the reaper did not stop';
}

# A foreground transaction holds one expired token (taken while the
# reaper is off, so that it cannot take the row first): the next sweeps
# leave it, and say so.
reaper_enabled(0);
insert_expired($node, 'postgres', 100, 'b');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
my $held_expiry = $locker->query_safe(q{
	SELECT expires_at FROM regstack.auth_ephemeral_tokens
	 WHERE token_hash = sha256(convert_to('b1', 'UTF8')) FOR UPDATE});
reaper_enabled(1);
ok($node->poll_query_until('postgres', qq{
	SELECT tokens_skipped = 1 AND oldest_skipped_expiry = '$held_expiry'
	   AND max_token_lag = now() - '$held_expiry'
	  FROM regstack.reaper_lag WHERE datname = 'postgres'}),
	'reaper_lag: the held token is left, its expiry bounds the lag');
cmp_ok($node->safe_psql('postgres', q{
	SELECT extract(epoch FROM max_token_lag) FROM regstack.reaper_lag WHERE datname = 'postgres'}),
	'>=', 60, 'max_token_lag is at least the held token\'s age');
is($node->safe_psql('postgres', q{
	SELECT reaped FROM regstack.stats WHERE datname = 'postgres' AND name = 'pre_auth'}),
	'3099', 'the other 99 are reaped');

# Released, it goes, and the lag is back to a naptime.
$locker->query_safe('ROLLBACK');
$locker->quit;
ok($node->poll_query_until('postgres', q{
	SELECT tokens_skipped = 0 AND oldest_skipped_expiry IS NULL
	  FROM regstack.reaper_lag WHERE datname = 'postgres'}),
	'reaper_lag: released, nothing left');
is($node->safe_psql('postgres', q{
	SELECT reaped FROM regstack.stats WHERE datname = 'postgres' AND name = 'pre_auth'}),
	'3100', 'and the held token is reaped');

# purge_expired() counts as purged, not reaped.
reaper_enabled(0);
insert_expired($node, 'postgres', 10, 'c');
is($node->safe_psql('postgres', q{
	SELECT tokens_deleted FROM regstack.purge_expired();
	SELECT format('reaped=%s purged=%s', reaped, purged)
	  FROM regstack.stats WHERE datname = 'postgres' AND name = 'pre_auth'}),
	"10\nreaped=3100 purged=10", 'purge_expired() counts as purged');

$node->stop;
done_testing();
