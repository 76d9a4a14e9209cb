CREATE TABLE items (id bigserial PRIMARY KEY, owner text NOT NULL);
