-- braid engine, version 4: queue fence operations (DESIGN.md §3.2) on the braid.fence table of
-- version 1. A fence says whether this shard accepts enqueues for a queue; no row means it does.
-- Enqueue (job_enqueue) takes the queue's fence lock (ns 4, key hashtext(queue)) shared and
-- refuses a queue whose fence is not active. Epochs come from the catalog's directory: a fence
-- change carrying an older epoch than the fence in force changes nothing.

-- FenceCreate: the queue's fence on its new home, written when the directory first places the
-- queue here. Never overwrites an existing fence: a sealed fence stays sealed, whoever comes
-- late with an old directory entry. Returns the fence in force.
CREATE FUNCTION braid.fence_create(p_queue text, p_epoch bigint)
RETURNS TABLE (queue text, epoch bigint, state text, moved_to integer)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO braid.fence AS f (queue, epoch, state, moved_to)
    VALUES (p_queue, p_epoch, 'active', NULL)
    ON CONFLICT ON CONSTRAINT fence_pkey DO NOTHING;

    RETURN QUERY SELECT f.queue, f.epoch, f.state, f.moved_to FROM braid.fence f WHERE f.queue = p_queue;
END
$$;

-- FenceSeal: stop this shard from accepting the queue (state draining or moved, pointing at
-- moved_to). The exclusive fence lock is taken in a statement of its own: it waits for every
-- enqueue of the queue in flight on this shard (they hold the lock shared until they commit),
-- and once this transaction commits, no enqueue of the queue can commit here. Call it in its
-- own transaction (or commit soon after): the lock is held to commit and blocks enqueues of the
-- queue meanwhile. Creates the fence when the shard has none. Returns the fence in force, which
-- is the caller's only when p_epoch >= the epoch it found.
CREATE FUNCTION braid.fence_seal(p_queue text, p_epoch bigint, p_state text, p_moved_to integer)
RETURNS TABLE (queue text, epoch bigint, state text, moved_to integer)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_state NOT IN ('draining', 'moved') THEN
        RAISE EXCEPTION 'fence_seal: state must be draining or moved, not %', p_state
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(4, hashtext(p_queue));

    INSERT INTO braid.fence AS f (queue, epoch, state, moved_to)
    VALUES (p_queue, p_epoch, p_state, p_moved_to)
    ON CONFLICT ON CONSTRAINT fence_pkey DO UPDATE
    SET epoch = excluded.epoch, state = excluded.state, moved_to = excluded.moved_to
    WHERE f.epoch <= excluded.epoch;

    RETURN QUERY SELECT f.queue, f.epoch, f.state, f.moved_to FROM braid.fence f WHERE f.queue = p_queue;
END
$$;

-- FenceOpen: make this shard accept the queue again (a move's target, or a cancelled move's
-- source) when p_epoch >= the epoch in force. Opening needs no lock against enqueues: an
-- enqueue that read the old state merely refused. Returns the fence in force.
CREATE FUNCTION braid.fence_open(p_queue text, p_epoch bigint)
RETURNS TABLE (queue text, epoch bigint, state text, moved_to integer)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO braid.fence AS f (queue, epoch, state, moved_to)
    VALUES (p_queue, p_epoch, 'active', NULL)
    ON CONFLICT ON CONSTRAINT fence_pkey DO UPDATE
    SET epoch = excluded.epoch, state = 'active', moved_to = NULL
    WHERE f.epoch <= excluded.epoch;

    RETURN QUERY SELECT f.queue, f.epoch, f.state, f.moved_to FROM braid.fence f WHERE f.queue = p_queue;
END
$$;
