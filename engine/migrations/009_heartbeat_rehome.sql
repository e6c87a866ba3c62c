-- JobHeartbeat, resolved under the lock. 005's version resolved receipts before taking the
-- claim-batch locks and never again, so a heartbeat that waited behind a re-home of its attempt
-- looked in the old batch (where the member is now closed as re-homed) and answered stale for a
-- live attempt. Now it resolves, locks, and resolves again until the resolution is stable under
-- the locks it holds: a re-home takes the lock of the batch it moves a member out of, so once we
-- hold the locks of every batch we resolved to, none of those members can move on. Each round
-- runs as its own statement, so its snapshot postdates the lock it waited for (the correctness
-- trap in engine/doc.go). Advisory locks are re-entrant, and a new round only adds batches made
-- by the re-home we waited for, which no one else has reason to hold in the opposite order.
CREATE OR REPLACE FUNCTION braid.job_heartbeat(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                               p_run_leases bigint[], p_progress jsonb[], p_now timestamptz)
RETURNS TABLE (ord integer, cslot smallint, batch_id bigint, idx integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v record;
    v_prev bigint[];
BEGIN
    LOOP
        SELECT array_agg(x.cslot ORDER BY x.ord) AS cs, array_agg(x.batch_id ORDER BY x.ord) AS bs,
               array_agg(x.idx ORDER BY x.ord) AS ix
        INTO v FROM braid.receipt_resolve(p_cslots, p_batch_ids, p_idx) x;
        EXIT WHEN v.bs IS NOT DISTINCT FROM v_prev;
        PERFORM braid.batch_lock(v.bs);
        v_prev := v.bs;
    END LOOP;
    RETURN QUERY
    WITH r AS (
        SELECT * FROM unnest(v.cs, v.bs, v.ix, p_run_leases, p_progress) WITH ORDINALITY
            AS r(cslot, batch_id, idx, run_lease, progress, ord)
    ), ok AS MATERIALIZED (
        SELECT DISTINCT ON (o.job_id) r.ord::integer AS ord, o.cslot, o.batch_id, o.idx, o.job_id,
               o.run_lease, r.progress
        FROM braid.open_attempts(v.cs, v.bs) o
        JOIN r ON r.cslot = o.cslot AND r.batch_id = o.batch_id AND r.idx = o.idx
              AND r.run_lease = o.run_lease
        ORDER BY o.job_id, r.ord
    ), up AS (
        INSERT INTO braid.attempt_state AS a (job_id, run_lease, batch_id, heartbeat_at, progress)
        SELECT ok.job_id, ok.run_lease, ok.batch_id, coalesce(p_now, now()), ok.progress FROM ok
        ON CONFLICT (job_id, run_lease) DO UPDATE
        SET heartbeat_at = excluded.heartbeat_at, batch_id = excluded.batch_id,
            progress = coalesce(excluded.progress, a.progress)
    )
    SELECT ok.ord, ok.cslot, ok.batch_id, ok.idx FROM ok;
END
$$;
