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
