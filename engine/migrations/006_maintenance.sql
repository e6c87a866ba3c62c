-- braid engine, version 6: the maintenance lease and ring rotation (DESIGN.md §2.8). Prune,
-- counter folds and the Maintainer's schedule come next; rotation already refuses to move onto
-- a slot that still holds rows, so without prune a ring stops rotating when it is full.
--
-- Lock namespace 6 (key hashtext(ring)): one rotation of a ring at a time.

-- MaintenanceLeaseAcquire: takes the shard's maintenance lease for p_holder until
-- now + p_ttl by the database clock, when it is free, expired or already p_holder's. A change
-- of hands (or a re-take after expiry) starts a new epoch. Returns the epoch held, or NULL when
-- another holder's lease is live. The row is first locked FOR UPDATE in a statement of its own:
-- that waits for every maintenance transaction in flight (they hold it FOR KEY SHARE, see
-- maintenance_lease_check), so once a takeover commits no step of the old holder is running
-- and none can start.
CREATE FUNCTION braid.maintenance_lease_acquire(p_holder text, p_ttl interval)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_epoch bigint;
BEGIN
    PERFORM 1 FROM braid.maintenance_lease FOR UPDATE;

    INSERT INTO braid.maintenance_lease AS m (singleton, holder, epoch, expires_at)
    VALUES (true, p_holder, 1, clock_timestamp() + p_ttl)
    ON CONFLICT (singleton) DO UPDATE
    SET holder = excluded.holder,
        epoch = CASE WHEN m.holder = excluded.holder AND m.expires_at > clock_timestamp()
                     THEN m.epoch ELSE m.epoch + 1 END,
        expires_at = excluded.expires_at
    WHERE m.holder = excluded.holder OR m.expires_at <= clock_timestamp()
    RETURNING m.epoch INTO v_epoch;
    RETURN v_epoch;
END
$$;

-- MaintenanceLeaseRenew: extends a held lease. False when (holder, epoch) lost it or it
-- expired: the holder must step down. A plain non-key UPDATE, so it never waits for the
-- holder's own maintenance transactions.
CREATE FUNCTION braid.maintenance_lease_renew(p_holder text, p_epoch bigint, p_ttl interval)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    UPDATE braid.maintenance_lease m SET expires_at = clock_timestamp() + p_ttl
    WHERE m.holder = p_holder AND m.epoch = p_epoch AND m.expires_at > clock_timestamp();
    RETURN FOUND;
END
$$;

-- MaintenanceLeaseCheck: the first statement of every maintenance transaction. True when
-- (holder, epoch) holds an unexpired lease; the row stays locked FOR KEY SHARE until the
-- transaction ends, so a takeover waits for it. False: roll back and step down.
CREATE FUNCTION braid.maintenance_lease_check(p_holder text, p_epoch bigint)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM 1 FROM braid.maintenance_lease m
    WHERE m.holder = p_holder AND m.epoch = p_epoch AND m.expires_at > clock_timestamp()
    FOR KEY SHARE;
    RETURN FOUND;
END
$$;

-- SlotEmpty: whether a ring slot holds no rows in any of the ring's tables.
CREATE FUNCTION braid.slot_empty(p_ring text, p_slot smallint)
RETURNS boolean
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF p_ring = 'claim' THEN
        RETURN NOT EXISTS (SELECT 1 FROM braid.claim_batch x WHERE x.cslot = p_slot)
           AND NOT EXISTS (SELECT 1 FROM braid.closure x WHERE x.cslot = p_slot);
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM braid.ready x WHERE x.qslot = p_slot)
       AND NOT EXISTS (SELECT 1 FROM braid.tombstone x WHERE x.qslot = p_slot)
       AND NOT EXISTS (SELECT 1 FROM braid.emission x WHERE x.qslot = p_slot)
       AND NOT EXISTS (SELECT 1 FROM braid.completion x WHERE x.qslot = p_slot)
       AND NOT EXISTS (SELECT 1 FROM braid.terminal x WHERE x.qslot = p_slot)
       AND NOT EXISTS (SELECT 1 FROM braid.count_delta x WHERE x.qslot = p_slot);
