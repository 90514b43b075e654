-- pgmart data-quality checks: the check catalog (user configuration, dumped by pg_dump) and the
-- result history (every run of every check; pruned by age with the rest of pgmart's history).

CREATE TABLE pgmart."check" (
    check_id     bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name OPERATOR(pg_catalog.<>) ''),
    target       regclass NOT NULL,
    kind         text NOT NULL
                 CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['unique', 'not_null', 'accepted_values', 'relationships', 'expression',
                                 'range', 'row_count', 'freshness', 'schema', 'access']::pg_catalog.text[])),
    columns      text[] NOT NULL DEFAULT '{}',
    params       jsonb NOT NULL DEFAULT '{}',
    severity     text NOT NULL DEFAULT 'error' CHECK (severity OPERATOR(pg_catalog.=) ANY (ARRAY['warn', 'error']::pg_catalog.text[])),
    where_clause text,
    schedule     text,
    job_id       bigint REFERENCES pgmart.job (job_id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    anchor       regclass NOT NULL,
    -- The table's qualified name: a table re-created under it takes the check back (src/follow.rs).
    target_name  text
);
CREATE INDEX check_target_idx ON pgmart."check" (target);
COMMENT ON TABLE pgmart."check" IS 'pgmart data-quality checks (read them through pgmart.checks; change them with pgmart.add_check() and pgmart.drop_check()).';

CREATE TABLE pgmart.check_result (
    result_id    bigserial PRIMARY KEY,
    run_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    check_id     bigint NOT NULL,
    name         text NOT NULL,
    target       text,
    kind         text NOT NULL,
    status       text NOT NULL CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pass', 'warn', 'fail', 'error']::pg_catalog.text[])),
    failing_rows bigint,
    checked_rows bigint,
    sample       jsonb,
    duration_ms  float8,
    message      text,
    run_by       text,
    owner        oid
);
CREATE INDEX check_results_check_idx ON pgmart.check_result (check_id, run_at DESC);
CREATE INDEX check_results_run_at_idx ON pgmart.check_result (run_at);
COMMENT ON TABLE pgmart.check_result IS 'Every result of every pgmart check run (read it through pgmart.check_results; pruned after pgmart.history_retention).';

SELECT pg_catalog.pg_extension_config_dump('pgmart."check"', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.check_check_id_seq', '');

-- The checks, and their results, of the roles whose rights you have. A result whose check is gone
-- belongs to the role that owned the check when it ran.
CREATE VIEW pgmart.checks WITH (security_barrier) AS
SELECT c.check_id, c.name,
       CASE WHEN c.target_name IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) c.target)
            THEN pgmart._relation_name(c.target) ELSE c.target_name END AS target, c.kind, c.columns, c.params, c.severity, c.where_clause, c.schedule,
       c.job_id, pg_catalog.pg_get_userbyid(a.relowner) AS owner, c.created_at
  FROM pgmart."check" c
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) c.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.checks IS 'Your data-quality checks: table, kind, columns, parameters, severity, schedule, owner.';

CREATE VIEW pgmart.check_results WITH (security_barrier) AS
SELECT r.result_id, r.run_at, r.check_id, r.name, r.target, r.kind, r.status, r.failing_rows, r.checked_rows,
       r.sample, r.duration_ms, r.message, r.run_by
  FROM pgmart.check_result r
  LEFT JOIN pgmart."check" c ON c.check_id OPERATOR(pg_catalog.=) r.check_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) c.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, r.owner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.check_results IS 'Every result of your checks (pruned after pgmart.history_retention).';
GRANT SELECT ON pgmart.checks, pgmart.check_results TO PUBLIC;
