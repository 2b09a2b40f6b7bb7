-- Whether a user has a second factor is theirs and their organization's to know; their TOTP
-- row (the sealed secret, its last used step) is theirs alone. The flag lives on the user's
-- row, kept by a trigger from mfa_totp, and the members' path onto mfa_totp goes.
ALTER TABLE users ADD COLUMN has_second_factor BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users u SET has_second_factor = EXISTS (
    SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id AND t.enabled_at IS NOT NULL);

-- As the owner (the app may not change the column), for the user whose transaction it is.
CREATE FUNCTION mailroom_keep_second_factor_flag() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE users SET has_second_factor = FALSE WHERE id = OLD.user_id;
        RETURN OLD;
    END IF;
    UPDATE users SET has_second_factor = (NEW.enabled_at IS NOT NULL) WHERE id = NEW.user_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER keep_second_factor_flag AFTER INSERT OR UPDATE OF enabled_at OR DELETE ON mfa_totp
    FOR EACH ROW EXECUTE FUNCTION mailroom_keep_second_factor_flag();

DROP POLICY members ON mfa_totp;

-- A membership is one user's: it never passes to another.
CREATE TRIGGER pin_user BEFORE UPDATE OF user_id ON org_members
    FOR EACH ROW EXECUTE FUNCTION mailroom_pin_owner('user_id');
