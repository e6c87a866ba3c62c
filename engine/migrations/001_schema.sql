-- braid engine schema, version 1: the tables of one shard (DESIGN.md §2.1-§2.3).
-- The token "braid." names the engine schema; the migrator substitutes the configured,
-- validated schema name. Everything here is created by the role that owns the schema.

-- Identity: one row, written once by Init. A DSN pointing at another shard's database is
-- refused by comparing this row with the configuration.
CREATE TABLE braid.identity (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    shard_id   integer     NOT NULL CHECK (shard_id BETWEEN 1 AND 32767),
    cluster    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Job ids: Init restricts this sequence to [shard_id<<48 + 1, (shard_id+1)<<48 - 1], so
-- job_id >> 48 names the shard that created the job.
CREATE SEQUENCE braid.job_id_seq AS bigint CACHE 32;

-- Lane sequence numbers. One sequence for every lane: a lane's numbers only need to grow in
-- commit order, which the lane's enqueue lock gives, and gaps are normal (claims read
-- "lane_seq > cursor", never "cursor + 1"). CACHE 1 is REQUIRED: a per-backend cache would hand
-- a later transaction of the same lane a smaller number than an earlier one, and the claim
-- cursor would pass it.
CREATE SEQUENCE braid.lane_seq_seq AS bigint CACHE 1;

-- Claim batch ids, and the rotation counter that spreads key-less enqueues over lanes.
CREATE SEQUENCE braid.batch_id_seq AS bigint CACHE 32;
CREATE SEQUENCE braid.lane_rotation_seq AS bigint CACHE 32 CYCLE;

-- Per-queue settings. A queue gets the defaults row on first enqueue; Configure changes it.
CREATE TABLE braid.queue (
    name         text     PRIMARY KEY,
    lanes        smallint NOT NULL CHECK (lanes BETWEEN 1 AND 256),
    dlq          boolean  NOT NULL,
    max_attempts integer  NOT NULL CHECK (max_attempts >= 1),
    deadline     interval NOT NULL CHECK (deadline > interval '0')
);

-- Lanes: (queue, priority, lane_no) -> lane_id. Insert-only: the claim cursor is derived from
-- emissions, never stored here, so this table takes no UPDATE traffic.
CREATE TABLE braid.lane (
    lane_id  integer  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue    text     NOT NULL,
    priority smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    lane_no  smallint NOT NULL CHECK (lane_no >= 0),
    UNIQUE (queue, lane_no, priority)
);

-- Queue fences: whether this shard accepts enqueues for a queue (DESIGN.md §3.2). No row means
-- the shard accepts the queue; a row in state draining or moved refuses it with a redirect.
CREATE TABLE braid.fence (
    queue    text    PRIMARY KEY,
    epoch    bigint  NOT NULL,
    state    text    NOT NULL CHECK (state IN ('active', 'draining', 'moved')),
    moved_to integer
);

-- The rings. ring_gen is an append-only ledger: the newest generation is the cursor and
-- slot = generation mod slots. Rotation appends a row; nothing updates one.
CREATE TABLE braid.ring (
    ring  text     PRIMARY KEY CHECK (ring IN ('queue', 'claim')),
    slots smallint NOT NULL CHECK (slots BETWEEN 2 AND 64)
);
INSERT INTO braid.ring (ring, slots) VALUES ('queue', 16), ('claim', 8);

CREATE TABLE braid.ring_gen (
    ring       text        NOT NULL REFERENCES braid.ring (ring),
    generation bigint      NOT NULL CHECK (generation >= 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ring, generation)
);
INSERT INTO braid.ring_gen (ring, generation) VALUES ('queue', 0), ('claim', 0);

-- ---------------------------------------------------------------------------------------------
-- Queue ring: partitioned by the ready row's slot (qslot). Everything learned about a ready row
-- after enqueue lives in the same slot, so one TRUNCATE reclaims the row and its evidence.

-- Ready rows: the immutable job body. Never updated, never deleted (only truncated).
CREATE TABLE braid.ready (
    qslot        smallint    NOT NULL,
    lane_id      integer     NOT NULL,
    lane_seq     bigint      NOT NULL,
    job_id       bigint      NOT NULL,
    run_lease    bigint      NOT NULL,  -- lease of the previous attempt; the next claim uses +1
    attempt      integer     NOT NULL,  -- attempts already used
    max_attempts integer     NOT NULL,
    kind         text        NOT NULL,
    args         jsonb       NOT NULL,
    metadata     jsonb,
    errors       jsonb,                 -- errors of earlier attempts, oldest first
    unique_key   text,
    run_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
) PARTITION BY LIST (qslot);

