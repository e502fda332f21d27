-- Rate limit, regstack, failures recorded unconditionally on one account
-- (a wrong 2FA code from many sessions at once): rate_limit_record.
SELECT regstack.rate_limit_record('user:42', '2fa_attempt');
