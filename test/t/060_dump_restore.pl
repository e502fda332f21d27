# pg_dump / pg_restore of a database with regstack: user-added and changed
# token types and rate-limit policies, live tokens and rate-limit events
# survive, and the restored database works (tokens issued before the dump
# are consumed after the restore, and revoked by subject: the subject-tag
# key is restored too; a key limited before the dump is still limited
# after it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump_restore');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'regstack'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE source_db');
$node->safe_psql('source_db', q{
    CREATE EXTENSION regstack;
    INSERT INTO regstack.token_types (name, default_ttl, max_ttl, required_fields)
    VALUES ('invite', '2 days', '7 days', '{subject}');
    UPDATE regstack.token_types SET default_ttl = '7 minutes' WHERE name = 'pre_auth';
    INSERT INTO regstack.rate_limit_policies (event_type, max_events, within)
    VALUES ('api_call', 3, '1 hour');
    UPDATE regstack.rate_limit_policies SET max_events = 4 WHERE event_type = '2fa_attempt';
    SELECT regstack.rate_limit_record('alice', '2fa_attempt') FROM generate_series(1, 4);
    SELECT (regstack.rate_limit_check('bob', 'api_call')).allowed FROM generate_series(1, 2);
});
my $invite = $node->safe_psql('source_db',
    q{SELECT regstack.issue_token('invite', subject => 'carol', payload => '{"team": 7}')});
my $pre_auth = $node->safe_psql('source_db',
    q{SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'cookie')});
$node->safe_psql('source_db',
    q{SELECT regstack.issue_token('password_reset', subject => 'frank')});
my $state = $node->safe_psql('source_db',
    q{SELECT state FROM regstack.begin_oidc_flow('google', '/home')});
$node->safe_psql('source_db',
    qq{SELECT regstack.attach_result('$state', 'oidc_state', 'jwt-1')});

my $dump_file = $node->basedir . '/source.dump';
$node->command_ok(
    [ 'pg_dump', '-Fc', '-f', $dump_file, '-d', $node->connstr('source_db') ],
    'pg_dump of a database with regstack');
$node->safe_psql('postgres', 'CREATE DATABASE restored_db');
$node->command_ok(
    [ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored_db'), $dump_file ],
    'pg_restore into an empty database');

is($node->safe_psql('restored_db',
        q{SELECT string_agg(name || ':' || default_ttl || ':' || builtin, ',' ORDER BY name)
            FROM regstack.token_types}),
    'download:00:15:00:true,email_otp_setup:00:10:00:true,invite:2 days:false,'
      . 'oidc_exchange:00:02:00:true,oidc_state:00:05:00:true,'
      . 'password_reset:01:00:00:true,pre_auth:00:07:00:false',
    'shipped types, the user type and the changed shipped type are all back');
is($node->safe_psql('restored_db',
        'SELECT count(*) FROM regstack.auth_ephemeral_tokens'),
    '4', 'the four live tokens are restored');
is($node->safe_psql('restored_db', q{SELECT name || ' ' || secret FROM regstack.secret_keys}),
    $node->safe_psql('source_db', q{SELECT name || ' ' || secret FROM regstack.secret_keys}),
    'the subject-tag key is the source database\'s, not the one CREATE EXTENSION made');
is($node->safe_psql('restored_db', q{SELECT regstack.revoke_tokens('frank')}),
    '1', 'a token issued before the dump is revoked by its subject after the restore');

is($node->safe_psql('restored_db',
        qq{SELECT subject || ' ' || payload FROM regstack.consume_token('$invite', 'invite')}),
    'carol {"team": 7}', 'a token issued before the dump is consumed after the restore');
is($node->safe_psql('restored_db',
        qq{SELECT count(*) FROM regstack.consume_token('$pre_auth', 'pre_auth', 'wrong')}),
    '0', 'the restored challenge still binds the token');
is($node->safe_psql('restored_db',
        qq{SELECT subject FROM regstack.consume_token('$pre_auth', 'pre_auth', 'cookie')}),
    'alice', 'with the right challenge it is consumed');
is($node->safe_psql('restored_db',
        qq{SELECT result FROM regstack.consume_token('$state', 'oidc_state')}),
    'jwt-1', 'the OIDC state with its attached result is exchanged');
is($node->safe_psql('restored_db',
        'SELECT count(*) FROM regstack.auth_ephemeral_tokens'),
    '0', 'all four restored tokens were consumed or revoked, once each');
is($node->safe_psql('restored_db',
        q{SELECT length(regstack.issue_token('invite', subject => 'dave'))}),
    '48', 'the restored user type issues new tokens');
is($node->safe_psql('restored_db',
        q{SELECT expires_at - created_at FROM regstack.peek_token(
                 regstack.issue_token('pre_auth', subject => 'erin'), 'pre_auth')}),
    '00:07:00', 'the changed shipped type keeps its restored default TTL');

is($node->safe_psql('restored_db',
        q{SELECT string_agg(event_type || ':' || max_events || ':' || builtin, ',' ORDER BY event_type)
            FROM regstack.rate_limit_policies WHERE event_type IN ('2fa_attempt', 'api_call', 'email_send')}),
    '2fa_attempt:4:false,api_call:3:false,email_send:5:true',
    'user policy, changed shipped policy and shipped policies are back');
is($node->safe_psql('restored_db',
        q{SELECT allowed::text || ' ' || remaining FROM regstack.rate_limit_check('alice', '2fa_attempt')}),
    'false 0', 'a key at its limit before the dump is still denied after the restore');
is($node->safe_psql('restored_db',
        q{SELECT allowed::text || ' ' || remaining FROM regstack.rate_limit_check('bob', 'api_call')}),
    'true 0', 'events recorded before the dump still count after the restore');
is($node->safe_psql('restored_db',
        q{SELECT allowed::text FROM regstack.rate_limit_check('bob', 'api_call')}),
    'false', 'and the restored user policy limits the key');

# A second dump of the restored database restores again (no duplicate rows).
my $second_dump = $node->basedir . '/restored.dump';
$node->command_ok(
    [ 'pg_dump', '-Fc', '-f', $second_dump, '-d', $node->connstr('restored_db') ],
    'pg_dump of the restored database');
$node->safe_psql('postgres', 'CREATE DATABASE restored_again');
$node->command_ok(
    [ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored_again'), $second_dump ],
    'and pg_restore of that dump');
is($node->safe_psql('restored_again', 'SELECT count(*) FROM regstack.token_types'),
    '7', 'still seven token types');
is($node->safe_psql('restored_again', 'SELECT count(*) FROM regstack.rate_limit_policies'),
    '7', 'and seven rate-limit policies');
is($node->safe_psql('restored_again', q{SELECT name || ' ' || secret FROM regstack.secret_keys}),
    $node->safe_psql('source_db', q{SELECT name || ' ' || secret FROM regstack.secret_keys}),
    'and one subject-tag key, still the source database\'s');

$node->stop;
done_testing();
