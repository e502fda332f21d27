-- regstack install script, part 2: rate-limit events.

CREATE TABLE regstack.auth_rate_limit_events (
    key         text NOT NULL,
    event_type  text NOT NULL,
    occurred_at timestamptz NOT NULL
);

COMMENT ON TABLE regstack.auth_rate_limit_events IS
'Rate-limit events, one row per counted event';

SELECT pg_catalog.pg_extension_config_dump('regstack.auth_rate_limit_events', '');
