-- Items: the demo's one table. Applied once per database by drr-demo at
-- start-up (on the primary) and by its test harness.
CREATE TABLE items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    quantity integer NOT NULL CHECK (quantity >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX items_created_at ON items (created_at DESC, id DESC);