-- Ready tombstones: "this ready row must not be claimed" (cancelled before claim, moved,
-- discarded). Written under the lane's claim lock, so a claim never emits a tombstoned row.
CREATE TABLE braid.tombstone (
    qslot    smallint    NOT NULL,
    lane_id  integer     NOT NULL,
    lane_seq bigint      NOT NULL,
    job_id   bigint      NOT NULL,
    reason   smallint    NOT NULL,
    at       timestamptz NOT NULL
) PARTITION BY LIST (qslot);

-- Claim emissions: the lane range (first_seq..last_seq] a claim emitted, written in the claim
-- transaction into the emitted rows' slot. A lane's cursor is max(last_seq) over its retained
-- emissions; it cannot be lost because it is never kept anywhere else.
CREATE TABLE braid.emission (
    qslot     smallint NOT NULL,
    lane_id   integer  NOT NULL,
    after_seq bigint   NOT NULL,  -- the cursor the claim started from
    last_seq  bigint   NOT NULL,  -- the new cursor
    cslot     smallint NOT NULL,
    batch_id  bigint   NOT NULL
) PARTITION BY LIST (qslot);

-- Compact completion batches: one row per (flush, claim batch) of fast-path completions.
CREATE TABLE braid.completion (
    qslot        smallint    NOT NULL,
    lane_id      integer     NOT NULL,
    batch_id     bigint      NOT NULL,
    job_ids      bigint[]    NOT NULL,
    run_leases   bigint[]    NOT NULL,
    n            integer     NOT NULL,
    completed_at timestamptz NOT NULL
) PARTITION BY LIST (qslot);

-- Terminal rows for the slow outcomes (failed, cancelled, completed with output). They carry
-- the job body, because a job cancelled while scheduled never had a ready row.
CREATE TABLE braid.terminal (
    qslot        smallint    NOT NULL,
    lane_id      integer     NOT NULL,
    job_id       bigint      NOT NULL,
    run_lease    bigint      NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    state        smallint    NOT NULL,
    kind         text        NOT NULL,
    args         jsonb       NOT NULL,
    metadata     jsonb,
    output       jsonb,
    errors       jsonb,
    unique_key   text,
    created_at   timestamptz NOT NULL,
    finalized_at timestamptz NOT NULL
) PARTITION BY LIST (qslot);

-- Terminal count deltas: append-only, signed, keyed by the one bucket rule.
CREATE TABLE braid.count_delta (
    qslot  smallint NOT NULL,
    queue  text     NOT NULL,
    state  smallint NOT NULL,
    bucket smallint NOT NULL,
    delta  integer  NOT NULL
) PARTITION BY LIST (qslot);

-- ---------------------------------------------------------------------------------------------
-- Claim ring: partitioned by claim slot (cslot).

-- Claim batches: one row per claim call. Member i (1-based) of the arrays is one attempt.
CREATE TABLE braid.claim_batch (
    cslot       smallint    NOT NULL,
    batch_id    bigint      NOT NULL,
    lane_id     integer     NOT NULL,
    qslot       smallint    NOT NULL,  -- every member's ready row lives in this queue slot
    job_ids     bigint[]    NOT NULL,
    run_leases  bigint[]    NOT NULL,
    lane_seqs   bigint[]    NOT NULL,
    attempts    integer[]   NOT NULL,  -- the attempt number each member is running (1-based)
    n           integer     NOT NULL,
    has_unique  boolean     NOT NULL,  -- some member holds a unique key (released at its end)
    claimed_at  timestamptz NOT NULL,
    deadline_at timestamptz NOT NULL,
    node        text        NOT NULL,
    -- A re-homed attempt's one-member batch names the member it continues, so receipts of the
    -- old member follow it (braid.receipt_resolve).
    rehomed_from bigint,
    rehomed_idx  integer
) PARTITION BY LIST (cslot);

-- Closures: durable evidence that attempts ended. One row per (ending statement, claim batch),
-- naming the members (1-based indexes) it closed and how. An attempt is open iff no closure
-- names it (see braid.open_attempts, the only definition).
CREATE TABLE braid.closure (
    cslot     smallint    NOT NULL,
    batch_id  bigint      NOT NULL,
    members   integer[]   NOT NULL,
    outcome   smallint    NOT NULL,
    closed_at timestamptz NOT NULL
) PARTITION BY LIST (cslot);

-- Partitions: one per slot, created from the ring table so the slot counts live in one place.
DO $$
DECLARE
    q int := (SELECT slots FROM braid.ring WHERE ring = 'queue');
    c int := (SELECT slots FROM braid.ring WHERE ring = 'claim');
    t text;
