-- braid engine, version 3: inspection (exact counts and job lookup), built on the rules of
-- version 2 (lane_cursor, tombstones, open_attempts, bucket).
--
-- State codes shared by count_delta, counter and terminal rows:
--   5 completed, 6 failed, 7 cancelled.

-- QueueCounts: exact counts of one queue on this shard. Non-terminal states are read from the
-- live structures; terminal states are folded counters + retained deltas + retained compact
-- completion batches (which carry their count, so the fast path writes no per-job delta).
CREATE FUNCTION braid.queue_counts(p_queue text)
RETURNS TABLE (available bigint, running bigint, scheduled bigint, retryable bigint,
               completed bigint, failed bigint, cancelled bigint, dead_lettered bigint)
LANGUAGE sql STABLE AS $$
    WITH lanes AS MATERIALIZED (
        SELECT l.lane_id FROM braid.lane l WHERE l.queue = p_queue
    ), avail AS (
        SELECT count(*) AS n
        FROM lanes l
        CROSS JOIN LATERAL (SELECT braid.lane_cursor(l.lane_id) AS seq) cur
        JOIN braid.ready r ON r.lane_id = l.lane_id AND r.lane_seq > cur.seq
        WHERE r.lane_seq NOT IN (SELECT t.lane_seq FROM braid.tombstones(l.lane_id, cur.seq, 9223372036854775807) t)
    ), batches AS (
        SELECT array_agg(b.cslot) AS cslots, array_agg(b.batch_id) AS batch_ids
        FROM braid.claim_batch b WHERE b.lane_id IN (SELECT lane_id FROM lanes)
    ), run AS (
        SELECT count(*) AS n FROM batches b
        CROSS JOIN LATERAL braid.open_attempts(b.cslots, b.batch_ids) o
    ), def AS (
        SELECT count(*) FILTER (WHERE d.reason <> 2) AS scheduled,
               count(*) FILTER (WHERE d.reason = 2) AS retryable
        FROM braid.deferred d WHERE d.queue = p_queue
    ), term AS (
        SELECT s.state, sum(s.n) AS n FROM (
            SELECT c.state, c.n FROM braid.counter c WHERE c.queue = p_queue
            UNION ALL
            SELECT c.state, c.n FROM braid.counter_log c WHERE c.queue = p_queue
            UNION ALL
            SELECT d.state, d.delta FROM braid.count_delta d WHERE d.queue = p_queue
            UNION ALL
            SELECT 5::smallint, c.n FROM braid.completion c WHERE c.lane_id IN (SELECT lane_id FROM lanes)
        ) s GROUP BY s.state
    )
    SELECT (SELECT n FROM avail), (SELECT n FROM run),
           (SELECT scheduled FROM def), (SELECT retryable FROM def),
           coalesce((SELECT n FROM term WHERE state = 5), 0)::bigint,
           coalesce((SELECT n FROM term WHERE state = 6), 0)::bigint,
           coalesce((SELECT n FROM term WHERE state = 7), 0)::bigint,
           (SELECT count(*) FROM braid.dead_letter d WHERE d.queue = p_queue)
$$;

-- JobAttempt: where the attempt emitted by claim batch p_batch_id for a job lives now,
-- following re-homes, whether it is still open or not. No row when the batch and its re-homes
-- are gone (pruned).
CREATE FUNCTION braid.job_attempt(p_job_id bigint, p_cslot smallint, p_batch_id bigint)
RETURNS TABLE (cslot smallint, batch_id bigint, idx integer)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cs  smallint := p_cslot;
    v_bs  bigint := p_batch_id;
    v_idx integer;
BEGIN
    SELECT array_position(b.job_ids, p_job_id) INTO v_idx
    FROM braid.claim_batch b WHERE b.cslot = p_cslot AND b.batch_id = p_batch_id;
    IF v_idx IS NULL THEN
        -- The emitting batch was pruned; a re-home of the attempt names it.
        SELECT b.cslot, b.batch_id, 1 INTO v_cs, v_bs, v_idx FROM braid.claim_batch b
        WHERE b.rehomed_from = p_batch_id AND b.job_ids[1] = p_job_id LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT x.cslot, x.batch_id, x.idx FROM braid.receipt_resolve(ARRAY[v_cs], ARRAY[v_bs], ARRAY[v_idx]) x;
END
$$;

