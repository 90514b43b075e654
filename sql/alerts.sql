-- pgmart alert rules: a rule is a boolean condition on a table, carried by triggers that pgmart
-- creates on the table (see docs/alerts.md). The alerts themselves live in pgmart.alerts (jobs.sql).

CREATE TABLE pgmart.alert_rules (
    rule_id         bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    target          text NOT NULL,
    condition       text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    channel         text NOT NULL,
    payload_columns text[],
    on_update       boolean NOT NULL DEFAULT false,
    owner           name NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmart.alert_rules IS 'pgmart alert rules (change them through pgmart.add_alert_rule / pgmart.drop_alert_rule).';

SELECT pg_catalog.pg_extension_config_dump('pgmart.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.alert_rules_rule_id_seq', '');

-- Acknowledged alerts are pruned by the age of their acknowledgement.
CREATE INDEX alerts_acked_idx ON pgmart.alerts (acked_at) WHERE acked_at IS NOT NULL;
CREATE INDEX alerts_open_idx ON pgmart.alerts (raised_at) WHERE acked_at IS NULL;

-- Open alerts the caller may see: those of their rules and jobs (a superuser sees all).
CREATE VIEW pgmart.open_alerts AS
SELECT a.alert_id, a.raised_at, a.source_kind, a.source_name, a.severity, a.target, a.payload
  FROM pgmart.alerts a
 WHERE a.acked_at IS NULL
   AND (EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper)
        OR (a.source_kind = 'rule' AND EXISTS (SELECT 1 FROM pgmart.alert_rules r
              WHERE r.name = a.source_name AND pg_catalog.pg_has_role(r.owner, 'MEMBER')))
        OR (a.source_kind = 'job' AND EXISTS (SELECT 1 FROM pgmart.job j
              WHERE j.job_id::text = a.payload->>'job_id' AND pg_catalog.pg_has_role(j.owner, 'MEMBER'))));
COMMENT ON VIEW pgmart.open_alerts IS 'Alerts not yet acknowledged (rule and health alerts), newest last; acknowledge with pgmart.ack_alert().';
