-- braid engine, version 7: maintenance observability. The lease's changes of hands recorded
-- append-only (lease_log), a lease release, prune timings (lock wait and truncate, by the
-- database clock) and the maintenance statistics read (rings, dead tuples, pinned horizon).

-- The lease row always exists from now on: a never-held shard has the sentinel ('', epoch 0,
-- expired since -infinity), so every acquisition locks a row first and two first acquisitions
-- serialise on it like any other (no holder can be named '': LeaseAcquire refuses it).
INSERT INTO braid.maintenance_lease (singleton, holder, epoch, expires_at)
VALUES (true, '', 0, '-infinity')
ON CONFLICT (singleton) DO NOTHING;

-- Lease history: one row per acquisition of a new epoch and per release, append-only, written
-- under the lease row's lock (so seq order is the order of the lease's changes). An acquisition
-- records the previous lease as read under that lock: its holder, epoch and final expires_at
-- (no renewal can move it after the lock is taken, because renewal is conditioned on the epoch).
-- So "at >= previous_expires_at" for every acquisition proves no two leases overlapped by the
-- database clock; a release sets expires_at to its own time, so it is covered by the same check.
-- Bounded by the number of takeovers, not by throughput.
CREATE TABLE braid.lease_log (
    seq                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    epoch               bigint      NOT NULL,
    holder              text        NOT NULL,
    released            boolean     NOT NULL,  -- false: acquired epoch; true: released it
    at                  timestamptz NOT NULL,  -- clock_timestamp() of the acquisition or release
    previous_holder     text,                  -- acquisitions: NULL when there was no previous lease
    previous_epoch      bigint,
    previous_expires_at timestamptz
);

-- MaintenanceLeaseAcquire (replaces version 6, same contract): takes the shard's maintenance
-- lease for p_holder until now + p_ttl by the database clock, when it is free, expired or
-- already p_holder's; a change of hands (or a re-take after expiry) starts a new epoch and is
-- logged in lease_log. Returns the epoch held, or NULL while another holder's lease is live.
-- Otherwise locks the row FOR UPDATE in a statement of its own first: that waits for every maintenance
-- transaction in flight (they hold it FOR KEY SHARE), and the next statement's snapshot sees
-- the lease's final state.
CREATE OR REPLACE FUNCTION braid.maintenance_lease_acquire(p_holder text, p_ttl interval)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now   timestamptz;
    v_prev  braid.maintenance_lease;
    v_epoch bigint;
BEGIN
    -- Another holder's live lease: answer at once, without the row lock (a standby polling for
    -- the lease must not make the leader's steps wait). Refusing is always safe.
    IF EXISTS (SELECT 1 FROM braid.maintenance_lease m WHERE m.holder <> p_holder AND m.expires_at > clock_timestamp()) THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM braid.maintenance_lease FOR UPDATE;
    SELECT * INTO v_prev FROM braid.maintenance_lease;
    v_now := clock_timestamp();

    UPDATE braid.maintenance_lease m
    SET holder = p_holder,
        epoch = CASE WHEN m.holder = p_holder AND m.expires_at > v_now THEN m.epoch ELSE m.epoch + 1 END,
        expires_at = v_now + p_ttl
    WHERE m.holder = p_holder OR m.expires_at <= v_now
    RETURNING m.epoch INTO v_epoch;

    IF v_epoch IS NOT NULL AND v_epoch <> v_prev.epoch THEN
        INSERT INTO braid.lease_log (epoch, holder, released, at, previous_holder, previous_epoch, previous_expires_at)
        VALUES (v_epoch, p_holder, false, v_now,
                CASE WHEN v_prev.epoch > 0 THEN v_prev.holder END,
                CASE WHEN v_prev.epoch > 0 THEN v_prev.epoch END,
                CASE WHEN v_prev.epoch > 0 THEN v_prev.expires_at END);
    END IF;
    RETURN v_epoch;
END
$$;

