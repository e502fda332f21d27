-- regstack upgrade script: 1.0 to 1.1.
-- ALTER EXTENSION regstack UPDATE runs it; afterwards the database is the
-- same, object by object, as a fresh CREATE EXTENSION of 1.1
-- (test/t/070_upgrade.pl checks that, with live rows in every table).

\echo Use "ALTER EXTENSION regstack UPDATE" to load this file. \quit

-- Rate limits: one state row and one event log per (key, event_type).
-- 1.0 kept a key's events in up to 64 "lanes", each with its own state row
-- and its own seq; the lanes are merged here.  A key's events are
-- renumbered 0, 1, 2, ... in the order (occurred_at, lane, seq), so
-- occurred_at still never decreases along seq; the key's state row takes
-- the merged numbers with its window pointer unknown (window_us NULL), so
-- the next call finds the window afresh.
LOCK TABLE regstack.auth_rate_limit_state, regstack.auth_rate_limit_events
    IN ACCESS EXCLUSIVE MODE;

ALTER TABLE regstack.auth_rate_limit_events
    DROP CONSTRAINT auth_rate_limit_events_pkey;
UPDATE regstack.auth_rate_limit_events AS e
   SET seq = n.new_seq
  FROM (SELECT ctid AS row_ctid,
               pg_catalog.row_number() OVER (PARTITION BY key, event_type
                                             ORDER BY occurred_at, lane, seq)
               OPERATOR(pg_catalog.-) 1 AS new_seq
          FROM regstack.auth_rate_limit_events) AS n
 WHERE e.ctid OPERATOR(pg_catalog.=) n.row_ctid;
ALTER TABLE regstack.auth_rate_limit_events DROP COLUMN lane;
ALTER TABLE regstack.auth_rate_limit_events
    ADD PRIMARY KEY (key, event_type, seq);

ALTER TABLE regstack.auth_rate_limit_state
    DROP CONSTRAINT auth_rate_limit_state_pkey;
UPDATE regstack.auth_rate_limit_state AS s
   SET next_seq = m.next_seq,
       start_seq = 0,
       start_at = NULL,
       window_us = NULL,
       last_at = m.last_at,
       clock_at = m.clock_at
  FROM (SELECT l.key, l.event_type,
               (SELECT pg_catalog.count(*)
                  FROM regstack.auth_rate_limit_events AS e
                 WHERE e.key OPERATOR(pg_catalog.=) l.key
                   AND e.event_type OPERATOR(pg_catalog.=) l.event_type) AS next_seq,
               pg_catalog.max(l.last_at) AS last_at,
               pg_catalog.max(l.clock_at) AS clock_at
          FROM regstack.auth_rate_limit_state AS l
         GROUP BY l.key, l.event_type) AS m
 WHERE s.key OPERATOR(pg_catalog.=) m.key
   AND s.event_type OPERATOR(pg_catalog.=) m.event_type;
DELETE FROM regstack.auth_rate_limit_state AS s
 WHERE EXISTS (SELECT FROM regstack.auth_rate_limit_state AS t
                WHERE t.key OPERATOR(pg_catalog.=) s.key
                  AND t.event_type OPERATOR(pg_catalog.=) s.event_type
                  AND t.lane OPERATOR(pg_catalog.<) s.lane);
ALTER TABLE regstack.auth_rate_limit_state
    DROP CONSTRAINT auth_rate_limit_state_lane_check;
ALTER TABLE regstack.auth_rate_limit_state DROP COLUMN lane;
ALTER TABLE regstack.auth_rate_limit_state ADD PRIMARY KEY (key, event_type);

COMMENT ON TABLE regstack.auth_rate_limit_state IS
'Rate-limit bookkeeping per key and event type (sequence and window pointer); use the regstack functions, not this table';
