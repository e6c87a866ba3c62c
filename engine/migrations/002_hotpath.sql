-- braid engine, version 2: the rules (one definition each) and the hot-path functions.
--
-- Plans: every function here is PL/pgSQL, so each connection plans a statement once instead of
-- once per calling statement (an SQL-language function is re-planned by every statement that
-- calls it, about 1 ms over 16 partitions). They force generic plans: with partitions the plan
-- cache otherwise keeps choosing custom plans and re-plans on every call. The generic plans
-- are shaped to be index walks whatever the statistics say (engine/plans_test.go proves it).
--
-- Advisory lock namespaces (two-int form: namespace, key). The lock order is in doc.go.
--   1 lane enqueue   key lane_id                     exclusive, held to commit by enqueue
--   2 lane claim     key lane_id                     try-lock by claim; cancel-before-claim waits on it
--   3 claim batch    key batch_id & 0x7fffffff       every statement that ends attempts of the batch
--   4 queue fence    key hashtext(queue)             shared by enqueue, exclusive by seal

-- THE counter bucket rule. Every writer, fold and rebuild uses this function.
CREATE FUNCTION braid.bucket(job_id bigint) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (job_id % 256)::smallint;

-- THE claim cursor rule: a lane's cursor is the newest lane_seq any retained emission covers.
-- Sound across prune because a slot's emissions and the rows they emitted share the slot, and
-- slots are pruned oldest first (see doc.go, "Why the cursor cannot be lost").
CREATE FUNCTION braid.lane_cursor(p_lane_id integer) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN coalesce((SELECT e.last_seq FROM braid.emission e WHERE e.lane_id = p_lane_id
                     ORDER BY e.last_seq DESC LIMIT 1), 0);
END
$$;

-- THE tombstone rule: a ready row with a tombstone is never claimed. Returns the tombstoned
-- lane_seqs of a lane in (p_after, p_upto]; callers anti-join against the set (one index range
-- scan per call, not one probe per row).
CREATE FUNCTION braid.tombstones(p_lane_id integer, p_after bigint, p_upto bigint)
RETURNS TABLE (lane_seq bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1 SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT t.lane_seq FROM braid.tombstone t
    WHERE t.lane_id = p_lane_id AND t.lane_seq > p_after AND t.lane_seq <= p_upto;
END
$$;

-- THE open-attempt rule (DESIGN.md §2.3): an attempt is open iff its claim-batch member has no
-- closure. Every reader and writer that needs open attempts calls this function with the claim
-- batches it cares about; nothing else in the schema or the Go code restates the predicate.
CREATE FUNCTION braid.open_attempts(p_cslots smallint[], p_batch_ids bigint[])
RETURNS TABLE (cslot smallint, batch_id bigint, idx integer, job_id bigint, run_lease bigint,
               lane_seq bigint, attempt integer, lane_id integer, qslot smallint,
               has_unique boolean, claimed_at timestamptz, deadline_at timestamptz, node text)
LANGUAGE plpgsql STABLE ROWS 512 SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- PL/pgSQL keeps callers from inlining the body into their own join trees.
    -- Shape: one parametrised probe per batch (LIMIT 1 and the aggregate keep the planner from
    -- flattening the laterals into hash joins over every partition, which is what a generic
    -- plan made on small tables does). Both probes are index scans of one partition.
    RETURN QUERY
    SELECT b.cslot, b.batch_id, m.idx::integer, m.job_id, m.run_lease, m.lane_seq, m.attempt,
           b.lane_id, b.qslot, b.has_unique, b.claimed_at, b.deadline_at, b.node
    FROM (SELECT DISTINCT k.cslot, k.batch_id FROM unnest(p_cslots, p_batch_ids) AS k(cslot, batch_id)) k
    CROSS JOIN LATERAL (
        SELECT * FROM braid.claim_batch b WHERE b.cslot = k.cslot AND b.batch_id = k.batch_id LIMIT 1
    ) b
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(x), '{}') AS members
        FROM braid.closure c CROSS JOIN LATERAL unnest(c.members) AS x
        WHERE c.cslot = k.cslot AND c.batch_id = k.batch_id
    ) closed
    CROSS JOIN LATERAL unnest(b.job_ids, b.run_leases, b.lane_seqs, b.attempts)
        WITH ORDINALITY AS m(job_id, run_lease, lane_seq, attempt, idx)
    WHERE NOT (m.idx::integer = ANY (closed.members));