END
$$;

-- RingRotate: appends the ring's next generation when the current one is at least p_min_age
-- old, its slot holds rows (an idle ring does not churn the ledger) and the next slot is empty.
-- Outcomes: rotated, young, idle, next_slot_busy.
CREATE FUNCTION braid.ring_rotate(p_ring text, p_min_age interval, p_now timestamptz)
RETURNS TABLE (outcome text, generation bigint, slot smallint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now   timestamptz := coalesce(p_now, now());
    v_gen   bigint;
    v_slot  smallint;
    v_slots smallint;
    v_start timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(6, hashtext(p_ring));

    SELECT g.generation, g.started_at, r.slots INTO v_gen, v_start, v_slots
    FROM braid.ring r
    CROSS JOIN LATERAL (SELECT x.generation, x.started_at FROM braid.ring_gen x WHERE x.ring = r.ring
                        ORDER BY x.generation DESC LIMIT 1) g
    WHERE r.ring = p_ring;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown ring %', p_ring USING ERRCODE = '22023';
    END IF;
    v_slot := (v_gen % v_slots)::smallint;

    IF v_start > v_now - p_min_age THEN
        RETURN QUERY SELECT 'young'::text, v_gen, v_slot;
    ELSIF braid.slot_empty(p_ring, v_slot) THEN
        RETURN QUERY SELECT 'idle'::text, v_gen, v_slot;
    ELSIF NOT braid.slot_empty(p_ring, ((v_gen + 1) % v_slots)::smallint) THEN
        RETURN QUERY SELECT 'next_slot_busy'::text, v_gen, v_slot;
    ELSE
        INSERT INTO braid.ring_gen (ring, generation, started_at) VALUES (p_ring, v_gen + 1, v_now);
        RETURN QUERY SELECT 'rotated'::text, v_gen + 1, ((v_gen + 1) % v_slots)::smallint;
    END IF;
END
$$;

-- RingTables: the partitioned tables of a ring (a slot is one partition of each).
CREATE FUNCTION braid.ring_tables(p_ring text)
RETURNS text[]
LANGUAGE sql IMMUTABLE
RETURN CASE p_ring WHEN 'claim' THEN ARRAY['claim_batch', 'closure']
                   ELSE ARRAY['ready', 'tombstone', 'emission', 'completion', 'terminal', 'count_delta'] END;

-- OldestSealedSlot: the ring's oldest slot that is not current and holds rows (generations
-- gen-slots+1 .. gen-1, oldest first), or NULL.
CREATE FUNCTION braid.oldest_sealed_slot(p_ring text)
RETURNS smallint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_gen   bigint;
    v_slots smallint;
BEGIN
    SELECT c.generation INTO v_gen FROM braid.ring_current(p_ring) c;
    SELECT r.slots INTO v_slots FROM braid.ring r WHERE r.ring = p_ring;
    RETURN (SELECT x.s
            FROM (SELECT ((v_gen + k) % v_slots)::smallint AS s, k FROM generate_series(1, v_slots - 1) k) x
            WHERE NOT braid.slot_empty(p_ring, x.s)
            ORDER BY x.k LIMIT 1);
END
$$;

-- SlotOpenAttempts: THE prune guard, by the count proof: open attempts of the claim batches
-- that live in a claim slot (p_ring 'claim') or whose ready rows live in a queue slot
-- (p_ring 'queue'): members claimed minus members closed, per batch. Sound because closures
-- are exactly-once.
CREATE FUNCTION braid.slot_open_attempts(p_ring text, p_slot smallint)
RETURNS bigint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (SELECT coalesce(sum(b.n - coalesce(c.closed, 0)), 0)
            FROM braid.claim_batch b
            LEFT JOIN LATERAL (SELECT sum(cardinality(x.members)) AS closed FROM braid.closure x
                               WHERE x.cslot = b.cslot AND x.batch_id = b.batch_id) c ON true
            WHERE CASE p_ring WHEN 'claim' THEN b.cslot ELSE b.qslot END = p_slot);
