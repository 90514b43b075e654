-- pgmart 0.1.0 -> 0.2.0, last part: the role-name columns, now that every view and function reads
-- owners from anchors instead.
ALTER TABLE pgmart.job DROP COLUMN owner;
ALTER TABLE pgmart."check" DROP COLUMN owner;
ALTER TABLE pgmart.alert_rules DROP COLUMN owner;
ALTER TABLE pgmart.metric DROP COLUMN registered_by;
ALTER TABLE pgmart.refresh_view DROP COLUMN owner;

-- What the DBA had taken from PUBLIC on 0.1.0 stays taken (see the first part).
DO $upgrade$
DECLARE
    what text;
    r record;
BEGIN
    FOREACH what IN ARRAY pg_catalog.string_to_array(pg_catalog.current_setting('pgmart_upgrade.not_public', true), ',')
    LOOP
        IF what OPERATOR(pg_catalog.~) '^routine:' THEN
            FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn FROM pg_catalog.pg_proc p
                      WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
                        AND p.proname::pg_catalog.text OPERATOR(pg_catalog.=) pg_catalog.substr(what, 9)
            LOOP
                EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', r.fn);
            END LOOP;
        ELSIF what OPERATOR(pg_catalog.~) '^view:' THEN
            EXECUTE pg_catalog.format('REVOKE SELECT ON %I.%I FROM PUBLIC', 'pgmart', pg_catalog.substr(what, 6));
        END IF;
    END LOOP;
END
$upgrade$;

-- Every metric gets its browsable view, pgmart_metrics.<name> (its protection view moved in the
-- first part).
SELECT pgmart._install_metric_views();
