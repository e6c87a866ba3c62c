-- braid engine, version 8: the online per-bucket counter rebuild and the ring ledger trim
-- (DESIGN.md §2.8-§2.9).

-- A rebuild walks the counters one bucket at a time, so it looks rows up by bucket.
CREATE INDEX ON braid.counter (bucket);

-- CounterRebuild: recomputes bucket p_bucket's terminal counters from their ground truth and
-- rewrites them as exactly one row per (queue, state) with a non-zero count. Outcomes: rebuilt
-- (with the counter_log rows consumed and the bucket's counter rows before and after), nothing
-- (the bucket holds no folded history), standing_down (the MVCC horizon has been pinned for
-- longer than p_max_pin: the rebuild DELETEs, so it writes nothing then).
--
-- What the counters can be rebuilt from. A bucket's terminal count for (queue, state) is, by
-- queue_counts, counter + counter_log + the retained slots' count_delta and completion rows.
-- The retained rows are read live by every Counts call and are never copied into counter, so
-- the counter's only ground truth is the folded history of TRUNCATEd slots: the counter_log
-- rows prune appended and the counter rows earlier folds made from them. That history exists
-- once (a truncated slot leaves nothing else behind), so the rebuild recomputes the bucket's
-- counters as the sum of it, per (queue, state): it folds the bucket's counter_log rows,
-- collapses rows of one key and drops zero rows (a retry of a job whose failed row was folded
-- folds a -1 later). It cannot repair a counter value that is wrong in itself: nothing in the
-- schema records that value twice.
--
-- Why it is exact while traffic runs. Enqueue, claim, completion, fail, snooze, cancel, retry,
-- rescue and promotion never write counter or counter_log: their counts live in the retained
-- rows of the queue ring, which the rebuild neither reads nor writes. The only writers of the
-- folded history are prune (INSERT into counter_log) and counter_fold (DELETE from counter_log,
-- then upsert counter, in one statement). The rebuild locks counter_log SHARE ROW EXCLUSIVE
-- before it reads anything: that conflicts with the ROW EXCLUSIVE lock both writers take on
-- counter_log when their statement starts (and with itself), so while a rebuild runs no fold or
-- prune fold is half-way and none can start; a fold that started first is waited for whole. The
-- bucket's history is therefore frozen, and a Counts call (one statement, one snapshot, ACCESS
-- SHARE, which the lock does not block) sees the rebuild's commit whole or not at all: it only
-- moves n between counter_log and counter within one (queue, state, bucket) sum.
-- No cycle: the rebuild takes no ring, slot or row lock before the table lock; prune waits for
-- it holding its slot's partitions, which the rebuild never touches; fold waits for it holding
-- nothing. Traffic never waits for it.
-- Lock order (doc.go, maintenance): lease row -> counter_log (SHARE ROW EXCLUSIVE) -> counter rows.
CREATE FUNCTION braid.counter_rebuild(p_bucket smallint, p_max_pin interval)
RETURNS TABLE (outcome text, log_rows bigint, rows_before bigint, rows_after bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_log   bigint;
    v_ctr   bigint;
    v_after bigint;
BEGIN
    IF p_bucket IS NULL OR p_bucket < 0 OR p_bucket > 255 THEN
        RAISE EXCEPTION 'invalid bucket %: must be 0..255', p_bucket USING ERRCODE = '22023';
    END IF;
    IF braid.horizon_pinned_for() > p_max_pin THEN
        RETURN QUERY SELECT 'standing_down'::text, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    LOCK TABLE braid.counter_log IN SHARE ROW EXCLUSIVE MODE;

    WITH log AS (
        DELETE FROM braid.counter_log x WHERE x.bucket = p_bucket RETURNING x.queue, x.state, x.n
    ), ctr AS (
        DELETE FROM braid.counter x WHERE x.bucket = p_bucket RETURNING x.queue, x.state, x.n
    ), h AS (
        SELECT 'log' AS src, l.queue, l.state, l.n FROM log l
        UNION ALL
        SELECT 'ctr', c.queue, c.state, c.n FROM ctr c
    ), summed AS (
        SELECT h.queue, h.state, sum(h.n)::bigint AS n FROM h GROUP BY h.queue, h.state HAVING sum(h.n) <> 0
    ), ins AS (
        INSERT INTO braid.counter (queue, state, bucket, n)
        SELECT s.queue, s.state, p_bucket, s.n FROM summed s
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM h WHERE h.src = 'log'), (SELECT count(*) FROM h WHERE h.src = 'ctr'),
           (SELECT count(*) FROM ins)
    INTO v_log, v_ctr, v_after;

    IF v_log = 0 AND v_ctr = 0 THEN
        RETURN QUERY SELECT 'nothing'::text, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'rebuilt'::text, v_log, v_ctr, v_after;
END
$$;

-- RingLedgerTrim: deletes, in each ring, the ledger generations older than the newest
-- greatest(p_keep, slots), under the ring's lock (ns 6, so no rotation of it runs meanwhile and
-- its newest generation cannot move); the rings are locked in a fixed order (queue, then claim)
-- and every other step takes one ring lock only. Returns the rows deleted, or NULL when
-- standing down (the MVCC horizon has been pinned for longer than p_max_pin: the trim DELETEs).
--
-- Which generations are safe to delete. Every reader of braid.ring_gen asks for the newest
-- generation only: ring_current (enqueue, promotion, retry, cancel, carry-forward), ring_rotate
-- (which appends newest + 1) and oldest_sealed_slot (via ring_current, then slot arithmetic
-- over generate_series, not over the ledger). A slot is named by generation mod slots; the
-- generations that name retained slots are the newest `slots` ones (newest - slots + 1 ..
-- newest; older generations' slots were reused by newer ones). The lane cursor never reads the
-- ledger: it is the newest retained emission of the lane (braid.lane_cursor). So every
-- generation older than the newest `slots` is unreachable; the trim keeps at least that many
-- (so each retained slot's start time stays readable) and so never the newest.
-- Lock order (doc.go, maintenance): lease row -> ring (6) -> ring_gen rows.
CREATE FUNCTION braid.ring_ledger_trim(p_keep integer, p_max_pin interval)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_ring  text;
    v_slots smallint;
    v_gen   bigint;
    v_n     bigint;
    v_total bigint := 0;
BEGIN
    IF p_keep IS NULL OR p_keep < 1 THEN
        RAISE EXCEPTION 'invalid keep %: must be >= 1', p_keep USING ERRCODE = '22023';
    END IF;
    IF braid.horizon_pinned_for() > p_max_pin THEN
        RETURN NULL;
    END IF;
    FOREACH v_ring IN ARRAY ARRAY['queue', 'claim'] LOOP
        PERFORM pg_advisory_xact_lock(6, hashtext(v_ring));
        SELECT r.slots INTO v_slots FROM braid.ring r WHERE r.ring = v_ring;
        SELECT c.generation INTO v_gen FROM braid.ring_current(v_ring) c;
        DELETE FROM braid.ring_gen g
        WHERE g.ring = v_ring AND g.generation <= v_gen - greatest(p_keep, v_slots);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_total := v_total + v_n;
    END LOOP;
    RETURN v_total;
END
$$;
