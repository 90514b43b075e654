-- pgmart alert rules: a rule is a boolean condition on a table, carried by triggers that pgmart
-- creates on the table (see docs/alerts.md). The alerts themselves live in pgmart.alert (jobs.sql).

CREATE TABLE pgmart.alert_rules (
    rule_id         bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    target          text NOT NULL,
    condition       text NOT NULL,
    severity        text NOT NULL CHECK (severity OPERATOR(pg_catalog.=) ANY (ARRAY['info', 'low', 'medium', 'high', 'critical']::pg_catalog.text[])),
    channel         text NOT NULL,
    payload_columns text[],
    on_update       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    anchor          regclass NOT NULL,
    relation        regclass
);
COMMENT ON TABLE pgmart.alert_rules IS 'pgmart alert rules (read them through pgmart.rules; change them through pgmart.add_alert_rule / pgmart.drop_alert_rule).';

SELECT pg_catalog.pg_extension_config_dump('pgmart.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.alert_rules_rule_id_seq', '');

-- Acknowledged alerts are pruned by the age of their acknowledgement.
CREATE INDEX alerts_acked_idx ON pgmart.alert (acked_at) WHERE acked_at IS NOT NULL;
CREATE INDEX alerts_open_idx ON pgmart.alert (raised_at) WHERE acked_at IS NULL AND resolved_at IS NULL;

-- The rules of the roles whose rights you have.
CREATE VIEW pgmart.rules WITH (security_barrier) AS
SELECT r.rule_id, r.name, r.target, r.condition, r.severity, r.channel, r.payload_columns, r.on_update,
       pg_catalog.pg_get_userbyid(a.relowner) AS owner, r.created_at
  FROM pgmart.alert_rules r
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) r.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.rules IS 'Your alert rules: table, condition, severity, channel, owner.';
GRANT SELECT ON pgmart.rules TO PUBLIC;