-- MaintenanceLeaseRelease: gives a held lease up at once (expires_at := now), so a successor
-- takes it without waiting for the TTL, and logs the release. False when (holder, epoch) did
-- not hold a live lease. A non-key UPDATE like renewal; a successor's takeover still waits for
-- any step of the releasing holder in flight (they hold the row FOR KEY SHARE).
CREATE FUNCTION braid.maintenance_lease_release(p_holder text, p_epoch bigint)
RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    UPDATE braid.maintenance_lease m SET expires_at = v_now
    WHERE m.holder = p_holder AND m.epoch = p_epoch AND m.expires_at > v_now;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO braid.lease_log (epoch, holder, released, at) VALUES (p_epoch, p_holder, true, v_now);
    RETURN true;
END
$$;

-- LeaseHistory: the lease log in the order of the lease's changes.
CREATE FUNCTION braid.lease_history()
RETURNS SETOF braid.lease_log
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT * FROM braid.lease_log ORDER BY seq;
END;

-- ClaimSlotPrune and QueueSlotPrune (replace version 6 with the same guards, locks and
-- outcomes) also report, by the database clock, how long they waited for the slot's ACCESS
-- EXCLUSIVE locks (until granted or timed out; zero when the guard skipped before locking) and
-- how long the TRUNCATE took. The rules they apply are version 6's, unchanged (the queue slot's
-- carry reads each lane's cursor once instead of once per row: the same rows, far fewer reads):
-- claim slot: oldest sealed slot holding rows, count proof, lock, count proof again, TRUNCATE;
-- queue slot: the same guard over the batches referencing the slot, then carry pending ready
-- rows forward into the current slot, fold the slot's terminal counts into counter_log, TRUNCATE.
DROP FUNCTION braid.claim_slot_prune(interval);
CREATE FUNCTION braid.claim_slot_prune(p_lock_timeout interval)
RETURNS TABLE (outcome text, slot smallint, open_attempts bigint, lock_wait interval, truncate interval)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_slot smallint;
    v_open bigint;
    v_t0   timestamptz;
    v_lock interval;
