-- The test consumer's own table: a text column, which refuses a NUL byte like any other.
CREATE TABLE notes (
    event_id uuid PRIMARY KEY,
    note     text NOT NULL
);
