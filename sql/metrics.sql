-- pgmart metric contracts: one owner, one validated and versioned definition per metric.

CREATE TABLE pgmart.metric (
    name          text PRIMARY KEY,
    version       integer NOT NULL DEFAULT 1,
    source        regclass NOT NULL,
    expression    text NOT NULL,
    filter        text,
    time_column   name NOT NULL,
    time_kind     text NOT NULL CHECK (time_kind OPERATOR(pg_catalog.=) ANY (ARRAY['Timestamptz', 'Timestamp', 'Date']::pg_catalog.text[])),
    dimensions    text[] NOT NULL DEFAULT '{}',
    grain         text NOT NULL CHECK (grain OPERATOR(pg_catalog.=) ANY (ARRAY['hour', 'day', 'week', 'month', 'quarter', 'year']::pg_catalog.text[])),
    owner         text NOT NULL,
    description   text NOT NULL,
    normalized    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    deprecated_at timestamptz,
    replaced_by   text,
    anchor        regclass NOT NULL,
    -- The source's qualified name: a source re-created under it takes the metric back (src/follow.rs).
    source_name   text
);
COMMENT ON TABLE pgmart.metric IS 'pgmart metric catalog (read it through pgmart.metrics; change it through pgmart.register_metric).';

CREATE TABLE pgmart.metric_version (
    name           text NOT NULL,
    version        integer NOT NULL,
    definition     jsonb NOT NULL,
    changed_by     name NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    change_summary text NOT NULL,
    PRIMARY KEY (name, version)
);
COMMENT ON TABLE pgmart.metric_version IS 'Every version of every pgmart metric: the definition, who changed it, when, and what changed (read it through pgmart.metric_versions).';

-- One browsable view per metric, named as the metric (BI tools open it like a table).
CREATE SCHEMA pgmart_metrics;
COMMENT ON SCHEMA pgmart_metrics IS 'pgmart: one view per metric, named as the metric: its value per bucket and dimension values (security_invoker).';
GRANT USAGE ON SCHEMA pgmart_metrics TO PUBLIC;
-- One protection view per metric: PostgreSQL refuses to drop a column or table it uses.
CREATE SCHEMA pgmart_metric_columns;
COMMENT ON SCHEMA pgmart_metric_columns IS 'pgmart: one view per metric over exactly the source columns it uses (security_invoker); it keeps them from being dropped.';
GRANT USAGE ON SCHEMA pgmart_metric_columns TO PUBLIC;

-- The metrics you may use: those of roles whose rights you have, and those whose source you may read.
CREATE VIEW pgmart.metrics WITH (security_barrier) AS
SELECT m.name, m.version, m.owner, m.description,
       CASE WHEN m.source_name IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) m.source)
            THEN pgmart._relation_name(m.source) ELSE m.source_name END AS source, m.expression, m.filter,
       m.dimensions, m.grain, m.created_at, m.changed_at, m.deprecated_at IS NOT NULL AS deprecated,
       m.replaced_by, m.time_column, pg_catalog.pg_get_userbyid(a.relowner) AS registered_by,
       'pgmart_metrics.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.name) AS view,
       -- Freshness of the source, when pgmart keeps it fresh (a scheduled materialized view).
       r.last_refreshed_at AS source_refreshed_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) r.last_refreshed_at AS source_age
  FROM pgmart.metric m
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) m.anchor
  LEFT JOIN pgmart.refresh_view r ON r.view OPERATOR(pg_catalog.=) m.source
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(m.source::pg_catalog.oid, 'SELECT'::pg_catalog.text), false);
COMMENT ON VIEW pgmart.metrics IS 'Every metric you may use: owner, description, definition, version, grain, deprecation.';
GRANT SELECT ON pgmart.metrics TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pgmart.metric', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.metric_version', '');

-- The version history of the metrics you may see in pgmart.metrics (and of your dropped ones).
CREATE VIEW pgmart.metric_versions WITH (security_barrier) AS
SELECT v.name, v.version, v.definition, v.changed_by, v.changed_at, v.change_summary
  FROM pgmart.metric_version v
 WHERE EXISTS (SELECT 1 FROM pgmart.metrics m WHERE m.name OPERATOR(pg_catalog.=) v.name)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) v.changed_by
                  AND pg_catalog.pg_has_role(r.oid, 'USAGE'::pg_catalog.text));
COMMENT ON VIEW pgmart.metric_versions IS 'Every version of the metrics you may see: the definition, who changed it, when, and what changed.';
GRANT SELECT ON pgmart.metric_versions TO PUBLIC;

-- pgmart.metric_values is a Rust function (src/metrics/api.rs) that runs metric_sql's text as the caller.