BEGIN
    PERFORM pg_advisory_xact_lock(6, hashtext('claim'));
    v_slot := braid.oldest_sealed_slot('claim');
    IF v_slot IS NULL THEN
        RETURN QUERY SELECT 'nothing'::text, NULL::smallint, 0::bigint, interval '0', interval '0';
        RETURN;
    END IF;
    v_open := braid.slot_open_attempts('claim', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, interval '0', interval '0';
        RETURN;
    END IF;
    v_t0 := clock_timestamp();
    IF NOT braid.slot_lock('claim', v_slot, p_lock_timeout) THEN
        RETURN QUERY SELECT 'blocked'::text, v_slot, 0::bigint, clock_timestamp() - v_t0, interval '0';
        RETURN;
    END IF;
    v_lock := clock_timestamp() - v_t0;
    -- The guard again, under the lock: nothing can add a batch or closure to the slot now.
    v_open := braid.slot_open_attempts('claim', v_slot);
    IF v_open > 0 THEN
        RETURN QUERY SELECT 'skipped'::text, v_slot, v_open, v_lock, interval '0';
        RETURN;
    END IF;
    v_t0 := clock_timestamp();
    PERFORM braid.slot_truncate('claim', v_slot);
    RETURN QUERY SELECT 'pruned'::text, v_slot, 0::bigint, v_lock, clock_timestamp() - v_t0;
END
$$;

DROP FUNCTION braid.queue_slot_prune(interval);
CREATE FUNCTION braid.queue_slot_prune(p_lock_timeout interval)
RETURNS TABLE (outcome text, slot smallint, open_attempts bigint, carried bigint, lock_wait interval, truncate interval)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_slot    smallint;
    v_current smallint;
    v_open    bigint;
    v_carried bigint;
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

    -- Carry the pending rows forward (same job id, lane and lane_seq: lane order holds). The
    -- same rows as version 6 selected, but each lane's cursor is read once (not once per ready
    -- row of the slot: tens of thousands of cursor reads under the slot's ACCESS EXCLUSIVE locks
    -- held a busy shard's traffic for seconds), then only the rows past it are read.
    WITH cur AS (
        SELECT l.lane_id, braid.lane_cursor(l.lane_id) AS seq
        FROM (SELECT DISTINCT r.lane_id FROM braid.ready r WHERE r.qslot = v_slot) l
    ), pending AS (
        SELECT r.* FROM cur
        JOIN braid.ready r ON r.lane_id = cur.lane_id AND r.lane_seq > cur.seq
        WHERE r.qslot = v_slot
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

    v_t0 := clock_timestamp();
    PERFORM braid.slot_truncate('queue', v_slot);
    RETURN QUERY SELECT 'pruned'::text, v_slot, 0::bigint, v_carried, v_lock, clock_timestamp() - v_t0;
END
$$;

-- MaintenanceStats: what an operator watches to see maintenance keep up, in one call. Per ring:
-- its current generation, when it started, the current slot, how many of its slots hold rows
-- (current included: the rest wait for prune) and the rows in the current slot's partitions
-- (exact count, summed over the ring's tables). Per table of the engine schema: live and dead
-- tuples from pg_stat_user_tables, partitions summed into their parent table (statistics lag
-- the writes by up to a second or so). And how long the MVCC horizon has been pinned.
CREATE FUNCTION braid.maintenance_stats()
RETURNS TABLE (rings text[], generations bigint[], started_at timestamptz[], slots smallint[],
               slots_in_use integer[], current_rows bigint[],
               tables text[], live_tuples bigint[], dead_tuples bigint[], horizon_pinned_for interval)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    r      record;
    t      text;
    v_rows bigint;
    v_n    bigint;
BEGIN
    rings := '{}'; generations := '{}'; started_at := '{}'; slots := '{}'; slots_in_use := '{}'; current_rows := '{}';
    FOR r IN
        SELECT g.ring, g.generation, g.started_at, (g.generation % x.slots)::smallint AS slot, x.slots
        FROM braid.ring x
        CROSS JOIN LATERAL (SELECT y.ring, y.generation, y.started_at FROM braid.ring_gen y WHERE y.ring = x.ring
                            ORDER BY y.generation DESC LIMIT 1) g
        ORDER BY x.ring DESC  -- queue, claim
    LOOP
        v_rows := 0;
        FOREACH t IN ARRAY braid.ring_tables(r.ring) LOOP
            EXECUTE format('SELECT count(*) FROM braid.%I', t || '_' || r.slot) INTO v_n;
            v_rows := v_rows + v_n;
        END LOOP;
        rings := rings || r.ring;
        generations := generations || r.generation;
        started_at := started_at || r.started_at;
        slots := slots || r.slot;
        slots_in_use := slots_in_use || (SELECT count(*)::integer FROM generate_series(0, r.slots - 1) s
                                         WHERE NOT braid.slot_empty(r.ring, s::smallint));
        current_rows := current_rows || v_rows;
    END LOOP;

    SELECT array_agg(x.tbl ORDER BY x.tbl), array_agg(x.live ORDER BY x.tbl), array_agg(x.dead ORDER BY x.tbl)
    INTO tables, live_tuples, dead_tuples
    FROM (SELECT coalesce(p.relname, c.relname)::text AS tbl, sum(s.n_live_tup)::bigint AS live,
                 sum(s.n_dead_tup)::bigint AS dead
          FROM pg_stat_user_tables s
          JOIN pg_class c ON c.oid = s.relid
          LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
          LEFT JOIN pg_class p ON p.oid = i.inhparent
          WHERE c.relnamespace = (SELECT k.relnamespace FROM pg_class k WHERE k.oid = 'braid.identity'::regclass)
          GROUP BY 1) x;

    horizon_pinned_for := braid.horizon_pinned_for();
    RETURN NEXT;
END
$$;
