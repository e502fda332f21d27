# test/t/RegstackTAP.pm: helpers shared by regstack's TAP tests.
package RegstackTAP;
use strict;
use warnings;
use Exporter 'import';
our @EXPORT = qw(insert_expired);

# Insert $n tokens that expired a minute ago (subject 'expired') straight
# into regstack's table in database $db of $node.  With $tag, token i's
# hash is sha256($tag || i), so a test can address it; without, the hashes
# are made unique from the clock.
sub insert_expired
{
	my ($node, $db, $n, $tag) = @_;
	my $seed = defined $tag ? "'$tag'" : 'clock_timestamp()::text';
	$node->safe_psql($db, qq{
		INSERT INTO regstack.auth_ephemeral_tokens
		    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
		SELECT 0, sha256(convert_to($seed || i, 'UTF8')),
		       'pre_auth', 'expired',
		       now() - interval '10 minutes', now() - interval '1 minute'
		  FROM generate_series(1, $n) AS i});
}

1;
