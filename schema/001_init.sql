-- syncrelay initial schema.
-- Every table that grows with a library's data has a key starting with library_id, so a
-- deployment can distribute by library (Citus); tokens is the small global lookup table.
-- Identifiers and HLCs are text in the "C" collation: byte order is the protocol's order.

CREATE TABLE libraries (
    library_id     uuid PRIMARY KEY,
    name           text NOT NULL,
    head           bigint NOT NULL DEFAULT 0,   -- highest committed seq; its row lock orders pushes
    horizon        bigint NOT NULL DEFAULT 0,   -- lowest since still served from the log
    schema_version integer NOT NULL DEFAULT 0,
    schema_models  text NOT NULL DEFAULT '[]',  -- JSON array of models as served
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    token_hash text PRIMARY KEY,               -- hex SHA-256 of the bearer token
    kind       text NOT NULL CHECK (kind IN ('join', 'device')),
    library_id uuid NOT NULL,
    device_id  uuid,
    revoked    boolean NOT NULL DEFAULT false
);

CREATE INDEX tokens_device ON tokens (library_id, device_id);

CREATE TABLE devices (
    library_id  uuid NOT NULL REFERENCES libraries (library_id),
    device_id   uuid NOT NULL,
    name        text NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz,
    acked_seq   bigint NOT NULL DEFAULT 0,
    revoked_at  timestamptz,
    PRIMARY KEY (library_id, device_id)
);

CREATE TABLE changes (
    library_id uuid NOT NULL,
    seq        bigint NOT NULL,
    hlc        text COLLATE "C" NOT NULL,
    device_id  uuid NOT NULL,
    model      text COLLATE "C" NOT NULL,
    record_id  text COLLATE "C" NOT NULL,
    op         smallint NOT NULL,              -- 0 upsert, 1 delete
    data       text,                           -- canonical text as accepted; NULL for delete
    PRIMARY KEY (library_id, seq)
);
CREATE UNIQUE INDEX changes_hlc ON changes (library_id, hlc);

CREATE TABLE records (
    library_id uuid NOT NULL,
    model      text COLLATE "C" NOT NULL,
    record_id  text COLLATE "C" NOT NULL,
    owner      text COLLATE "C" NOT NULL,      -- device UUID, or '' for shared models
    bucket     smallint NOT NULL,
    hlc        text COLLATE "C" NOT NULL,
    deleted    boolean NOT NULL,
    data       text,
    PRIMARY KEY (library_id, model, record_id)
);
CREATE INDEX records_bucket ON records (library_id, model, owner, bucket, record_id);

CREATE TABLE scope_digests (
    library_id uuid NOT NULL,
    model      text COLLATE "C" NOT NULL,
    owner      text COLLATE "C" NOT NULL,
    count      bigint NOT NULL,
    hash       bigint NOT NULL,                -- XOR of record hashes (uint64 bits)
    watermark  text COLLATE "C",
    PRIMARY KEY (library_id, model, owner)
);

CREATE TABLE bucket_digests (
    library_id uuid NOT NULL,
    model      text COLLATE "C" NOT NULL,
    owner      text COLLATE "C" NOT NULL,
    bucket     smallint NOT NULL,
    count      bigint NOT NULL,
    hash       bigint NOT NULL,
    PRIMARY KEY (library_id, model, owner, bucket)
);
