-- Periodic work that one replica at a time should do (the drift check): who holds it and
-- until when, in microseconds on the database's clock. A replica runs the work only while it
-- holds the claim; a claim that is not renewed lapses, and another replica takes it.
CREATE TABLE periodic_claims (
    name     TEXT NOT NULL PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_us BIGINT NOT NULL
);
