-- regstack install script, part 2: exact sliding-window rate limits.
--
-- Three tables (see docs/rate-limits.md for the protocol):
--   rate_limit_policies     the defaults (max_events, within) per event type
--   auth_rate_limit_events  the event log: one row per counted event, numbered
--                           per (key, event_type) by seq
--   auth_rate_limit_state   one row per (key, event_type): the next seq and a
--                           pointer to the first event inside the window, so
--                           that a check never counts rows.  A recording call
--                           updates it, so it serializes the calls on a key.

-- The registry of rate-limit policies.  Rows with builtin = true are the ones
-- this script ships; pg_dump keeps the others, and inserting a row named like
-- a shipped one replaces it (registry.c).
CREATE TABLE regstack.rate_limit_policies (
    event_type  text PRIMARY KEY
        CONSTRAINT rate_limit_policies_event_type_check
        CHECK (pg_catalog.octet_length(event_type) OPERATOR(pg_catalog.>) 0
               AND pg_catalog.octet_length(event_type) OPERATOR(pg_catalog.<=) 63),
    max_events  integer NOT NULL
        CONSTRAINT rate_limit_policies_max_events_check
        CHECK (max_events OPERATOR(pg_catalog.>) 0),
    within      interval NOT NULL
        CONSTRAINT rate_limit_policies_within_check
        CHECK (within OPERATOR(pg_catalog.>) '0'::interval
               AND within OPERATOR(pg_catalog.<=) '100 years'::interval),
    description text,
    builtin     boolean NOT NULL DEFAULT false
);

COMMENT ON TABLE regstack.rate_limit_policies IS
'Rate-limit defaults per event type: at most max_events events per key within any window of length within';

CREATE TRIGGER rate_limit_policies_row
    BEFORE INSERT OR UPDATE ON regstack.rate_limit_policies
    FOR EACH ROW EXECUTE FUNCTION regstack.registry_trigger('event_type');
CREATE TRIGGER rate_limit_policies_statement
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON regstack.rate_limit_policies
    FOR EACH STATEMENT EXECUTE FUNCTION regstack.registry_trigger();

INSERT INTO regstack.rate_limit_policies (event_type, max_events, within, description)
VALUES
    ('2fa_attempt', 5, '15 minutes',
     'failed second-factor codes per user'),
    ('email_send', 5, '1 hour',
     'one-time-code and verification emails per address'),
    ('login_attempt', 10, '15 minutes',
     'failed password logins per account'),
    ('login_ip', 100, '15 minutes',
     'login attempts per client IP address (offices and NAT share addresses)'),
    ('password_reset_send', 3, '1 hour',
     'password-reset emails per account'),
    ('password_reset_ip', 10, '1 hour',
     'password-reset requests per client IP address');

SELECT pg_catalog.pg_extension_config_dump('regstack.rate_limit_policies',
                                           'WHERE NOT builtin');

-- The event log.  seq numbers the events of one (key, event_type) from 0
-- in the order they were recorded; occurred_at never decreases with seq.
CREATE TABLE regstack.auth_rate_limit_events (
    key         text COLLATE "C" NOT NULL,
    event_type  text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (key, event_type, seq)
);

COMMENT ON TABLE regstack.auth_rate_limit_events IS
'Rate-limit events, one row per counted event; use the regstack functions, not this table';

SELECT pg_catalog.pg_extension_config_dump('regstack.auth_rate_limit_events', '');

-- Per (key, event_type): where the window starts in the log.
--   next_seq   seq the next event gets
--   start_seq  first event inside a window of window_us microseconds ending
--              at clock_at (next_seq when none is); start_at is its time
--   window_us  window the pointer was computed for (NULL: unknown)
--   last_at    time of the newest event (NULL: none)
--   clock_at   the latest time any call on this key has used; never decreases
CREATE TABLE regstack.auth_rate_limit_state (
    key         text COLLATE "C" NOT NULL,
    event_type  text COLLATE "C" NOT NULL,
    next_seq    bigint NOT NULL,
    start_seq   bigint NOT NULL,
    start_at    timestamptz,
    window_us   bigint,
    last_at     timestamptz,
    clock_at    timestamptz NOT NULL,
    PRIMARY KEY (key, event_type)
) WITH (fillfactor = 70);

COMMENT ON TABLE regstack.auth_rate_limit_state IS
'Rate-limit bookkeeping per key and event type (sequence and window pointer); use the regstack functions, not this table';

SELECT pg_catalog.pg_extension_config_dump('regstack.auth_rate_limit_state', '');

CREATE FUNCTION regstack.rate_limit_check(
    key         text,
    event_type  text,
    max_events  integer DEFAULT NULL,
    within      interval DEFAULT NULL,
    record      boolean DEFAULT true)
RETURNS TABLE (
    allowed     boolean,
    remaining   integer,
    retry_after interval,
    reset_at    timestamptz)
LANGUAGE C VOLATILE ROWS 1
AS 'MODULE_PATHNAME', 'regstack_rate_limit_check';

COMMENT ON FUNCTION regstack.rate_limit_check(text, text, integer, interval, boolean) IS
'Allowed when fewer than max_events events of (key, event_type) happened within the window; records the event of an allowed call unless record is false';

CREATE FUNCTION regstack.rate_limit_record(
    key         text,
    event_type  text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_rate_limit_record';

COMMENT ON FUNCTION regstack.rate_limit_record(text, text) IS
'Record one event of (key, event_type) unconditionally (e.g. a failed attempt)';

CREATE FUNCTION regstack.rate_limit_reset(
    key         text,
    event_type  text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_rate_limit_reset';

COMMENT ON FUNCTION regstack.rate_limit_reset(text, text) IS
'Forget the events of a key (of one event type, or of all); returns how many events were deleted';
