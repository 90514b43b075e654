-- pgmart data-quality checks: the check catalog (user configuration, dumped by pg_dump) and the
-- result history (every run of every check; pruned by age with the rest of pgmart's history).

CREATE TABLE pgmart."check" (
    check_id     bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name <> ''),
    target       regclass NOT NULL,
    kind         text NOT NULL
                 CHECK (kind IN ('unique', 'not_null', 'accepted_values', 'relationships', 'expression',
                                 'range', 'row_count', 'freshness', 'schema')),
    columns      text[] NOT NULL DEFAULT '{}',
    params       jsonb NOT NULL DEFAULT '{}',
    severity     text NOT NULL DEFAULT 'error' CHECK (severity IN ('warn', 'error')),
    where_clause text,
    schedule     text,
    job_id       bigint REFERENCES pgmart.job (job_id) ON DELETE SET NULL,
    owner        name NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX check_target_idx ON pgmart."check" (target);
COMMENT ON TABLE pgmart."check" IS 'pgmart data-quality checks (change them with pgmart.add_check() and pgmart.drop_check()).';

CREATE TABLE pgmart.check_results (
    result_id    bigserial PRIMARY KEY,
    run_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    check_id     bigint NOT NULL,
    name         text NOT NULL,
    target       text,
    kind         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pass', 'warn', 'fail', 'error')),
    failing_rows bigint,
    checked_rows bigint,
    sample       jsonb,
    duration_ms  float8,
    message      text,
    run_by       text
);
CREATE INDEX check_results_check_idx ON pgmart.check_results (check_id, run_at DESC);
CREATE INDEX check_results_run_at_idx ON pgmart.check_results (run_at);
COMMENT ON TABLE pgmart.check_results IS 'Every result of every pgmart check run (pruned after pgmart.history_retention).';

SELECT pg_catalog.pg_extension_config_dump('pgmart."check"', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.check_check_id_seq', '');
