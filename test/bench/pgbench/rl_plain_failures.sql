-- Rate limit, plain SQL, failures recorded on one account: one insert.
INSERT INTO app.auth_rate_limit_events (key, event_type) VALUES ('user:42', '2fa_attempt');