-- JobGet: the newest known state of one job. Precedence, newest evidence first: a dead letter,
-- a deferred row, a terminal row newer than the newest ready row's attempt, then the newest
-- ready row: tombstoned, available (past its lane cursor), running (open attempt) or completed.
CREATE FUNCTION braid.job_get(p_job_id bigint)
RETURNS TABLE (state text, queue text, priority smallint, lane_no smallint, kind text,
               args jsonb, metadata jsonb, errors jsonb, attempt integer, max_attempts integer,
               run_lease bigint, unique_key text, run_at timestamptz, created_at timestamptz,
               finished_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r  record;
    l  record;
    e  record;
    t  record;
    a  record;
    o  record;
BEGIN
    RETURN QUERY
    SELECT 'dead_lettered'::text, d.queue, d.priority, d.lane_no, d.kind, d.args, d.metadata,
           d.errors, d.attempt, d.max_attempts, d.run_lease, d.unique_key, NULL::timestamptz,
           d.created_at, d.dead_at
    FROM braid.dead_letter d WHERE d.job_id = p_job_id;
    IF FOUND THEN RETURN; END IF;

    RETURN QUERY
    SELECT CASE d.reason WHEN 2 THEN 'retryable' ELSE 'scheduled' END, d.queue, d.priority,
           d.lane_no, d.kind, d.args, d.metadata, d.errors, d.attempt, d.max_attempts,
           d.run_lease, d.unique_key, d.run_at, d.created_at, NULL::timestamptz
    FROM braid.deferred d WHERE d.job_id = p_job_id;
    IF FOUND THEN RETURN; END IF;

    SELECT * INTO r FROM braid.ready x WHERE x.job_id = p_job_id ORDER BY x.lane_seq DESC LIMIT 1;
    SELECT * INTO t FROM braid.terminal x WHERE x.job_id = p_job_id ORDER BY x.finalized_at DESC LIMIT 1;

    -- A terminal row ended the newest ready row (an attempt claimed from it has a greater lease,
    -- a cancel before any claim the same lease); an operator retry's ready row has a greater
    -- lease than the terminal row it retries.
    IF t.job_id IS NOT NULL AND (r.job_id IS NULL OR t.run_lease >= r.run_lease) THEN
        SELECT * INTO l FROM braid.lane x WHERE x.lane_id = t.lane_id;
        RETURN QUERY SELECT CASE t.state WHEN 5 THEN 'completed' WHEN 6 THEN 'failed' ELSE 'cancelled' END,
            l.queue, l.priority, l.lane_no, t.kind, t.args, t.metadata, t.errors, t.attempt,
            t.max_attempts, t.run_lease, t.unique_key, NULL::timestamptz, t.created_at, t.finalized_at;
        RETURN;
    END IF;
    IF r.job_id IS NULL THEN
        RETURN;  -- unknown, or pruned after it ended
    END IF;
    SELECT * INTO l FROM braid.lane x WHERE x.lane_id = r.lane_id;

    IF EXISTS (SELECT 1 FROM braid.tombstones(r.lane_id, r.lane_seq - 1, r.lane_seq)) THEN
        -- Tombstoned by a cancel (whose terminal row precedes it above) or by a discard whose
        -- dead letter was purged since: gone.
        RETURN;
    END IF;

    SELECT * INTO e FROM braid.emission x
    WHERE x.qslot = r.qslot AND x.lane_id = r.lane_id AND x.after_seq < r.lane_seq AND x.last_seq >= r.lane_seq;
    IF e.batch_id IS NULL THEN
        RETURN QUERY SELECT 'available'::text, l.queue, l.priority, l.lane_no, r.kind, r.args,
            r.metadata, r.errors, r.attempt, r.max_attempts, r.run_lease, r.unique_key, r.run_at,
            r.created_at, NULL::timestamptz;
        RETURN;
    END IF;

    SELECT * INTO a FROM braid.job_attempt(p_job_id, e.cslot, e.batch_id);
    SELECT * INTO o FROM braid.open_attempts(ARRAY[a.cslot], ARRAY[a.batch_id]) x
    WHERE a.batch_id IS NOT NULL AND x.idx = a.idx;
    IF o.job_id IS NOT NULL THEN
        RETURN QUERY SELECT 'running'::text, l.queue, l.priority, l.lane_no, r.kind, r.args,
            r.metadata, r.errors, o.attempt, r.max_attempts, o.run_lease, r.unique_key, r.run_at,
            r.created_at, NULL::timestamptz;
        RETURN;
    END IF;

    RETURN QUERY SELECT 'completed'::text, l.queue, l.priority, l.lane_no, r.kind, r.args,
        r.metadata, r.errors, r.attempt + 1, r.max_attempts, c.run_leases[p.i], r.unique_key,
        r.run_at, r.created_at, c.completed_at
    FROM braid.completion c
    CROSS JOIN LATERAL (SELECT array_position(c.job_ids, p_job_id) AS i) p
    WHERE c.qslot = r.qslot AND c.batch_id = coalesce(a.batch_id, e.batch_id) AND p.i IS NOT NULL;
END
$$;
