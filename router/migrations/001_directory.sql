-- braid catalog, version 1: the placement directory (DESIGN.md §3.1). Applied to the catalog
-- database (a shard's database or one of its own) by the engine's migration runner as the
-- series "catalog", recorded in braid.catalog_migration. The token "braid." names the
-- configured schema.

-- The directory version: one row, bumped in the same transaction as every directory change.
-- Changes take its row lock first and hold it to commit, so versions commit in order: a reader
-- that sees version V has seen every change numbered <= V. That makes "rows with version > V"
-- an exact delta, which is what clients poll (a sequence would not do: its numbers are handed
-- out in one order and may commit in another).
CREATE TABLE braid.directory_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO braid.directory_version (version) VALUES (0);

-- Where each queue lives. shard_id is where producers send the queue's jobs; drain_from, when
-- set, is the shard a move is draining (claimers still take its jobs there). epoch grows with
-- every move and is written into the fences the move sets. Rows are never deleted: a queue,
-- once placed, stays known.
--   active    the queue lives on shard_id
--   moving    a move from drain_from to shard_id was decided; fences are being changed
--   draining  the queue lives on shard_id; drain_from still holds jobs being drained
CREATE TABLE braid.directory (
    queue      text        PRIMARY KEY,
    shard_id   integer     NOT NULL CHECK (shard_id BETWEEN 1 AND 32767),
    epoch      bigint      NOT NULL CHECK (epoch >= 1),
    state      text        NOT NULL CHECK (state IN ('active', 'moving', 'draining')),
    drain_from integer     CHECK (drain_from BETWEEN 1 AND 32767 AND drain_from <> shard_id),
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'active') = (drain_from IS NULL))
);
CREATE INDEX ON braid.directory (version);

-- DirectoryClaim: the home of a queue, placing it on p_shard_id when it has none. First writer
-- wins: routers whose configurations disagree on the hash still agree on the directory. A known
-- queue costs one index probe and takes no lock. Returns the entry in force and whether this
-- call created it.
CREATE FUNCTION braid.directory_claim(p_queue text, p_shard_id integer)
RETURNS TABLE (queue text, shard_id integer, epoch bigint, state text, drain_from integer,
               version bigint, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
BEGIN
    RETURN QUERY SELECT d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version, false
    FROM braid.directory d WHERE d.queue = p_queue;
    IF FOUND THEN
        RETURN;
    END IF;

    UPDATE braid.directory_version v SET version = v.version + 1 RETURNING v.version INTO v_version;

    RETURN QUERY
    INSERT INTO braid.directory AS d (queue, shard_id, epoch, state, drain_from, version)
    VALUES (p_queue, p_shard_id, 1, 'active', NULL, v_version)
    ON CONFLICT ON CONSTRAINT directory_pkey DO NOTHING
    RETURNING d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version, true;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Another router placed it first: read the winner (a new statement, a new snapshot).
    RETURN QUERY SELECT d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version, false
    FROM braid.directory d WHERE d.queue = p_queue;
END
$$;

-- DirectorySince: the directory version and every entry changed after p_version, in one
-- snapshot. With nothing changed it returns one row with NULL entry columns: the poll every
-- client runs about once a second is one index probe.
CREATE FUNCTION braid.directory_since(p_version bigint)
RETURNS TABLE (dir_version bigint, queue text, shard_id integer, epoch bigint, state text,
               drain_from integer, version bigint)
LANGUAGE sql STABLE AS $$
    SELECT v.version, d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version
    FROM braid.directory_version v
    LEFT JOIN braid.directory d ON d.version > p_version
$$;

-- DirectoryUpdate: change a queue's entry if its epoch is still p_expect_epoch (compare and
-- set: one rebalancer step at a time). The new epoch may not go back. Returns the entry in
-- force and whether this call changed it.
CREATE FUNCTION braid.directory_update(p_queue text, p_expect_epoch bigint, p_shard_id integer,
                                       p_epoch bigint, p_state text, p_drain_from integer)
RETURNS TABLE (queue text, shard_id integer, epoch bigint, state text, drain_from integer,
               version bigint, applied boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
BEGIN
    IF p_epoch < p_expect_epoch THEN
        RAISE EXCEPTION 'directory_update: epoch % is older than %', p_epoch, p_expect_epoch
            USING ERRCODE = '22023';
    END IF;
    -- The version row first, as in directory_claim: one lock order for every change.
    UPDATE braid.directory_version v SET version = v.version + 1 RETURNING v.version INTO v_version;

    RETURN QUERY
    UPDATE braid.directory d
    SET shard_id = p_shard_id, epoch = p_epoch, state = p_state, drain_from = p_drain_from,
        version = v_version, updated_at = now()
    WHERE d.queue = p_queue AND d.epoch = p_expect_epoch
    RETURNING d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version, true;
    IF FOUND THEN
        RETURN;
    END IF;

    RETURN QUERY SELECT d.queue, d.shard_id, d.epoch, d.state, d.drain_from, d.version, false
    FROM braid.directory d WHERE d.queue = p_queue;
END
$$;