END
$$;

-- SlotLock: locks every partition of a ring slot ACCESS EXCLUSIVE, waiting at most
-- p_lock_timeout; false when it timed out (the caller reports blocked rather than let traffic
-- queue behind it). The lock is held to commit.
CREATE FUNCTION braid.slot_lock(p_ring text, p_slot smallint, p_lock_timeout interval)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    EXECUTE format('SET LOCAL lock_timeout = %L', ceil(extract(epoch FROM p_lock_timeout) * 1000)::bigint || 'ms');
    FOREACH t IN ARRAY braid.ring_tables(p_ring) LOOP
        EXECUTE format('LOCK TABLE braid.%I IN ACCESS EXCLUSIVE MODE', t || '_' || p_slot);
    END LOOP;
    SET LOCAL lock_timeout = 0;
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;

-- SlotTruncate: reclaims a locked ring slot.
CREATE FUNCTION braid.slot_truncate(p_ring text, p_slot smallint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'TRUNCATE ' || (SELECT string_agg(format('braid.%I', t || '_' || p_slot), ', ')
                            FROM unnest(braid.ring_tables(p_ring)) t);
END
$$;

-- ClaimSlotPrune: reclaims the oldest sealed claim slot that holds rows, by TRUNCATE, when
-- every claim batch in it is fully closed (count proof: each batch's members = its closed
-- members, sound because closures are exactly-once). The guard is checked, then the slot's
-- partitions are locked ACCESS EXCLUSIVE under a short lock_timeout and the guard is checked
-- again under the lock. Long attempts do not pin a slot: job_rehome moves them out first.
-- Outcomes: pruned, skipped (open attempts), blocked (lock timeout), nothing (no sealed slot
-- holds rows). Serialised with rotation by the ring lock (ns 6).
CREATE FUNCTION braid.claim_slot_prune(p_lock_timeout interval)
RETURNS TABLE (outcome text, slot smallint, open_attempts bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_slot smallint;
    v_open bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(6, hashtext('claim'));
    v_slot := braid.oldest_sealed_slot('claim');
    IF v_slot IS NULL THEN
        RETURN QUERY SELECT 'nothing'::text, NULL::smallint, 0::bigint;
        RETURN;
    END IF;
    v_open := braid.slot_open_attempts('claim', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open;
        RETURN;
    END IF;
    IF NOT braid.slot_lock('claim', v_slot, p_lock_timeout) THEN
        RETURN QUERY SELECT 'blocked'::text, v_slot, 0::bigint;
        RETURN;
    END IF;
    -- The guard again, under the lock: nothing can add a batch or closure to the slot now.
    v_open := braid.slot_open_attempts('claim', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open;
        RETURN;
    END IF;
    PERFORM braid.slot_truncate('claim', v_slot);
    RETURN QUERY SELECT 'pruned'::text, v_slot, 0::bigint;
END
$$;

-- QueueSlotPrune: reclaims the oldest sealed queue slot that holds rows, by TRUNCATE, when no
-- open attempt's ready row lives in it (count proof over the claim batches that reference the
-- slot). Ready rows still pending in it (past their lane's cursor, not tombstoned: a paused or
-- slow queue) are carried forward into the current slot with the same job id, lane and
-- lane_seq, so one queue never pins the ring for the others. The slot's terminal counts are
-- folded per bucket into braid.counter_log first. Guard, lock (ACCESS EXCLUSIVE on the six
-- partitions under a short lock_timeout), guard again, carry, fold, TRUNCATE: one transaction.
-- Outcomes: pruned, skipped (open attempts), blocked (lock timeout), nothing.
CREATE FUNCTION braid.queue_slot_prune(p_lock_timeout interval)
RETURNS TABLE (outcome text, slot smallint, open_attempts bigint, carried bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_slot    smallint;
    v_current smallint;
    v_open    bigint;
    v_carried bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(6, hashtext('queue'));
    SELECT c.slot INTO v_current FROM braid.ring_current('queue') c;
    v_slot := braid.oldest_sealed_slot('queue');
    IF v_slot IS NULL THEN
        RETURN QUERY SELECT 'nothing'::text, NULL::smallint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    v_open := braid.slot_open_attempts('queue', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, 0::bigint;
        RETURN;
    END IF;
    IF NOT braid.slot_lock('queue', v_slot, p_lock_timeout) THEN
        RETURN QUERY SELECT 'blocked'::text, v_slot, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    v_open := braid.slot_open_attempts('queue', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, 0::bigint;
        RETURN;
    END IF;

    -- Carry the pending rows forward (same job id, lane and lane_seq: lane order holds).
    WITH pending AS (
        SELECT r.* FROM braid.ready r
        CROSS JOIN LATERAL (SELECT braid.lane_cursor(r.lane_id) AS seq) cur
        WHERE r.qslot = v_slot AND r.lane_seq > cur.seq
          AND NOT EXISTS (SELECT 1 FROM braid.tombstones(r.lane_id, r.lane_seq - 1, r.lane_seq))
    ), moved AS (
        INSERT INTO braid.ready (qslot, lane_id, lane_seq, job_id, run_lease, attempt, max_attempts,
                                 kind, args, metadata, errors, unique_key, run_at, created_at)
        SELECT v_current, p.lane_id, p.lane_seq, p.job_id, p.run_lease, p.attempt, p.max_attempts,
               p.kind, p.args, p.metadata, p.errors, p.unique_key, p.run_at, p.created_at
        FROM pending p
        RETURNING 1
    )
    SELECT count(*) INTO v_carried FROM moved;

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

    PERFORM braid.slot_truncate('queue', v_slot);
    RETURN QUERY SELECT 'pruned'::text, v_slot, 0::bigint, v_carried;
END
$$;


-- HorizonPinnedFor: how long the oldest snapshot a backend of this database holds has been
-- open (its transaction's age), i.e. how long the MVCC horizon has been held back. Folds that
-- UPDATE or DELETE stand down while it exceeds their limit: the row versions they would leave
-- behind could not be reclaimed. Reads pg_stat_activity: grant the braid role pg_read_all_stats
-- (or pg_monitor) so it can see other roles' backends too.
CREATE FUNCTION braid.horizon_pinned_for()
RETURNS interval
LANGUAGE sql STABLE
RETURN (SELECT coalesce(max(clock_timestamp() - a.xact_start), interval '0')
        FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
          AND a.backend_xmin IS NOT NULL AND a.xact_start IS NOT NULL);

-- CounterFold: moves the folded history in counter_log into the per-bucket counters, in one
-- statement (a Counts reader sees it before or after, never half). Stands down, writing
-- nothing, while the MVCC horizon has been pinned for longer than p_max_pin. Outcomes: folded
-- (with the rows moved), standing_down, nothing.
CREATE FUNCTION braid.counter_fold(p_max_pin interval)
RETURNS TABLE (outcome text, rows_folded bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n bigint;
BEGIN
    IF braid.horizon_pinned_for() > p_max_pin THEN
        RETURN QUERY SELECT 'standing_down'::text, 0::bigint;
        RETURN;
    END IF;
    WITH moved AS (
        DELETE FROM braid.counter_log RETURNING *
    ), summed AS (
        SELECT m.queue, m.state, m.bucket, sum(m.n) AS n, count(*) AS rows_in FROM moved m
        GROUP BY m.queue, m.state, m.bucket
    ), up AS (
        INSERT INTO braid.counter AS c (queue, state, bucket, n)
        SELECT s.queue, s.state, s.bucket, s.n FROM summed s
        ON CONFLICT (queue, state, bucket) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT coalesce(sum(s.rows_in), 0) INTO v_n FROM summed s;
    RETURN QUERY SELECT CASE WHEN v_n = 0 THEN 'nothing' ELSE 'folded' END, v_n;
END
$$;
