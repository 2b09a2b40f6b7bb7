-- An organization's optional password composition rules, as bits: 1 uppercase,
-- 2 lowercase, 4 digit, 8 symbol (0: none).
ALTER TABLE orgs ADD COLUMN password_rules INTEGER NOT NULL DEFAULT 0;
