-- pgmart layers: the raw/staging/mart schemas and the ingest/transform/BI roles create_layers keeps
-- least-privileged, the access labels (PII columns, client-facing tables) access_report judges by,
-- and the tables isolate_tenants keeps per tenant (src/layers/). User configuration: dumped by pg_dump.

-- One row per layer set (schemas and roles by name: a set made by hand before pgmart, restored
-- from a dump, or renamed, is found again by its names).
CREATE TABLE pgmart.layer_set (
    mart_schema    text PRIMARY KEY,
    raw_schema     text NOT NULL UNIQUE,
    staging_schema text NOT NULL UNIQUE,
    ingest_role    text NOT NULL,
    transform_role text NOT NULL,
    bi_role        text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    checked_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgmart.layer_set IS 'pgmart layer sets (read them through pgmart.layers; change them with pgmart.create_layers() and pgmart.drop_layers()).';

-- Labels on relations: 'pii' on a column, 'client_facing' on a table (column_name '').
CREATE TABLE pgmart.access_label (
    label_id      bigserial PRIMARY KEY,
    relation      regclass NOT NULL,
    column_name   text NOT NULL DEFAULT '',
    label         text NOT NULL CHECK (label OPERATOR(pg_catalog.=) ANY (ARRAY['pii', 'client_facing']::pg_catalog.text[])),
    -- The relation's owner when it was labelled: a relation re-created under the label's name by a
    -- role with that owner's rights takes the label back (src/follow.rs).
    owner         oid NOT NULL,
    labelled_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The relation's qualified name.
    relation_name text NOT NULL,
    UNIQUE (relation, column_name, label),
    CHECK ((label OPERATOR(pg_catalog.=) 'pii') OPERATOR(pg_catalog.=) (column_name OPERATOR(pg_catalog.<>) ''))
);
COMMENT ON TABLE pgmart.access_label IS 'pgmart access labels (read them through pgmart.access_labels; change them with pgmart.label_pii() and pgmart.label_client_facing()).';

-- Tables kept per tenant by isolate_tenants: the policy's deparsed text, to tell a policy edited
-- by hand from pgmart's own.
CREATE TABLE pgmart.tenant_table (
    relation      regclass PRIMARY KEY,
    tenant_column name NOT NULL,
    setting       text NOT NULL,
    bi_role       text NOT NULL,
    policy_qual   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgmart.tenant_table IS 'pgmart tenant-isolated tables (read them through pgmart.access_labels; change them with pgmart.isolate_tenants()).';

SELECT pg_catalog.pg_extension_config_dump('pgmart.layer_set', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.access_label', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.access_label_label_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.tenant_table', '');

-- The layer sets you have a part in: you own (or have the rights of the owner of) one of their
-- schemas, or you are a member of one of their roles.
CREATE VIEW pgmart.layers WITH (security_barrier) AS
SELECT s.raw_schema, s.staging_schema, s.mart_schema, s.ingest_role, s.transform_role, s.bi_role,
       s.created_at, s.checked_at
  FROM pgmart.layer_set s
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                WHERE n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY[s.raw_schema, s.staging_schema, s.mart_schema]::pg_catalog.name[])
                  AND pg_catalog.pg_has_role(n.nspowner, 'USAGE'::pg_catalog.text))
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY[s.ingest_role, s.transform_role, s.bi_role]::pg_catalog.name[])
                  AND pg_catalog.pg_has_role(r.oid, 'USAGE'::pg_catalog.text));
COMMENT ON VIEW pgmart.layers IS 'The layer sets (raw, staging, mart schemas; ingest, transform, BI roles) you own a schema of or belong to a role of; the target of an access check.';

-- The labels on relations whose owner's rights you have, or that you may read.
CREATE VIEW pgmart.access_labels WITH (security_barrier) AS
SELECT l.relation_name AS relation, l.label,
       CASE WHEN l.column_name OPERATOR(pg_catalog.=) '' THEN NULL ELSE l.column_name END AS column_name, l.labelled_at,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) l.relation) AS relation_exists,
       t.tenant_column, t.setting AS tenant_setting
  FROM pgmart.access_label l
  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation
  LEFT JOIN pgmart.tenant_table t ON t.relation OPERATOR(pg_catalog.=) l.relation AND l.label OPERATOR(pg_catalog.=) 'client_facing'
 WHERE pg_catalog.pg_has_role(coalesce(c.relowner, l.owner), 'USAGE'::pg_catalog.text)
    OR (c.oid IS NOT NULL AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT'::pg_catalog.text));
COMMENT ON VIEW pgmart.access_labels IS 'Access labels (pii columns, client_facing tables, with their tenant isolation) on relations you own or may read.';
GRANT SELECT ON pgmart.layers, pgmart.access_labels TO PUBLIC;
