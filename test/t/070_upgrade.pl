# Upgrade paths: every released version of regstack installed in this
# PostgreSQL (extension/regstack--X.sql) is created, given live rows in
# every table (tokens, rate-limit events in several of 1.0's lanes,
# changed and added registry rows), and then brought to the default
# version with ALTER EXTENSION regstack UPDATE.  The result must be the
# same, object by object, as a fresh CREATE EXTENSION, and every row must
# still do what it did: tokens are redeemable, a key's count and
# retry_after are unchanged, registry changes stay.  Before the update, the
# newer library refuses every call with a message saying to run ALTER
# EXTENSION regstack UPDATE.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'regstack'");
$node->start;

# Every object of the extension, described fully enough that any difference
# in a table, function, index, trigger, view, comment or grant shows.
my $describe = q{
    WITH members AS (
        SELECT classid, objid, objsubid FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'regstack'))
    SELECT string_agg(line, E'\n' ORDER BY line) FROM (
        SELECT pg_describe_object(classid, objid, objsubid) AS line FROM members
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure || ': ' || pg_get_functiondef(p.oid)
               || ' acl=' || coalesce(p.proacl::text, 'default')
               || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
          FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
        UNION ALL
        SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
          FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        UNION ALL
        SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, 'default')
               || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
               || coalesce(' view=' || pg_get_viewdef(c.oid), '')
          FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
        UNION ALL
        SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'regstack'::regnamespace
        UNION ALL
        SELECT 'index ' || pg_get_indexdef(indexrelid)
          FROM pg_index WHERE indrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
        UNION ALL
        SELECT 'trigger ' || pg_get_triggerdef(t.oid)
          FROM pg_trigger t WHERE NOT t.tgisinternal
           AND t.tgrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
        UNION ALL
        SELECT 'config ' || x.reloid::regclass || ' ' || x.condition
          FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(reloid, condition)
         WHERE e.extname = 'regstack'
    ) AS lines
};

my $default_version = $node->safe_psql('postgres',
    q{SELECT default_version FROM pg_available_extensions WHERE name = 'regstack'});
my @versions = split /\n/, $node->safe_psql('postgres',
    q{SELECT version FROM pg_available_extension_versions WHERE name = 'regstack' ORDER BY version});
ok(scalar(@versions) >= 1, "installed versions: @versions; default $default_version");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION regstack');
my $fresh = $node->safe_psql('fresh', $describe);
like($fresh, qr/function regstack\.consume_token/, 'the description covers the functions');
like($fresh, qr/column regstack\.auth_ephemeral_tokens\.token_hash bytea not null/,
    'and the columns');

# The comparison detects a difference (otherwise it would prove nothing).
$node->safe_psql('fresh', q{COMMENT ON FUNCTION regstack.pkce_challenge(text) IS 'changed'});
isnt($node->safe_psql('fresh', $describe), $fresh, 'a changed comment is a difference');
$node->safe_psql('fresh', 'DROP EXTENSION regstack; CREATE EXTENSION regstack');

# Live rows, written as the given version's tables hold them: a token
# (inserted directly, as an older library would have), a rate-limit key
# with five events (in three lanes before 1.1), a changed shipped policy,
# a user's token type.
sub live_rows
{
	my ($db, $version) = @_;
	my $lanes = $version eq '1.0';
	$node->safe_psql($db, q{
		INSERT INTO regstack.auth_ephemeral_tokens
		    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
		VALUES (0, sha256('upgrade-token'), 'pre_auth', 'u', now(), now() + interval '10 minutes');
		UPDATE regstack.rate_limit_policies SET max_events = 6 WHERE event_type = '2fa_attempt';
		INSERT INTO regstack.token_types (name, default_ttl, max_ttl) VALUES ('invite', '1 day', '7 days');
	});
	# (lane, seq in the lane, age in seconds), in no particular order
	my @events = ([0, 0, 50], [1, 0, 40], [0, 1, 30], [2, 0, 20], [1, 1, 10]);
	my $i = 0;
	my $values = join(', ', map {
		my ($lane, $seq, $age) = @$_;
		my $number = $lanes ? "$lane, $seq" : $i++;
		"('user:9', '2fa_attempt', $number, now() - interval '$age seconds')"
	} @events);
	my $columns = $lanes ? 'lane, seq' : 'seq';
	$node->safe_psql($db,
		"INSERT INTO regstack.auth_rate_limit_events (key, event_type, $columns, occurred_at) VALUES $values");
	$node->safe_psql($db, $lanes ? q{
		INSERT INTO regstack.auth_rate_limit_state (key, event_type, lane, next_seq, start_seq, last_at, clock_at)
		VALUES ('user:9', '2fa_attempt', 0, 2, 0, now() - interval '30 seconds', now() - interval '30 seconds'),
		       ('user:9', '2fa_attempt', 1, 2, 0, now() - interval '10 seconds', now() - interval '10 seconds'),
		       ('user:9', '2fa_attempt', 2, 1, 0, now() - interval '20 seconds', now() - interval '10 seconds')} : q{
		INSERT INTO regstack.auth_rate_limit_state (key, event_type, next_seq, start_seq, last_at, clock_at)
		VALUES ('user:9', '2fa_attempt', 5, 0, now() - interval '10 seconds', now() - interval '10 seconds')});
	return;
}

