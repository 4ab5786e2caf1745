-- Re-offers (issue 9's aim): when everyone reachable has been asked, a request is offered again to the
-- specialists whose offer expired unanswered (never to one who declined: care/escalation.py refuses it),
-- so a specialist may now have several offers of one request, one after another. "One specialist at a
-- time" stays a constraint (escalation_offer_one_open).
ALTER TABLE escalation_offer DROP CONSTRAINT escalation_offer_escalation_id_staff_id_key;
CREATE INDEX escalation_offer_request ON escalation_offer (escalation_id, staff_id);

-- The staff nav bar's badge (issue 9 point 5): an opinion counts as unread for the doctor who asked until
-- they open the request after it was signed.
ALTER TABLE escalation ADD COLUMN requester_seen_at timestamptz;
CREATE INDEX escalation_requester_unread ON escalation (requester_id) WHERE status = 'answered';
