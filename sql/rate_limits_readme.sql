-- The two-factor example of the README, statement for statement, then the
-- same flow driven past the limit.
SET intervalstyle = postgres;

BEGIN;
-- Before verifying a code: may this user still try?
SELECT allowed, retry_after
  FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false);
-- allowed = false: answer 429 with Retry-After: extract(epoch FROM retry_after).

-- The code was wrong: count the failure (the check above holds the key).
SELECT regstack.rate_limit_record('user:42', '2fa_attempt');
COMMIT;

-- Another time, the code was right: forget the failures.
SELECT regstack.rate_limit_reset('user:42', '2fa_attempt');

-- Five wrong codes within 15 minutes: the sixth attempt must wait until the
-- oldest failure is 15 minutes old.
SELECT regstack.rate_limit_record('user:42', '2fa_attempt') FROM generate_series(1, 5);
SELECT allowed, retry_after, extract(epoch FROM retry_after) AS retry_after_header
  FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false);
SELECT regstack.rate_limit_reset('user:42', '2fa_attempt');
SELECT allowed, remaining
  FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false);

-- Every attempt counted, per client IP.
SELECT allowed, remaining, retry_after
  FROM regstack.rate_limit_check('ip:203.0.113.7', 'login_ip');
SELECT regstack.rate_limit_reset('ip:203.0.113.7');

-- The README's policy changes.
INSERT INTO regstack.rate_limit_policies (event_type, max_events, within, description)
VALUES ('sms_send', 3, '1 day', 'SMS codes per phone number');
UPDATE regstack.rate_limit_policies SET max_events = 20 WHERE event_type = 'email_send';
SELECT event_type, max_events, within, builtin FROM regstack.rate_limit_policies
 WHERE event_type IN ('sms_send', 'email_send') ORDER BY 1;
DELETE FROM regstack.rate_limit_policies WHERE event_type = 'sms_send';
UPDATE regstack.rate_limit_policies SET max_events = 5 WHERE event_type = 'email_send';
