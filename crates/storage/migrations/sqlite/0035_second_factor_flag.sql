-- Whether a user has a second factor, on their row (PostgreSQL's migration 0035 says why).
ALTER TABLE users ADD COLUMN has_second_factor BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET has_second_factor = EXISTS (
    SELECT 1 FROM mfa_totp t WHERE t.user_id = users.id AND t.enabled_at IS NOT NULL);
CREATE TRIGGER second_factor_added AFTER INSERT ON mfa_totp
BEGIN
    UPDATE users SET has_second_factor = (NEW.enabled_at IS NOT NULL) WHERE id = NEW.user_id;
END;
CREATE TRIGGER second_factor_changed AFTER UPDATE OF enabled_at ON mfa_totp
BEGIN
    UPDATE users SET has_second_factor = (NEW.enabled_at IS NOT NULL) WHERE id = NEW.user_id;
END;
CREATE TRIGGER second_factor_removed AFTER DELETE ON mfa_totp
BEGIN
    UPDATE users SET has_second_factor = FALSE WHERE id = OLD.user_id;
END;
