# No token and no challenge in plaintext at rest (any table row) or in the
# server log at log_min_messages = debug1 (from anything regstack logs),
# through the README flows, failing calls and purges.  A statement that
# fails is logged with its text (log_min_error_statement), which is what
# the client sent, not something regstack logs: the README says to pass
# tokens as bind parameters with log_parameter_max_length_on_error = 0.
# psql 15 has no \bind, so here the failing calls carry no secret, the
# others do.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_plaintext');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
log_min_messages = debug1
log_statement = none
log_min_error_statement = error
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');

my @secrets = ('cookie-secret-4711');
my $session = $node->background_psql('postgres');

# Issue tokens of every flow, and keep them.
for my $sql (
    q{SELECT regstack.issue_token('pre_auth', subject => 'alice', challenge => 'cookie-secret-4711')},
    q{SELECT regstack.issue_token('password_reset', subject => 'alice')},
    q{SELECT regstack.issue_token('oidc_exchange', subject => 'alice', ttl => '1 second')},
    q{SELECT state FROM regstack.begin_oidc_flow('google', '/home')})
{
    push @secrets, $session->query_safe($sql);
}
my ($pre_auth, $reset, $exchange, $state) = @secrets[1 .. 4];
like($pre_auth, qr/^[A-Za-z0-9_-]{48}$/, 'tokens were issued');

# At rest: while all four tokens are live, no row of any regstack table
# holds a token or the challenge in plaintext.
for my $secret (@secrets)
{
    is($node->safe_psql('postgres', qq{
        SELECT count(*) FROM (
            SELECT t::text AS r FROM regstack.auth_ephemeral_tokens t
            UNION ALL SELECT e::text FROM regstack.auth_rate_limit_events e
            UNION ALL SELECT s::text FROM regstack.auth_rate_limit_state s) AS rows
         WHERE strpos(r, '$secret') > 0}),
        '0', 'no table row holds a token or challenge in plaintext');
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM regstack.auth_ephemeral_tokens'),
    '4', 'while the four tokens are live');

# Use them: wrong and right challenges, attach, exchange, reset.
$session->query_safe(qq{SELECT count(*) FROM regstack.consume_token('$pre_auth', 'pre_auth', 'wrong-cookie')});
$session->query_safe(qq{SELECT count(*) FROM regstack.consume_token('$pre_auth', 'pre_auth', 'cookie-secret-4711')});
$session->query_safe(qq{SELECT regstack.attach_result('$state', 'oidc_state', 'session-jwt')});
$session->query_safe(qq{SELECT count(*) FROM regstack.consume_token('$state', 'oidc_state')});
$session->query_safe(qq{SELECT count(*) FROM regstack.consume_token('$reset', 'password_reset')});
# Failing calls, each on its own connection (logged with their statement
# text, which holds no secret).
for my $failing (
    q{SELECT regstack.attach_result(repeat('A', 48), 'oidc_state', NULL)},
    q{SELECT regstack.issue_token('no_such_type')},
    q{SELECT regstack.issue_token('oidc_state', provider => 'google')})
{
    my ($ret, $stdout, $stderr) = $node->psql('postgres', $failing);
    isnt($ret, 0, "fails as expected: $failing");
}
$session->query_safe(q{SELECT pg_sleep(1.1)});
$session->query_safe(q{SELECT * FROM regstack.purge_expired()});
$session->quit;

# Make sure everything reached the log, then search it.
$node->safe_psql('postgres', q{SELECT pg_catalog.pg_rotate_logfile()});
my $log = slurp_file($node->logfile);
like($log, qr/DEBUG:/, 'the log was written at debug1');
like($log, qr/unknown token type "no_such_type"/, 'failing calls were logged');
for my $secret (@secrets)
{
    unlike($log, qr/\Q$secret\E/, 'a token or challenge is absent from the log');
}

# Control: the search does find a token when one is logged.  With
# log_statement = all the server logs what the client sends, token included;
# that is the setting the README warns about.
$node->append_conf('postgresql.conf', 'log_statement = all');
$node->reload;
my $logged = $node->safe_psql('postgres',
    q{SELECT regstack.issue_token('pre_auth', subject => 'bob')});
$node->safe_psql('postgres',
    qq{SELECT count(*) FROM regstack.consume_token('$logged', 'pre_auth')});
$node->safe_psql('postgres', q{SELECT pg_catalog.pg_rotate_logfile()});
like(slurp_file($node->logfile), qr/\Q$logged\E/,
    'control: with log_statement = all the client statement with the token is logged');

$node->stop;
done_testing();
