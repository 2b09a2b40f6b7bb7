-- Whether an account was ever made here: the platform's own record, which the one-time setup
-- link goes by (on PostgreSQL no transaction may count every user's row).
CREATE TABLE installation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    has_accounts BOOLEAN NOT NULL
);
INSERT INTO installation (singleton, has_accounts) SELECT 1, EXISTS (SELECT 1 FROM users);
CREATE TRIGGER note_first_account AFTER INSERT ON users
    WHEN NOT (SELECT has_accounts FROM installation WHERE singleton = 1)
BEGIN
    UPDATE installation SET has_accounts = 1 WHERE singleton = 1;
END;
