-- Why a key was revoked: by request, or because the person who created it left the
-- organization, was removed from it, or was disabled (their keys go with them).
ALTER TABLE api_keys ADD COLUMN revoked_reason TEXT;
UPDATE api_keys SET revoked_reason = 'revoked' WHERE revoked_at IS NOT NULL;
