-- Where each user has signed in from (client IP and user agent), so that a sign-in from
-- anywhere new is audited and the owner alerted (docs/security.md#new-device-alert), whether it opened a session or
-- started a token family, and however long ago the earlier sessions ended.
CREATE TABLE sign_in_devices (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip TEXT NOT NULL,
    -- '' when the client sent none: a NULL would never equal itself in the key.
    user_agent TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, ip, user_agent)
);

-- Devices of the sessions that already exist are not new.
INSERT INTO sign_in_devices (user_id, ip, user_agent, first_seen_at, last_seen_at)
SELECT user_id, COALESCE(ip, ''), COALESCE(user_agent, ''), MIN(created_at), MAX(last_seen_at)
FROM sessions
GROUP BY user_id, COALESCE(ip, ''), COALESCE(user_agent, '');
