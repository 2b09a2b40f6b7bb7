-- An entry's record — what happened, when, in which chain, and its links — never changes
-- once written: the one update the app may make (erasure) touches the personal fields, the
-- time of the erasure and its MAC, and nothing else.
CREATE FUNCTION mailroom_keep_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.scope, NEW.seq, NEW.occurred_at, NEW.action, NEW.outcome, NEW.session_id,
        NEW.api_key_id, NEW.request_id, NEW.prev_hash, NEW.hash, NEW.personal_digest)
       IS DISTINCT FROM
       (OLD.id, OLD.scope, OLD.seq, OLD.occurred_at, OLD.action, OLD.outcome, OLD.session_id,
        OLD.api_key_id, OLD.request_id, OLD.prev_hash, OLD.hash, OLD.personal_digest) THEN
        RAISE EXCEPTION 'an audit entry keeps its record; only its personal fields are erased'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER keep_entry BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION mailroom_keep_entry();