END
$$;

-- The current generation and slot of a ring.
CREATE FUNCTION braid.ring_current(p_ring text, OUT generation bigint, OUT slot smallint)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    SELECT g.generation, (g.generation % r.slots)::smallint INTO generation, slot
    FROM braid.ring r
    CROSS JOIN LATERAL (SELECT g.generation FROM braid.ring_gen g WHERE g.ring = r.ring
                        ORDER BY g.generation DESC LIMIT 1) g
    WHERE r.ring = p_ring;
END
$$;

-- ReadyInsert: THE way ready rows are written (enqueue, promotion, dead-letter retry). Resolves
-- (queue, priority, lane_no) to lanes, creating missing ones, takes the lanes' enqueue locks
-- (ns 1) sorted by lane_id and held to commit, reads the current queue slot only under them (so
-- within a lane the slot generation never decreases as lane_seq grows), numbers the rows from
-- the CACHE 1 lane sequence in input order, inserts them and notifies once per queue.
-- Elements whose p_keep is false are skipped (NULL p_keep keeps all).
CREATE FUNCTION braid.ready_insert(
    p_keep boolean[], p_queues text[], p_priorities smallint[], p_lane_nos smallint[],
    p_job_ids bigint[], p_run_leases bigint[], p_attempts integer[], p_max_attempts integer[],
    p_kinds text[], p_args jsonb[], p_metadata jsonb[], p_errors jsonb[], p_unique_keys text[],
    p_run_at timestamptz[], p_created_at timestamptz[])
RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n     integer := cardinality(p_queues);
    v_lane  integer[];
    v_qslot smallint;
    v_seq   bigint[];
BEGIN
    IF v_n IS NULL OR v_n = 0 OR NOT coalesce(true = ANY (p_keep), p_keep IS NULL) THEN
        RETURN;
    END IF;
    -- Lanes are resolved once per distinct (queue, priority, lane_no), not once per job.
    INSERT INTO braid.lane (queue, priority, lane_no)
    SELECT k.queue, k.priority, k.lane_no
    FROM (SELECT DISTINCT j.queue, j.priority, j.lane_no
          FROM unnest(p_keep, p_queues, p_priorities, p_lane_nos) AS j(keep, queue, priority, lane_no)
          WHERE coalesce(j.keep, true)) k
    WHERE NOT EXISTS (SELECT 1 FROM braid.lane l
                      WHERE l.queue = k.queue AND l.lane_no = k.lane_no AND l.priority = k.priority)
    ON CONFLICT DO NOTHING;

    SELECT array_agg(m.lane_id ORDER BY j.ord) INTO v_lane
    FROM unnest(p_queues, p_priorities, p_lane_nos) WITH ORDINALITY AS j(queue, priority, lane_no, ord)
    LEFT JOIN (SELECT l.queue, l.priority, l.lane_no, l.lane_id
               FROM (SELECT DISTINCT x.queue, x.priority, x.lane_no
                     FROM unnest(p_queues, p_priorities, p_lane_nos) AS x(queue, priority, lane_no)) k
               JOIN braid.lane l ON l.queue = k.queue AND l.lane_no = k.lane_no AND l.priority = k.priority) m
      ON m.queue = j.queue AND m.priority = j.priority AND m.lane_no = j.lane_no;

    PERFORM pg_advisory_xact_lock(1, x)
    FROM (SELECT DISTINCT v_lane[i] AS x FROM generate_series(1, v_n) i
          WHERE coalesce(p_keep[i], true) ORDER BY 1) s;

    SELECT c.slot INTO v_qslot FROM braid.ring_current('queue') c;
    v_seq := ARRAY(SELECT nextval('braid.lane_seq_seq') FROM generate_series(1, v_n));

    INSERT INTO braid.ready (qslot, lane_id, lane_seq, job_id, run_lease, attempt, max_attempts,
                             kind, args, metadata, errors, unique_key, run_at, created_at)
    SELECT v_qslot, v_lane[j.ord], v_seq[j.ord], j.job_id, j.run_lease, j.attempt, j.max_attempts,
           j.kind, j.args, j.metadata, j.errors, j.k, j.run_at, j.created_at
    FROM unnest(p_keep, p_job_ids, p_run_leases, p_attempts, p_max_attempts, p_kinds, p_args,
                p_metadata, p_errors, p_unique_keys, p_run_at, p_created_at)
         WITH ORDINALITY AS j(keep, job_id, run_lease, attempt, max_attempts, kind, args, metadata,
                              errors, k, run_at, created_at, ord)
    WHERE coalesce(j.keep, true)
    ORDER BY j.ord;

    PERFORM pg_notify('braid.ready', q)
    FROM (SELECT DISTINCT j.queue AS q FROM unnest(p_keep, p_queues) AS j(keep, queue)
          WHERE coalesce(j.keep, true)) s;
