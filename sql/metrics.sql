-- pgmart metric contracts: one owner, one validated and versioned definition per metric.

CREATE TABLE pgmart.metric (
    name          text PRIMARY KEY,
    version       integer NOT NULL DEFAULT 1,
    source        regclass NOT NULL,
    expression    text NOT NULL,
    filter        text,
    time_column   name NOT NULL,
    time_kind     text NOT NULL CHECK (time_kind IN ('Timestamptz', 'Timestamp', 'Date')),
    dimensions    text[] NOT NULL DEFAULT '{}',
    grain         text NOT NULL CHECK (grain IN ('hour', 'day', 'week', 'month', 'quarter', 'year')),
    owner         text NOT NULL,
    description   text NOT NULL,
    normalized    text NOT NULL,
    registered_by name NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    changed_at    timestamptz NOT NULL DEFAULT now(),
    deprecated_at timestamptz,
    replaced_by   text
);
COMMENT ON TABLE pgmart.metric IS 'pgmart metric catalog (read it through pgmart.metrics; change it through pgmart.register_metric).';

CREATE TABLE pgmart.metric_versions (
    name           text NOT NULL,
    version        integer NOT NULL,
    definition     jsonb NOT NULL,
    changed_by     name NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    change_summary text NOT NULL,
    PRIMARY KEY (name, version)
);
COMMENT ON TABLE pgmart.metric_versions IS 'Every version of every pgmart metric: the definition, who changed it, when, and what changed.';

-- One protection view per metric lives here: PostgreSQL refuses to drop a column or table it uses.
CREATE SCHEMA pgmart_metrics;
COMMENT ON SCHEMA pgmart_metrics IS 'pgmart: one view per metric over exactly the source columns it uses (security_invoker).';
GRANT USAGE ON SCHEMA pgmart_metrics TO PUBLIC;

CREATE VIEW pgmart.metrics AS
SELECT m.name, m.version, m.owner, m.description, m.source::text AS source, m.expression, m.filter,
       m.dimensions, m.grain, m.created_at, m.changed_at, m.deprecated_at IS NOT NULL AS deprecated,
       m.replaced_by, m.time_column, m.registered_by,
       'pgmart_metrics.' || pg_catalog.quote_ident('metric_' || m.name) AS view
  FROM pgmart.metric m;
COMMENT ON VIEW pgmart.metrics IS 'Every registered metric: owner, description, definition, version, grain, deprecation.';
GRANT SELECT ON pgmart.metrics TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pgmart.metric', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.metric_versions', '');

-- metric_values runs exactly the SQL metric_sql returns, as the caller (SECURITY INVOKER).
CREATE FUNCTION pgmart.metric_values(
    name text,
    from_ts timestamptz,
    to_ts timestamptz,
    grain text DEFAULT NULL,
    dimensions text[] DEFAULT '{}',
    timezone text DEFAULT 'UTC'
) RETURNS TABLE (bucket timestamptz, dimension_values jsonb, value numeric)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
BEGIN
    RETURN QUERY EXECUTE pgmart.metric_sql($1, $2, $3, $4, $5, $6);
END $$;
