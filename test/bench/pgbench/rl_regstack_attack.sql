-- Rate limit, regstack, an attack: every call on one client IP address
-- whose window is already full under the shipped login_ip policy (100 per
-- 15 minutes), so every call is denied (\gset fails the client on an
-- allowed call).
SELECT retry_after FROM regstack.rate_limit_check('ip:203.0.113.7', 'login_ip')
 WHERE NOT allowed \gset