END
$$;

-- JobEnqueue: one transaction for a whole batch (DESIGN.md §2.4). Input arrays are parallel,
-- one element per job, already validated by the caller. p_hashes holds the ordering key's lane
-- hash (non-negative) or NULL for key-less jobs, which share one rotating lane per call.
-- Locks: fence (ns 4, shared) per queue sorted by name, unique-key rows, then the lane enqueue
-- locks of ready_insert.
CREATE FUNCTION braid.job_enqueue(
    p_queues text[], p_priorities smallint[], p_hashes bigint[], p_kinds text[], p_args jsonb[],
    p_metadata jsonb[], p_max_attempts integer[], p_run_at timestamptz[], p_unique_keys text[],
    p_default_lanes smallint, p_default_dlq boolean, p_default_max_attempts integer,
    p_default_deadline interval, p_now timestamptz)
RETURNS TABLE (ord integer, job_id bigint, duplicate_of bigint, deferred boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now     timestamptz := coalesce(p_now, now());
    v_n       integer := cardinality(p_queues);
    v_rot     bigint := nextval('braid.lane_rotation_seq');
    v_refused record;
    v_lane_no smallint[];
    v_max     integer[];
    v_ids     bigint[];
    v_dup     bigint[] := array_fill(NULL::bigint, ARRAY[v_n]);
    v_ready   boolean[];
BEGIN
    -- Fences: the shared lock must be its own statement, so the fence read below sees any seal
    -- that committed while this transaction waited for the lock.
    PERFORM pg_advisory_xact_lock_shared(4, hashtext(q))
    FROM (SELECT DISTINCT unnest(p_queues) AS q ORDER BY 1) s;

    SELECT f.queue, f.epoch, f.state, f.moved_to INTO v_refused
    FROM braid.fence f WHERE f.queue = ANY (p_queues) AND f.state <> 'active'
    ORDER BY f.queue LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'queue % is % on this shard', v_refused.queue, v_refused.state
            USING ERRCODE = 'BR001',
                  DETAIL = json_build_object('queue', v_refused.queue, 'epoch', v_refused.epoch,
                                             'state', v_refused.state, 'moved_to', v_refused.moved_to)::text;
    END IF;

    INSERT INTO braid.queue (name, lanes, dlq, max_attempts, deadline)
    SELECT DISTINCT q, p_default_lanes, p_default_dlq, p_default_max_attempts, p_default_deadline
    FROM unnest(p_queues) AS q
    WHERE NOT EXISTS (SELECT 1 FROM braid.queue x WHERE x.name = q)
    ON CONFLICT DO NOTHING;

    -- Lane choice: the ordering key's hash, or one rotating lane for all key-less jobs of the call.
    SELECT array_agg(((coalesce(j.h, v_rot)) % q.lanes)::smallint ORDER BY j.ord),
           array_agg(coalesce(j.m, q.max_attempts) ORDER BY j.ord)
    INTO v_lane_no, v_max
    FROM unnest(p_queues, p_hashes, p_max_attempts) WITH ORDINALITY AS j(queue, h, m, ord)
    JOIN braid.queue q ON q.name = j.queue;

    v_ids := ARRAY(SELECT nextval('braid.job_id_seq') FROM generate_series(1, v_n));

    IF EXISTS (SELECT 1 FROM unnest(p_unique_keys) AS k WHERE k IS NOT NULL) THEN
        INSERT INTO braid.unique_claim (queue, unique_key, job_id)
        SELECT j.queue, j.k, v_ids[j.ord]
        FROM unnest(p_queues, p_unique_keys) WITH ORDINALITY AS j(queue, k, ord)
        WHERE j.k IS NOT NULL
        ORDER BY j.ord
        ON CONFLICT DO NOTHING;

        SELECT array_agg(CASE WHEN u.job_id = v_ids[j.ord] THEN NULL ELSE u.job_id END ORDER BY j.ord)
        INTO v_dup
        FROM unnest(p_queues, p_unique_keys) WITH ORDINALITY AS j(queue, k, ord)
        LEFT JOIN braid.unique_claim u ON u.queue = j.queue AND u.unique_key = j.k;
    END IF;

    SELECT array_agg(v_dup[j.ord] IS NULL AND (j.run_at IS NULL OR j.run_at <= v_now) ORDER BY j.ord)
    INTO v_ready
    FROM unnest(p_run_at) WITH ORDINALITY AS j(run_at, ord);

    PERFORM braid.ready_insert(v_ready, p_queues, p_priorities, v_lane_no, v_ids,
        array_fill(0::bigint, ARRAY[v_n]), array_fill(0, ARRAY[v_n]), v_max, p_kinds, p_args,
        p_metadata, array_fill(NULL::jsonb, ARRAY[v_n]), p_unique_keys,
        array_fill(v_now, ARRAY[v_n]), array_fill(v_now, ARRAY[v_n]));

    IF EXISTS (SELECT 1 FROM unnest(p_run_at) AS x WHERE x > v_now) THEN
        INSERT INTO braid.deferred (job_id, queue, priority, lane_no, reason, run_lease, attempt,
                                    max_attempts, kind, args, metadata, errors, unique_key, run_at, created_at)
        SELECT v_ids[j.ord], j.queue, j.priority, v_lane_no[j.ord], 1, 0, 0, v_max[j.ord], j.kind,
               j.args, j.metadata, NULL, j.k, j.run_at, v_now
        FROM unnest(p_queues, p_priorities, p_kinds, p_args, p_metadata, p_run_at, p_unique_keys)
             WITH ORDINALITY AS j(queue, priority, kind, args, metadata, run_at, k, ord)
        WHERE v_dup[j.ord] IS NULL AND j.run_at > v_now;
    END IF;

    RETURN QUERY
    SELECT j.ord::integer, coalesce(v_dup[j.ord], v_ids[j.ord]), v_dup[j.ord],
           v_dup[j.ord] IS NULL AND coalesce(j.run_at > v_now, false)
    FROM unnest(p_run_at) WITH ORDINALITY AS j(run_at, ord)
    ORDER BY j.ord;
END
$$;

-- JobClaim: up to p_max attempts from one lane of a queue (DESIGN.md §2.5). p_lane_no NULL
-- means any lane. Lanes are tried in priority order; a lane held by another claimer is skipped.
-- The claim ends at the first row of another queue slot (a claim never spans two ready slots),
-- writes the emission into the rows' slot and the claim batch into the current claim slot.
CREATE FUNCTION braid.job_claim(p_queue text, p_lane_no smallint, p_max integer, p_node text,
                                p_now timestamptz)
RETURNS TABLE (cslot smallint, batch_id bigint, idx integer, job_id bigint, run_lease bigint,
               attempt integer, max_attempts integer, priority smallint, lane_no smallint,
               kind text, args jsonb, metadata jsonb, errors jsonb, unique_key text,
               run_at timestamptz, created_at timestamptz, deadline_at timestamptz)
LANGUAGE plpgsql
-- Planner-proofing: without statistics (new or just-truncated partitions) the planner takes
-- "lane_id = $1 AND lane_seq > $2" for a few dozen rows and reads the whole lane backlog into a
-- sort. The only plan left with sorts and bitmap scans priced out is the ordered index walk.
-- The penalty those settings add to plan costs would trip JIT compilation (hundreds of ms per
-- call), so JIT is off too.
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_now      timestamptz := coalesce(p_now, now());
    v_lane     record;
    v_cslot    smallint;
    v_deadline interval;
    v_cursor   bigint;
BEGIN
    SELECT q.deadline INTO v_deadline FROM braid.queue q WHERE q.name = p_queue;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR v_lane IN
        SELECT l.lane_id, l.priority, l.lane_no FROM braid.lane l
        WHERE l.queue = p_queue AND (p_lane_no IS NULL OR l.lane_no = p_lane_no)
        ORDER BY l.priority, l.lane_no
    LOOP
        -- Its own statement (the correctness trap, DESIGN.md §2.5): the statement below takes its
        -- snapshot after the lock, so it sees the emission of the claimer that held it before.
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(2, v_lane.lane_id);
        IF v_cslot IS NULL THEN
            SELECT c.slot INTO v_cslot FROM braid.ring_current('claim') c;
        END IF;

        -- A claim whose rows were all tombstoned emits nothing but still moves the cursor past
        -- them; then the lane is tried again, so an empty result means an empty lane.
        LOOP
            v_cursor := braid.lane_cursor(v_lane.lane_id);
            RETURN QUERY
            WITH cur AS MATERIALIZED (
                SELECT v_cursor AS seq
            ), cand AS MATERIALIZED (
                SELECT r.* FROM braid.ready r
                WHERE r.lane_id = v_lane.lane_id AND r.lane_seq > (SELECT seq FROM cur)
                ORDER BY r.lane_seq
                LIMIT p_max
            ), cut AS MATERIALIZED (
                SELECT c.* FROM cand c
                WHERE c.lane_seq < coalesce((SELECT min(o.lane_seq) FROM cand o
                                             WHERE o.qslot <> (SELECT h.qslot FROM cand h ORDER BY h.lane_seq LIMIT 1)),
                                            9223372036854775807)
            ), live AS MATERIALIZED (
                SELECT c.*, (row_number() OVER (ORDER BY c.lane_seq))::integer AS idx
                FROM cut c
                WHERE c.lane_seq NOT IN (SELECT t.lane_seq FROM braid.tombstones(v_lane.lane_id,
                                             (SELECT seq FROM cur), (SELECT max(x.lane_seq) FROM cut x)) t)
            ), bid AS MATERIALIZED (
                SELECT nextval('braid.batch_id_seq') AS id WHERE EXISTS (SELECT 1 FROM cut)
            ), em AS (
                INSERT INTO braid.emission (qslot, lane_id, after_seq, last_seq, cslot, batch_id)
                SELECT min(c.qslot), v_lane.lane_id, (SELECT seq FROM cur), max(c.lane_seq), v_cslot,
                       (SELECT id FROM bid)
                FROM cut c
                HAVING count(*) > 0
            ), cb AS (
                INSERT INTO braid.claim_batch (cslot, batch_id, lane_id, qslot, job_ids, run_leases,
                                               lane_seqs, attempts, n, has_unique, claimed_at,
                                               deadline_at, node)
                SELECT v_cslot, (SELECT id FROM bid), v_lane.lane_id, min(l.qslot),
                       array_agg(l.job_id ORDER BY l.idx), array_agg(l.run_lease + 1 ORDER BY l.idx),
                       array_agg(l.lane_seq ORDER BY l.idx), array_agg(l.attempt + 1 ORDER BY l.idx),
                       count(*), bool_or(l.unique_key IS NOT NULL), v_now, v_now + v_deadline, p_node
                FROM live l
                HAVING count(*) > 0
            )
            SELECT v_cslot, (SELECT id FROM bid), l.idx, l.job_id, l.run_lease + 1, l.attempt + 1,
                   l.max_attempts, v_lane.priority, v_lane.lane_no, l.kind, l.args, l.metadata,
                   l.errors, l.unique_key, l.run_at, l.created_at, v_now + v_deadline
            FROM live l
            ORDER BY l.idx;
            IF FOUND THEN
                RETURN;
            END IF;
            EXIT WHEN braid.lane_cursor(v_lane.lane_id) = v_cursor;
        END LOOP;
    END LOOP;
END
$$;

-- BatchLock: the claim batch locks (ns 3) every statement that ends or touches attempts takes,
-- sorted by batch id. Callers run it as a statement of its own, before they read closures.
CREATE FUNCTION braid.batch_lock(p_batch_ids bigint[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(3, (b & 2147483647)::integer)
    FROM (SELECT DISTINCT unnest(p_batch_ids) AS b ORDER BY 1) s;
END
$$;

-- ReceiptResolve: follows receipts of re-homed attempts (closure outcome 8) to the one-member
-- batch that continues them, as often as they were re-homed. Returns one row per input receipt,
-- in order; receipts that were not re-homed come back unchanged.
CREATE FUNCTION braid.receipt_resolve(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[])
RETURNS TABLE (ord integer, cslot smallint, batch_id bigint, idx integer)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cs smallint[] := p_cslots;
    v_bs bigint[] := p_batch_ids;
    v_ix integer[] := p_idx;
    v_moved boolean;
BEGIN
    FOR depth IN 1 .. 64 LOOP
        SELECT array_agg(coalesce(nb.cslot, r.cslot) ORDER BY r.ord),
               array_agg(coalesce(nb.batch_id, r.batch_id) ORDER BY r.ord),
               array_agg(CASE WHEN nb.batch_id IS NULL THEN r.idx ELSE 1 END ORDER BY r.ord),
               bool_or(nb.batch_id IS NOT NULL)
        INTO v_cs, v_bs, v_ix, v_moved
        FROM unnest(v_cs, v_bs, v_ix) WITH ORDINALITY AS r(cslot, batch_id, idx, ord)
        LEFT JOIN LATERAL (SELECT b.cslot, b.batch_id FROM braid.claim_batch b
                           WHERE b.rehomed_from = r.batch_id AND b.rehomed_idx = r.idx LIMIT 1) nb ON true;
        EXIT WHEN NOT v_moved;
    END LOOP;
    RETURN QUERY SELECT r.ord::integer, r.cslot, r.batch_id, r.idx
                 FROM unnest(v_cs, v_bs, v_ix) WITH ORDINALITY AS r(cslot, batch_id, idx, ord);
END
$$;

-- One ended attempt (attempt_end's result row).
CREATE TYPE braid.ended_attempt AS (
    ord integer, cslot smallint, batch_id bigint, idx integer, job_id bigint, run_lease bigint,
    lane_seq bigint, attempt integer, lane_id integer, qslot smallint, has_unique boolean,
    outcome smallint
);

-- AttemptEndOnce: one pass of attempt_end over receipts exactly as given.
CREATE FUNCTION braid.attempt_end_once(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                       p_run_leases bigint[], p_outcomes smallint[], p_ords integer[],
                                       p_now timestamptz)
RETURNS SETOF braid.ended_attempt
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM braid.batch_lock(p_batch_ids);

    RETURN QUERY
    WITH r AS (
        SELECT * FROM unnest(p_cslots, p_batch_ids, p_idx, p_run_leases, p_outcomes, p_ords)
            AS r(cslot, batch_id, idx, run_lease, outcome, ord)
    ), ok AS MATERIALIZED (
        SELECT DISTINCT ON (o.batch_id, o.idx) r.ord, o.cslot, o.batch_id, o.idx,
               o.job_id, o.run_lease, o.lane_seq, o.attempt, o.lane_id, o.qslot, o.has_unique,
               r.outcome
        FROM braid.open_attempts(p_cslots, p_batch_ids) o
        JOIN r ON r.cslot = o.cslot AND r.batch_id = o.batch_id AND r.idx = o.idx
              AND r.run_lease = o.run_lease
        ORDER BY o.batch_id, o.idx, r.ord
    ), cl AS (
        INSERT INTO braid.closure (cslot, batch_id, members, outcome, closed_at)
        SELECT ok.cslot, ok.batch_id, array_agg(ok.idx ORDER BY ok.idx), ok.outcome,
               coalesce(p_now, now())
        FROM ok GROUP BY ok.cslot, ok.batch_id, ok.outcome
    ), hb AS (
        DELETE FROM braid.attempt_state a USING ok
        WHERE a.batch_id IN (SELECT DISTINCT x.batch_id FROM ok x WHERE x.outcome <> 8)
          AND a.job_id = ok.job_id AND a.run_lease = ok.run_lease AND ok.outcome <> 8
    )
    SELECT ok.* FROM ok;
END
$$;

-- AttemptEnd: THE only writer of closures. Takes the batch locks, keeps the receipts whose
-- attempt is still open (a repeated receipt counts once) and writes one closure per (claim batch,
-- outcome). Receipts that did not apply and whose attempt was re-homed are followed to the
-- attempt's current batch and tried there (a second pass, so the common path pays nothing).
-- Returns the ended attempts; callers write the successor rows in the same transaction.
-- Outcomes: 1 completed, 2 completed with output, 3 errored, 4 snoozed, 5 cancelled,
-- 6 rescued, 7 discarded, 8 re-homed.
CREATE FUNCTION braid.attempt_end(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                  p_run_leases bigint[], p_outcomes smallint[], p_now timestamptz)
RETURNS SETOF braid.ended_attempt
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n    integer := cardinality(p_idx);
    v_done braid.ended_attempt[];
    f      record;
BEGIN
    v_done := ARRAY(SELECT e FROM braid.attempt_end_once(p_cslots, p_batch_ids, p_idx, p_run_leases,
                    p_outcomes, ARRAY(SELECT generate_series(1, v_n)), p_now) e);
    IF cardinality(v_done) < v_n THEN
        SELECT array_agg(x.cslot) AS cs, array_agg(x.batch_id) AS bs, array_agg(x.idx) AS ix,
               array_agg(p_run_leases[x.ord]) AS rl, array_agg(p_outcomes[x.ord]) AS oc,
               array_agg(x.ord) AS os
        INTO f
        FROM braid.receipt_resolve(p_cslots, p_batch_ids, p_idx) x
        WHERE x.batch_id <> p_batch_ids[x.ord]
          AND NOT x.ord = ANY (ARRAY(SELECT d.ord FROM unnest(v_done) d));
        IF f.os IS NOT NULL THEN
            v_done := v_done || ARRAY(SELECT e FROM braid.attempt_end_once(f.cs, f.bs, f.ix, f.rl, f.oc, f.os, p_now) e);
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_done);
END
$$;

-- JobCompleteFast: the compact success path (DESIGN.md §2.6). Returns the ordinals (1-based)
-- of the receipts that applied; a receipt whose attempt already ended, or repeated in the
-- call, is stale and writes nothing. One closure and one completion row per claim batch, and
-- the released unique keys; no per-job row.
CREATE FUNCTION braid.job_complete_fast(p_cslots smallint[], p_batch_ids bigint[], p_idx integer[],
                                        p_run_leases bigint[], p_now timestamptz)
RETURNS SETOF integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    RETURN QUERY
    WITH ok AS MATERIALIZED (
        SELECT * FROM braid.attempt_end(p_cslots, p_batch_ids, p_idx, p_run_leases,
                                        array_fill(1::smallint, ARRAY[cardinality(p_idx)]), v_now)
    ), cp AS (
        INSERT INTO braid.completion (qslot, lane_id, batch_id, job_ids, run_leases, n, completed_at)
        SELECT ok.qslot, ok.lane_id, ok.batch_id, array_agg(ok.job_id ORDER BY ok.idx),
               array_agg(ok.run_lease ORDER BY ok.idx), count(*), v_now
        FROM ok GROUP BY ok.qslot, ok.lane_id, ok.batch_id
    ), uq AS (
        DELETE FROM braid.unique_claim u USING ok
        WHERE ok.has_unique AND u.job_id = ok.job_id
    )
    SELECT ok.ord FROM ok;
END
$$;
