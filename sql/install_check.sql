-- The extension installs, with its schema, tables and shipped token types.
SELECT extname, extversion, extnamespace::regnamespace
  FROM pg_extension WHERE extname = 'regstack';
