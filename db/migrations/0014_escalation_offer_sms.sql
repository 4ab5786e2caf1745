-- An urgent escalation offered to a specialist with no page open is also sent to their phone by SMS
-- (issue 9 point 3), through the outbox like every other message: a new outbound_message kind, and the
-- request the message is about (its dedupe key `escalation_offer:<escalation>:<staff>` makes it one per offer).

-- 0010's helper, defined again (a pg_temp function lives for one session only) and taught the form 0010
-- itself leaves behind (`kind = ANY ('{a,b}'::text[])` rather than `ARRAY['a'::text, ...]`): a check on a
-- text column is extended, never replaced; the values already allowed are kept.
CREATE OR REPLACE FUNCTION pg_temp.extend_text_check(tbl regclass, col text, extra text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    con record;
    allowed text[] := extra;
BEGIN
    FOR con IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
               WHERE c.conrelid = tbl AND c.contype = 'c' AND pg_get_constraintdef(c.oid) ~ ('\m' || col || '\M')
                 AND pg_get_constraintdef(c.oid) ~ 'ANY \((ARRAY\[|''\{)'
    LOOP
        allowed := allowed || ARRAY(SELECT m[1] FROM regexp_matches(con.def, '''([^''{]+)''::text', 'g') AS m);
        allowed := allowed || coalesce((SELECT string_to_array(m[1], ',')
                                        FROM regexp_matches(con.def, '''\{([^}]*)\}''::text\[\]') AS m),
                                       '{}'::text[]);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, con.conname);
    END LOOP;
    allowed := ARRAY(SELECT DISTINCT unnest(allowed) ORDER BY 1);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I = ANY (%L::text[]))',
                   tbl, tbl::text || '_' || col || '_check', col, allowed);
END $$;

SELECT pg_temp.extend_text_check('outbound_message', 'kind', ARRAY['escalation_offer']);

ALTER TABLE outbound_message ADD COLUMN escalation_id uuid REFERENCES escalation (id);
