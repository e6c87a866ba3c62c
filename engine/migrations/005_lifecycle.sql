-- braid engine, version 5: the unhappy paths (DESIGN.md §2.6, §2.7): fail with retry, backoff,
-- dead letters or terminal failure; snooze; cancel and discard in every state; operator retry of
-- failed and cancelled jobs; promotion of due deferred jobs; heartbeats; rescue of stale
-- attempts; dead-letter retry, purge and trim. Lock namespace 5 (key hashint8(job_id)): one
-- operator retry of a job at a time. Every path that
-- ends an attempt goes through braid.attempt_end (version 2) and writes its successor in the
-- same transaction.

-- RetryBackoff: min(2^attempt s + up to 10% jitter, 24 h).
CREATE FUNCTION braid.retry_backoff(p_attempt integer) RETURNS interval
LANGUAGE sql VOLATILE
RETURN least(make_interval(secs => power(2, least(greatest(p_attempt, 0), 17)) * (1 + random() * 0.1)),
             interval '24 hours');

-- TerminalWrite: THE way a job becomes failed (6) or cancelled (7) outside the compact path:
-- a terminal row in the queue slot of its ready row (or the current slot when it never had
-- one), a +1 count delta in the job's bucket, and its unique key released.
CREATE FUNCTION braid.terminal_write(
    p_qslots smallint[], p_lane_ids integer[], p_job_ids bigint[], p_run_leases bigint[],
    p_attempts integer[], p_max_attempts integer[], p_kinds text[], p_args jsonb[],
    p_metadata jsonb[], p_errors jsonb[], p_unique_keys text[], p_created_at timestamptz[],
    p_state smallint, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    WITH j AS (
        SELECT * FROM unnest(p_qslots, p_lane_ids, p_job_ids, p_run_leases, p_attempts,
                             p_max_attempts, p_kinds, p_args, p_metadata, p_errors, p_unique_keys,
                             p_created_at)
            AS j(qslot, lane_id, job_id, run_lease, attempt, max_attempts, kind, args, metadata,
                 errors, unique_key, created_at)
    ), t AS (
        INSERT INTO braid.terminal (qslot, lane_id, job_id, run_lease, attempt, max_attempts, state,
                                    kind, args, metadata, output, errors, unique_key, created_at,
                                    finalized_at)
        SELECT j.qslot, j.lane_id, j.job_id, j.run_lease, j.attempt, j.max_attempts, p_state,
               j.kind, j.args, j.metadata, NULL, j.errors, j.unique_key, j.created_at, p_now
        FROM j
    ), d AS (
        INSERT INTO braid.count_delta (qslot, queue, state, bucket, delta)
        SELECT j.qslot, l.queue, p_state, braid.bucket(j.job_id), 1
        FROM j JOIN braid.lane l ON l.lane_id = j.lane_id
    )
    DELETE FROM braid.unique_claim u USING j
    WHERE j.unique_key IS NOT NULL AND u.job_id = j.job_id;
END
$$;

-- A job with what its successor row needs (attempt_fail's working set, dead_letter_write's input).
CREATE TYPE braid.job_row AS (
    ord integer, job_id bigint, run_lease bigint, attempt integer, max_attempts integer,
    qslot smallint, lane_id integer, queue text, priority smallint, lane_no smallint,
    kind text, args jsonb, metadata jsonb, errors jsonb, unique_key text,
    created_at timestamptz, retry_at timestamptz, next text
);

-- DeadLetterWrite: THE way jobs enter the dead-letter table (exhausted, terminal error or
-- discard): the letter, and the job's unique key released.
CREATE FUNCTION braid.dead_letter_write(p_rows braid.job_row[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO braid.dead_letter (job_id, queue, priority, lane_no, run_lease, attempt,
                                   max_attempts, kind, args, metadata, errors, unique_key,
                                   created_at, dead_at)
    SELECT f.job_id, f.queue, f.priority, f.lane_no, f.run_lease, f.attempt, f.max_attempts,
           f.kind, f.args, f.metadata, f.errors, f.unique_key, f.created_at, p_now
    FROM unnest(p_rows) f;

    DELETE FROM braid.unique_claim u USING unnest(p_rows) f
    WHERE f.unique_key IS NOT NULL AND u.job_id = f.job_id;
END
$$;

-- AttemptFail: ends attempts with an error (outcome 3) or as rescued (outcome 6), then per
-- attempt: retry into the deferred table while attempts remain and the error is not terminal;
-- else a dead letter when the queue has DLQ on, else a failed terminal row. A rescue counts as
-- an attempt. p_errors are JSON objects ({"error": ..., "trace": ...}); "at" and "attempt"
-- are added here. Returns, per applied receipt, the job's new state.
CREATE FUNCTION braid.attempt_fail(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                   p_run_leases bigint[], p_errors jsonb[], p_retry_after interval[],
                                   p_terminal boolean[], p_outcome smallint, p_now timestamptz)
RETURNS TABLE (ord integer, job_id bigint, state text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now  timestamptz := coalesce(p_now, now());
    v_rows braid.job_row[];
    t      record;
BEGIN
    v_rows := ARRAY(
        SELECT ROW(e.ord, e.job_id, e.run_lease, e.attempt, r.max_attempts, e.qslot, e.lane_id,
                   l.queue, l.priority, l.lane_no, r.kind, r.args, r.metadata,
                   coalesce(r.errors, '[]'::jsonb) || jsonb_build_array(
                       coalesce(p_errors[e.ord], '{}'::jsonb)
                       || jsonb_build_object('at', v_now, 'attempt', e.attempt)),
                   r.unique_key, r.created_at,
                   v_now + coalesce(p_retry_after[e.ord], braid.retry_backoff(e.attempt)),
                   CASE WHEN NOT coalesce(p_terminal[e.ord], false) AND e.attempt < r.max_attempts THEN 'retryable'
                        WHEN q.dlq THEN 'dead_lettered'
                        ELSE 'failed' END)::braid.job_row
        FROM braid.attempt_end(p_cslots, p_batch_ids, p_idx, p_run_leases,
                               array_fill(p_outcome, ARRAY[cardinality(p_idx)]), v_now) e
        JOIN braid.ready r ON r.qslot = e.qslot AND r.lane_id = e.lane_id AND r.lane_seq = e.lane_seq
        JOIN braid.lane l ON l.lane_id = e.lane_id
        JOIN braid.queue q ON q.name = l.queue
        ORDER BY e.ord);

    INSERT INTO braid.deferred (job_id, queue, priority, lane_no, reason, run_lease, attempt,
                                max_attempts, kind, args, metadata, errors, unique_key, run_at, created_at)
    SELECT f.job_id, f.queue, f.priority, f.lane_no, 2, f.run_lease, f.attempt, f.max_attempts,
           f.kind, f.args, f.metadata, f.errors, f.unique_key, f.retry_at, f.created_at
    FROM unnest(v_rows) f WHERE f.next = 'retryable';

    PERFORM braid.dead_letter_write(ARRAY(SELECT f FROM unnest(v_rows) f WHERE f.next = 'dead_lettered'), v_now);

    SELECT array_agg(f.qslot) AS qs, array_agg(f.lane_id) AS ls, array_agg(f.job_id) AS js,
           array_agg(f.run_lease) AS rl, array_agg(f.attempt) AS at, array_agg(f.max_attempts) AS ma,
           array_agg(f.kind) AS ks, array_agg(f.args) AS ag, array_agg(f.metadata) AS md,
           array_agg(f.errors) AS er, array_agg(f.unique_key) AS uk, array_agg(f.created_at) AS ca
    INTO t FROM unnest(v_rows) f WHERE f.next = 'failed';
    IF t.js IS NOT NULL THEN
        PERFORM braid.terminal_write(t.qs, t.ls, t.js, t.rl, t.at, t.ma, t.ks, t.ag, t.md, t.er,
                                     t.uk, t.ca, 6::smallint, v_now);
    END IF;

    RETURN QUERY SELECT f.ord, f.job_id, f.next FROM unnest(v_rows) f;
END
$$;

-- JobFail: a handler's error for each receipt (see attempt_fail).
CREATE FUNCTION braid.job_fail(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                               p_run_leases bigint[], p_errors jsonb[], p_retry_after interval[],
                               p_terminal boolean[], p_now timestamptz)
RETURNS TABLE (ord integer, job_id bigint, state text)
LANGUAGE sql AS $$
    SELECT * FROM braid.attempt_fail(p_cslots, p_batch_ids, p_idx, p_run_leases, p_errors,
                                     p_retry_after, p_terminal, 3::smallint, p_now)
$$;

-- JobSnooze: back to the deferred table at now + delay; the attempt is not consumed.
CREATE FUNCTION braid.job_snooze(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                 p_run_leases bigint[], p_delays interval[], p_now timestamptz)
RETURNS SETOF integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    RETURN QUERY
    WITH e AS MATERIALIZED (
        SELECT * FROM braid.attempt_end(p_cslots, p_batch_ids, p_idx, p_run_leases,
                                        array_fill(4::smallint, ARRAY[cardinality(p_idx)]), v_now)
    ), d AS (
        INSERT INTO braid.deferred (job_id, queue, priority, lane_no, reason, run_lease, attempt,
                                    max_attempts, kind, args, metadata, errors, unique_key, run_at,
                                    created_at)
        SELECT e.job_id, l.queue, l.priority, l.lane_no, 3, e.run_lease, e.attempt - 1,
               r.max_attempts, r.kind, r.args, r.metadata, r.errors, r.unique_key,
               v_now + p_delays[e.ord], r.created_at
        FROM e
        JOIN braid.ready r ON r.qslot = e.qslot AND r.lane_id = e.lane_id AND r.lane_seq = e.lane_seq
        JOIN braid.lane l ON l.lane_id = e.lane_id
    )
    SELECT e.ord FROM e;
END
$$;

-- JobPromote: up to p_limit due deferred jobs become ready rows (new lane_seq, same job_id,
-- run_lease and attempt count). SKIP LOCKED lets promoters run concurrently; a cancel that
-- deletes the deferred row first wins. Returns the number promoted.
CREATE FUNCTION braid.job_promote(p_limit integer, p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    d     record;
BEGIN
    WITH due AS (
        DELETE FROM braid.deferred x
        WHERE x.job_id IN (SELECT y.job_id FROM braid.deferred y WHERE y.run_at <= v_now
                           ORDER BY y.run_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING x.*
    )
    SELECT array_agg(queue ORDER BY run_at, job_id) AS qs, array_agg(priority ORDER BY run_at, job_id) AS ps,
           array_agg(lane_no ORDER BY run_at, job_id) AS ls, array_agg(job_id ORDER BY run_at, job_id) AS js,
           array_agg(run_lease ORDER BY run_at, job_id) AS rl, array_agg(attempt ORDER BY run_at, job_id) AS at,
           array_agg(max_attempts ORDER BY run_at, job_id) AS ma, array_agg(kind ORDER BY run_at, job_id) AS ks,
           array_agg(args ORDER BY run_at, job_id) AS ag, array_agg(metadata ORDER BY run_at, job_id) AS md,
           array_agg(errors ORDER BY run_at, job_id) AS er, array_agg(unique_key ORDER BY run_at, job_id) AS uk,
           array_agg(run_at ORDER BY run_at, job_id) AS ra, array_agg(created_at ORDER BY run_at, job_id) AS ca
    INTO d FROM due;
    IF d.js IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM braid.ready_insert(NULL, d.qs, d.ps, d.ls, d.js, d.rl, d.at, d.ma, d.ks, d.ag, d.md,
                               d.er, d.uk, d.ra, d.ca);
    RETURN cardinality(d.js);
END
$$;

-- JobHeartbeat: records heartbeat time and progress for open attempts, following re-homed
-- receipts. Returns, for each receipt that applied, its current place (the worker's receipt
-- follows a re-home); a closed attempt's heartbeat is stale and writes nothing.
CREATE FUNCTION braid.job_heartbeat(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                    p_run_leases bigint[], p_progress jsonb[], p_now timestamptz)
RETURNS TABLE (ord integer, cslot smallint, batch_id bigint, idx integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v record;
BEGIN
    SELECT array_agg(x.cslot ORDER BY x.ord) AS cs, array_agg(x.batch_id ORDER BY x.ord) AS bs,
           array_agg(x.idx ORDER BY x.ord) AS ix
    INTO v FROM braid.receipt_resolve(p_cslots, p_batch_ids, p_idx) x;
    PERFORM braid.batch_lock(v.bs);
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

-- JobRehome: long attempts must not pin the claim ring (DESIGN.md §2.7). Up to p_limit open
-- attempts claimed before now - p_older_than that sit outside the current claim slot are closed
-- as re-homed (outcome 8) and continued by a one-member batch in the current slot with the same
-- job, run lease, attempt, claim time and deadline; their heartbeat row moves with them.
-- Receipts of the old member keep working (attempt_end and job_heartbeat follow re-homes; the
-- heartbeat answer carries the new receipt). Returns the number re-homed.
CREATE FUNCTION braid.job_rehome(p_older_than interval, p_limit integer, p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now   timestamptz := coalesce(p_now, now());
    v_cslot smallint;
    c       record;
    v_n     integer;
BEGIN
    SELECT g.slot INTO v_cslot FROM braid.ring_current('claim') g;
    SELECT array_agg(s.cslot) AS cs, array_agg(s.batch_id) AS bs, array_agg(s.idx) AS ix,
           array_agg(s.run_lease) AS rl
    INTO c
    FROM (
        SELECT o.cslot, o.batch_id, o.idx, o.run_lease
        FROM (SELECT array_agg(b.cslot) AS cs, array_agg(b.batch_id) AS bs FROM braid.claim_batch b
              WHERE b.cslot <> v_cslot AND b.claimed_at < v_now - p_older_than) k
        CROSS JOIN LATERAL braid.open_attempts(k.cs, k.bs) o
        WHERE k.cs IS NOT NULL
        ORDER BY o.claimed_at, o.batch_id, o.idx
        LIMIT p_limit
    ) s;
    IF c.cs IS NULL THEN
        RETURN 0;
    END IF;

    WITH e AS MATERIALIZED (
        SELECT x.*, b.claimed_at, b.deadline_at, b.node, nextval('braid.batch_id_seq') AS new_batch
        FROM braid.attempt_end(c.cs, c.bs, c.ix, c.rl, array_fill(8::smallint, ARRAY[cardinality(c.ix)]), v_now) x
        JOIN braid.claim_batch b ON b.cslot = x.cslot AND b.batch_id = x.batch_id
    ), nb AS (
        INSERT INTO braid.claim_batch (cslot, batch_id, lane_id, qslot, job_ids, run_leases, lane_seqs,
                                       attempts, n, has_unique, claimed_at, deadline_at, node,
                                       rehomed_from, rehomed_idx)
        SELECT v_cslot, e.new_batch, e.lane_id, e.qslot, ARRAY[e.job_id], ARRAY[e.run_lease],
               ARRAY[e.lane_seq], ARRAY[e.attempt], 1, e.has_unique, e.claimed_at, e.deadline_at,
               e.node, e.batch_id, e.idx
        FROM e
    ), hb AS (
        UPDATE braid.attempt_state a SET batch_id = e.new_batch
        FROM e WHERE a.job_id = e.job_id AND a.run_lease = e.run_lease
    )
    SELECT count(*) INTO v_n FROM e;
    RETURN v_n;
END
$$;

-- JobRescue: ends up to p_limit open attempts whose batch deadline passed or whose heartbeat
-- (or claim time, when they never heartbeated) is older than p_stale, as rescued, and fails
-- them forward (retry, dead letter or failed: a rescue counts as an attempt). Oldest first, so
-- repeated calls make progress under any backlog of stale attempts.
CREATE FUNCTION braid.job_rescue(p_stale interval, p_limit integer, p_now timestamptz)
RETURNS TABLE (ord integer, job_id bigint, state text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    c     record;
BEGIN
    SELECT array_agg(s.cslot) AS cs, array_agg(s.batch_id) AS bs, array_agg(s.idx) AS ix,
           array_agg(s.run_lease) AS rl, array_agg(s.err) AS er
    INTO c
    FROM (
        SELECT o.cslot, o.batch_id, o.idx, o.run_lease,
               jsonb_build_object('error', CASE WHEN o.deadline_at < v_now
                   THEN 'rescued: deadline ' || o.deadline_at || ' passed'
                   ELSE 'rescued: no heartbeat since ' || coalesce(a.heartbeat_at, o.claimed_at) END) AS err
        FROM (SELECT array_agg(b.cslot) AS cs, array_agg(b.batch_id) AS bs FROM braid.claim_batch b
              WHERE b.deadline_at < v_now OR b.claimed_at < v_now - p_stale) k
        CROSS JOIN LATERAL braid.open_attempts(k.cs, k.bs) o
        LEFT JOIN braid.attempt_state a ON a.job_id = o.job_id AND a.run_lease = o.run_lease
        WHERE k.cs IS NOT NULL
          AND (o.deadline_at < v_now OR coalesce(a.heartbeat_at, o.claimed_at) < v_now - p_stale)
        ORDER BY o.claimed_at, o.batch_id, o.idx
        LIMIT p_limit
    ) s;
    IF c.cs IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM braid.attempt_fail(c.cs, c.bs, c.ix, c.rl, c.er,
        array_fill(NULL::interval, ARRAY[cardinality(c.ix)]),
        array_fill(false, ARRAY[cardinality(c.ix)]), 6::smallint, v_now);
END
$$;

-- JobCancel: cancels (or, with p_discard, dead-letters) one job in whatever live state it is.
-- Scheduled or retryable: the deferred row is deleted. Available: under the lane's claim lock,
-- a tombstone so no claim emits it. Running: the attempt ends (outcome 5 cancelled, 7
-- discarded) and a notification on braid.cancel ("job_id:run_lease") lets the worker cancel
-- the handler. The successor is a cancelled terminal row, or a dead letter when discarding. A
-- job that already finished is left alone: cancelled = false with its state. Unknown job: no row.
CREATE FUNCTION braid.job_cancel(p_job_id bigint, p_discard boolean, p_now timestamptz)
RETURNS TABLE (previous text, cancelled boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now   timestamptz := coalesce(p_now, now());
    d       braid.deferred%ROWTYPE;
    r       braid.ready%ROWTYPE;
    l       braid.lane%ROWTYPE;
    e       record;
    o       record;
    v_prev  text;
    v_qslot smallint;
    v_lease bigint;
    v_att   integer;
BEGIN
    DELETE FROM braid.deferred x WHERE x.job_id = p_job_id RETURNING x.* INTO d;
    IF FOUND THEN
        v_prev := CASE d.reason WHEN 2 THEN 'retryable' ELSE 'scheduled' END;
        INSERT INTO braid.lane (queue, priority, lane_no) VALUES (d.queue, d.priority, d.lane_no)
        ON CONFLICT DO NOTHING;
        SELECT * INTO l FROM braid.lane x
        WHERE x.queue = d.queue AND x.priority = d.priority AND x.lane_no = d.lane_no;
        SELECT c.slot INTO v_qslot FROM braid.ring_current('queue') c;
        r := ROW(v_qslot, l.lane_id, NULL, d.job_id, d.run_lease, d.attempt, d.max_attempts, d.kind,
                 d.args, d.metadata, d.errors, d.unique_key, d.run_at, d.created_at)::braid.ready;
        v_lease := d.run_lease;
        v_att := d.attempt;
    ELSE
        SELECT * INTO r FROM braid.ready x WHERE x.job_id = p_job_id ORDER BY x.lane_seq DESC LIMIT 1;
        IF NOT FOUND THEN
            -- Never ready: unknown, or ended from the deferred table (cancelled, discarded).
            RETURN QUERY SELECT j.state, false FROM braid.job_get(p_job_id) j;
            RETURN;
        END IF;
        SELECT * INTO l FROM braid.lane x WHERE x.lane_id = r.lane_id;

        -- Serialise with claims of the lane (a statement of its own: the reads below must see
        -- the emission of a claim that committed while this waited).
        PERFORM pg_advisory_xact_lock(2, r.lane_id);

        SELECT j.state INTO v_prev FROM braid.job_get(p_job_id) j;
        IF v_prev IS NULL THEN
            RETURN;  -- its evidence is gone (a purged dead letter)
        ELSIF v_prev = 'available' THEN
            INSERT INTO braid.tombstone (qslot, lane_id, lane_seq, job_id, reason, at)
            VALUES (r.qslot, r.lane_id, r.lane_seq, r.job_id, CASE WHEN p_discard THEN 2 ELSE 1 END, v_now);
            v_lease := r.run_lease;
            v_att := r.attempt;
        ELSIF v_prev = 'running' THEN
            SELECT a.* INTO e FROM braid.emission x
            CROSS JOIN LATERAL braid.job_attempt(p_job_id, x.cslot, x.batch_id) a
            WHERE x.qslot = r.qslot AND x.lane_id = r.lane_id AND x.after_seq < r.lane_seq AND x.last_seq >= r.lane_seq;
            SELECT * INTO o FROM braid.open_attempts(ARRAY[e.cslot], ARRAY[e.batch_id]) x WHERE x.idx = e.idx;
            SELECT * INTO o FROM braid.attempt_end(ARRAY[o.cslot], ARRAY[o.batch_id], ARRAY[o.idx], ARRAY[o.run_lease],
                ARRAY[CASE WHEN p_discard THEN 7 ELSE 5 END::smallint], v_now);
            IF o.job_id IS NULL THEN
                -- It ended between the two reads (completed, failed, rescued): report what it is now.
                RETURN QUERY SELECT j.state, false FROM braid.job_get(p_job_id) j;
                RETURN;
            END IF;
            PERFORM pg_notify('braid.cancel', p_job_id || ':' || o.run_lease);
            v_lease := o.run_lease;
            v_att := o.attempt;
        ELSE
            RETURN QUERY SELECT v_prev, false;
            RETURN;
        END IF;
    END IF;

    IF p_discard THEN
        PERFORM braid.dead_letter_write(ARRAY[ROW(1, r.job_id, v_lease, v_att, r.max_attempts, r.qslot,
            r.lane_id, l.queue, l.priority, l.lane_no, r.kind, r.args, r.metadata, r.errors,
            r.unique_key, r.created_at, NULL, 'dead_lettered')::braid.job_row], v_now);
    ELSE
        PERFORM braid.terminal_write(ARRAY[r.qslot], ARRAY[r.lane_id], ARRAY[r.job_id], ARRAY[v_lease],
            ARRAY[v_att], ARRAY[r.max_attempts], ARRAY[r.kind], ARRAY[r.args], ARRAY[r.metadata],
            ARRAY[r.errors], ARRAY[r.unique_key], ARRAY[r.created_at], 7::smallint, v_now);
    END IF;
    RETURN QUERY SELECT v_prev, true;
END
$$;

-- JobRetry: an operator's retry of a failed or cancelled job: available again with its attempts
-- reset, same job id, and the terminal row's run lease + 1 (so the new ready row is visibly
-- newer than the terminal row it retries; the lease still only grows). Its count moves back (a -1 delta
-- in the job's bucket) and its unique key is taken again, or the retry is refused (held_by).
-- Concurrent retries of one job serialise on a per-job lock (ns 5). Returns no row when the job
-- is not failed or cancelled.
CREATE FUNCTION braid.job_retry(p_job_id bigint, p_now timestamptz)
RETURNS TABLE (previous text, retried boolean, held_by bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now  timestamptz := coalesce(p_now, now());
    t      braid.terminal%ROWTYPE;
    l      braid.lane%ROWTYPE;
    v_prev text;
    v_held bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5, hashint8(p_job_id));

    SELECT j.state INTO v_prev FROM braid.job_get(p_job_id) j;
    IF v_prev IS DISTINCT FROM 'failed' AND v_prev IS DISTINCT FROM 'cancelled' THEN
        RETURN;
    END IF;
    SELECT * INTO t FROM braid.terminal x WHERE x.job_id = p_job_id ORDER BY x.finalized_at DESC LIMIT 1;
    SELECT * INTO l FROM braid.lane x WHERE x.lane_id = t.lane_id;

    IF t.unique_key IS NOT NULL THEN
        INSERT INTO braid.unique_claim (queue, unique_key, job_id) VALUES (l.queue, t.unique_key, t.job_id)
        ON CONFLICT DO NOTHING;
        SELECT u.job_id INTO v_held FROM braid.unique_claim u
        WHERE u.queue = l.queue AND u.unique_key = t.unique_key;
        IF v_held <> t.job_id THEN
            RETURN QUERY SELECT v_prev, false, v_held;
            RETURN;
        END IF;
    END IF;

    PERFORM braid.ready_insert(NULL, ARRAY[l.queue], ARRAY[l.priority], ARRAY[l.lane_no], ARRAY[t.job_id],
        ARRAY[t.run_lease + 1], ARRAY[0], ARRAY[t.max_attempts], ARRAY[t.kind], ARRAY[t.args],
        ARRAY[t.metadata], ARRAY[t.errors], ARRAY[t.unique_key], ARRAY[v_now], ARRAY[t.created_at]);
    INSERT INTO braid.count_delta (qslot, queue, state, bucket, delta)
    SELECT c.slot, l.queue, t.state, braid.bucket(t.job_id), -1 FROM braid.ring_current('queue') c;
    RETURN QUERY SELECT v_prev, true, NULL::bigint;
END
$$;

-- DeadLetterRetry: moves dead letters back to ready with their attempt count reset, same
-- job id and run lease lineage. A job whose unique key was taken meanwhile stays dead-lettered
-- (held_by names the holder). Concurrent retry and purge of one job: one wins (row lock).
CREATE FUNCTION braid.dead_letter_retry(p_job_ids bigint[], p_now timestamptz)
RETURNS TABLE (job_id bigint, retried boolean, held_by bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now  timestamptz := coalesce(p_now, now());
    v_held bigint[];
    d      record;
BEGIN
    PERFORM 1 FROM braid.dead_letter x WHERE x.job_id = ANY (p_job_ids) ORDER BY x.job_id FOR UPDATE;

    INSERT INTO braid.unique_claim (queue, unique_key, job_id)
    SELECT x.queue, x.unique_key, x.job_id FROM braid.dead_letter x
    WHERE x.job_id = ANY (p_job_ids) AND x.unique_key IS NOT NULL
    ON CONFLICT DO NOTHING;

    -- Letters whose key another live job holds stay where they are.
    v_held := ARRAY(SELECT x.job_id FROM braid.dead_letter x
                    JOIN braid.unique_claim u ON u.queue = x.queue AND u.unique_key = x.unique_key
                    WHERE x.job_id = ANY (p_job_ids) AND u.job_id <> x.job_id);

    WITH gone AS (
        DELETE FROM braid.dead_letter x
        WHERE x.job_id = ANY (p_job_ids) AND NOT x.job_id = ANY (v_held)
        RETURNING x.*
    )
    SELECT array_agg(g.queue ORDER BY g.job_id) AS qs, array_agg(g.priority ORDER BY g.job_id) AS ps,
           array_agg(g.lane_no ORDER BY g.job_id) AS ls, array_agg(g.job_id ORDER BY g.job_id) AS js,
           array_agg(g.run_lease ORDER BY g.job_id) AS rl, array_agg(g.max_attempts ORDER BY g.job_id) AS ma,
           array_agg(g.kind ORDER BY g.job_id) AS ks, array_agg(g.args ORDER BY g.job_id) AS ag,
           array_agg(g.metadata ORDER BY g.job_id) AS md, array_agg(g.errors ORDER BY g.job_id) AS er,
           array_agg(g.unique_key ORDER BY g.job_id) AS uk, array_agg(g.created_at ORDER BY g.job_id) AS ca
    INTO d FROM gone g;
    IF d.js IS NOT NULL THEN
        PERFORM braid.ready_insert(NULL, d.qs, d.ps, d.ls, d.js, d.rl,
            array_fill(0, ARRAY[cardinality(d.js)]), d.ma, d.ks, d.ag, d.md, d.er, d.uk,
            array_fill(v_now, ARRAY[cardinality(d.js)]), d.ca);
    END IF;
    RETURN QUERY
    SELECT g, g = ANY (coalesce(d.js, '{}')),
           (SELECT u.job_id FROM braid.dead_letter x JOIN braid.unique_claim u
                ON u.queue = x.queue AND u.unique_key = x.unique_key WHERE x.job_id = g)
    FROM unnest(p_job_ids) AS g
    WHERE g = ANY (coalesce(d.js, '{}')) OR g = ANY (v_held)
    ORDER BY g;
END
$$;

-- DeadLetterPurge: deletes dead letters for good; returns the ids it deleted.
CREATE FUNCTION braid.dead_letter_purge(p_job_ids bigint[])
RETURNS SETOF bigint
LANGUAGE sql AS $$
    DELETE FROM braid.dead_letter x WHERE x.job_id = ANY (p_job_ids) RETURNING x.job_id
$$;

-- DeadLetterTrim: retention; deletes up to p_limit dead letters older than p_older_than.
CREATE FUNCTION braid.dead_letter_trim(p_older_than interval, p_limit integer, p_now timestamptz)
RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM braid.dead_letter x
        WHERE x.job_id IN (SELECT y.job_id FROM braid.dead_letter y
                           WHERE y.dead_at < coalesce(p_now, now()) - p_older_than
                           ORDER BY y.dead_at LIMIT p_limit)
        RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

-- DeadLetterList: a queue's dead letters, newest first, keyset-paged by (dead_at, job_id).
CREATE FUNCTION braid.dead_letter_list(p_queue text, p_limit integer, p_before_at timestamptz,
                                       p_before_id bigint)
RETURNS SETOF braid.dead_letter
LANGUAGE sql STABLE AS $$
    SELECT * FROM braid.dead_letter x
    WHERE x.queue = p_queue
      AND (p_before_at IS NULL OR (x.dead_at, x.job_id) < (p_before_at, p_before_id))
    ORDER BY x.dead_at DESC, x.job_id DESC
    LIMIT p_limit
$$;