# What the live rows do: the token's subject; the key against its changed
# policy (6 per 15 minutes: allowed, one left) and against 5 (denied,
# retry_after from the oldest event, made 50 s old: at most 850 s, less by
# the time the test took since; 790 leaves a minute of it); the registry
# rows.
sub live_answers
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT (SELECT subject FROM regstack.auth_ephemeral_tokens WHERE token_hash = sha256('upgrade-token')),
		       (SELECT format('%s %s', allowed, remaining)
		          FROM regstack.rate_limit_check('user:9', '2fa_attempt', record => false)),
		       (SELECT format('%s %s %s', allowed, remaining,
		                      retry_after BETWEEN interval '790 seconds' AND interval '851 seconds')
		          FROM regstack.rate_limit_check('user:9', '2fa_attempt', max_events => 5, record => false)),
		       (SELECT max_events FROM regstack.rate_limit_policies WHERE event_type = '2fa_attempt'),
		       (SELECT count(*) FROM regstack.token_types WHERE name = 'invite')});
}

foreach my $version (@versions)
{
	my $db = "from_$version";
	$db =~ s/\W/_/g;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node->safe_psql($db, qq{CREATE EXTENSION regstack VERSION '$version'});
	live_rows($db, $version);
	if ($version ne $default_version)
	{
		# The newer library with the older SQL objects: every call refused.
		my ($r, $o, $e) = $node->psql($db,
			q{SELECT regstack.issue_token('pre_auth', subject => 'u')});
		like($e, qr/ERROR:  extension "regstack" in this database is version \Q$version\E, but its library needs version \Q$default_version\E\n.*\nHINT:  Run ALTER EXTENSION regstack UPDATE\./,
			"before the update, the library refuses calls with a hint ($version)");
		($r, $o, $e) = $node->psql($db,
			q{SELECT allowed FROM regstack.rate_limit_check('user:9', '2fa_attempt')});
		like($e, qr/HINT:  Run ALTER EXTENSION regstack UPDATE/, "... rate limits too ($version)");
		($r, $o, $e) = $node->psql($db, q{SELECT * FROM regstack.purge_expired()});
		like($e, qr/HINT:  Run ALTER EXTENSION regstack UPDATE/, "... and purge_expired ($version)");
	}
	my ($ret, $stdout, $stderr) = $node->psql($db, 'ALTER EXTENSION regstack UPDATE');
	is($ret, 0, "ALTER EXTENSION regstack UPDATE from $version succeeds");
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'regstack'}),
		$default_version, "$version is updated to $default_version");
	is($node->safe_psql($db, $describe), $fresh,
		"updated from $version, the extension is the same as a fresh install");
	is(live_answers($db), 'u|t 1|f 0 t|6|1',
		"every live row does what it did ($version)");
	is($node->safe_psql($db, q{
		SELECT string_agg(seq::text || ':' || age, ',' ORDER BY seq)
		  FROM (SELECT seq, round(extract(epoch FROM max(occurred_at) OVER () - occurred_at)) AS age
		          FROM regstack.auth_rate_limit_events WHERE key = 'user:9') AS e}),
		'0:40,1:30,2:20,3:10,4:0', "the key's events are one log, numbered in time order ($version)");
	is($node->safe_psql($db,
			q{SELECT subject FROM regstack.consume_token(regstack.issue_token('pre_auth', subject => 'u'), 'pre_auth')}),
		'u', "and works (from $version)");
}

$node->stop;
done_testing();
