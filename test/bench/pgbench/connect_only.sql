-- Nothing but connecting: run.sh measures what 8 backends cost the server
-- to start and stop, and subtracts it from each run's CPU per transaction.
SELECT 1;