BEGIN
    FOR s IN 0 .. q - 1 LOOP
        FOREACH t IN ARRAY ARRAY['ready', 'tombstone', 'emission', 'completion', 'terminal', 'count_delta'] LOOP
            EXECUTE format('CREATE TABLE braid.%I PARTITION OF braid.%I FOR VALUES IN (%s)', t || '_' || s, t, s);
        END LOOP;
    END LOOP;
    FOR s IN 0 .. c - 1 LOOP
        FOREACH t IN ARRAY ARRAY['claim_batch', 'closure'] LOOP
            EXECUTE format('CREATE TABLE braid.%I PARTITION OF braid.%I FOR VALUES IN (%s)', t || '_' || s, t, s);
        END LOOP;
    END LOOP;
END
$$;

CREATE INDEX ON braid.ready (lane_id, lane_seq);
CREATE INDEX ON braid.ready (job_id);
CREATE INDEX ON braid.tombstone (lane_id, lane_seq);
CREATE INDEX ON braid.tombstone (job_id);
CREATE INDEX ON braid.emission (lane_id, last_seq);
CREATE INDEX ON braid.completion (batch_id);
CREATE INDEX ON braid.terminal (job_id);
CREATE INDEX ON braid.claim_batch (batch_id);
CREATE INDEX ON braid.claim_batch (rehomed_from, rehomed_idx) WHERE rehomed_from IS NOT NULL;
CREATE INDEX ON braid.closure (batch_id);

-- ---------------------------------------------------------------------------------------------
-- Plain tables: row-vacuumed, bounded by something other than throughput.

-- Deferred jobs: scheduled (run_at in the future), retryable (backoff) and snoozed. Promoted
-- to ready rows when due, keeping job_id and run_lease.
CREATE TABLE braid.deferred (
    job_id       bigint      PRIMARY KEY,
    queue        text        NOT NULL,
    priority     smallint    NOT NULL,
    lane_no      smallint    NOT NULL,
    reason       smallint    NOT NULL,  -- 1 scheduled, 2 retryable, 3 snoozed
    run_lease    bigint      NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    kind         text        NOT NULL,
    args         jsonb       NOT NULL,
    metadata     jsonb,
    errors       jsonb,
    unique_key   text,
    run_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX ON braid.deferred (run_at);
CREATE INDEX ON braid.deferred (queue, reason);

-- Dead letters: jobs whose attempts are exhausted (or discarded) on a queue with DLQ on.
CREATE TABLE braid.dead_letter (
    job_id       bigint      PRIMARY KEY,
    queue        text        NOT NULL,
    priority     smallint    NOT NULL,
    lane_no      smallint    NOT NULL,
    run_lease    bigint      NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    kind         text        NOT NULL,
    args         jsonb       NOT NULL,
    metadata     jsonb,
    errors       jsonb,
    unique_key   text,
    created_at   timestamptz NOT NULL,
    dead_at      timestamptz NOT NULL
);
CREATE INDEX ON braid.dead_letter (queue, dead_at DESC, job_id DESC);

-- Attempt state: heartbeat and progress, only for attempts that live long enough to heartbeat.
-- Rows are deleted when their attempt ends (attempt_end, one index probe per claim batch).
CREATE TABLE braid.attempt_state (
    job_id       bigint      NOT NULL,
    run_lease    bigint      NOT NULL,
    batch_id     bigint      NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    progress     jsonb,
    PRIMARY KEY (job_id, run_lease)
);
CREATE INDEX ON braid.attempt_state (batch_id);

-- Unique-key claims: held from enqueue until the job reaches a terminal state.
CREATE TABLE braid.unique_claim (
    queue      text   NOT NULL,
    unique_key text   NOT NULL,
    job_id     bigint NOT NULL,
    PRIMARY KEY (queue, unique_key)
);
CREATE INDEX ON braid.unique_claim (job_id);

-- Per-bucket terminal counters (folded history) for completed, failed and cancelled jobs.
CREATE TABLE braid.counter (
    queue  text     NOT NULL,
    state  smallint NOT NULL,
    bucket smallint NOT NULL,
    n      bigint   NOT NULL,
    PRIMARY KEY (queue, state, bucket)
);

-- Folded terminal counts: what prune carried out of reclaimed queue slots, per (queue, state,
-- bucket), append-only so prune never UPDATEs. A counter fold (not built yet) is to move these
-- rows into braid.counter while the MVCC horizon is not pinned.
CREATE TABLE braid.counter_log (
    queue  text     NOT NULL,
    state  smallint NOT NULL,
    bucket smallint NOT NULL,
    n      bigint   NOT NULL
);

-- The maintenance lease, judged by the database clock (DESIGN.md §2.8).
CREATE TABLE braid.maintenance_lease (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    holder     text        NOT NULL,
    epoch      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
