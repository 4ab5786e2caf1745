-- Facility scope, computed one way: the referral tree's subtree and ancestors, and the relation of one
-- facility to another as the access policy (care/access.py) names it. Every query that limits rows to a
-- staff member's scope uses facility_subtree(); every check of one object uses facility_relation().
-- care.access.relation_of is the in-memory twin, and a test compares the two on a real tree.

-- The facility and every facility below it (any depth). ROWS: a district's stations, not the default 1000.
CREATE FUNCTION facility_subtree(root bigint) RETURNS SETOF bigint LANGUAGE sql STABLE PARALLEL SAFE ROWS 20 AS $$
    WITH RECURSIVE down(id) AS (
        SELECT root
        UNION SELECT f.id FROM facility f JOIN down d ON f.parent_id = d.id)
    SELECT id FROM down
$$;

-- The facility and every facility above it, up to the top.
CREATE FUNCTION facility_ancestors(leaf bigint) RETURNS SETOF bigint LANGUAGE sql STABLE PARALLEL SAFE ROWS 4 AS $$
    WITH RECURSIVE up(id, parent_id) AS (
        SELECT id, parent_id FROM facility WHERE id = leaf
        UNION SELECT f.id, f.parent_id FROM facility f JOIN up u ON f.id = u.parent_id)
    SELECT id FROM up
$$;

-- own | below | above | sibling | unrelated: where `object_facility` sits, seen from `staff_facility`.
CREATE FUNCTION facility_relation(staff_facility bigint, object_facility bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN staff_facility = object_facility THEN 'own'
        WHEN staff_facility IN (SELECT facility_ancestors(object_facility)) THEN 'below'
        WHEN object_facility IN (SELECT facility_ancestors(staff_facility)) THEN 'above'
        WHEN (SELECT parent_id FROM facility WHERE id = staff_facility)
             = (SELECT parent_id FROM facility WHERE id = object_facility) THEN 'sibling'
        ELSE 'unrelated'
    END
$$;
