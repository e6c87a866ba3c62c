-- braid engine, version 10: prunes that never stall traffic (issue 4, the soak's maintenance
-- stall). Two causes, both measured on a soaked shard:
--
-- 1. The queue prune's carry-forward did work proportional to the slot's size, not to its
--    pending rows, under the slot's ACCESS EXCLUSIVE locks. Once autovacuum had analysed the
--    filled partitions, the generic plan of version 7's carry became a hash join whose scan of
--    the slot's ready partition ran the tombstone probe (braid.tombstones, a correlated
--    subplan pushed down to the scan) for every row of the slot, and the join filter read the
--    lane cursor once per row again: about 180µs per ready row (0.9s for a 5,000-row slot in
--    TestPruneCarryIsBoundedByPendingRows' setup; 1m4s for one prune of the 2-minute soak).
--    Every hot-path statement plans generically and so locks every partition of the tables it
--    reads at executor start, so for all that time enqueue, claim, completion and the stats
--    read queued behind the prune, and its snapshot held the MVCC horizon.
-- 2. slot_lock took the slot's partitions one LOCK statement after another, each waiting up to
--    the lock timeout, so a prune held the first partitions ACCESS EXCLUSIVE while it queued for
--    the next one; a hot-path transaction that already held the next one (a generic plan locks
--    them all) and then wanted the first was stuck in a cycle until the timeout fired. (Taking
--    them all NOWAIT and retrying instead starves: under steady traffic some transaction always
--    holds one of them, and the stress test's prunes were blocked 18 times out of 23.)
--
-- Lock namespace and order are unchanged (doc.go, maintenance): lease row -> ring (6) -> the
-- slot's partitions (waiting for one at a time, holding none of the others meanwhile) -> current
-- slot (carry-forward) -> counter_log.
--
-- Also horizon_passed, with which the Maintainer VACUUMs the fold's dead rows right after it.

-- SlotLock (replaces version 6, same contract): locks every partition of a ring slot ACCESS
-- EXCLUSIVE within p_lock_timeout; false when it did not get them all in time (the caller
-- reports blocked). It never holds one partition of the slot while it waits for another: each
-- round, in a subtransaction, waits (lock_timeout = the time left) for one partition only, then
-- takes the others NOWAIT; when one of them is busy the subtransaction is rolled back, which
-- releases what the round took, and the next round waits for the busy one. So the only lock
-- queue a prune stands in is one partition's, holding nothing a hot-path transaction in front
-- of it could need (version 6 queued for each partition in turn while holding the previous
-- ones: a hot-path transaction holding a later partition, as every generic plan does, and then
-- asking for an earlier one was stuck in a cycle with it until the timeout fired). A granted
-- round has taken every partition, each at most once in a lock queue. The locks are held to
-- commit.
CREATE OR REPLACE FUNCTION braid.slot_lock(p_ring text, p_slot smallint, p_lock_timeout interval)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_until  timestamptz := clock_timestamp() + p_lock_timeout;
    v_tables text[] := ARRAY(SELECT format('braid.%I', t || '_' || p_slot) FROM unnest(braid.ring_tables(p_ring)) t);
    v_wait   text := v_tables[1];
    v_busy   text;
    v_left   bigint;
    t        text;
BEGIN
    LOOP
        v_left := ceil(extract(epoch FROM v_until - clock_timestamp()) * 1000)::bigint;
        IF v_left <= 0 THEN
            RETURN false;
        END IF;
        BEGIN
            PERFORM set_config('lock_timeout', v_left || 'ms', true);
            v_busy := v_wait;
            EXECUTE 'LOCK TABLE ' || v_wait || ' IN ACCESS EXCLUSIVE MODE';
            FOREACH t IN ARRAY v_tables LOOP
                v_busy := t;
                EXECUTE 'LOCK TABLE ' || t || ' IN ACCESS EXCLUSIVE MODE NOWAIT';
            END LOOP;
            PERFORM set_config('lock_timeout', '0', true);
            RETURN true;
        EXCEPTION WHEN lock_not_available THEN
            v_wait := v_busy;  -- this round's locks are released; wait for the busy one next
        END;
    END LOOP;
END
$$;

-- SlotLanes: the lanes that have ready rows in a queue slot, by a loose walk of the slot's
-- (lane_id, lane_seq) index: one probe per lane, whatever the slot's size.
CREATE FUNCTION braid.slot_lanes(p_slot smallint)
RETURNS integer[]
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN ARRAY(
        WITH RECURSIVE l AS (
            (SELECT r.lane_id FROM braid.ready r WHERE r.qslot = p_slot ORDER BY r.lane_id LIMIT 1)
            UNION ALL
            SELECT (SELECT r.lane_id FROM braid.ready r WHERE r.qslot = p_slot AND r.lane_id > l.lane_id
                    ORDER BY r.lane_id LIMIT 1)
            FROM l WHERE l.lane_id IS NOT NULL
        )
        SELECT l.lane_id FROM l WHERE l.lane_id IS NOT NULL);
END
$$;

-- QueueSlotPrune (replaces version 7: same guard, outcomes and result columns): reclaims the
-- oldest sealed queue slot that holds rows, by TRUNCATE, when no open attempt's ready row lives
-- in it. Guard (before any partition lock), lock, guard again, carry, fold, TRUNCATE: one
-- transaction. The slot's lanes are read under the lock: an enqueue that read the generation
-- before the rotation may still write into the newest sealed slot until it commits. The carry is bounded
-- by the rows it moves: per lane of the slot, its cursor (read under the lock: claims are
-- stopped now), one index probe for the newest row past it, and only when there is one, the
-- lane's tombstones in that range (read once, a hashed set) and its rows past the cursor (an
-- index range). Same rows as before: pending ready rows, past their lane's cursor and not
-- tombstoned, carried into the current slot with the same job id, lane and lane_seq.
CREATE OR REPLACE FUNCTION braid.queue_slot_prune(p_lock_timeout interval)
RETURNS TABLE (outcome text, slot smallint, open_attempts bigint, carried bigint, lock_wait interval, truncate interval)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_slot    smallint;
    v_current smallint;
    v_open    bigint;
    v_carried bigint := 0;
    v_n       bigint;
    v_lanes   integer[];
    v_lane    integer;
    v_cur     bigint;
    v_hi      bigint;
    v_t0      timestamptz;
    v_lock    interval;
BEGIN
    PERFORM pg_advisory_xact_lock(6, hashtext('queue'));
    SELECT c.slot INTO v_current FROM braid.ring_current('queue') c;
    v_slot := braid.oldest_sealed_slot('queue');
    IF v_slot IS NULL THEN
        RETURN QUERY SELECT 'nothing'::text, NULL::smallint, 0::bigint, 0::bigint, interval '0', interval '0';
        RETURN;
    END IF;
    v_open := braid.slot_open_attempts('queue', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, 0::bigint, interval '0', interval '0';
        RETURN;
    END IF;
    v_t0 := clock_timestamp();
    IF NOT braid.slot_lock('queue', v_slot, p_lock_timeout) THEN
        RETURN QUERY SELECT 'blocked'::text, v_slot, 0::bigint, 0::bigint, clock_timestamp() - v_t0, interval '0';
        RETURN;
    END IF;
    v_lock := clock_timestamp() - v_t0;
    v_open := braid.slot_open_attempts('queue', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, 0::bigint, v_lock, interval '0';
        RETURN;
    END IF;

    v_lanes := braid.slot_lanes(v_slot);
    FOREACH v_lane IN ARRAY v_lanes LOOP
        v_cur := braid.lane_cursor(v_lane);
        SELECT r.lane_seq INTO v_hi FROM braid.ready r
        WHERE r.qslot = v_slot AND r.lane_id = v_lane AND r.lane_seq > v_cur
        ORDER BY r.lane_seq DESC LIMIT 1;
        CONTINUE WHEN v_hi IS NULL;
        INSERT INTO braid.ready (qslot, lane_id, lane_seq, job_id, run_lease, attempt, max_attempts,
                                 kind, args, metadata, errors, unique_key, run_at, created_at)
        SELECT v_current, r.lane_id, r.lane_seq, r.job_id, r.run_lease, r.attempt, r.max_attempts,
               r.kind, r.args, r.metadata, r.errors, r.unique_key, r.run_at, r.created_at
        FROM braid.ready r
        WHERE r.qslot = v_slot AND r.lane_id = v_lane AND r.lane_seq > v_cur AND r.lane_seq <= v_hi
          AND r.lane_seq NOT IN (SELECT t.lane_seq FROM braid.tombstones(v_lane, v_cur, v_hi) t)
        ORDER BY r.lane_seq;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_carried := v_carried + v_n;
    END LOOP;

    -- Fold the slot's terminal counts (THE bucket rule), append-only.
    INSERT INTO braid.counter_log (queue, state, bucket, n)
    SELECT f.queue, f.state, f.bucket, sum(f.n)
    FROM (
        SELECT l.queue, 5::smallint AS state, braid.bucket(j) AS bucket, 1::bigint AS n
        FROM braid.completion c JOIN braid.lane l ON l.lane_id = c.lane_id
        CROSS JOIN LATERAL unnest(c.job_ids) AS j
        WHERE c.qslot = v_slot
        UNION ALL
        SELECT d.queue, d.state, d.bucket, d.delta FROM braid.count_delta d WHERE d.qslot = v_slot
    ) f
    GROUP BY f.queue, f.state, f.bucket
    HAVING sum(f.n) <> 0;

    v_t0 := clock_timestamp();
    PERFORM braid.slot_truncate('queue', v_slot);
    RETURN QUERY SELECT 'pruned'::text, v_slot, 0::bigint, v_carried, v_lock, clock_timestamp() - v_t0;
END
$$;

-- HorizonPassed: whether the MVCC horizon of this database has passed p_next, a transaction id
-- read as pg_snapshot_xmax(pg_current_snapshot()) after a write committed: no other backend
-- runs a transaction or holds a snapshot older than it, so VACUUM can remove the row versions
-- the write deleted or updated. Compared by xid, not by transaction start time: a snapshot
-- taken after the write committed still holds the horizon back to the oldest transaction
-- running when it was taken. Reads pg_stat_activity, like horizon_pinned_for.
CREATE FUNCTION braid.horizon_passed(p_next xid8)
RETURNS boolean
LANGUAGE sql STABLE
RETURN NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                   WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                     AND (age(a.backend_xmin) > age(p_next::xid) OR age(a.backend_xid) > age(p_next::xid)));
